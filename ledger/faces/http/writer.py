"""Group commit: one writer thread gathers concurrent write requests into one transaction.

Every command costs a transaction on its own: a lock, some round trips, a commit
that waits for the disk. Gathered, many commands share them. The writer takes
the requests waiting in its queue (up to ``max_batch``; if fewer are waiting, it
waits up to ``max_wait_s`` for more), runs each in one :meth:`DepositLedger.batch`
in arrival order, and saves them together. Each command is decided on its own:
one the rules refuse raises inside the batch and leaves no trace in it, its
neighbours go on. A request is answered only when the batch holding it is
committed. If another process saved one of the batch's deposits first, the
batch's commands are all decided again on the deposits as stored (as
``import`` does), after a random pause that doubles with each collision; if
that keeps happening, each command is decided alone, in a batch of its own,
with the command line's number of retries.

Every command runs inside a batch, so a command may always ask for a write of its
own to commit with its events (:meth:`DepositLedger.record_alongside`): the
service keeps an idempotent answer that way.

Stopping lets the batch in flight finish and decides what is still queued, so a
graceful shutdown answers every request it accepted.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError

from ledger.app.service import DepositLedger
from ledger.app.unit_of_work import MAX_ATTEMPTS, RETRY_PAUSE_FIRST_S, ConcurrencyExhausted

MAX_BATCH_COMMANDS = 256
"""Commands per transaction at most: bounds a batch's memory and how long its first request waits."""

BATCH_ATTEMPTS = 3
"""How many times a batch is decided again after another process saved one of its deposits first;
then each of its commands is decided alone."""

MAX_WAIT_S = 0.002
"""How long a batch that is not full waits for more requests before it commits."""

MAX_BATCH_WEIGHT = 20_000
"""Journal lines per transaction at most (a command weighs the lines it runs): far below the deposits a
ledger batch may hold, however many lines each request carries."""

Command = Callable[[DepositLedger], Any]
BatchObserver = Callable[[int, float], None]


@dataclass(slots=True)
class _Request:
    command: Command
    weight: int = 1
    answer: Future[Any] = field(default_factory=Future)


_STOP = object()


class GroupWriter:
    """The one writer of a server process: commands in, answers out once committed."""

    def __init__(
        self,
        ledger: DepositLedger,
        *,
        max_batch: int = MAX_BATCH_COMMANDS,
        max_wait_s: float = MAX_WAIT_S,
        on_batch: BatchObserver | None = None,
    ) -> None:
        """Write through ``ledger`` (this writer's alone); ``on_batch`` hears each commit's size and seconds."""
        assert 1 <= max_batch <= 10_000 and 0 <= max_wait_s <= 1
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="group-writer", daemon=True)
        self._stopping = False
        self._next: _Request | None = None
        """A request taken from the queue that did not fit in the last batch: the next one starts with it."""

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def submit(self, command: Command, weight: int = 1) -> Future[Any]:
        """Queue a command; its future holds its answer once committed, or the error that refused it.

        ``weight``: how many commands of the ledger it runs (a journal's lines), at most ``MAX_BATCH_WEIGHT``.
        """
        if self._stopping:
            raise RuntimeError("the writer is stopping")
        assert 1 <= weight <= MAX_BATCH_WEIGHT, f"a command of weight {weight}"
        request = _Request(command, weight)
        self._queue.put(request)
        return request.answer

    def stop(self) -> None:
        """Finish the batch in flight and whatever is queued, then end the thread."""
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first, self._next = self._next or self._queue.get(), None
            if first is _STOP:
                stopping = True
                first = None
            requests = [first] if first is not None else []
            stopping = self._gather(requests) or stopping
            if requests:
                self._write(requests)
        # Whatever was queued after the stop sign still gets its answer.
        leftovers = [self._next] if self._next is not None else []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not _STOP:
                leftovers.append(item)
        batch: list[_Request] = []
        for request in leftovers:
            if len(batch) == self.max_batch or sum(r.weight for r in batch) + request.weight > MAX_BATCH_WEIGHT:
                self._write(batch)
                batch = []
            batch.append(request)
        if batch:
            self._write(batch)

    def _gather(self, requests: list[_Request]) -> bool:
        # Take what is waiting; if the batch is not full, wait a little for more. True: stop after this batch.
        deadline = time.monotonic() + self.max_wait_s
        weight = sum(request.weight for request in requests)
        while len(requests) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not requests:
                    return False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            if weight + item.weight > MAX_BATCH_WEIGHT:
                self._next = item
                return False
            weight += item.weight
            requests.append(item)
        return False

    def _write(self, requests: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            outcomes = self._decide_together(requests)
        except IntegrityError:
            # Other processes keep saving these deposits between our reads and our commit: decide each
            # command alone, as the command line does, under the deposit's lock and with its retries.
            outcomes = self._decide_alone(requests)
        except BaseException as failure:  # the save itself failed: nothing of this batch was written
            for request in requests:
                request.answer.set_exception(failure)
            return
        for request, (ok, value) in zip(requests, outcomes, strict=True):
            if ok:
                request.answer.set_result(value)
            else:
                request.answer.set_exception(value)
        if self._on_batch is not None:
            self._on_batch(len(requests), time.perf_counter() - started)

    def _decide_together(self, requests: list[_Request]) -> list[tuple[bool, Any]]:
        for number in range(1, BATCH_ATTEMPTS + 1):
            try:
                return self._decide(requests)
            except IntegrityError:
                # Another process saved one of these deposits first: decide them all again, after a
                # random pause that doubles each time, so that two writers who collided do not again.
                if number == BATCH_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, RETRY_PAUSE_FIRST_S * 2 ** (number - 1)))
        raise AssertionError("unreachable")

    def _decide_alone(self, requests: list[_Request]) -> list[tuple[bool, Any]]:
        # Each command in a batch of its own: it collides only with what touches its own deposit.
        outcomes: list[tuple[bool, Any]] = []
        for request in requests:
            for number in range(1, MAX_ATTEMPTS + 1):
                try:
                    outcomes.extend(self._decide([request]))
                    break
                except IntegrityError:
                    if number < MAX_ATTEMPTS:
                        time.sleep(random.uniform(0, RETRY_PAUSE_FIRST_S * 2 ** (number - 1)))
            else:
                gave_up = f"gave up after {MAX_ATTEMPTS} conflicting writes; nothing was written"
                outcomes.append((False, ConcurrencyExhausted(gave_up)))
        return outcomes

    def _decide(self, requests: list[_Request]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        with self.ledger.batch():
            for request in requests:
                try:
                    outcomes.append((True, request.command(self.ledger)))
                except IntegrityError:
                    raise
                except Exception as refused:  # this command alone: the batch dropped whatever it did
                    outcomes.append((False, refused))
        return outcomes
