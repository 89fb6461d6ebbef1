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

import dataclasses
import functools
import json
import operator
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain import Balance, DepositState, Opened, Status
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

_STORED_ORDER = (
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
)
"""The order the table has kept its columns in. A table whose columns differ is rebuilt from the
events, so this order never changes: a figure declared later follows these."""


@dataclass(frozen=True, slots=True)
class _Column:
    """One column of the row: a figure of :class:`Balance` or :class:`DepositState`, and its SQL form."""

    name: str
    sql_type: str
    encode: Callable[[Any], Any] | None
    decode: Callable[[Any], Any] | None


def _column(name: str, hint: Any) -> _Column:
    # A figure's column follows from its type; optional figures store NULL for None.
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = len(args) == 1 and type(None) in typing.get_args(hint)
    kind = args[0] if optional else hint
    null = "" if optional else " NOT NULL"
    if kind is UUID:
        return _Column(name, "TEXT PRIMARY KEY", operator.attrgetter("hex"), UUID)
    if kind is int:
        return _Column(name, f"BIGINT{null}", None, None)
    if kind is str:
        return _Column(name, f"TEXT{null}", None, None)
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return _Column(name, f"TEXT{null}", operator.attrgetter("value"), kind)
    if isinstance(kind, type) and issubclass(kind, datetime | AwareDatetime):
        return _Column(name, f"TEXT{null}", stored_time, read_stored_time)
    if typing.get_origin(kind) is tuple:
        return _Column(name, f"TEXT{null}", _categories_text, _categories)
    raise TypeError(f"no column type for the figure {name}: {hint}")


def _categories_text(categories: tuple[str, ...]) -> str:
    return json.dumps(list(categories))


def _categories(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _figure_columns() -> tuple[_Column, ...]:
    # Every figure the balance keeps or the state reports (status and shortfall, for the
    # indexes and the queries), in the stored order, then any figure declared since.
    hints = typing.get_type_hints(DepositState) | typing.get_type_hints(Balance)
    names = [*_STORED_ORDER, *(name for name in hints if name not in _STORED_ORDER)]
    return tuple(_column(name, hints[name]) for name in names)


_FIGURE_COLUMNS = _figure_columns()
_COLUMNS = (*(column.name for column in _FIGURE_COLUMNS), "position")
_SELECT = ", ".join(_COLUMNS)
_FIXED = ("deposit_id", "shop_id", "site", "currency")
"""Set when the deposit is opened, never changed."""
_INDEXED = ("status", "phase", "shortfall_minor", "top_up_due", "owed_minor")
"""The columns the secondary indexes read (besides the fixed ones)."""
_CHANGING = tuple(column for column in _COLUMNS if column not in _FIXED + _INDEXED)
_OVERDUE = "phase = 'open' AND top_up_due IS NOT NULL AND top_up_due <= ?"


class BalancesView(View):
    """One row per deposit: status, the money figures, the last event's time and position."""

    name: ClassVar[str] = "balances"
    table: ClassVar[str] = "deposit_balances"
    columns: ClassVar[tuple[str, ...]] = _COLUMNS

    def create_statements(self, table: str, position_key: str = "BIGINT PRIMARY KEY") -> list[str]:
        """The balances table, keyed by deposit id, with the shop id unique."""
        columns = ", ".join(f"{column.name} {column.sql_type}" for column in _FIGURE_COLUMNS)
        return [f"CREATE TABLE IF NOT EXISTS {table} ({columns}, position BIGINT NOT NULL)"]

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
            f"CREATE INDEX IF NOT EXISTS {table}_shortfall ON {table} (shortfall_minor, shop_id)",
            f"CREATE INDEX IF NOT EXISTS {table}_settlement_due ON {table} (settlement_due, shop_id) "
            "WHERE phase = 'closing'",
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
        states, _ = self.page(
            cursor,
            after=None if after is None else (after,),
            limit=limit,
            status=status,
            site=site,
            must_pay=must_pay,
            overdue=overdue,
            owing=owing,
            now=now,
        )
        return states

    def page(
        self,
        cursor: Cursor,
        *,
        order: str = "shop",
        after: tuple[Any, ...] | None = None,
        limit: int | None = 50,
        status: str | None = None,
        site: str | None = None,
        must_pay: bool = False,
        overdue: bool = False,
        owing: bool = False,
        now: datetime | None = None,
    ) -> tuple[list[DepositState], tuple[Any, ...] | None]:
        """One page of deposits in ``order`` (see :data:`ORDERS`), after the key ``after``; and the next key.

        Keyset pagination: each page starts where the previous one's last row left
        off, read through an index in the page's order, so the thousandth page
        costs what the first does. The next key is None on the last page (and
        without a ``limit``, which reads every deposit that matches).
        """
        assert order in ORDERS
        found = _where(status=status, site=site, must_pay=must_pay, overdue=overdue, owing=owing, now=now)
        if found is None:
            return [], None
        where, params = found
        conditions = [where.removeprefix(" WHERE ")] if where else []
        sort, keyed, descending = ORDERS[order]
        if order == "top_up_due":
            conditions.append("top_up_due IS NOT NULL")
        if after is not None:
            assert len(after) == len(keyed), f"a page key of {len(after)} values for the order by {order}"
            columns = ", ".join(keyed)
            marks = ", ".join("?" * len(keyed))
            conditions.append(f"({columns}) {'<' if descending else '>'} ({marks})")
            params.extend(after)
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # One row more than the page: whether there is a next page, without a query of its own.
        page = page_limit(None if limit is None else limit + 1, params)
        cursor.execute(f"SELECT {_SELECT} FROM {self.table}{clause} ORDER BY {sort}{page}", params)
        rows = cursor.fetchall()
        states = [_balance(row)[0].state(now) for row in rows[:limit]]
        if limit is None or len(rows) <= limit:
            return states, None
        last = rows[limit - 1]
        return states, tuple(last[_COLUMNS.index(column)] for column in keyed)

    def totals(
        self,
        cursor: Cursor,
        *,
        status: str | None = None,
        site: str | None = None,
        must_pay: bool = False,
        overdue: bool = False,
        owing: bool = False,
        now: datetime | None = None,
    ) -> list[CurrencyTotals]:
        """Frozen, held and owed money summed per currency over the deposits the filters keep."""
        found = _where(status=status, site=site, must_pay=must_pay, overdue=overdue, owing=owing, now=now)
        if found is None:
            return []
        where, params = found
        cursor.execute(
            "SELECT currency, COUNT(*), SUM(frozen_minor), SUM(held_minor), SUM(owed_minor) "
            f"FROM {self.table}{where} GROUP BY currency ORDER BY currency",
            params,
        )
        return [
            CurrencyTotals(
                currency=row[0],
                shops=int(row[1]),
                frozen_minor=int(row[2]),
                held_minor=int(row[3]),
                owed_minor=int(row[4]),
            )
            for row in cursor.fetchall()
        ]

    def overdue_top_ups(self, cursor: Cursor, now: datetime, limit: int) -> list[DepositState]:
        """Open deposits whose top-up was due by ``now``, the longest overdue first."""
        cursor.execute(
            f"SELECT {_SELECT} FROM {self.table} WHERE {_OVERDUE} ORDER BY top_up_due, shop_id LIMIT ?",
            (stored_time(now), limit),
        )
        return [_balance(row)[0].state(now) for row in cursor.fetchall()]

    def refunds_due(self, cursor: Cursor, now: datetime, limit: int) -> list[DepositState]:
        """Closing deposits whose settlement was due by ``now`` (their refund may be paid), oldest first."""
        cursor.execute(
            f"SELECT {_SELECT} FROM {self.table} WHERE phase = 'closing' AND settlement_due <= ? "
            "ORDER BY settlement_due, shop_id LIMIT ?",
            (stored_time(now), limit),
        )
        return [_balance(row)[0].state(now) for row in cursor.fetchall()]


ORDERS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "shop": ("shop_id", ("shop_id",), False),
    "shortfall": ("shortfall_minor DESC, shop_id DESC", ("shortfall_minor", "shop_id"), True),
    "top_up_due": ("top_up_due, shop_id", ("top_up_due", "shop_id"), False),
}
"""The orders a page of deposits can be read in: its ORDER BY, the columns of its page key, and whether
the key descends. By shortfall, the largest first (ties by shop id, descending, so that one index read
backwards serves the whole order); by top-up deadline, the soonest first, among the shops that have one."""


