"""One channel trade number is one payment, ledger-wide: the table that decides which shop holds it.

A payment is identified by its channel and the channel's trade number. A
deposit refuses the same pair twice by itself; two deposits could each accept
it once, crediting one Alipay payment to two shops. ``trade_numbers`` holds one
row per pair, keyed by ``(channel, trade_no)``, naming the deposit that holds
it and the position of its ``Paid`` event. The row is written in the
transaction that inserts the event, so the table's unique key decides between
two writers racing for one pair: the second insert finds the row and its
whole transaction is rolled back (:class:`TradeNumberClaimed`).

A store written before the table existed gets it filled from its ``Paid``
events the first time a ledger opens it (:func:`ensure_table`), the earliest
payment of a pair holding it. A pair that an older release let two shops use
keeps both payments (history is never edited); ``verify`` reports the second.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent

from domain import DepositEvent, Paid

TABLE = "trade_numbers"
PAID_TOPIC = Paid.TOPIC
FILL_BATCH = 2000
"""Payments read and claimed per statement while filling the table of an older store."""

CLAIM_CHUNK = 200
"""Payments claimed per statement (four parameters each)."""

LOOKUP_CHUNK = 500
"""Pairs looked up per statement: SQLite bounds the parameters of one statement."""

Pair = tuple[str, str]
"""A channel (``alipay``) and its trade number."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A deposit holds a trade number since the payment at ``position``."""

    channel: str
    trade_no: str
    deposit_hex: str
    position: int

    @property
    def pair(self) -> Pair:
        """The channel and trade number."""
        return (self.channel, self.trade_no)


class TradeNumberClaimed(IntegrityError):
    """A payment's trade number is held by another deposit: nothing of the transaction was stored.

    An ``IntegrityError``, so that whoever saved decides again, now knowing who
    holds it (``claims``: each pair of the insert that another deposit holds).
    """

    def __init__(self, claims: Sequence[Claim]) -> None:
        super().__init__(", ".join(f"{c.channel} {c.trade_no} is held by deposit {c.deposit_hex}" for c in claims))
        self.claims = tuple(claims)


def create_table_statement(kind: str) -> str:
    """The table, keyed by the pair; on SQLite the key is the table itself (one b-tree)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (channel TEXT NOT NULL, trade_no TEXT NOT NULL, "
        "deposit_id TEXT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (channel, trade_no))"
        + (" WITHOUT ROWID" if kind == "sqlite" else "")
    )


def claims_of(
    positions: Sequence[int], stored_events: Sequence[StoredEvent], events: Sequence[DepositEvent] | None
) -> list[Claim]:
    """The trade numbers that just-inserted payments claim, from their domain events where given."""
    claims = []
    if events is not None:
        for position, event in zip(positions, events, strict=True):
            if type(event) is Paid:
                claims.append(Claim(event.channel.value, event.trade_no, event.originator_id.hex, position))
        return claims
    for position, stored in zip(positions, stored_events, strict=True):
        if stored.topic == PAID_TOPIC:
            state = json.loads(stored.state)
            claims.append(Claim(state["channel"], state["trade_no"], _hex(stored.originator_id), position))
    return claims


def claim(cursor: Any, claims: Sequence[Claim]) -> None:
    """Inside the insert's transaction: record the claims, or raise :class:`TradeNumberClaimed`.

    A pair already held (by another deposit, or by another payment of the same
    one, which the deposit's own rules never record) inserts nothing; its holder
    is read back so that the caller can name it.
    """
    if not claims:
        return
    inserted = 0
    for start in range(0, len(claims), CLAIM_CHUNK):
        chunk = claims[start : start + CLAIM_CHUNK]
        cursor.execute(
            f"INSERT INTO {TABLE} (channel, trade_no, deposit_id, position) "
            f"VALUES {', '.join(['(?, ?, ?, ?)'] * len(chunk))} "
            "ON CONFLICT (channel, trade_no) DO NOTHING RETURNING position",
            [value for c in chunk for value in (c.channel, c.trade_no, c.deposit_hex, c.position)],
        )
        inserted += len(cursor.fetchall())
    if inserted == len(claims):
        return
    held = holders(cursor, [c.pair for c in claims])
    taken = [(c, held[c.pair]) for c in claims if held[c.pair].position != c.position]
    if any(holder.deposit_hex == c.deposit_hex for c, holder in taken):
        # The deposit's own rules never pay a pair twice: it was decided on a copy behind the store.
        raise IntegrityError("a payment of this deposit holds the trade number already: decide again")
    raise TradeNumberClaimed([holder for _, holder in taken])


def holders(cursor: Any, pairs: Iterable[Pair]) -> dict[Pair, Claim]:
    """Who holds each pair (an indexed lookup per pair, a few hundred pairs a statement); unheld pairs are absent."""
    wanted = list(dict.fromkeys(pairs))
    found: dict[Pair, Claim] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        condition = " OR ".join(["(channel = ? AND trade_no = ?)"] * len(chunk))
        cursor.execute(
            f"SELECT channel, trade_no, deposit_id, position FROM {TABLE} WHERE {condition}",
            [value for pair in chunk for value in pair],
        )
        for channel, trade_no, deposit_hex, position in cursor.fetchall():
            found[(channel, trade_no)] = Claim(channel, trade_no, deposit_hex, int(position))
    return found


def ensure_table(store: Any, connection: Any, mapper: Mapper[UUID]) -> int:
    """Create the table if the store lacks it, filled from the store's payments; return the pairs filled.

    One transaction: a store is never left with a half-filled table. The
    earliest payment of a pair holds it; a later payment of the same pair on
    another deposit (possible before this table existed) is left for ``verify``.
    """
    # Opening a ledger takes no lock when the table is there: only a store without it waits for one.
    if store.table_exists(connection.cursor(), TABLE):
        return 0
    with store.write_transaction(connection) as cursor:
        store.serialise_schema_changes(cursor)
        if store.table_exists(cursor, TABLE):
            return 0
        cursor.execute(create_table_statement(store.kind))
        return _fill(cursor, store, mapper)


def _fill(cursor: Any, store: Any, mapper: Mapper[UUID]) -> int:
    position_column = store.position_column
    query = (
        f"SELECT {position_column}, originator_id, originator_version, topic, state FROM {store.events_table} "
        f"WHERE topic = ? AND {position_column} > ? ORDER BY {position_column} LIMIT {FILL_BATCH}"
    )
    after, filled = 0, 0
    while rows := cursor.execute(query, (PAID_TOPIC, after)).fetchall():
        claims = []
        for position, originator_id, version, topic, state in rows:
            stored = StoredEvent(
                originator_id=UUID(_hex(originator_id)),
                originator_version=version,
                topic=topic,
                state=bytes(state) if not isinstance(state, str) else state.encode(),
            )
            event = mapper.to_domain_event(stored)
            assert isinstance(event, Paid)
            claims.append((event.channel.value, event.trade_no, event.originator_id.hex, int(position)))
        cursor.executemany(
            f"INSERT INTO {TABLE} (channel, trade_no, deposit_id, position) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (channel, trade_no) DO NOTHING",
            claims,
        )
        filled += len(claims)
        after = int(rows[-1][0])
    return filled


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(str(originator_id)).hex
