"""Stores filled fast, and what their views hold, for the view keepers' tests.

Deposits are built in memory and saved many to a transaction, so a store of
tens of thousands of events takes seconds, not minutes of single commands.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain import Channel, DeductionReason, ShopDeposit, Stamp
from ledger import DepositLedger
from ledger.store.urls import Store, resolve_store
from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView

VIEW_TABLES = (BalancesView.table, AuditTrailView.table)
BALANCES, AUDIT = BalancesView.name, AuditTrailView.name
"""The views' tracking rows; a rebuild in progress tracks its copy under ``<name>.rebuild``."""
START = datetime(2025, 6, 1, tzinfo=UTC)


def deposits(count: int, payments: int, *, prefix: str = "bulk") -> Iterator[ShopDeposit]:
    """``count`` deposits, each paid ``payments`` times and deducted once; some end closing or forfeited."""
    for number in range(count):
        at = START + timedelta(minutes=number)
        deposit = ShopDeposit.open(
            shop_id=f"{prefix}-{number:05d}",
            site=("CN", "US", "UK")[number % 3],
            currency="CNY",
            required_minor=100000 + number,
            stamp=_stamp(at),
        )
        for payment in range(payments):
            at += timedelta(seconds=1)
            deposit.pay(
                amount_minor=5000 + payment,
                channel=(Channel.ALIPAY, Channel.WECHAT_PAY)[payment % 2],
                trade_no=f"{prefix}-{number}-{payment}",
                payer=None,
                stamp=_stamp(at),
            )
        at += timedelta(seconds=1)
        deposit.deduct(
            amount_minor=1000 + number,
            reason=DeductionReason.LATE_SHIPMENT,
            case_id=f"{prefix}-{number}",
            note="",
            stamp=_stamp(at),
        )
        if number % 10 == 1:
            deposit.close(settlement_window=timedelta(days=90), stamp=_stamp(at))
        elif number % 10 == 2:
            deposit.force_close(reason="bulk", stamp=_stamp(at))
        yield deposit


def fill(ledger: DepositLedger, count: int, payments: int, *, prefix: str = "bulk", per_save: int = 100) -> int:
    """Save :func:`deposits` ``per_save`` to a transaction; return the head position afterwards."""
    pending: list[ShopDeposit] = []
    for deposit in deposits(count, payments, prefix=prefix):
        pending.append(deposit)
        if len(pending) == per_save:
            ledger.save(*pending)
            pending = []
    if pending:
        ledger.save(*pending)
    return ledger.views.head()


def fill_behind(ledger: DepositLedger, count: int, payments: int, *, prefix: str = "bulk") -> int:
    """Like :func:`fill`, with the views' hook detached: the views fall behind by every event saved."""
    hook = ledger.recorder.after_insert
    ledger.recorder.after_insert = None
    try:
        return fill(ledger, count, payments, prefix=prefix)
    finally:
        ledger.recorder.after_insert = hook


Where = Store | Path | str
"""A store: parsed, or its path or URL."""


def _store(where: Where) -> Store:
    return where if isinstance(where, Store) else resolve_store(str(where))


def connect(where: Where) -> closing[Any]:
    """A plain connection to the store in autocommit mode (``?`` placeholders), closed at the end of a ``with``."""
    return closing(_store(where).connect())


def view_rows(where: Where) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both view tables, in key order."""
    with connect(where) as connection:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in VIEW_TABLES}


def tracking(where: Where) -> dict[str, int]:
    """The tracking table: position by name."""
    with connect(where) as connection:
        return dict(connection.execute("SELECT name, position FROM view_tracking").fetchall())


def drop_views(where: Where) -> None:
    """Drop both view tables behind the ledger's back (it must be closed)."""
    with connect(where) as connection:
        for table in VIEW_TABLES:
            connection.execute(f"DROP TABLE {table}")


def table_and_index_names(where: Where) -> tuple[set[str], set[str]]:
    """The names of the store's tables and of its indexes (PostgreSQL: in the store's schema)."""
    store = _store(where)
    with connect(store) as connection:
        if store.kind == "sqlite":
            tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            indexes = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        else:
            tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = ?", (store.schema,))
            tables = tables.fetchall()
            indexes = connection.execute("SELECT indexname FROM pg_indexes WHERE schemaname = ?", (store.schema,))
            indexes = indexes.fetchall()
    return {name for (name,) in tables}, {name for (name,) in indexes}


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of an SQLite database file (WAL included), through SQLite's backup."""
    with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
    return target


def _stamp(at: datetime) -> Stamp:
    return Stamp(effective_at=at, recorded_at=at, actor="bulk-loader")
