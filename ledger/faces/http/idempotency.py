"""Idempotency keys on POST requests (the IETF httpapi draft, as Stripe does it).

A client that may retry a write sends ``Idempotency-Key: <unique string>``. The
first answer to it is kept in the store, per API key: the same key with the same
request (method, path and body) answers exactly that again, status and body; the
same key with another request is refused (422). Answers are kept for
``RETENTION_S`` and stored in the store, so they survive restarts and every
server process on the store sees them.

An answer is remembered after the command's commit and before the client hears
it. If a process dies between the two, the retry runs the command again, and the
ledger's own natural keys (a payment's trade number, a case id) make it a
duplicate: nothing is applied twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from ledger.store import Store

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
            cursor = self._connection.cursor()
            cursor.execute(
                f"SELECT request_digest, status, body FROM {TABLE} "
                "WHERE api_key = ? AND idempotency_key = ? AND created_s >= ?",
                (api_key, idempotency_key, int(time.time()) - RETENTION_S),
            )
            row = cursor.fetchone()
        return Remembered(str(row[0]), int(row[1]), bytes(row[2])) if row is not None else None

    def remember(self, api_key: str, idempotency_key: str, answer: Remembered) -> Remembered:
        """Keep the first answer to this key; if another process kept one first, that one stands and is returned."""
        now = int(time.time())
        with self._lock, self.store.write_transaction(self._connection) as cursor:
            if now - self._purged_at > PURGE_EVERY_S:
                cursor.execute(f"DELETE FROM {TABLE} WHERE created_s < ?", (now - RETENTION_S,))
                self._purged_at = now
            cursor.execute(
                f"INSERT INTO {TABLE} (api_key, idempotency_key, request_digest, status, body, created_s) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (api_key, idempotency_key, answer.request_digest, answer.status, answer.body, now),
            )
            cursor.execute(
                f"SELECT request_digest, status, body FROM {TABLE} WHERE api_key = ? AND idempotency_key = ?",
                (api_key, idempotency_key),
            )
            row = cursor.fetchone()
        return Remembered(str(row[0]), int(row[1]), bytes(row[2]))
