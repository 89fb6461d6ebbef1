"""Shared fixtures: a ledger on a fresh store of each backend, with a clock the test controls.

Every test that asks for ``backend`` (directly, or through ``store_url``,
``ledger`` or the CLI's ``cli``) runs twice: on a fresh SQLite file, and on a
fresh schema of the PostgreSQL database named by ``DEPOSIT_LEDGER_TEST_POSTGRES``
(``postgresql://USER@HOST:PORT/DBNAME``). Without that variable the PostgreSQL
runs are skipped, with the reason in the summary. A test about the SQLite file
itself is marked ``@pytest.mark.sqlite_only("why")`` and runs once.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest

from ledger import DepositLedger
from ledger.store.chain_keys import KEY_ENV_VAR
from ledger.store.urls import Store, resolve_store

POSTGRES_ENV_VAR = "DEPOSIT_LEDGER_TEST_POSTGRES"
"""Names the PostgreSQL database the PostgreSQL runs use, e.g. postgresql://postgres@127.0.0.1:5432/test."""

TEST_CHAIN_KEY = "7e" * 32
"""The chain key of every PostgreSQL test store (an SQLite store generates its own beside it)."""

BACKENDS = ("sqlite", "postgresql")
SCHEMA_PREFIX = "test_ledger_"


def postgres_url() -> str | None:
    """The test database's URL, or None when the PostgreSQL runs are off."""
    return os.environ.get(POSTGRES_ENV_VAR) or None


POSTGRES_SKIP_REASON = f"PostgreSQL runs need {POSTGRES_ENV_VAR}=postgresql://USER@HOST:PORT/DBNAME (.ci/run sets it)"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a store once per backend, SQLite-only tests once."""
    if "backend" not in metafunc.fixturenames:
        return
    sqlite_only = metafunc.definition.get_closest_marker("sqlite_only")
    if sqlite_only is not None and not sqlite_only.args:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: sqlite_only needs a reason")
    params = [pytest.param("sqlite", id="sqlite")]
    if sqlite_only is None:
        params.append(pytest.param("postgresql", id="postgresql"))
    metafunc.parametrize("backend", params, indirect=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Without the test database, skip every PostgreSQL run, under one line of the summary."""
    callspec = getattr(item, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("backend") == "postgresql"
    if (on_postgres or "postgres_store_url" in getattr(item, "fixturenames", ())) and postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)


@pytest.fixture(autouse=True)
def chain_key_of_the_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL run writes with the test key; an SQLite run with the key file beside its store."""
    callspec = getattr(request.node, "callspec", None)
    on_postgres = callspec is not None and callspec.params.get("backend") == "postgresql"
    if on_postgres or "postgres_store_url" in request.fixturenames:
        monkeypatch.setenv(KEY_ENV_VAR, TEST_CHAIN_KEY)
    else:
        monkeypatch.delenv(KEY_ENV_VAR, raising=False)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: the engine this run of the test uses."""
    chosen: str = request.param
    assert chosen in BACKENDS
    return chosen


class FakeClock:
    """A clock that only moves when the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 5, 9, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the SQLite runs keep their store file."""
    return tmp_path / "deposits.db"


@pytest.fixture
def store_url(backend: str, db_path: Path) -> Iterator[str]:
    """A fresh, empty store for this test: an SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield str(db_path)
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def postgres_store_url() -> Iterator[str]:
    """A fresh PostgreSQL schema, for a test about PostgreSQL alone (skipped without the test database)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Store:
    """The test's store, parsed: what our own SQL connects through."""
    return resolve_store(store_url)


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A new schema in the test database, as a store URL; dropped with everything in it afterwards."""
    base = postgres_url()
    assert base is not None, f"{POSTGRES_ENV_VAR} is not set"
    schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:16]}"
    parts = urlsplit(base)
    admin = resolve_store(urlunsplit(parts._replace(query="")))
    _execute(admin, f"CREATE SCHEMA {schema}")
    # PostgreSQL writers need the chain's key from outside the database (the ledger's children get it too).
    key_before = os.environ.get(KEY_ENV_VAR)
    os.environ[KEY_ENV_VAR] = TEST_CHAIN_KEY
    try:
        yield urlunsplit(parts._replace(query=urlencode({"schema": schema})))
    finally:
        if key_before is None:
            os.environ.pop(KEY_ENV_VAR, None)
        else:
            os.environ[KEY_ENV_VAR] = key_before
        # A process the test left running would hold its locks: the store's lock timeout
        # makes the drop fail loudly rather than hang.
        _execute(admin, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextmanager
def fresh_store(backend: str) -> Iterator[str]:
    """A new, empty store of ``backend`` as a URL, removed afterwards: one per hypothesis example."""
    if backend == "postgresql":
        with fresh_schema() as url:
            yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield str(Path(folder) / "deposits.db")


def examples(backend: str, on_sqlite: int) -> int:
    """How many hypothesis examples a property runs on ``backend``.

    A PostgreSQL example costs a schema and a few round trips per command (about ten
    times an SQLite one): a quarter as many examples there keeps the suite in minutes,
    while the SQLite run explores the command space.
    """
    return on_sqlite if backend == "sqlite" else max(1, on_sqlite // 4)


def _execute(store: Store, *statements: str) -> None:
    # A connection of its own each time: the server may have restarted during the test.
    connection = store.connect()
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


@pytest.fixture
def ledger(store_url: str, clock: FakeClock) -> Iterator[DepositLedger]:
    app = DepositLedger(store_url, actor="tester", clock=clock)
    yield app
    app.close()


@pytest.fixture
def reopen(store_url: str, clock: FakeClock) -> Iterator[Callable[[], DepositLedger]]:
    """Open another, fresh ledger on the same store: nothing shared with the first but the store."""
    opened: list[DepositLedger] = []

    def fresh() -> DepositLedger:
        app = DepositLedger(store_url, actor="tester", clock=clock)
        opened.append(app)
        return app

    yield fresh
    for app in opened:
        app.close()


@contextmanager
def writes_nothing(ledger: DepositLedger) -> Iterator[None]:
    """Assert that the block leaves the store's notification log as it found it."""
    before = ledger.recorder.max_notification_id()
    yield
    assert ledger.recorder.max_notification_id() == before


def fetch_all(store: Store, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """Run one read-only query on a connection of its own; rows as tuples, bytes as ``bytes``."""
    connection = store.connect()
    try:
        rows = connection.cursor().execute(query, params).fetchall()
    finally:
        connection.close()
    return [tuple(bytes(value) if isinstance(value, memoryview) else value for value in row) for row in rows]
