"""The chain's keys: where they come from, the stores made before them, rotation, and the wrong key."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import DepositLedger
from ledger.store import chain
from ledger.store.chain_keys import KEY_ENV_VAR, KEY_FILE_ENV_VAR, default_key_file
from ledger.store.recorder import stored_id
from ledger.store.urls import Store, resolve_store
from ledger.tools.audit import Auditor
from tests.ledger.audited_store import run_cli

PREVIOUS_RELEASE = Path(__file__).parent / "fixtures" / "previous-release.db"
"""A store the release before chain keys wrote: two shops, 13 events, unkeyed links, no ``chain_keys`` table."""

PREVIOUS_RELEASE_EVENTS = 13
OLD_KEY, NEW_KEY = "11" * 32, "22" * 32


@pytest.fixture
def previous_release(tmp_path: Path) -> Path:
    """A copy of the previous release's store, its views brought to this release's columns.

    Opening a ledger rebuilds a view whose columns another release wrote (the balances view
    gained ``written_off_minor``); the chain and the events are left as they were.
    """
    copy = Path(shutil.copy(PREVIOUS_RELEASE, tmp_path / "deposits.db"))
    DepositLedger(str(copy), actor="upgrade").close()
    return copy


@pytest.fixture
def no_key_set(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No key in the environment: the SQLite store's key file beside it is the key."""
    monkeypatch.delenv(KEY_ENV_VAR, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV_VAR, raising=False)
    yield


def key_records(store: Store) -> list[tuple[int, str]]:
    connection = store.connect()
    try:
        return [(position, key_id) for position, key_id, _ in chain.key_records(connection.cursor())]
    finally:
        connection.close()


def pay(url: str, ref: str, shop: str = "sneaker-lab") -> None:
    ledger = DepositLedger(url, actor="cashier")
    try:
        ledger.pay(shop, "10", channel="alipay", ref=ref)
    finally:
        ledger.close()


def unkeyed_like_the_previous_release(store: Store) -> None:
    """Rewrite a store's chain as the release before chain keys wrote it: unkeyed links, no key records."""
    connection = store.connect()
    try:
        cursor = connection.cursor()
        cursor.execute(
            f"SELECT {store.position_column}, originator_id, originator_version, topic, state "
            f"FROM {store.events_table} ORDER BY {store.position_column}"
        )
        previous, links = chain.GENESIS, []
        for position, originator_id, version, topic, state in cursor.fetchall():
            previous = chain.link(previous, int(position), stored_id(originator_id), version, topic, bytes(state))
            links.append((int(position), previous))
        cursor.execute("DELETE FROM event_chain")
        cursor.executemany("INSERT INTO event_chain (position, link) VALUES (?, ?)", links)
        cursor.execute("DROP TABLE chain_keys")
    finally:
        connection.close()
    key_file = default_key_file(store)
    if key_file is not None:
        key_file.unlink()


# ----------------------------------------------------- stores of the previous release


def test_a_store_of_the_previous_release_verifies_and_continues_keyed(previous_release: Path, no_key_set: None) -> None:
    store = resolve_store(str(previous_release))
    before = Auditor(store).verify()
    assert before.ok, before.problems
    assert before.events_checked == PREVIOUS_RELEASE_EVENTS
    old_checkpoint = Auditor(store).checkpoint()
    assert old_checkpoint.key_id is None  # nothing to sign it with yet

    pay(str(previous_release), "SL-2")

    key_file = default_key_file(store)
    assert key_file is not None and key_file.exists()
    assert key_records(store) == [(PREVIOUS_RELEASE_EVENTS + 1, Auditor(store).checkpoint().key_id)]
    after = Auditor(store).verify(old_checkpoint)
    assert after.ok, after.problems
    assert after.events_checked == PREVIOUS_RELEASE_EVENTS + 2


def test_the_unkeyed_links_of_an_old_store_still_catch_an_edit(previous_release: Path, no_key_set: None) -> None:
    pay(str(previous_release), "SL-2")
    store = resolve_store(str(previous_release))
    connection = store.connect()
    try:
        connection.execute("UPDATE stored_events SET state = replace(state, 'TH-1', 'TH-9') WHERE rowid = 2")
    finally:
        connection.close()
    report = Auditor(store).verify()
    assert report.first_bad_position() == 2
    assert "chain" in {problem.kind for problem in report.problems if problem.position == 2}


