"""Balances view: one row per deposit with the figures ``show`` prints, ready to query.

The row is a :class:`domain.Balance` at rest: a batch loads the rows it touches,
applies each event with ``Balance.apply`` (the same code the aggregate runs) and
writes them back, so ``balance`` and ``show`` cannot disagree. Indexed for the
back office's questions: by status, by site, the shops that must pay, and the
shops whose top-up is overdue.

The stored ``status`` never reads ``restricted``: that depends on the time of
the question, so queries compare ``top_up_due`` with the "now" they are given.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from domain import Balance, DepositState, Opened, Phase, Status
from projections.view import (
    Carry,
    Cursor,
    Positioned,
    UnreadableRow,
    View,
    page_limit,
    read_stored_time,
    stored_time,
)

_COLUMNS = (
    "deposit_id",
    "shop_id",
    "site",
    "currency",
    "status",
    "phase",
    "required_minor",
    "paid_minor",
    "unfrozen_minor",
    "frozen_minor",
    "deducted_minor",
    "refunded_minor",
    "forfeited_minor",
    "owed_minor",
    "shortfall_minor",
    "settlement_due",
    "version",
    "last_effective_at",
    "held_minor",
    "reversed_minor",
    "top_up_due",
    "policy_version",
    "categories",
    "written_off_minor",
    "position",
)
_SELECT = ", ".join(_COLUMNS)
_FIXED = ("deposit_id", "shop_id", "site", "currency")
"""Set when the deposit is opened, never changed."""
_INDEXED = ("status", "phase", "shortfall_minor", "top_up_due", "owed_minor")
"""The columns the secondary indexes read (besides the fixed ones)."""
_CHANGING = tuple(column for column in _COLUMNS if column not in _FIXED + _INDEXED)
_OVERDUE = "phase = 'open' AND top_up_due IS NOT NULL AND top_up_due <= ?"


class BalancesView(View):
    """One row per deposit: status, the money figures, the last event's time and position."""

    name = "balances"
    table: ClassVar[str] = "deposit_balances"
    columns: ClassVar[tuple[str, ...]] = _COLUMNS

    def create_statements(self, table: str, position_key: str = "BIGINT PRIMARY KEY") -> list[str]:
        """The balances table, keyed by deposit id, with the shop id unique."""
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "deposit_id TEXT PRIMARY KEY, shop_id TEXT NOT NULL, site TEXT, currency TEXT NOT NULL, "
            "status TEXT NOT NULL, phase TEXT NOT NULL, required_minor BIGINT NOT NULL, "
            "paid_minor BIGINT NOT NULL, unfrozen_minor BIGINT NOT NULL, frozen_minor BIGINT NOT NULL, "
            "deducted_minor BIGINT NOT NULL, refunded_minor BIGINT NOT NULL, "
            "forfeited_minor BIGINT NOT NULL, owed_minor BIGINT NOT NULL, "
            "shortfall_minor BIGINT NOT NULL, settlement_due TEXT, version BIGINT NOT NULL, "
            "last_effective_at TEXT NOT NULL, held_minor BIGINT NOT NULL, reversed_minor BIGINT NOT NULL, "
            "top_up_due TEXT, policy_version TEXT, categories TEXT NOT NULL, written_off_minor BIGINT NOT NULL, "
            "position BIGINT NOT NULL)"
        ]

    def index_statements(self, table: str) -> list[str]:
        """Lookups by shop id, status and site, the open deposits with a shortfall, top-up due times, debts."""
        return [
            f"CREATE UNIQUE INDEX IF NOT EXISTS {table}_shop ON {table} (shop_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status, shop_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_site ON {table} (site, shop_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_must_pay ON {table} (shop_id) "
            "WHERE phase = 'open' AND shortfall_minor > 0",
            f"CREATE INDEX IF NOT EXISTS {table}_top_up_due ON {table} (top_up_due) WHERE top_up_due IS NOT NULL",
            f"CREATE INDEX IF NOT EXISTS {table}_owing ON {table} (shop_id) WHERE owed_minor > 0",
        ]

    def lookup_index_statements(self, table: str) -> list[str]:
        """None: the view reads its rows by the primary key."""
        return []

    def apply(self, cursor: Cursor, table: str, batch: Sequence[Positioned], carry: Carry | None = None) -> None:
        """Load the touched rows (or take them from ``carry``), apply the events in order, write the rows back."""
        # Deposits keyed by their ids' integers: hashing UUID objects is a Python call.
        touched: dict[int, tuple[Balance, int]] = {}
        missing = {p.event.originator_id.int for p in batch if not isinstance(p.event, Opened)}
        if carry is not None:
            touched, missing = carry.recall(missing)
        for balance, position in self._load(cursor, table, missing):
            touched[balance.deposit_id.int] = (balance, position)
        indexed_before = {deposit: _indexed(balance) for deposit, (balance, _) in touched.items()}
        for positioned in batch:
            event = positioned.event
            key = event.originator_id.int
            if isinstance(event, Opened):
                balance = Balance.opened(event)
            else:
                try:
                    balance, _ = touched[key]
                except KeyError:
                    raise LookupError(f"no balances row for deposit {event.originator_id}") from None
                balance.apply(event)
            touched[key] = (balance, positioned.position)
        # A row is written with the columns the secondary indexes read only where they
        # changed: SQLite rewrites an index entry for every column a SET names, even with
        # the same value, and most events change none of them (four pages a command fewer).
        writes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for deposit, (balance, position) in touched.items():
            before = indexed_before.get(deposit)
            after = _indexed(balance)
            changed = (
                _INDEXED
                if before is None
                else tuple(column for column, old, new in zip(_INDEXED, before, after, strict=True) if old != new)
            )
            writes.setdefault(changed, []).append(_row(balance, position))
        for changed, rows in writes.items():
            cursor.executemany(_upsert(table, changed), rows)
        if carry is not None:
            for deposit, written in touched.items():
                carry.remember(deposit, written)

    def _load(self, cursor: Cursor, table: str, deposits: set[int]) -> list[tuple[Balance, int]]:
        loaded: list[tuple[Balance, int]] = []
        ids = [f"{deposit:032x}" for deposit in deposits]  # UUID.hex
        # Bounded IN lists: SQLite allows a limited number of parameters per statement.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor.execute(f"SELECT {_SELECT} FROM {table} WHERE deposit_id IN ({', '.join('?' * len(chunk))})", chunk)
            loaded.extend(_balance(row) for row in cursor.fetchall())
        return loaded

    def expected_row(self, balance: Balance, position: int) -> tuple[Any, ...]:
        """The row this view must hold for a deposit replayed to ``balance``."""
        return _row(balance, position)

    def stored_row(self, cursor: Cursor, deposit: UUID) -> tuple[Any, ...] | None:
        """The row held for ``deposit``, as a tuple comparable with :meth:`expected_row`."""
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE deposit_id = ?", (deposit.hex,))
        row = cursor.fetchone()
        return None if row is None else tuple(row)

    @staticmethod
    def column_names() -> tuple[str, ...]:
        """The columns of a row, in the order of the tuples above."""
        return _COLUMNS

    # ------------------------------------------------------------------ queries

    def get(self, cursor: Cursor, shop_id: str, now: datetime | None = None) -> tuple[DepositState, int] | None:
        """The shop's state (its status as of ``now``) and the position of the last event applied, or None."""
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE shop_id = ?", (shop_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        balance, position = _balance(row)
        return balance.state(now), position

    def select(
        self,
        cursor: Cursor,
        *,
        status: str | None = None,
        site: str | None = None,
        must_pay: bool = False,
        overdue: bool = False,
        owing: bool = False,
        now: datetime | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[DepositState]:
        """Deposits ordered by shop id, filtered by status, site, shortfall, overdue top-up as of ``now``, debt.

        ``restricted`` is no stored status: asking for it (or for ``overdue``) finds
        the open deposits whose top-up was due by ``now``, and asking for the stored
        status they had leaves them out.

        A page: the first ``limit`` deposits whose shop id sorts after ``after``.
        The query seeks to ``after`` in an index ordered by shop id, so a page
        reads about ``limit`` rows however deep it is.
        """
        conditions: list[str] = []
        params: list[Any] = []
        moment = stored_time(now) if now is not None else None
        if status == Status.RESTRICTED.value or overdue:
            if moment is None:
                return []
            conditions.append(_OVERDUE)
            params.append(moment)
        if status is not None and status != Status.RESTRICTED.value:
            conditions.append("status = ?")
            params.append(status)
            if moment is not None:
                conditions.append(f"NOT ({_OVERDUE})")
                params.append(moment)
        if site is not None:
            conditions.append("site = ?")
            params.append(site)
        if must_pay:
            conditions.append("phase = 'open' AND shortfall_minor > 0")
        if owing:
            conditions.append("owed_minor > 0")
        if after is not None:
            conditions.append("shop_id > ?")
            params.append(after)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        page = page_limit(limit, params)
        cursor.execute(f"SELECT {_SELECT} FROM {self.table}{where} ORDER BY shop_id{page}", params)
        return [_balance(row)[0].state(now) for row in cursor.fetchall()]


@functools.lru_cache(maxsize=64)
def _upsert(table: str, indexed: tuple[str, ...]) -> str:
    # Inserts a whole row; an existing row gets its changing columns and ``indexed``.
    updates = ", ".join(f"{column} = excluded.{column}" for column in _CHANGING + indexed)
    return (
        f"INSERT INTO {table} ({_SELECT}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
        f"ON CONFLICT (deposit_id) DO UPDATE SET {updates}"
    )


def _indexed(balance: Balance) -> tuple[Any, ...]:
    # The values of _INDEXED, as compared before and after a batch.
    return (balance.status, balance.phase, balance.shortfall_minor, balance.top_up_due, balance.owed_minor)


def _row(balance: Balance, position: int) -> tuple[Any, ...]:
    return (
        balance.deposit_id.hex,
        balance.shop_id,
        balance.site,
        balance.currency,
        balance.status.value,
        balance.phase.value,
        balance.required_minor,
        balance.paid_minor,
        balance.unfrozen_minor,
        balance.frozen_minor,
        balance.deducted_minor,
        balance.refunded_minor,
        balance.forfeited_minor,
        balance.owed_minor,
        balance.shortfall_minor,
        stored_time(balance.settlement_due) if balance.settlement_due else None,
        balance.version,
        stored_time(balance.last_effective_at),
        balance.held_minor,
        balance.reversed_minor,
        stored_time(balance.top_up_due) if balance.top_up_due else None,
        balance.policy_version,
        json.dumps(list(balance.categories)),
        balance.written_off_minor,
        position,
    )


def _balance(row: Sequence[Any]) -> tuple[Balance, int]:
    try:
        return _decoded_balance(row)
    except (ValueError, TypeError, KeyError) as error:
        raise UnreadableRow(
            f"the balances view cannot read its row of shop {row[1]!r} ({error}): rebuild the view from the events"
        ) from None


def _decoded_balance(row: Sequence[Any]) -> tuple[Balance, int]:
    balance = Balance(
        deposit_id=UUID(row[0]),
        shop_id=row[1],
        site=row[2],
        currency=row[3],
        phase=Phase(row[5]),
        required_minor=row[6],
        paid_minor=row[7],
        unfrozen_minor=row[8],
        frozen_minor=row[9],
        deducted_minor=row[10],
        refunded_minor=row[11],
        forfeited_minor=row[12],
        owed_minor=row[13],
        settlement_due=read_stored_time(row[15]) if row[15] else None,
        version=row[16],
        last_effective_at=read_stored_time(row[17]),
        held_minor=row[18],
        reversed_minor=row[19],
        top_up_due=read_stored_time(row[20]) if row[20] else None,
        policy_version=row[21],
        categories=tuple(json.loads(row[22])),
        written_off_minor=row[23],
    )
    return balance, row[24]
