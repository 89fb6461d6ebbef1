"""What one server process holds: the ledger it reads through, the group writer, keys, kept answers, metrics."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ledger.app.service import DepositLedger
from ledger.faces.http.idempotency import IdempotencyKeys
from ledger.faces.http.keys import ApiKeys
from ledger.faces.http.metrics import ServiceMetrics
from ledger.faces.http.writer import MAX_BATCH_COMMANDS, MAX_WAIT_S, GroupWriter
from ledger.store.urls import Store, resolve_store
from ledger.views.runner import ViewStatus

_Answer = TypeVar("_Answer")


class Service:
    """The ledger behind the HTTP API of one process.

    Reads go through a ledger of their own, one at a time (a ledger's views share a
    connection); writes go through the :class:`GroupWriter`'s ledger. Both are the
    same public ``DepositLedger`` the command line uses, on the same store.
    """

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        max_batch: int = MAX_BATCH_COMMANDS,
        max_wait_s: float = MAX_WAIT_S,
        **ledger_options: Any,
    ) -> None:
        """Open the store (``ledger_options`` go to each ``DepositLedger``: policy, clock, ...)."""
        self.store = store if isinstance(store, Store) else resolve_store(store)
        self._ledger_options = ledger_options
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self.reader: DepositLedger | None = None
        self.writer: GroupWriter | None = None
        self.keys: ApiKeys | None = None
        self.idempotency: IdempotencyKeys | None = None
        self._read_lock = threading.Lock()
        self.metrics = ServiceMetrics(self.view_status)

    def start(self) -> None:
        """Open the ledgers and the tables, start the writer."""
        self.keys = ApiKeys(self.store)
        self.idempotency = IdempotencyKeys(self.store)
        self.reader = DepositLedger(self.store, **self._ledger_options)
        self.writer = GroupWriter(
            DepositLedger(self.store, **self._ledger_options),
            max_batch=self._max_batch,
            max_wait_s=self._max_wait_s,
            on_batch=self.metrics.batch_written,
        )
        self.writer.start()

    def stop(self) -> None:
        """Finish the batch in flight and what is queued, then close everything."""
        if self.writer is not None:
            self.writer.stop()
            self.writer.ledger.close()
        for part in (self.reader, self.keys, self.idempotency):
            if part is not None:
                part.close()

    def read(self, query: Callable[[DepositLedger], _Answer]) -> _Answer:
        """Run a query on the reading ledger (call from a worker thread: it blocks)."""
        assert self.reader is not None, "the service is not started"
        with self._read_lock:
            return query(self.reader)

    async def write(self, command: Callable[[DepositLedger], _Answer], weight: int = 1) -> _Answer:
        """Run a command in the next group commit; its answer once the commit is durable.

        ``weight``: the ledger commands it runs (a batch's lines), so a commit's size stays bounded.
        """
        assert self.writer is not None, "the service is not started"
        answer: _Answer = await asyncio.wrap_future(self.writer.submit(command, weight))
        return answer

    def view_status(self) -> list[ViewStatus]:
        """The views' positions and lag, as the store has them now."""
        if self.reader is None:
            return []
        return self.read(lambda ledger: ledger.projection_status())
