"""Shared fixtures: a ledger on a fresh SQLite file, with a clock the test controls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import DepositLedger


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
    return tmp_path / "deposits.db"


@pytest.fixture
def ledger(db_path: Path, clock: FakeClock) -> Iterator[DepositLedger]:
    app = DepositLedger(str(db_path), actor="tester", clock=clock)
    yield app
    app.close()


@pytest.fixture
def reopen(db_path: Path, clock: FakeClock) -> Iterator[Callable[[], DepositLedger]]:
    """Open another, fresh ledger on the same file: nothing shared with the first but the store."""
    opened: list[DepositLedger] = []

    def fresh() -> DepositLedger:
        app = DepositLedger(str(db_path), actor="tester", clock=clock)
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
