"""Shared helpers of the command-line tests: run ``deposit-ledger`` in-process on a fresh store."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from ledger.faces.cli import main
from ledger.store.urls import resolve_store
from tests.conftest import fetch_all

STATE_KEYS = [
    "shop_id",
    "status",
    "currency",
    "required",
    "paid",
    "frozen",
    "deducted",
    "refunded",
    "forfeited",
    "owed",
    "shortfall",
    "version",
]
"""The keys of ``show --json`` and of every write command's ``--json``, as the contract lists them."""

POLICY_STATE_KEYS = ["held", "reversed", "top_up_due", "policy_version", "categories"]
"""The keys deposit policies appended after the contract's, in order."""

DEBT_STATE_KEYS = ["written_off"]
"""The keys appended since debts outlive closure."""

SITE_STATE_KEYS = ["site", "settlement_due"]
"""The keys appended after the debts': the shop's site and when its settlement is due."""

SHOW_KEYS = [*STATE_KEYS, *POLICY_STATE_KEYS, *DEBT_STATE_KEYS, *SITE_STATE_KEYS]
"""Every key of ``show --json``: the contract's first, unchanged, then the policy's, the debts', the site's."""

START = datetime.fromisoformat("2025-01-06T09:00:00+08:00")
"""A fixed moment safely in the past, so ``--at`` never lies in the future."""


def at(*, days: float = 0, hours: float = 0) -> str:
    """An ``--at`` value: ``START`` moved on by ``days`` and ``hours``."""
    return (START + timedelta(days=days, hours=hours)).isoformat()


class Outcome(NamedTuple):
    """What one run of the command line left behind."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


Run = Callable[..., Outcome]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own store, actor and policy settings must not leak into a test.

    The OS user, the last fallback for the actor, is ``tester``.
    """
    monkeypatch.delenv("DEPOSIT_LEDGER_DB", raising=False)
    monkeypatch.delenv("DEPOSIT_LEDGER_ACTOR", raising=False)
    monkeypatch.delenv("DEPOSIT_LEDGER_POLICY", raising=False)
    for name in ("USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOGNAME", "tester")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``deposit-ledger`` in-process: ``(exit code, stdout, stderr)``.

    ``line`` is the command line as typed in a shell (split with ``shlex``);
    ``extra`` arguments are appended as they are.
    """

    def run_cli(line: str, *extra: str) -> Outcome:
        capsys.readouterr()
        try:
            main([*shlex.split(line), *extra])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    return run_cli


@pytest.fixture
def cli(run: Run, store_url: str) -> Run:
    """Like ``run``, on the test's own store (``--db``): once on SQLite, once on PostgreSQL."""
    return lambda line, *extra: run(f"--db {shlex.quote(store_url)} {line}", *extra)


def stored_rows(url: str | Path) -> int:
    """How many events and snapshots the store at ``url`` (a path or URL) holds."""
    store = resolve_store(str(url))
    events = fetch_all(store, f"SELECT count(*) FROM {store.events_table}")[0][0]
    snapshots = fetch_all(store, f"SELECT count(*) FROM {store.snapshots_table}")[0][0]
    return int(events) + int(snapshots)
