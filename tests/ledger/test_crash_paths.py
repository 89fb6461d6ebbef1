"""SIGKILL of real processes while they write a keyed chain or an output file, then the store reopened;
migrations racing.

Nothing acknowledged is lost, nothing is applied twice, ``verify`` is clean with
the chain's keys (a rotation included); a killed export leaves the file that was
there before (or none), never a truncated one; concurrent migrations of a new
store create it once. On both backends, the chain keyed by ``DEPOSIT_LEDGER_CHAIN_KEY``.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger import DepositLedger
from ledger.store import chain
from ledger.store.chain import ChainKey
from ledger.store.chain_keys import KEY_ENV_VAR
from ledger.store.urls import Store, resolve_store
from ledger.tools.audit import Auditor
from ledger.tools.journal import IMPORT_BATCH_LINES
from tests.conftest import TEST_CHAIN_KEY
from tests.ledger.journals import line, write_journal
from tests.ledger.processes import Child, Children, eventually
from tests.ledger.stores import connect, fill

pytestmark = pytest.mark.slow

OLD_KEY, NEW_KEY = "31" * 32, "42" * 32

PAYING = """
import sys
from ledger import DepositLedger
ledger = DepositLedger(sys.argv[1], actor="cashier")
for number in range(int(sys.argv[2])):
    ledger.pay("tea", "1", channel="alipay", ref=f"T-{number}")
    print(number, flush=True)
"""
"""A cashier paying one shop, acknowledging each payment on stdout once its command returned."""


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The chain keyed by the environment's key on both backends (SQLite too: no key file beside the store)."""
    monkeypatch.setenv(KEY_ENV_VAR, TEST_CHAIN_KEY)
    yield TEST_CHAIN_KEY


def _count(store: Store, query: str) -> int:
    with connect(store) as connection:
        return int(connection.cursor().execute(query).fetchone()[0])


def _events(store: Store) -> int:
    try:
        return _count(store, f"SELECT COUNT(*) FROM {store.events_table}")
    except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):
        return 0  # the importer has not created its tables yet


def _assert_clean(store: Store) -> None:
    report = Auditor(store).verify()
    assert report.ok, report.problems[:5]


def _acknowledged(text: str) -> list[int]:
    return [int(number) for number in text.split()]


def _kill(child: Child) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, "it finished before it could be killed"


# ------------------------------------------------------------------ keyed chain


def test_an_import_killed_half_way_on_a_keyed_chain_resumes_with_nothing_twice(
    keyed: str, store_url: str, store: Store, children: Children, tmp_path: Path
) -> None:
    shops, payments = 500, 30  # 15,500 lines in two batches, 30,500 events
    records = [line("open", f"shop-{n}", "2025-01-01T00:00:00Z", currency="CNY", required="1000") for n in range(shops)]
    for number in range(payments):
        at = f"2025-01-02T00:00:{number:02d}Z"
        records += [
            line("pay", f"shop-{n}", at, amount="10", channel="alipay", ref=f"T{n}-{number}") for n in range(shops)
        ]
    journal = write_journal(tmp_path / "big.jsonl", records, "jsonl")
    assert IMPORT_BATCH_LINES < len(records) < 2 * IMPORT_BATCH_LINES
    total = shops + 2 * shops * payments

    importer = children.ledger("--db", store_url, "import", str(journal), name="importer")
    eventually(lambda: _events(store) > 0 or importer.process.poll() is not None, "the first batch committed")
    _kill(importer)
    at_kill = _events(store)
    assert 0 < at_kill < total, "the kill must land between two batches"
    _assert_clean(store)

    rerun = children.ledger("--db", store_url, "import", str(journal), "--json", name="rerun")
    assert rerun.wait(timeout_s=600) == 0, rerun.stderr()
    summary = json.loads(rerun.stdout())
    assert summary["events"] == total - at_kill
    assert summary["applied"] + summary["duplicates"] == len(records)
    assert _events(store) == total
    assert _count(store, "SELECT COUNT(*) FROM trade_numbers") == shops * payments
    _assert_clean(store)
    with connect(store) as connection:
        keys = chain.key_records(connection.cursor())
    assert [key_id for _, key_id, _ in keys] == [ChainKey(bytes.fromhex(keyed)).key_id]


def _paying(children: Children, store_url: str, count: int, name: str) -> Child:
    return children.start([sys.executable, "-c", PAYING, store_url, str(count)], name=name)


def _refs(store: Store) -> list[str]:
    with connect(store) as connection:
        rows = connection.cursor().execute("SELECT trade_no FROM trade_numbers ORDER BY position").fetchall()
    return [row[0] for row in rows]