def test_a_store_chained_unkeyed_is_keyed_from_its_next_write(store_url: str, store: Store) -> None:
    # Any backend: the previous release's chain, rebuilt in place, then the next command.
    ledger = DepositLedger(store_url, actor="cashier")
    try:
        ledger.open("tea-house", currency="CNY", required="100")
        ledger.pay("tea-house", "10", channel="alipay", ref="T-1")
    finally:
        ledger.close()
    unkeyed_like_the_previous_release(store)
    assert Auditor(store).verify().ok

    ledger = DepositLedger(store_url, actor="cashier")
    try:
        ledger.pay("tea-house", "10", channel="alipay", ref="T-2")
    finally:
        ledger.close()

    assert [position for position, _ in key_records(store)] == [4]
    report = Auditor(store).verify()
    assert report.ok and report.events_checked == 5, report.problems


# --------------------------------------------------------------------- the key file


def test_the_first_write_generates_a_key_file_beside_the_store_for_its_owner_alone(
    tmp_path: Path, no_key_set: None
) -> None:
    path = tmp_path / "deposits.db"
    ledger = DepositLedger(str(path), actor="cashier")
    try:
        assert not (tmp_path / "deposits.db.chain-key").exists(), "opening writes nothing"
        ledger.open("tea-house", currency="CNY", required="100")
    finally:
        ledger.close()
    key_file = tmp_path / "deposits.db.chain-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(bytes.fromhex(key_file.read_text().strip())) == 32
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []

    ledger = DepositLedger(str(path), actor="cashier")
    try:
        ledger.pay("tea-house", "10", channel="alipay", ref="T-1")  # the same key again
    finally:
        ledger.close()
    assert len(key_records(resolve_store(str(path)))) == 1
    assert Auditor(resolve_store(str(path))).verify().ok


def test_a_key_file_others_may_read_is_refused_in_one_line(
    tmp_path: Path, no_key_set: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deposits.db"
    assert run_cli(capsys, "--db", str(path), "open", "tea-house", "--currency", "CNY", "--required", "100").code == 0
    (tmp_path / "deposits.db.chain-key").chmod(0o644)
    outcome = run_cli(capsys, "--db", str(path), "pay", "tea-house", "10", "--channel", "alipay", "--ref", "T-1")
    assert outcome.code == 2
    assert outcome.err_lines == [outcome.err_lines[0]] and "chmod 600" in outcome.err_lines[0]


def test_a_postgresql_writer_without_a_key_is_refused_in_one_line(
    postgres_store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(KEY_ENV_VAR)
    outcome = run_cli(capsys, "--db", postgres_store_url, "open", "tea-house", "--currency", "CNY", "--required", "1")
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1 and KEY_ENV_VAR in outcome.err_lines[0]
    assert Auditor(resolve_store(postgres_store_url)).verify().events_checked == 0


# ------------------------------------------------------------------ wrong keys, rotation


def test_a_write_with_another_key_is_refused_and_writes_nothing(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, OLD_KEY)
    assert run_cli(capsys, "--db", store_url, "open", "tea-house", "--currency", "CNY", "--required", "100").code == 0
    monkeypatch.setenv(KEY_ENV_VAR, NEW_KEY)
    outcome = run_cli(capsys, "--db", store_url, "pay", "tea-house", "10", "--channel", "alipay", "--ref", "T-1")
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1 and "keyed with key" in outcome.err_lines[0]
    monkeypatch.setenv(KEY_ENV_VAR, OLD_KEY)
    assert Auditor(store).verify().events_checked == 1


def test_a_key_is_rotated_by_holding_the_old_key_before_the_new(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV_VAR, OLD_KEY)
    assert run_cli(capsys, "--db", store_url, "open", "tea-house", "--currency", "CNY", "--required", "100").code == 0
    monkeypatch.setenv(KEY_ENV_VAR, f"{OLD_KEY},{NEW_KEY}")
    assert run_cli(capsys, "--db", store_url, "pay", "tea-house", "10", "--channel", "alipay", "--ref", "T-1").code == 0

    old_id, new_id = chain.ChainKey(bytes.fromhex(OLD_KEY)).key_id, chain.ChainKey(bytes.fromhex(NEW_KEY)).key_id
    assert key_records(store) == [(1, old_id), (2, new_id)]
    assert Auditor(store).verify().ok
    assert Auditor(store).checkpoint().key_id == new_id

    # Verifying the whole history needs every key it names.
    monkeypatch.setenv(KEY_ENV_VAR, NEW_KEY)
    outcome = run_cli(capsys, "--db", store_url, "verify")
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1 and f"keyed with key {old_id}" in outcome.err_lines[0]
