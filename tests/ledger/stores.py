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


def connect(path: Path) -> closing[sqlite3.Connection]:
    """A plain connection to the store in autocommit mode, closed at the end of a ``with``."""
    return closing(sqlite3.connect(path, isolation_level=None, timeout=30))


def view_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both view tables, in key order."""
    with connect(path) as connection:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in VIEW_TABLES}


def tracking(path: Path) -> dict[str, int]:
    """The tracking table: position by name."""
    with connect(path) as connection:
        return dict(connection.execute("SELECT name, position FROM view_tracking").fetchall())


def drop_views(path: Path) -> None:
    """Drop both view tables behind the ledger's back (it must be closed)."""
    with connect(path) as connection:
        for table in VIEW_TABLES:
            connection.execute(f"DROP TABLE {table}")


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of the database file (WAL included), through SQLite's backup."""
    with connect(source) as origin, connect(target) as copy:
        origin.backup(copy)
    return target


def _stamp(at: datetime) -> Stamp:
    return Stamp(effective_at=at, recorded_at=at, actor="bulk-loader")
