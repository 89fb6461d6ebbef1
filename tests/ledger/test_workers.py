"""Projection workers: catch up, follow new commits, take turns on a view, reconnect, stop between batches."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest

from domain import MalformedInput, ShopNotFound
from ledger import DepositLedger
from ledger.app.service import inline_views_setting
from ledger.store.urls import StoreUnavailable
from ledger.views.workers import BACKOFF_FIRST_S, ProjectionWorker, WorkerStatus
from projections.balances import BalancesView
from projections.view import Cursor, Positioned
from tests.conftest import FakeClock
from tests.ledger.checks import CURRENT, assert_views_are_a_rebuild_and_verify_clean, lags
from tests.ledger.processes import Children, eventually
from tests.ledger.stores import fill


@pytest.fixture
def quiet_ledger(store_url: str, clock: FakeClock) -> Iterator[DepositLedger]:
    """A ledger with inline views off: its commands leave the views to the workers."""
    app = DepositLedger(store_url, actor="tester", clock=clock, inline_views=False)
    yield app
    app.close()


def opener(store_url: str) -> Callable[[], DepositLedger]:
    return lambda: DepositLedger(store_url, actor="worker", inline_views=False)


class Following:
    """A worker following in a background thread, and what it said."""

    def __init__(self, worker: ProjectionWorker) -> None:
        self.worker = worker
        self.applied: list[int] = []
        self.error: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.applied.append(self.worker.follow())
        except BaseException as error:
            self.error.append(error)

    def stop(self) -> int:
        self.worker.request_stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert not self.error, self.error
        return self.applied[0]


@pytest.fixture
def follow() -> Iterator[Callable[..., Following]]:
    """Start workers following in threads; each is stopped when the test ends."""
    started: list[Following] = []

    def start(
        store_url: str,
        *,
        open_ledger: Callable[[], DepositLedger] | None = None,
        poll_interval_s: float = 0.05,
        **options: Any,
    ) -> Following:
        notices: list[str] = options.pop("notices", [])
        worker = ProjectionWorker(
            open_ledger or opener(store_url), poll_interval_s=poll_interval_s, on_notice=notices.append, **options
        )
        following = Following(worker)
        following.thread.start()
        eventually(lambda: any(line.startswith("following") for line in notices), "the worker to start following")
        started.append(following)
        return following

    yield start
    for following in started:
        following.worker.request_stop()
        following.thread.join(timeout=30)


def _fail_at_ref(ref: str) -> Callable[[BalancesView, Cursor, str, Sequence[Positioned]], None]:
    apply = BalancesView.apply

    def failing(self: BalancesView, cursor: Cursor, table: str, batch: Sequence[Positioned]) -> None:
        if any(getattr(positioned.event, "trade_no", None) == ref for positioned in batch):
            raise ValueError(f"cannot apply payment {ref}")
        apply(self, cursor, table, batch)

    return failing


# ------------------------------------------------------------------------ inline views off


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", True), ("1", True), ("on", True), ("TRUE", True), ("0", False), ("off", False), ("no", False)],
)
def test_inline_views_are_on_unless_the_environment_says_off(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("DEPOSIT_LEDGER_INLINE_VIEWS", value)
    assert inline_views_setting() is expected


def test_an_unreadable_inline_views_setting_is_malformed_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPOSIT_LEDGER_INLINE_VIEWS", "sometimes")
    with pytest.raises(MalformedInput, match="DEPOSIT_LEDGER_INLINE_VIEWS='sometimes': expected 1 or 0"):
        inline_views_setting()


def test_with_inline_views_off_commands_commit_and_a_worker_brings_the_views_up(
    quiet_ledger: DepositLedger, store_url: str
) -> None:
    quiet_ledger.open("tea", currency="CNY", required="2000")
    paid = quiet_ledger.pay("tea", "2000", channel="alipay", ref="A1")
    assert paid.state.version == 3
    assert lags(store_url) == {"balances": 3, "audit_trail": 3}
    with pytest.raises(ShopNotFound):
        quiet_ledger.balance("tea")

    assert ProjectionWorker(opener(store_url)).catch_up() == 2 * 3

    assert lags(store_url) == CURRENT
    assert quiet_ledger.balance("tea") == quiet_ledger.show("tea")


# ------------------------------------------------------------------------------- following


def test_a_following_worker_applies_each_commit_soon_after_it(
    quiet_ledger: DepositLedger, store_url: str, backend: str, follow: Callable[..., Following]
) -> None:
    quiet_ledger.open("tea", currency="CNY", required="2000")
    # On PostgreSQL the worker would look only once a minute: NOTIFY is what wakes it.
    following = follow(store_url, poll_interval_s=60 if backend == "postgresql" else 0.05)
    eventually(lambda: lags(store_url) == CURRENT, "the events before the start", timeout_s=10)
    for number in range(5):
        quiet_ledger.pay("tea", "100", channel="alipay", ref=f"A{number}")
        eventually(lambda: lags(store_url) == CURRENT, f"payment {number} applied", timeout_s=10)
        assert quiet_ledger.balance("tea") == quiet_ledger.show("tea")

    assert following.stop() == 2 * quiet_ledger.views.head()


def test_two_workers_on_the_same_views_take_turns_and_apply_every_event_once(
    quiet_ledger: DepositLedger, store_url: str, follow: Callable[..., Following], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    fill(quiet_ledger, 40, 2, prefix="early")

    def pause_between_batches(status: WorkerStatus) -> None:
        # Lets the other worker take the lock between two batches: they interleave.
        if status.state == "catching up":
            time.sleep(0.02)

    workers = [follow(store_url, on_status=pause_between_batches) for _ in range(2)]
    head = fill(quiet_ledger, 20, 2, prefix="late")
    eventually(lambda: lags(store_url) == CURRENT, "both views caught up")

    applied = [following.stop() for following in workers]
    assert sum(applied) == 2 * head, applied
    assert min(applied) > 0, f"one worker did everything: {applied}"
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_a_poison_event_stops_its_view_once_said_and_the_other_view_follows_on(
    quiet_ledger: DepositLedger,
    store_url: str,
    follow: Callable[..., Following],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BalancesView, "apply", _fail_at_ref("POISON"))
    quiet_ledger.open("tea", currency="CNY", required="2000")
    notices: list[str] = []
    wakes: list[str] = []
    following = follow(store_url, notices=notices, on_status=lambda status: wakes.append(status.state))

    quiet_ledger.pay("tea", "100", channel="alipay", ref="POISON")
    quiet_ledger.pay("tea", "100", channel="alipay", ref="A2")
    eventually(lambda: lags(store_url)["audit_trail"] == 0, "the audit trail to follow on")
    seen = len(wakes)
    eventually(lambda: len(wakes) > seen + 10, "a few more wake-ups")

    stopped = [line for line in notices if "stopped at position" in line]
    assert stopped == ["view balances stopped at position 2: ValueError: cannot apply payment POISON"]
    assert lags(store_url)["balances"] == 4, "balances stopped before the poison event, at position 1"
    following.stop()


def test_a_worker_that_cannot_reach_the_store_tries_again_later_and_later(
    quiet_ledger: DepositLedger, store_url: str, follow: Callable[..., Following]
) -> None:
    quiet_ledger.open("tea", currency="CNY", required="2000")
    refusals = iter(range(3))
    notices: list[str] = []

    def open_when_back() -> DepositLedger:
        if next(refusals, None) is not None:
            raise StoreUnavailable("cannot reach the store: connection refused")
        return opener(store_url)()

    following = follow(store_url, open_ledger=open_when_back, notices=notices)
    quiet_ledger.pay("tea", "100", channel="alipay", ref="A1")
    eventually(lambda: lags(store_url) == CURRENT, "the payment applied")

    assert [line for line in notices if "reconnecting" in line] == [
        f"store unavailable (cannot reach the store: connection refused); reconnecting in {seconds:.1f}s"
        for seconds in (BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S)
    ]
    assert following.worker.status.reconnects == 3
    assert following.stop() == 2 * 3


def test_a_stop_request_ends_a_catch_up_after_the_batch_in_hand(
    quiet_ledger: DepositLedger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    fill(quiet_ledger, 10, 1)
    worker: ProjectionWorker

    def stop_after_first_batch(status: WorkerStatus) -> None:
        if status.state == "catching up" and any(view.position for view in status.views):
            worker.request_stop()

    worker = ProjectionWorker(opener(store_url), on_status=stop_after_first_batch)

    assert worker.catch_up() == 10
    assert [(view.name, view.position) for view in quiet_ledger.projection_status()] == [
        ("balances", 10),
        ("audit_trail", 0),
    ]


# --------------------------------------------------------------------- the command line


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_projections_run_follow_keeps_the_views_current_and_stops_cleanly_on_a_signal(
    quiet_ledger: DepositLedger, store_url: str, children: Children, stop_signal: int
) -> None:
    quiet_ledger.open("tea", currency="CNY", required="2000")
    worker = children.ledger("--db", store_url, "projections", "run", "--follow", "--poll-interval", "0.1", name="w")
    eventually(lambda: "following balances, audit_trail" in worker.stderr(), "the worker to start")
    quiet_ledger.pay("tea", "2000", channel="alipay", ref="A1")
    eventually(lambda: lags(store_url) == CURRENT, "the payment in the views")

    assert worker.stop(stop_signal) == 0
    assert worker.stderr().splitlines()[-1] == "deposit-ledger: stopped after applying 6 events"
    assert quiet_ledger.balance("tea") == quiet_ledger.show("tea")


def test_projections_run_without_follow_catches_up_and_exits(
    quiet_ledger: DepositLedger, store_url: str, children: Children
) -> None:
    quiet_ledger.open("tea", currency="CNY", required="2000")
    quiet_ledger.pay("tea", "2000", channel="alipay", ref="A1")

    run = children.ledger("--db", store_url, "projections", "run", "balances", "--json", name="run")

    assert (run.wait(), run.stderr()) == (0, "")
    assert json.loads(run.stdout()) == [{"name": "balances", "position": 3, "head": 3, "lag": 0}]
    assert lags(store_url) == {"balances": 0, "audit_trail": 3}


def test_projections_run_names_an_unknown_view_in_one_line(store_url: str, children: Children) -> None:
    run = children.ledger("--db", store_url, "projections", "run", "ledgers", "--follow", name="run")
    assert run.wait() == 2
    assert run.stderr() == ("deposit-ledger: unknown view 'ledgers': expected one of balances, audit_trail\n")


def test_a_command_whose_views_cannot_follow_still_succeeds_and_the_views_catch_up_later(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("tea", currency="CNY", required="2000")

    def database_gone(*args: object, **kwargs: object) -> int:
        raise psycopg.OperationalError("the connection is lost")

    def cannot_apply(*args: object, **kwargs: object) -> None:
        raise ValueError("not now")

    # The balances view fails inside the insert (its savepoint is rolled back), and the
    # catch-up after the commit finds the database gone.
    monkeypatch.setattr(ledger.views.view("balances"), "apply", cannot_apply)
    monkeypatch.setattr(ledger.views, "catch_up", database_gone)

    paid = ledger.pay("tea", "2000", channel="alipay", ref="A1")

    assert paid.state.version == 3, "the command succeeded: its events are committed"
    assert ledger.show("tea") == paid.state
    assert {status.name: status.lag for status in ledger.projection_status()} == {"balances": 2, "audit_trail": 0}
    monkeypatch.undo()
    assert ledger.views.catch_up() == 2
    assert ledger.balance("tea") == paid.state
