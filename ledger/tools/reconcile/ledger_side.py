"""The ledger's side of a bill: every payment and every refund share of one channel, streamed.

Read from the events themselves (the views keep no trade numbers per refund
share), through one read transaction, a few thousand rows at a time, decoding
only the three event types that move money through a channel: memory stays
flat however large the store is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from domain import ExcessRefunded, Paid, Refunded
from ledger.store.recorder import stored_id
from ledger.store.urls import Store
from ledger.tools.reconcile.bill import LineKind
from projections.balances import BalancesView

READ_BATCH = 5000
"""Rows fetched from the store at a time."""

_TOPICS = (Paid.TOPIC, Refunded.TOPIC, ExcessRefunded.TOPIC)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A payment, or one channel's share of a refund, as the ledger recorded it.

    ``trade_no`` is the channel's trade number of the payment (for a refund
    share: of the payment the share returns to); ``deposit`` the deposit's id
    as 32 hex digits.
    """

    kind: LineKind
    trade_no: str
    deposit: str
    currency: str
    amount_minor: int
    at: datetime


def ledger_entries(store: Store, mapper: Mapper[Any], channel: str) -> Iterator[LedgerEntry]:
    """Every payment and refund share of ``channel`` in the store, in the order they were stored."""
    placeholders = ", ".join("?" * len(_TOPICS))
    query = (
        f"SELECT originator_id, originator_version, topic, state FROM {store.events_table} "
        f"WHERE topic IN ({placeholders}) ORDER BY {store.position_column}"
    )
    with store.read_snapshot() as connection:
        for originator_id, version, topic, state in _stream(store, connection, query, _TOPICS):
            deposit = stored_id(originator_id)
            event = mapper.to_domain_event(
                StoredEvent(originator_id=UUID(deposit), originator_version=version, topic=topic, state=bytes(state))
            )
            if isinstance(event, Paid):
                if event.channel == channel:
                    yield LedgerEntry(
                        LineKind.PAYMENT,
                        event.trade_no,
                        deposit,
                        event.currency,
                        event.amount_minor,
                        event.effective_at,
                    )
            elif isinstance(event, Refunded | ExcessRefunded):
                for share in event.lines:
                    if share.channel == channel:
                        yield LedgerEntry(
                            LineKind.REFUND,
                            share.trade_no,
                            deposit,
                            event.currency,
                            share.amount_minor,
                            event.effective_at,
                        )


def shops_by_deposit(store: Store) -> Iterator[tuple[str, str]]:
    """Each deposit's id (32 hex digits) and shop id, from the balances view."""
    with store.read_snapshot() as connection:
        yield from _stream(store, connection, f"SELECT deposit_id, shop_id FROM {BalancesView.table}", ())


def _stream(store: Store, connection: Any, query: str, params: Any) -> Iterator[tuple[Any, ...]]:
    # On PostgreSQL a server-side cursor: the rows arrive in batches, never all at once.
    cursor = connection.cursor() if store.kind == "sqlite" else connection.cursor(name="reconcile_ledger_side")
    cursor.execute(query, params)
    while batch := cursor.fetchmany(READ_BATCH):
        yield from batch
