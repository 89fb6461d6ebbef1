"""One feed message: an event or a notice as receivers get it, under an id that never changes.

The body is ``{"type", "timestamp", "data"}`` (the Standard Webhooks payload shape):
``type`` is the event type (``Paid``) or the notice type (``DepositShort``),
``timestamp`` when it happened (an event's recording time, a deadline's due time),
``data`` the event as ``history --json`` shows it plus ``shop_id`` and its store
``position`` (or the notice's figures). The same bytes are sent on every retry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain import DepositEvent
from ledger.faces.reports import event_json


@dataclass(frozen=True)
class ShopCard:
    """What every message of a shop carries: its id, its site and its currency (from ``Opened``)."""

    shop_id: str
    site: str | None
    currency: str


@dataclass(frozen=True)
class FeedMessage:
    """An event or notice ready to send: ``id`` is the ``webhook-id`` and the ``Nats-Msg-Id``.

    ``position`` and ``seq`` order a shop's messages: the store position of the
    event it was made at, then its place among the messages made there.
    """

    id: str
    type: str
    shop_id: str
    site: str | None
    position: int
    seq: int
    body: bytes


def event_message_id(deposit: UUID, version: int) -> str:
    """The id of an event: its deposit and its version there, which no other event shares."""
    return f"evt_{deposit.hex}_{version}"


def notice_message_id(notice_type: str, shop_id: str, anchor: str) -> str:
    """The id of a notice: a digest of what it is about, so that deriving it again gives the same id.

    ``anchor`` is what makes the notice one of its kind: the position of the event it
    derives from, or the deadline it reports.
    """
    digest = hashlib.sha256(f"{notice_type}|{shop_id}|{anchor}".encode()).hexdigest()[:32]
    return f"ntc_{digest}"


def body_bytes(message_type: str, timestamp: datetime, data: dict[str, Any]) -> bytes:
    """The body as sent: compact JSON in UTF-8, keys in a fixed order."""
    document = {"type": message_type, "timestamp": iso(timestamp), "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def event_message(event: DepositEvent, card: ShopCard, position: int, seq: int = 0) -> FeedMessage:
    """The message of one stored event."""
    data = {"shop_id": card.shop_id, "position": position, **event_json(event, card.currency)}
    return FeedMessage(
        id=event_message_id(event.originator_id, event.originator_version),
        type=event.type_name,
        shop_id=card.shop_id,
        site=card.site,
        position=position,
        seq=seq,
        body=body_bytes(event.type_name, event.recorded_at, data),
    )


def iso(moment: datetime) -> str:
    """A moment as the ledger prints it: ISO-8601, ``Z`` for UTC."""
    return moment.isoformat().replace("+00:00", "Z")
