"""The ledger's side of a bill: every payment and every refund share of one channel, streamed.

Read from the audit trail, not by decoding events: the trail keeps one row per
payment (channel, trade number, amount, effective time, shop) and one row per
channel share of a refund (the trade numbers it returns to, the amount), so the
channel's entries are one scan of one table in its own order, a few thousand
rows at a time, through one read transaction. Two cases still decode events:

- a refund share that returns money to several payments of one channel is one
  row for all of them (``ref`` ``A2,A1``), while the bill has a line per
  payment: that refund's event is read for its lines;
- events past the audit trail's position (a view that lags, or stopped) are
  read from the log itself, so a view behind never hides a payment.

(The trade-number table names every payment's deposit and position too, but
not its amount or time: joining it with the trail costs a lookup per payment,
three times the scan; see docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from domain import ExcessRefunded, Opened, Paid, Refunded
from ledger.store.recorder import stored_id
from ledger.store.urls import Store
from ledger.tools.reconcile.bill import LineKind, utc_second
from projections.audit_trail import AuditTrailView
from projections.view import STORED_TIME_LENGTH, read_stored_time

READ_BATCH = 5000
"""Rows fetched from the store at a time."""

LedgerRow = tuple[str, str, str, str | None, str, int, str]
"""A payment, or one channel's share of a refund: ``(kind, trade_no, deposit, shop_id, currency, amount_minor, at)``.

``trade_no`` is the channel's trade number of the payment (for a refund share:
of the payment the share returns to); ``deposit`` the deposit's id as 32 hex
digits; ``at`` the effective time in UTC to the second, ``YYYY-MM-DDTHH:MM:SSZ``.
"""

_MONEY_TYPES = (Paid.__name__, Refunded.__name__, ExcessRefunded.__name__)
"""The audit trail's ``type`` of the rows that move money through a channel."""
_TAIL_TOPICS = (Opened.TOPIC, Paid.TOPIC, Refunded.TOPIC, ExcessRefunded.TOPIC)


def ledger_rows(store: Store, mapper: Mapper[Any], channel: str) -> Iterator[LedgerRow]:
    """Every payment and refund share of ``channel`` in the store, in the order they were stored."""
    with store.read_snapshot() as connection:
        trail = AuditTrailView.table
        row = (
            connection.cursor()
            .execute("SELECT position FROM view_tracking WHERE name = ?", (AuditTrailView.name,))
            .fetchone()
        )
        trail_to = 0 if row is None else int(row[0])
        lookups = connection.cursor()
        query = (
            f"SELECT position, type, deposit_id, shop_id, currency, amount_minor, effective_at, ref FROM {trail} "
            f"WHERE channel = ? AND type IN (?, ?, ?) AND position <= ? ORDER BY position, share"
        )
        for position, type_name, deposit, shop_id, currency, amount, at, ref in _stream(
            store, connection, query, (channel, *_MONEY_TYPES, trail_to)
        ):
            if type_name == _MONEY_TYPES[0]:
                yield (LineKind.PAYMENT.value, ref, deposit, shop_id, currency, amount, _second(at))
            elif "," not in ref:
                yield (LineKind.REFUND.value, ref, deposit, shop_id, currency, amount, _second(at))
            else:
                event = _decode(mapper, _event_at(store, lookups, position))
                yield from _rows_of(event, channel, shop_id)
        yield from _tail(store, mapper, connection, channel, trail_to)


def _tail(store: Store, mapper: Mapper[Any], connection: Any, channel: str, after: int) -> Iterator[LedgerRow]:
    # The events the audit trail has not applied: decoded, their shops from their Opened
    # events or, for deposits opened earlier, from the trail (kept for the tail alone).
    shops: dict[str, str | None] = {}
    lookups = connection.cursor()
    query = (
        f"SELECT originator_id, originator_version, topic, state FROM {store.events_table} "
        f"WHERE {store.position_column} > ? AND topic IN (?, ?, ?, ?) ORDER BY {store.position_column}"
    )
    for stored in _stream(store, connection, query, (after, *_TAIL_TOPICS), name="reconcile_tail"):
        event = _decode(mapper, stored)
        deposit = event.originator_id.hex
        if isinstance(event, Opened):
            shops[deposit] = event.shop_id
            continue
        if deposit not in shops:
            found = lookups.execute(
                f"SELECT shop_id FROM {AuditTrailView.table} WHERE deposit_id = ? ORDER BY position LIMIT 1", (deposit,)
            ).fetchone()
            shops[deposit] = None if found is None else found[0]
        yield from _rows_of(event, channel, shops[deposit])


def _rows_of(event: Any, channel: str, shop_id: str | None) -> Iterator[LedgerRow]:
    deposit, at = event.originator_id.hex, utc_second(event.effective_at)
    if isinstance(event, Paid):
        if event.channel == channel:
            yield (LineKind.PAYMENT.value, event.trade_no, deposit, shop_id, event.currency, event.amount_minor, at)
    elif isinstance(event, Refunded | ExcessRefunded):
        for share in event.lines:
            if share.channel == channel:
                yield (LineKind.REFUND.value, share.trade_no, deposit, shop_id, event.currency, share.amount_minor, at)


def _event_at(store: Store, cursor: Any, position: int) -> tuple[Any, ...]:
    cursor.execute(
        f"SELECT originator_id, originator_version, topic, state FROM {store.events_table} "
        f"WHERE {store.position_column} = ?",
        (position,),
    )
    found: tuple[Any, ...] = cursor.fetchone()
    return found


def _decode(mapper: Mapper[Any], row: tuple[Any, ...]) -> Any:
    originator_id, version, topic, state = row
    return mapper.to_domain_event(
        StoredEvent(
            originator_id=UUID(stored_id(originator_id)),
            originator_version=version,
            topic=topic,
            state=state.encode() if isinstance(state, str) else bytes(state),
        )
    )


def _second(stored: str) -> str:
    # The trail's fixed-width UTC form, cut to the second: the working file's time text.
    if len(stored) != STORED_TIME_LENGTH:
        return utc_second(read_stored_time(stored))
    return stored[:19] + "Z"


def _stream(
    store: Store, connection: Any, query: str, params: Any, *, name: str = "reconcile_ledger_side"
) -> Iterator[tuple[Any, ...]]:
    # On PostgreSQL a server-side cursor: the rows arrive in batches, never all at once.
    cursor = connection.cursor() if store.kind == "sqlite" else connection.cursor(name=name)
    cursor.execute(query, params)
    while batch := cursor.fetchmany(READ_BATCH):
        yield from batch
