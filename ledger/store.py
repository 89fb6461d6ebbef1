"""Which event store a ledger uses: the one place that reads store URLs.

``None`` means the default, an SQLite file ``deposits.db`` in the working
directory. A plain path or ``sqlite:///path`` (``sqlite:////abs/path`` for an
absolute one) names another file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from domain import MalformedInput

DEFAULT_SQLITE_FILE = "deposits.db"
STORE_ENV_VAR = "DEPOSIT_LEDGER_DB"
SQLITE_LOCK_TIMEOUT_S = 30
"""How long a writer waits for another process's write lock on the SQLite file."""


@dataclass(frozen=True)
class Store:
    """A parsed store location and the library settings that select it."""

    url: str
    sqlite_path: Path

    def environment(self) -> dict[str, str]:
        """The eventsourcing environment variables for this store."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": "ledger.recorder:LedgerRecorder",
            "SQLITE_DBNAME": str(self.sqlite_path),
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_S),
        }

    def describe(self) -> str:
        """A short human description for messages."""
        return f"SQLite file {self.sqlite_path}"


def resolve_store(url: str | None = None) -> Store:
    """Parse ``url`` (or ``$DEPOSIT_LEDGER_DB``, or the default) into a :class:`Store`."""
    chosen = url if url else os.environ.get(STORE_ENV_VAR) or DEFAULT_SQLITE_FILE
    text = chosen.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "sqlite":
            raise MalformedInput(f"unsupported store URL {chosen!r}: expected a file path or sqlite:///path")
        if not rest.startswith("/") or rest == "/":
            raise MalformedInput(
                f"malformed SQLite URL {chosen!r}: expected sqlite:///relative/path or sqlite:////absolute/path"
            )
        text = rest[1:]
    if not text or text.startswith(":memory:") or text.startswith("file:"):
        raise MalformedInput(f"store {chosen!r} is not a file path")
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        raise MalformedInput(f"store {chosen!r} is a directory, not a file")
    if not path.parent.is_dir():
        raise MalformedInput(f"store {chosen!r}: folder {path.parent} does not exist")
    return Store(url=chosen, sqlite_path=path)
