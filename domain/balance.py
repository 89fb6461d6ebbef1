"""A deposit's figures and how each event changes them: the one definition of the arithmetic.

``ShopDeposit`` keeps a ``Balance`` beside the bookkeeping its rules need
(payments, cases); the balances view keeps one per row. Both call
:meth:`Balance.apply`, so a view rebuilt from the events and a deposit replayed
from them cannot disagree about a figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain.events import (
    ClosureRequested,
    Deducted,
    DepositEvent,
    Forfeited,
    Frozen,
    Opened,
    Paid,
    Refunded,
)


class Phase(StrEnum):
    """Where a deposit is in its lifecycle."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    FORFEITED = "forfeited"


class Status(StrEnum):
    """The status the ledger reports: the phase, refined by the balance while open."""

    AWAITING_PAYMENT = "awaiting_payment"
    ACTIVE = "active"
    UNDERFUNDED = "underfunded"
    CLOSING = "closing"
    CLOSED = "closed"
    FORFEITED = "forfeited"


class DepositState(BaseModel):
    """A deposit's figures at one version: what ``show`` and ``balance`` report."""

    model_config = ConfigDict(frozen=True)

    shop_id: str
    site: str | None
    currency: str
    status: Status
    required_minor: int
    paid_minor: int
    frozen_minor: int
    deducted_minor: int
    refunded_minor: int
    forfeited_minor: int
    owed_minor: int
    shortfall_minor: int
    version: int
    settlement_due: AwareDatetime | None
    last_effective_at: AwareDatetime


def frozen_change(event: DepositEvent) -> int:
    """How much the event moves into (+) or out of (−) the frozen balance, in minor units."""
    if isinstance(event, Frozen):
        return event.amount_minor
    if isinstance(event, Deducted) and not event.settles_debt:
        return -event.amount_collected_minor
    if isinstance(event, Refunded | Forfeited):
        return -event.amount_minor
    return 0


@dataclass(slots=True)
class Balance:
    """The money figures of one deposit, in integer minor units of ``currency``.

    ``unfrozen_minor`` is money received but not yet frozen: non-zero only between
    the ``Paid`` and ``Frozen`` events of one payment.
    """

    deposit_id: UUID
    shop_id: str
    site: str | None
    currency: str
    required_minor: int
    phase: Phase
    paid_minor: int
    unfrozen_minor: int
    frozen_minor: int
    deducted_minor: int
    refunded_minor: int
    forfeited_minor: int
    owed_minor: int
    settlement_due: datetime | None
    version: int
    last_effective_at: datetime

    @classmethod
    def opened(cls, event: Opened) -> Balance:
        """The figures of a deposit that has just been opened."""
        return cls(
            deposit_id=event.originator_id,
            shop_id=event.shop_id,
            site=event.site,
            currency=event.currency,
            required_minor=event.required_minor,
            phase=Phase.OPEN,
            paid_minor=0,
            unfrozen_minor=0,
            frozen_minor=0,
            deducted_minor=0,
            refunded_minor=0,
            forfeited_minor=0,
            owed_minor=0,
            settlement_due=None,
            version=event.originator_version,
            last_effective_at=event.effective_at,
        )

    def apply(self, event: DepositEvent) -> None:
        """Change the figures by one event (after ``Opened``), then assert they still balance."""
        assert event.originator_version == self.version + 1, (
            f"version gap in {self.shop_id}: {self.version} then {event.originator_version}"
        )
        self.frozen_minor += frozen_change(event)
        if isinstance(event, Paid):
            self.paid_minor += event.amount_minor
            self.unfrozen_minor += event.amount_minor
        elif isinstance(event, Frozen):
            self.unfrozen_minor -= event.amount_minor
        elif isinstance(event, Deducted):
            self.deducted_minor += event.amount_collected_minor
            if event.settles_debt:
                # Collected from the payment in hand, and the case owes that much less.
                self.unfrozen_minor -= event.amount_collected_minor
                self.owed_minor -= event.amount_collected_minor
            else:
                self.owed_minor += event.amount_owed_minor
        elif isinstance(event, ClosureRequested):
            self.phase = Phase.CLOSING
            self.settlement_due = event.settlement_due
        elif isinstance(event, Refunded):
            self.refunded_minor += event.amount_minor
            self.phase = Phase.CLOSED
        elif isinstance(event, Forfeited):
            self.forfeited_minor += event.amount_minor
            self.phase = Phase.FORFEITED
        else:
            raise AssertionError(f"{type(event).__name__} cannot follow the opening of {self.shop_id}")
        self.version = event.originator_version
        self.last_effective_at = event.effective_at
        self.assert_balanced()

    def assert_balanced(self) -> None:
        """Conservation and signs; holds after every single event, even inside a payment."""
        figures = (
            self.paid_minor,
            self.unfrozen_minor,
            self.frozen_minor,
            self.deducted_minor,
            self.refunded_minor,
            self.forfeited_minor,
            self.owed_minor,
        )
        assert min(figures) >= 0, f"negative figure in {self.shop_id}: {figures}"
        assert self.paid_minor == sum(figures[1:6]), f"conservation broken in {self.shop_id}: {figures}"
        assert self.owed_minor == 0 or self.frozen_minor == 0, f"owed beside frozen money in {self.shop_id}"

    @property
    def shortfall_minor(self) -> int:
        """What the shop must pay to be fully funded again: the gap plus what it owes."""
        return max(0, self.required_minor - self.frozen_minor) + self.owed_minor

    @property
    def status(self) -> Status:
        """``awaiting_payment`` before any payment, then ``active`` or ``underfunded``."""
        if self.phase is not Phase.OPEN:
            return Status(self.phase.value)
        if self.paid_minor == 0:
            return Status.AWAITING_PAYMENT
        return Status.ACTIVE if self.shortfall_minor == 0 else Status.UNDERFUNDED

    def state(self) -> DepositState:
        """The figures as the ledger reports them."""
        return DepositState(
            shop_id=self.shop_id,
            site=self.site,
            currency=self.currency,
            status=self.status,
            required_minor=self.required_minor,
            paid_minor=self.paid_minor,
            frozen_minor=self.frozen_minor,
            deducted_minor=self.deducted_minor,
            refunded_minor=self.refunded_minor,
            forfeited_minor=self.forfeited_minor,
            owed_minor=self.owed_minor,
            shortfall_minor=self.shortfall_minor,
            version=self.version,
            settlement_due=self.settlement_due,
            last_effective_at=self.last_effective_at,
        )
