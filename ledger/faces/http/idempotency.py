"""Idempotency keys on POST requests (the IETF httpapi draft, as Stripe does it).

A client that may retry a write sends ``Idempotency-Key: <unique string>``. The
first answer to it is kept in the store, per API key: the same key with the same
request (method, path and body) answers exactly that again, status and body; the
same key with another request is refused (422). Answers are kept for
``RETENTION_S`` and stored in the store, so they survive restarts and every
server process on the store sees them.

The answer to a command that records events is kept in the very transaction that
saves them (:class:`Keeping`): a process that dies after the commit has kept the
answer too, and one that dies before it has done neither, so a retry gets the
first answer or runs the command for the first time. An answer that changed
nothing (a duplicate, a refusal) is kept after it is given: if the process dies
between the two, the retry decides again, and nothing was applied either time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from ledger.store.urls import Store

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255
RETENTION_S = 48 * 3600
"""How long an answer is kept: at least the 24 hours promised, whatever the clocks of the processes."""
PURGE_EVERY_S = 3600
TABLE = "api_idempotency"


@dataclass(frozen=True, slots=True)
class Remembered:
    """A first answer, kept for replay."""

    request_digest: str
    status: int
    body: bytes


def request_digest(method: str, path: str, body: bytes) -> str:
    """What identifies a request for the same-request check: method, path and body bytes."""
    return hashlib.sha256(b"\0".join((method.encode(), path.encode(), body))).hexdigest()


_INSERT = (
    f"INSERT INTO {TABLE} (api_key, idempotency_key, request_digest, status, body, created_s) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (api_key, idempotency_key) DO UPDATE SET "
    "request_digest = excluded.request_digest, status = excluded.status, body = excluded.body, "
    f"created_s = excluded.created_s WHERE {TABLE}.created_s < ?"
)
"""Keeps an answer unless one is kept for the key already; one older than the retention (the last
parameter: its oldest creation time) no longer counts and is replaced."""


def _answer_row(api_key: str, idempotency_key: str, answer: Remembered, now: int) -> tuple[Any, ...]:
    return (api_key, idempotency_key, answer.request_digest, answer.status, answer.body, now, now - RETENTION_S)


_SELECT = f"SELECT request_digest, status, body FROM {TABLE} WHERE api_key = ? AND idempotency_key = ?"


class Keeping:
    """One request's answer on its way to being kept with the events its command saves.

    The command, once decided, hands its answer to :meth:`write_with_events`
    (through ``DepositLedger.record_alongside``); if the batch saves events, the
    answer is inserted in that transaction and :attr:`kept` says whether it was
    this answer that was kept (``True``) or one another process kept first
    (``False``). ``None``: nothing was saved with it, keep it afterwards.
    """

    def __init__(self, api_key: str, idempotency_key: str, request_digest: str) -> None:
        """For the request with ``request_digest``, sent with ``idempotency_key`` by ``api_key``."""
        self.api_key = api_key
        self.idempotency_key = idempotency_key
        self.request_digest = request_digest
        self.kept: bool | None = None

    def write_with_events(self, status: int, body: bytes) -> Any:
        """The write to run in the events' transaction: keep ``status`` and ``body`` unless a first answer exists."""
        # A batch decided again starts over: only the write of the attempt that commits counts.
        self.kept = None
        row = _answer_row(self.api_key, self.idempotency_key, Remembered(self.request_digest, status, body), now_s())

        def write(cursor: Any) -> None:
            cursor.execute(_INSERT + " RETURNING 1", row)
            self.kept = cursor.fetchone() is not None

        return write


class IdempotencyKeys:
    """The kept answers, in a table of the store created beside the ledger's."""

    def __init__(self, store: Store) -> None:
        """Connect to ``store`` and create the table if it is missing."""
        self.store = store
        self._connection = store.connect()
        self._lock = threading.Lock()
        self._purged_at = 0.0
        with store.creating_tables(self._connection), self._lock, store.write_transaction(self._connection) as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                "api_key TEXT NOT NULL, idempotency_key TEXT NOT NULL, request_digest TEXT NOT NULL, "
                f"status INTEGER NOT NULL, body {store.blob_type} NOT NULL, created_s BIGINT NOT NULL, "
                "PRIMARY KEY (api_key, idempotency_key))"
            )

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    def find(self, api_key: str, idempotency_key: str) -> Remembered | None:
        """The first answer given to this key, if it is still kept."""
        with self._lock:
            self._purge_if_due()
            cursor = self._connection.cursor()
            cursor.execute(_SELECT + " AND created_s >= ?", (api_key, idempotency_key, now_s() - RETENTION_S))
            row = cursor.fetchone()
        return Remembered(str(row[0]), int(row[1]), bytes(row[2])) if row is not None else None

    def remember(self, api_key: str, idempotency_key: str, answer: Remembered) -> Remembered:
        """Keep the first answer to this key; if another process kept one first, that one stands and is returned."""
        with self._lock, self.store.write_transaction(self._connection) as cursor:
            cursor.execute(_INSERT, _answer_row(api_key, idempotency_key, answer, now_s()))
            cursor.execute(_SELECT, (api_key, idempotency_key))
            row = cursor.fetchone()
        return Remembered(str(row[0]), int(row[1]), bytes(row[2]))

    def _purge_if_due(self) -> None:
        # Once an hour, the answers past their retention go (under the lock).
        now = now_s()
        if now - self._purged_at > PURGE_EVERY_S:
            with self.store.write_transaction(self._connection) as cursor:
                cursor.execute(f"DELETE FROM {TABLE} WHERE created_s < ?", (now - RETENTION_S,))
            self._purged_at = now


def now_s() -> int:
    """The time in whole seconds since the epoch, as the table keeps it."""
    return int(time.time())
