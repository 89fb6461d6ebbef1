"""A day's reconciliation of one channel's bill: the outcome auditors keep, as events.

One aggregate per (channel, bill day); its id is derived from both, so every
run on the same day's bill extends the same history. Each ``BillReconciled``
records what one run found, which bill exactly (its SHA-256) and who ran it.
History is never rewritten: a run with another outcome is a new version, and
a run with the same outcome as the latest version records nothing.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from domain.events import Actor, Channel

RECONCILIATION_NAMESPACE = UUID("0b9e4f3a-8d2c-4c71-a0f5-6e1d2b7c9a44")
"""Reconciliation ids are uuid5 in this namespace: they never collide with deposit ids."""

Count = Annotated[int, Field(ge=0, le=10**12)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def reconciliation_id(channel: Channel, bill_date: date) -> UUID:
    """The id of the reconciliation of ``channel``'s bill of ``bill_date``."""
    return uuid.uuid5(RECONCILIATION_NAMESPACE, f"{channel.value}:{bill_date.isoformat()}")


class BillOutcome(BaseModel):
    """What matching one bill found: the figures a recorded reconciliation keeps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bill_sha256: Sha256
    bill_lines: Count
    matched: Count
    missing_in_ledger: Count
    missing_in_channel: Count
    amount_mismatch: Count
    near_midnight: Count

    @property
    def ok(self) -> bool:
        """True when nothing was missing on either side and no amount differed."""
        return not (self.missing_in_ledger or self.missing_in_channel or self.amount_mismatch)


class BillReconciled(BaseModel):
    """A channel's bill of one day was reconciled with the ledger, with this outcome, by ``actor``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str] = "Reconciliation.BillReconciled"
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int = Field(ge=1)
    recorded_at: AwareDatetime
    actor: Actor
    channel: Channel
    bill_date: date
    outcome: BillOutcome

    @property
    def type_name(self) -> str:
        """The event's name as the ledger reports it."""
        return "BillReconciled"


RECONCILIATION_TYPES: dict[str, type[BillReconciled]] = {BillReconciled.TOPIC: BillReconciled}
"""The reconciliation's stored events by topic."""
