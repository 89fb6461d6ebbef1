"""The message bus, behind a small interface so that another broker (Kafka) can be added beside NATS.

A bus takes the store's events in commit order, batch by batch. :meth:`Bus.publish`
returns only once the broker has acknowledged the whole batch; the relay moves the
bus's position after that. A relay stopped between the two publishes the batch again
when it restarts: each message carries the event's id, by which the broker drops
the copies (JetStream: ``Nats-Msg-Id``; Kafka: an idempotent producer or a key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ledger.store.urls import StoreUnavailable

SUBJECT_PREFIX = "deposits"
"""The first token of every subject: ``deposits.<site>.<shop_id>.<EventType>``."""

NO_SITE = "_"
"""The site token of a shop opened without a site (no site code can be ``_``)."""


class BusUnavailable(StoreUnavailable):
    """The broker cannot be reached or did not acknowledge in time: nothing was taken as published."""


@dataclass(frozen=True)
class BusMessage:
    """One event as the bus carries it: where it goes, its id (for deduplication), its body."""

    subject: str
    id: str
    body: bytes


class Bus(Protocol):
    """A broker the relay publishes to."""

    @property
    def target(self) -> str:
        """The name its position is kept under in the store (``nats:DEPOSITS``)."""

    def publish(self, messages: list[BusMessage]) -> None:
        """Publish in order and wait for every acknowledgement; raise :class:`BusUnavailable` if any fails."""

    def close(self) -> None:
        """Let go of the connection."""


def subject_for(site: str | None, shop_id: str, event_type: str, prefix: str = SUBJECT_PREFIX) -> str:
    """``<prefix>.<site>.<shop_id>.<EventType>``; a ``.`` in a shop id is written ``%2E`` (it splits tokens)."""
    return f"{prefix}.{site or NO_SITE}.{shop_id.replace('.', '%2E')}.{event_type}"