def test_single_commands_killed_mid_write_on_a_keyed_chain_lose_nothing_acknowledged(
    keyed: str, store_url: str, store: Store, children: Children
) -> None:
    ledger = DepositLedger(store_url, actor="setup")
    ledger.open("tea", currency="CNY", required="100000")
    ledger.close()
    for round_number in range(3):
        already = len(_refs(store))
        cashier = _paying(children, store_url, 100_000, name=f"cashier-{round_number}")
        # Each round pays T-0, T-1, ... again: the ones stored before are duplicates, then new ones.
        eventually(
            lambda cashier=cashier, already=already: len(cashier.stdout().split()) >= already + 20,
            "twenty new payments acknowledged",
        )
        _kill(cashier)
        last = max(_acknowledged(cashier.stdout()))
        stored = _refs(store)
        # Once each, in order, every acknowledged one; at most the one in flight besides.
        assert stored == [f"T-{number}" for number in range(len(stored))]
        assert last + 1 <= len(stored) <= last + 2
        _assert_clean(store)
    # Run again, every payment is a duplicate up to where the store stands.
    ledger = DepositLedger(store_url, actor="cashier")
    try:
        stored = _refs(store)
        for number in range(len(stored) + 5):
            result = ledger.pay("tea", "1", channel="alipay", ref=f"T-{number}")
            assert result.duplicate == (number < len(stored)), number
        assert ledger.show("tea").paid_minor == 100 * (len(stored) + 5)
    finally:
        ledger.close()
    _assert_clean(store)


def test_a_key_rotation_killed_while_it_writes_leaves_one_rotation_and_a_clean_chain(
    store_url: str, store: Store, children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, OLD_KEY)
    ledger = DepositLedger(store_url, actor="setup")
    ledger.open("tea", currency="CNY", required="100000")
    ledger.pay("tea", "1", channel="wechat_pay", ref="before-rotation")
    ledger.close()
    monkeypatch.setenv(KEY_ENV_VAR, f"{OLD_KEY},{NEW_KEY}")  # the next write rotates to the new key

    cashier = _paying(children, store_url, 100_000, name="cashier")
    eventually(lambda: len(cashier.stdout().split()) >= 3, "three payments acknowledged")
    _kill(cashier)

    with connect(store) as connection:
        records = chain.key_records(connection.cursor())
    old, new = ChainKey(bytes.fromhex(OLD_KEY)), ChainKey(bytes.fromhex(NEW_KEY))
    assert [key_id for _, key_id, _ in records] == [old.key_id, new.key_id]
    assert records[1][0] == 4, "the rotation is recorded at the first event written under the new key"
    _assert_clean(store)
    again = _paying(children, store_url, 2, name="again")
    assert again.wait() == 0
    with connect(store) as connection:
        assert len(chain.key_records(connection.cursor())) == 2
    _assert_clean(store)
    monkeypatch.setenv(KEY_ENV_VAR, NEW_KEY)  # the old key gone: verify names it
    with pytest.raises(Exception, match=old.key_id):
        Auditor(store).verify()


# ------------------------------------------------------------------ output files


@pytest.fixture
def shops_store(keyed: str, store_url: str) -> str:
    """A store of 300 shops paid 10 times: an export takes long enough to be killed half way."""
    ledger = DepositLedger(store_url, actor="bulk-loader")
    try:
        fill(ledger, 300, 10)
    finally:
        ledger.close()
    return store_url


def _part_files(folder: Path, target: Path) -> list[Path]:
    return sorted(folder.glob(f".{target.name}.*.part"))


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("export", "journal"), id="export-journal"),
        pytest.param(("export", "audit", "--format", "csv"), id="export-audit"),
    ],
)
@pytest.mark.parametrize("before", [b"the previous export\n", None], ids=["replacing", "new"])
def test_an_export_killed_half_way_leaves_the_previous_file_or_none(
    shops_store: str, children: Children, tmp_path: Path, command: tuple[str, ...], before: bytes | None
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "export.out"
    if before is not None:
        target.write_bytes(before)

    exporter = children.ledger("--db", shops_store, *command, "--output", str(target), name="exporter")
    eventually(
        lambda: (
            any(part.stat().st_size > 0 for part in _part_files(folder, target)) or exporter.process.poll() is not None
        ),
        "the export half written",
        every_s=0.002,
    )
    _kill(exporter)

    if before is None:
        assert not target.exists()
    else:
        assert target.read_bytes() == before
    assert _part_files(folder, target), "killed while it wrote its temporary file"

    finished = children.ledger("--db", shops_store, *command, "--output", str(target), name="finished")
    assert finished.wait(timeout_s=300) == 0, finished.stderr()
    whole = children.ledger("--db", shops_store, *command, name="whole")
    assert whole.wait(timeout_s=300) == 0
    assert target.read_bytes() == whole.stdout_path.read_bytes()


# ------------------------------------------------------------------ migration


def test_migrations_racing_on_a_new_store_create_it_once(keyed: str, store_url: str, children: Children) -> None:
    racers = [children.ledger("--db", store_url, "migrate", name=f"migrate-{number}") for number in range(4)]
    assert [racer.wait(timeout_s=120) for racer in racers] == [0, 0, 0, 0], [racer.stderr() for racer in racers]

    ledger = DepositLedger(store_url, actor="cashier")
    try:
        ledger.open("tea", currency="CNY", required="100")
        assert not ledger.pay("tea", "1", channel="alipay", ref="T-0").duplicate
    finally:
        ledger.close()
    again = children.ledger("--db", store_url, "migrate", name="again")
    assert again.wait() == 0, again.stderr()
    _assert_clean(resolve_store(store_url))
