"""Single commands: one ``pay`` per transaction through the Python API, beside two floors.

The ledger runs as shipped: an SQLite file in WAL mode with SQLite's default
``synchronous`` (durability unchanged), the hash chain extended and both views
updated inside each command's transaction. Payments go round-robin to
``shops`` deposits opened and paid beforehand.

- **Bare insert**: one row shaped like a stored ``Paid`` event inserted into a
  table with the library's ``stored_events`` schema, one transaction each.
- **Without event sourcing**: what a team would write instead: ``UPDATE`` the
  shop's balance row and ``INSERT`` an audit row, in one transaction.

Both floors use their own file in the same folder, with the same journal mode
and ``synchronous`` setting as the ledger's connection. The three take turns,
call after call.
"""

from __future__ import annotations

import sqlite3
import statistics
from abc import ABC, abstractmethod
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, alternate, note

PAID_STATE = (
    b'{"effective_at":"2025-01-02T00:00:00Z","recorded_at":"2025-01-02T00:00:00.123456Z","actor":"benchmark",'
    b'"currency":"CNY","amount_minor":1000,"channel":"alipay","trade_no":"T0000000-000000","payer":null}'
)


def measure(folder: Path, shops: int, rounds: int) -> list[Figure]:
    """Time ``rounds`` payments through the ledger and as many transactions of each floor."""
    from ledger import DepositLedger

    ledger = DepositLedger(str(folder / "commands.db"), actor="benchmark")
    try:
        note(f"opening {shops} shops")
        start = datetime(2025, 1, 1, tzinfo=UTC)
        with ledger.batch():
            for number in range(shops):
                shop = f"shop-{number:05d}"
                ledger.open(shop, currency="CNY", required="2000", site="CN", at=start)
                ledger.pay(shop, "100", channel="alipay", ref=f"{shop}-0", at=start)
        settings = _settings(folder / "commands.db")
        with (
            BareInsert(folder / "insert.db", settings) as insert,
            UpdateAndInsert(folder / "design.db", settings, shops) as design,
        ):
            payments = iter(range(rounds * 2))

            def pay() -> None:
                number = next(payments)
                shop = f"shop-{number % shops:05d}"
                ledger.pay(shop, "10", channel="alipay", ref=f"{shop}-{number + 1}", at=start + timedelta(days=1))

            note(f"{rounds} payments, each beside a bare insert and an update-and-insert")
            alternate([pay, insert, design], max(3, rounds // 10))  # warm up
            timings = alternate([pay, insert, design], rounds)
        assert all(status.lag == 0 for status in ledger.projection_status()), "views kept current"
    finally:
        ledger.close()
    ledger_rate, insert_rate, design_rate = (1 / statistics.fmean(timing) for timing in timings)
    detail = {"shops": shops, "rounds": rounds, "synchronous": settings["synchronous"], "journal_mode": "wal"}
    return [
        Figure(
            "single pay per transaction",
            ledger_rate,
            "commands/s",
            insert_rate,
            "bare insert per transaction",
            "≥ 50% of floor",
            ledger_rate >= 0.5 * insert_rate,
            detail,
        ),
        Figure(
            "single pay per transaction",
            ledger_rate,
            "commands/s",
            design_rate,
            "UPDATE balance + INSERT audit",
        ),
    ]


def _settings(db: Path) -> dict[str, Any]:
    # The ledger's own connection settings, read back rather than assumed.
    with closing(sqlite3.connect(db)) as connection:
        synchronous = int(connection.execute("PRAGMA synchronous").fetchone()[0])
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        (schema,) = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'stored_events'").fetchone()
    assert mode == "wal"
    return {"synchronous": synchronous, "schema": schema}


class _Floor(ABC):
    """A floor's connection and its one-transaction call."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(f"PRAGMA synchronous={int(settings['synchronous'])}")
        self.number = 0

    def __enter__(self) -> _Floor:
        return self

    @abstractmethod
    def __call__(self) -> None:
        """One transaction."""

    def __exit__(self, *_: object) -> None:
        self.connection.close()


class BareInsert(_Floor):
    """One event-shaped row inserted per transaction."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        super().__init__(path, settings)
        self.connection.execute(settings["schema"])

    def __call__(self) -> None:
        self.number += 1
        self.connection.execute("BEGIN")
        self.connection.execute(
            "INSERT INTO stored_events VALUES (?, ?, ?, ?)",
            (f"{self.number:032x}", 1, "ShopDeposit.Paid", PAID_STATE),
        )
        self.connection.execute("COMMIT")


class UpdateAndInsert(_Floor):
    """The design without event sourcing: update a balance row and insert an audit row."""

    def __init__(self, path: Path, settings: dict[str, Any], shops: int) -> None:
        super().__init__(path, settings)
        self.shops = shops
        self.connection.executescript(
            "CREATE TABLE balances (shop_id TEXT PRIMARY KEY, paid_minor INTEGER NOT NULL, "
            "frozen_minor INTEGER NOT NULL, version INTEGER NOT NULL);"
            "CREATE TABLE audit (id INTEGER PRIMARY KEY, shop_id TEXT NOT NULL, type TEXT NOT NULL, "
            "amount_minor INTEGER NOT NULL, channel TEXT, ref TEXT, actor TEXT NOT NULL, effective_at TEXT NOT NULL, "
            "recorded_at TEXT NOT NULL);"
            "CREATE INDEX audit_shop ON audit (shop_id, id);"
        )
        self.connection.executemany(
            "INSERT INTO balances VALUES (?, 10000, 10000, 3)", [(f"shop-{n:05d}",) for n in range(shops)]
        )

    def __call__(self) -> None:
        self.number += 1
        shop = f"shop-{self.number % self.shops:05d}"
        self.connection.execute("BEGIN")
        self.connection.execute(
            "UPDATE balances SET paid_minor = paid_minor + 1000, frozen_minor = frozen_minor + 1000, "
            "version = version + 1 WHERE shop_id = ?",
            (shop,),
        )
        self.connection.execute(
            "INSERT INTO audit (shop_id, type, amount_minor, channel, ref, actor, effective_at, recorded_at) "
            "VALUES (?, 'Paid', 1000, 'alipay', ?, 'benchmark', '2025-01-02T00:00:00Z', '2025-01-02T00:00:00Z')",
            (shop, f"{shop}-{self.number}"),
        )
        self.connection.execute("COMMIT")
