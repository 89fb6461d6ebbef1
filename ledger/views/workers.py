"""Projection workers: processes that keep the views current as events commit.

``deposit-ledger projections run [NAME] --follow`` runs one. It applies what is
pending, then waits for new events and applies those, until it is asked to stop:

- **PostgreSQL**: it LISTENs on the channel the library's recorder NOTIFYs inside
  every insert transaction, so it wakes as soon as a command commits. It also
  looks every ``poll_interval_s`` anyway, in case a notification was lost with
  a connection.
- **SQLite** has no notifications: it looks every ``poll_interval_s``. A look
  only reads; it takes the write lock only when there is something to apply.

**Exactly once, however many workers.** Every batch locks its view's tracking
row (PostgreSQL) or the database (SQLite), re-reads the view's position under
that lock, and commits the view's rows with the new position. A second worker
on the same view waits for the first one's batch, then finds those events
applied. Lock order is the same everywhere (events table, tracking row, view
tables) and a worker never takes the events table's lock, so workers and
writers cannot deadlock.

**Reconnecting.** When the store goes away (a database restart, a cut network,
a locked file), the worker drops its connections and opens the ledger again,
waiting ``BACKOFF_FIRST_S`` at first and doubling up to ``BACKOFF_MAX_S``. A batch
cut off by a dropped connection was never committed: the server rolled it back.

**Stopping.** :meth:`ProjectionWorker.request_stop` (SIGTERM and SIGINT, through
:func:`stopping_on_signals`) ends it after the batch in hand commits.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Literal, Protocol

from domain import MalformedInput
from ledger.app.service import DepositLedger
from ledger.store.recorder import PostgresLedgerRecorder
from ledger.store.urls import UNAVAILABLE, NotifyListener
from ledger.views.runner import ViewFailed, ViewStatus

POLL_INTERVAL_S = 1.0
"""How often a worker looks for new events without being told (SQLite), or in case it missed a NOTIFY."""

BACKOFF_FIRST_S = 0.1
"""How long a worker waits before its first attempt to reach a store that went away."""

BACKOFF_MAX_S = 5.0
"""The longest wait between two attempts to reach the store."""

STOP_CHECK_S = 0.2
"""How often a waiting worker checks whether it was asked to stop."""

State = Literal["starting", "catching up", "waiting", "reconnecting", "stopped"]


@dataclass
class WorkerStatus:
    """What a worker is doing: the views it keeps, how far they are, what it applied since it started."""

    state: State
    views: list[ViewStatus] = field(default_factory=list)
    applied: int = 0
    reconnects: int = 0
    wakes_on: str = ""
    """How new events reach it: ``NOTIFY on <channel>`` or ``polling``."""


class _Waiter(Protocol):
    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s``; True if told that new events committed."""

    def close(self) -> None:
        """Let go of what the waiter holds."""


class _Poller:
    """The waiter of a store that cannot notify (SQLite): it only lets the time pass."""

    def wait(self, timeout_s: float) -> bool:
        time.sleep(timeout_s)
        return False

    def close(self) -> None:
        pass