class CurrencyTotals(BaseModel):
    """The money of the deposits in one currency, summed: what a page of shops shows at its top."""

    model_config = ConfigDict(frozen=True)

    currency: str
    shops: int
    frozen_minor: int
    held_minor: int
    owed_minor: int


def _where(
    *,
    status: str | None,
    site: str | None,
    must_pay: bool,
    overdue: bool,
    owing: bool,
    now: datetime | None,
) -> tuple[str, list[Any]] | None:
    # The WHERE clause of the filters, or None when they can keep nothing (overdue without a "now").
    conditions: list[str] = []
    params: list[Any] = []
    moment = stored_time(now) if now is not None else None
    if status == Status.RESTRICTED.value or overdue:
        if moment is None:
            return None
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
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), params


@functools.lru_cache(maxsize=64)
def _upsert(table: str, indexed: tuple[str, ...]) -> str:
    # Inserts a whole row; an existing row gets its changing columns and ``indexed``.
    updates = ", ".join(f"{column} = excluded.{column}" for column in _CHANGING + indexed)
    return (
        f"INSERT INTO {table} ({_SELECT}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
        f"ON CONFLICT (deposit_id) DO UPDATE SET {updates}"
    )


_indexed = operator.attrgetter(*_INDEXED)
"""The values of _INDEXED, as compared before and after a batch."""
_COLUMN_INDEX = {column.name: index for index, column in enumerate(_FIGURE_COLUMNS)}
_figures_of_row = operator.attrgetter(*(column.name for column in _FIGURE_COLUMNS))
_ENCODED = tuple((index, column.encode) for index, column in enumerate(_FIGURE_COLUMNS) if column.encode is not None)
_DECODED = tuple(
    (_COLUMN_INDEX[name], _FIGURE_COLUMNS[_COLUMN_INDEX[name]].decode)
    for name in (field.name for field in dataclasses.fields(Balance))
)
"""Where each of :class:`Balance`'s fields is in the row, in the order its constructor takes them, and its decoder."""
_POSITION = len(_FIGURE_COLUMNS)


def _row(balance: Balance, position: int) -> tuple[Any, ...]:
    row = [*_figures_of_row(balance), position]
    for index, encode in _ENCODED:
        value = row[index]
        if value is not None:
            row[index] = encode(value)
    return tuple(row)


def _balance(row: Sequence[Any]) -> tuple[Balance, int]:
    try:
        return _decoded_balance(row)
    except (ValueError, TypeError, KeyError) as error:
        raise UnreadableRow(
            f"the balances view cannot read its row of shop {row[1]!r} ({error}): rebuild the view from the events"
        ) from None


def _decoded_balance(row: Sequence[Any]) -> tuple[Balance, int]:
    # The stored status and shortfall are the balance's own, derived again from its figures.
    # Positional: a row is decoded for every balance query, and keywords cost a third more.
    values = [row[index] if decode is None or row[index] is None else decode(row[index]) for index, decode in _DECODED]
    return Balance(*values), row[_POSITION]
