"""A store with a realistic history for the audit tests, and the tools to tamper with it.

The history is the demo's month (five shops on four sites, every event type, a
debt settled by a later payment, a refund and a forfeit) after one long-lived
shop whose 204 events carry a snapshot at version 201. It is built once per
test module and copied for each test, which then edits the SQLite file
directly, as someone with access to the database could.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from domain import deposit_id
from ledger import DepositLedger
from ledger.faces.cli import main
from ledger.faces.demo import run_demo
from ledger.store import chain
from ledger.store.chain import ChainKey
from ledger.store.chain_keys import KEY_FILE_SUFFIX, key_ring
from ledger.store.urls import resolve_store
from ledger.tools.audit import Auditor
from tests.conftest import FakeClock

START = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
"""When the demo runs; every event of the store is effective at or before it."""

LONG_SHOP = "marathon-teas"
"""The shop with a long history: 1 + 101 x 2 + 1 events, a snapshot at version 201."""

LONG_SHOP_PAYMENTS = 101
SNAPSHOT_VERSION = 201
DEMO_SHOPS = ("tea-house", "sneaker-lab", "kimono-house", "flash-deals", "uk-gadgets")


_templates: dict[Path, Path] = {}


def template_store(factory: pytest.TempPathFactory) -> Path:
    """The store built once per test session; copy it before changing anything."""
    root = factory.getbasetemp()
    if root not in _templates:
        path = factory.mktemp("template") / "deposits.db"
        build_store(path)
        _templates[root] = path
    return _templates[root]


def build_store(path: Path | str) -> None:
    """Record the long shop, then the demo, in a fresh store at ``path`` (a file, or any store URL), and close it."""
    ledger = DepositLedger(str(path), actor="risk-ops", clock=FakeClock(START))
    try:
        first = START - timedelta(days=200)
        ledger.open(LONG_SHOP, currency="CNY", required="1000", site="CN", at=first)
        for number in range(1, LONG_SHOP_PAYMENTS + 1):
            at = first + timedelta(hours=number)
            ledger.pay(LONG_SHOP, "10", channel="wechat_pay", ref=f"MT-{number:04d}", at=at)
        ledger.deduct(
            LONG_SHOP, "30", reason="late_shipment", case="MT-LS-1", note="late", at=first + timedelta(days=10)
        )
        run_demo(ledger, Console(file=io.StringIO(), width=200))
    finally:
        ledger.close()


def copy_store(source: Path, target: Path) -> Path:
    """A consistent copy of the store file (whatever its write-ahead log holds), and its chain key beside it."""
    with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
    key_file = source.with_name(source.name + KEY_FILE_SUFFIX)
    if key_file.exists():
        shutil.copy2(key_file, target.with_name(target.name + KEY_FILE_SUFFIX))
    return target


def store_key(path: Path) -> ChainKey:
    """The chain key generated beside the store: what an insider with the key would forge links with."""
    ring = key_ring(resolve_store(str(path)))
    assert ring is not None, f"no chain key beside {path}"
    return ring.current


@contextmanager
def tampering(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain SQLite connection to the file, committed on leaving: no ledger code involved."""
    connection = sqlite3.connect(path)
    try:
        yield connection
        connection.commit()
    finally:
        connection.close()


@dataclass(frozen=True)
class StoredEvent:
    """One row of ``stored_events``, as the file holds it."""

    position: int
    originator_id: str
    version: int
    topic: str
    state: bytes


def read_event(connection: sqlite3.Connection, position: int) -> StoredEvent:
    """The row stored at ``position``."""
    row = connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events WHERE rowid = ?",
        (position,),
    ).fetchone()
    assert row is not None, f"no event at position {position}"
    return StoredEvent(row[0], row[1], row[2], row[3], bytes(row[4]))


def newest_version(path: Path, shop: str) -> int:
    """The version of the shop's newest event."""
    with closing(sqlite3.connect(path)) as connection:
        row = connection.execute(
            "SELECT MAX(originator_version) FROM stored_events WHERE originator_id = ?", (deposit_id(shop).hex,)
        ).fetchone()
    assert row[0] is not None, f"{shop} has no events"
    return int(row[0])


def position_of(path: Path, shop: str, version: int) -> int:
    """Where the shop's event ``version`` is stored."""
    with closing(sqlite3.connect(path)) as connection:
        row = connection.execute(
            "SELECT rowid FROM stored_events WHERE originator_id = ? AND originator_version = ?",
            (deposit_id(shop).hex, version),
        ).fetchone()
    assert row is not None, f"{shop} has no version {version}"
    return int(row[0])


def head(path: Path) -> int:
    """The position of the newest event."""
    with closing(sqlite3.connect(path)) as connection:
        return int(connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0])


def scalar(path: Path, query: str, params: Any = ()) -> Any:
    """The single value a query returns."""
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(query, params).fetchone()[0]


def auditor(path: Path) -> Auditor:
    """The auditor of the store file: it reads the file as it is, without opening the ledger."""
    return Auditor(resolve_store(str(path)))


def set_view_positions(connection: sqlite3.Connection, position: int, view: str | None = None) -> None:
    """Move the tracking records of the views (or of one) to ``position``."""
    pattern = view or "%"
    connection.execute("UPDATE view_tracking SET position = ? WHERE name LIKE ?", (position, pattern))


def replace_in_state(connection: sqlite3.Connection, position: int, old: bytes, new: bytes) -> None:
    """Edit the stored bytes of one event in place, keeping the column a BLOB."""
    state = read_event(connection, position).state
    assert state.count(old) == 1, f"{old!r} is not unique in the state at {position}: {state!r}"
    connection.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state.replace(old, new), position))


def relink_from(connection: sqlite3.Connection, position: int, key: ChainKey | None) -> None:
    """Recompute every link from ``position`` on, as an attacker hiding an edit would: under ``key``, or unkeyed."""
    found = connection.execute(
        "SELECT link FROM event_chain WHERE position < ? ORDER BY position DESC LIMIT 1", (position,)
    ).fetchone()
    previous = chain.GENESIS if found is None else bytes(found[0])
    rows = connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events WHERE rowid >= ? "
        "ORDER BY rowid",
        (position,),
    ).fetchall()
    connection.execute("DELETE FROM event_chain WHERE position >= ?", (position,))
    for rowid, originator_id, version, topic, state in rows:
        previous = chain.link_under(key, previous, rowid, originator_id, version, topic, bytes(state))
        connection.execute("INSERT INTO event_chain (position, link) VALUES (?, ?)", (rowid, previous))


@dataclass(frozen=True)
class Outcome:
    """What one run of ``deposit-ledger`` left behind."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """Stderr, line by line."""
        return self.err.splitlines()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    """Run ``deposit-ledger`` in-process; the exit code, stdout and stderr."""
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    out, err = capsys.readouterr()
    return Outcome(code, out, err)