class ProjectionWorker:
    """Applies new events to the named views (all by default) as they commit, exactly once each."""

    def __init__(
        self,
        open_ledger: Callable[[], DepositLedger],
        names: Sequence[str] | None = None,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        on_status: Callable[[WorkerStatus], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        """``open_ledger`` opens the ledger afresh (at start and after every reconnection).

        ``on_status`` hears every change of state or progress (for a status
        line); ``on_notice`` hears the lines worth keeping in a log: following,
        reconnecting, a view stopped by a poison event, stopped.
        """
        assert poll_interval_s > 0, "a worker must look for new events at some interval"
        self._open_ledger = open_ledger
        self._names = list(names) if names else None
        self.poll_interval_s = poll_interval_s
        self._on_status = on_status
        self._on_notice = on_notice
        self._stop_requested = False
        self._failures_told: set[tuple[str, int]] = set()
        self.status = WorkerStatus(state="starting")

    # ------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Stop after the batch in hand (safe to call from a signal handler: it only sets a flag)."""
        self._stop_requested = True

    # ---------------------------------------------------------------------- run

    def catch_up(self) -> int:
        """Apply what is pending, once, and return how many events were applied.

        Errors are raised as they come: a store that cannot be reached, and (after
        the other views caught up) the first view stopped by a poison event.
        """
        failures: list[ViewFailed] = []
        with self._session(listen=False) as (ledger, _):
            for name in self._view_names(ledger):
                if self._stop_requested:
                    break
                try:
                    self._catch_up_view(ledger, name)
                except ViewFailed as failure:
                    failures.append(failure)
            self._set("stopped", ledger)
        if failures:
            raise failures[0]
        return self.status.applied

    def follow(self) -> int:
        """Apply new events as they commit until asked to stop; return how many were applied."""
        backoff_s = BACKOFF_FIRST_S
        while not self._stop_requested:
            try:
                with self._session(listen=True) as (ledger, waiter):
                    self._notice(f"following {', '.join(self._view_names(ledger))} ({self.status.wakes_on})")
                    while not self._stop_requested:
                        self._apply_pending(ledger)
                        backoff_s = BACKOFF_FIRST_S
                        self._set("waiting", ledger)
                        self._wait(waiter)
            except UNAVAILABLE as error:
                self.status.reconnects += 1
                self._set("reconnecting")
                self._notice(f"store unavailable ({_first_line(error)}); reconnecting in {backoff_s:.1f}s")
                self._pause(backoff_s)
                backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
        self._set("stopped")
        self._notice(f"stopped after applying {self.status.applied} events")
        return self.status.applied

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _session(self, *, listen: bool) -> Iterator[tuple[DepositLedger, _Waiter]]:
        ledger = self._open_ledger()
        try:
            waiter: _Waiter = _Poller()
            self.status.wakes_on = f"polling every {self.poll_interval_s:g}s"
            if listen and isinstance(ledger.recorder, PostgresLedgerRecorder):
                channel = ledger.recorder.channel_name
                waiter = NotifyListener(ledger.store, channel)
                self.status.wakes_on = f"NOTIFY on {channel}, else polling every {self.poll_interval_s:g}s"
            try:
                yield ledger, waiter
            finally:
                waiter.close()
        finally:
            ledger.close()

    def _view_names(self, ledger: DepositLedger) -> list[str]:
        try:
            return [ledger.views.view(name).name for name in self._names or ledger.views.views]
        except LookupError as error:
            raise MalformedInput(str(error)) from None

    def _apply_pending(self, ledger: DepositLedger) -> None:
        # Looking only reads; a catch-up (which takes locks) runs only for views that lag.
        self._set("waiting", ledger)
        lagging = [status.name for status in self.status.views if status.lag]
        for name in lagging:
            if self._stop_requested:
                return
            try:
                self._catch_up_view(ledger, name)
            except ViewFailed as failure:
                # The view stays stopped at the poison event, nothing skipped; the others go on.
                # It is tried again at each wake-up, and said once.
                if (failure.view, failure.position) not in self._failures_told:
                    self._failures_told.add((failure.view, failure.position))
                    self._notice(str(failure))

    def _catch_up_view(self, ledger: DepositLedger, name: str) -> None:
        # Counted batch by batch, so that the batches committed before a failure still count.
        committed = 0

        def progress(done: int, _total: int) -> None:
            nonlocal committed
            committed = done
            self._set("catching up", ledger)

        self._set("catching up", ledger, refresh=False)
        try:
            ledger.views.catch_up([name], progress=progress, stop_requested=self._stopping)
        finally:
            self.status.applied += committed

    def _wait(self, waiter: _Waiter) -> None:
        deadline = time.monotonic() + self.poll_interval_s
        while not self._stop_requested:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or waiter.wait(min(STOP_CHECK_S, remaining_s)):
                return

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop_requested and (remaining_s := deadline - time.monotonic()) > 0:
            time.sleep(min(STOP_CHECK_S, remaining_s))

    def _stopping(self) -> bool:
        return self._stop_requested

    def _set(self, state: State, ledger: DepositLedger | None = None, *, refresh: bool = True) -> None:
        self.status.state = state
        if ledger is not None and refresh:
            wanted = set(self._view_names(ledger))
            self.status.views = [status for status in ledger.projection_status() if status.name in wanted]
        if self._on_status is not None:
            self._on_status(self.status)

    def _notice(self, line: str) -> None:
        if self._on_notice is not None:
            self._on_notice(line)


@contextmanager
def stopping_on_signals(worker: ProjectionWorker) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT ask ``worker`` to stop after the batch in hand."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        worker.request_stop()

    previous = {number: signal.signal(number, handle) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
