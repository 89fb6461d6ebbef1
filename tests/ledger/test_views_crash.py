"""SIGKILL in the middle of a catch-up and of a rebuild: restarted, the views equal a rebuild from scratch.

The store holds some 30,000 events, more than a ledger catches up by itself
when it opens, so the work happens in the ``projections`` command under test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import DepositLedger
from ledger.app.service import AUTO_CATCH_UP_LIMIT
from tests.ledger.stores import AUDIT, BALANCES, connect, copy_store, fill_behind, tracking, view_rows

pytestmark = pytest.mark.sqlite_only("kills SQLite catch-ups; workers are killed on both engines elsewhere")

ROOT = Path(__file__).resolve().parents[2]
KILL_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def bulk_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of about 30,000 events that no view has seen yet."""
    path = tmp_path_factory.mktemp("bulk") / "deposits.db"
    ledger = DepositLedger(str(path), actor="bulk-loader")
    try:
        head = fill_behind(ledger, 1000, 14)
    finally:
        ledger.close()
    assert head > 3 * AUTO_CATCH_UP_LIMIT
    return path


@pytest.fixture(scope="module")
def rebuilt_store(bulk_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bulk store whose views were rebuilt from scratch, in this process, never killed."""
    path = copy_store(bulk_store, tmp_path_factory.mktemp("rebuilt") / "deposits.db")
    ledger = DepositLedger(str(path), actor="bulk-loader")
    try:
        for name in ("balances", "audit_trail"):
            ledger.views.rebuild(name)
    finally:
        ledger.close()
    return path


def _start(path: Path, *command: str) -> subprocess.Popen[bytes]:
    # This tree's code, not whatever is installed.
    return subprocess.Popen(
        [sys.executable, "-m", "ledger", "--db", str(path), *command],
        cwd=path.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _run(path: Path, *command: str) -> None:
    process = _start(path, *command)
    _, stderr = process.communicate(timeout=KILL_WITHIN_S)
    assert process.returncode == 0, stderr.decode()


def _kill_early(process: subprocess.Popen[bytes], path: Path, name: str, head: int) -> int:
    """SIGKILL the process once tracking row ``name`` stands part of the way to ``head``.

    A batch takes a good fraction of a second here (a rebuild's is 20,000 events, two
    thirds of the store): the process is still at the next when the signal lands.
    """
    deadline = time.monotonic() + KILL_WITHIN_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "finished before it could be killed"
        position = tracking(path).get(name, 0)
        if 0 < position < head:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            assert process.returncode == -signal.SIGKILL
            return position
        time.sleep(0.002)
    process.kill()
    raise AssertionError(f"{name} was never seen part of the way")


def _head(path: Path) -> int:
    with connect(path) as connection:
        return int(connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()[0])


def _assert_applied_up_to_tracking(path: Path, table: str, name: str) -> None:
    """Rows and tracking were committed together: ``table`` holds exactly the events up to ``name``'s position."""
    position = tracking(path).get(name, 0)
    with connect(path) as connection:
        if table.startswith("audit_trail"):
            # One row per event, from the first: the count and the last position agree.
            count, last = connection.execute(f"SELECT COUNT(*), MAX(position) FROM {table}").fetchone()
            assert count == (last or 0) == position
        else:
            (last,) = connection.execute(f"SELECT MAX(position) FROM {table}").fetchone()
            assert (last or 0) == position


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "deposits.db"


def test_a_catch_up_killed_twice_resumes_and_equals_a_rebuild_from_scratch(
    bulk_store: Path, rebuilt_store: Path, store: Path
) -> None:
    copy_store(bulk_store, store)
    head = _head(store)

    killed_at = _kill_early(_start(store, "projections", "catch-up"), store, BALANCES, head)
    _assert_applied_up_to_tracking(store, "deposit_balances", BALANCES)
    _assert_applied_up_to_tracking(store, "audit_trail", AUDIT)
    assert tracking(store)[BALANCES] >= killed_at
    assert tracking(store).get(AUDIT, 0) == 0, "the balances view is caught up first"

    process = _start(store, "projections", "catch-up")
    _kill_early(process, store, AUDIT, head)
    _assert_applied_up_to_tracking(store, "deposit_balances", BALANCES)
    _assert_applied_up_to_tracking(store, "audit_trail", AUDIT)
    assert tracking(store)[BALANCES] == head

    _run(store, "projections", "catch-up")
    assert tracking(store)[BALANCES] == tracking(store)[AUDIT] == head
    assert view_rows(store) == view_rows(rebuilt_store)


def test_a_rebuild_killed_twice_leaves_the_live_views_alone_and_a_rerun_equals_a_rebuild_from_scratch(
    rebuilt_store: Path, store: Path
) -> None:
    copy_store(rebuilt_store, store)
    head = _head(store)
    expected = view_rows(rebuilt_store)

    _kill_early(_start(store, "projections", "rebuild"), store, BALANCES + ".rebuild", head)
    with connect(store) as connection:
        (built,) = connection.execute("SELECT COUNT(*) FROM deposit_balances__rebuild").fetchone()
    assert 0 < built < len(expected["deposit_balances"])
    _assert_applied_up_to_tracking(store, "deposit_balances__rebuild", BALANCES + ".rebuild")
    assert view_rows(store) == expected, "the live views kept answering, untouched"
    assert tracking(store)[BALANCES] == tracking(store)[AUDIT] == head

    # The rerun starts its copy afresh; kill it again while it builds the second view.
    _kill_early(_start(store, "projections", "rebuild"), store, AUDIT + ".rebuild", head)
    _assert_applied_up_to_tracking(store, "audit_trail__rebuild", AUDIT + ".rebuild")
    assert view_rows(store) == expected

    _run(store, "projections", "rebuild")
    assert view_rows(store) == expected
    assert tracking(store) == {BALANCES: head, AUDIT: head}
    with connect(store) as connection:
        leftovers = connection.execute("SELECT name FROM sqlite_master WHERE name LIKE '%rebuild%'").fetchall()
    assert leftovers == []
