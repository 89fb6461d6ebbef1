"""Opening a store takes no lock; its tables are created once (``migrate``); every wait for a lock is bounded."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from ledger import DepositLedger
from ledger.store.urls import LOCK_TIMEOUT_ENV_VAR, Store, resolve_store
from tests.conftest import postgres_url
from tests.ledger.audited_store import run_cli

PAY = ("pay", "tea-house", "10", "--channel", "alipay", "--ref")


@pytest.fixture
def opened(store_url: str) -> str:
    ledger = DepositLedger(store_url, actor="cashier")
    try:
        ledger.open("tea-house", currency="CNY", required="100")
        ledger.pay("tea-house", "10", channel="alipay", ref="T-1")
    finally:
        ledger.close()
    return store_url


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV_VAR, "1")


def holding_every_lock(store: Store) -> Iterator[None]:
    """Another session holds the events table (PostgreSQL) or the file's write lock (SQLite) until the end."""
    if store.kind == "sqlite":
        assert store.sqlite_path is not None
        other = sqlite3.connect(store.sqlite_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    connection = store.connect()
    try:
        connection.execute("BEGIN")
        connection.execute(f"LOCK TABLE {store.events_table} IN ACCESS EXCLUSIVE MODE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@pytest.fixture
def locked(opened: str, store: Store) -> Iterator[None]:
    yield from holding_every_lock(store)


def test_a_write_behind_another_sessions_lock_gives_up_in_one_line(
    opened: str, short_lock_timeout: None, locked: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Opening used to create an index on every start: behind the lock it waited without limit.
    outcome = run_cli(capsys, "--db", opened, *PAY, "T-2")
    assert outcome.code == 1, outcome.err
    assert len(outcome.err_lines) == 1 and "lock" in outcome.err_lines[0] and "1 s" in outcome.err_lines[0]


def test_reads_behind_another_sessions_lock_do_not_hang(
    opened: str, store: Store, short_lock_timeout: None, locked: None, capsys: pytest.CaptureFixture[str]
) -> None:
    balance = run_cli(capsys, "--db", opened, "balance", "tea-house", "--json")
    assert balance.code == 0, balance.err  # the balances view is not the locked table
    show = run_cli(capsys, "--db", opened, "show", "tea-house", "--json")
    if store.kind == "sqlite":
        assert show.code == 0, show.err  # readers never wait for SQLite's writer
    else:
        assert show.code == 1 and len(show.err_lines) == 1 and "lock" in show.err_lines[0], show.err


def test_the_write_goes_through_once_the_lock_is_gone(
    opened: str, store: Store, short_lock_timeout: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in holding_every_lock(store):
        assert run_cli(capsys, "--db", opened, *PAY, "T-2").code == 1
    assert run_cli(capsys, "--db", opened, *PAY, "T-2").code == 0
    assert run_cli(capsys, "--db", opened, "verify").code == 0


# ------------------------------------------------------------------------- migrate


def test_commands_on_a_store_without_tables_say_so_and_migrate_creates_them(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ((*PAY, "T-1"), ("show", "tea-house"), ("shops",), ("history", "tea-house")):
        outcome = run_cli(capsys, "--db", store_url, *command)
        assert outcome.code == 2, (command, outcome.err)
        assert len(outcome.err_lines) == 1 and "deposit-ledger migrate" in outcome.err_lines[0]
    for _ in range(2):  # a current store is left as it is
        migrated = run_cli(capsys, "--db", store_url, "migrate")
        assert migrated.code == 0, migrated.err
    assert run_cli(capsys, "--db", store_url, "shops", "--json").code == 0
    assert run_cli(capsys, "--db", store_url, "verify").code == 0


def test_open_creates_the_tables_of_a_new_store(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    opened = run_cli(capsys, "--db", store_url, "open", "tea-house", "--currency", "CNY", "--required", "100")
    assert opened.code == 0, opened.err
    assert run_cli(capsys, "--db", store_url, *PAY, "T-1").code == 0


@pytest.mark.parametrize("schema", ["pg_catalog", "information_schema", "pg_toast", "pg_temp_1"])
def test_postgresqls_own_schemas_are_refused(schema: str, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "--db", f"postgresql://postgres@127.0.0.1/test?schema={schema}", "migrate")
    assert outcome.code == 2
    assert len(outcome.err_lines) == 1 and "PostgreSQL's own" in outcome.err_lines[0]


def test_the_schema_named_in_the_url_is_created_when_missing(
    postgres_store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = postgres_url()
    assert base is not None
    schema = f"test_ledger_new_{uuid.uuid4().hex[:12]}"
    url = urlunsplit(urlsplit(base)._replace(query=urlencode({"schema": schema})))
    try:
        opened = run_cli(capsys, "--db", url, "open", "tea-house", "--currency", "CNY", "--required", "100")
        assert opened.code == 0, opened.err
        assert run_cli(capsys, "--db", url, "verify").code == 0
    finally:
        admin = resolve_store(postgres_store_url).connect()
        try:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            admin.close()


@pytest.mark.parametrize("table", ["chain_keys", "audit_trail", "view_tracking"])
def test_a_migration_cut_short_is_finished_by_the_next(
    opened: str, store: Store, table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A migration killed half way leaves some tables missing: commands refuse, the next migrate completes it.
    connection = store.connect()
    try:
        connection.execute(f"DROP TABLE {table}")
    finally:
        connection.close()
    refused = run_cli(capsys, "--db", opened, *PAY, "T-2")
    assert refused.code == 2 and f"no {table}" in refused.err
    assert run_cli(capsys, "--db", opened, "migrate").code == 0
    assert run_cli(capsys, "--db", opened, *PAY, "T-2").code == 0
