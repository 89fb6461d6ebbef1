"""API keys: who a request comes from, and in which role.

A key is a random secret shown once when it is created; the store keeps only its
SHA-256 digest (a 256-bit random secret needs no slow hash: there is nothing to
guess). A key's name is the actor of every event written with it, so names are
never reused: a revoked key keeps its row, marked with the time of revocation,
and is refused from that moment on, by every process, since every request looks
its key up in the store.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from domain import MalformedInput, Refused
from ledger.app.parse import parse_actor
from ledger.faces.http.roles import Role
from ledger.store.urls import Store

KEY_PREFIX = "dlk_"
"""Secrets start with this, so that a leaked one is easy to recognise in logs and scanners."""

SECRET_BYTES = 32
MAX_PRESENTED_CHARS = 200
"""A presented key longer than this is refused without hashing it."""

TABLE = "api_keys"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key as listed: never its secret."""

    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The key as ``keys list --json`` prints it."""
        return {
            "name": self.name,
            "role": self.role.value,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def parse_role(value: str) -> Role:
    """A role by name; ``MalformedInput`` naming the roles otherwise."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise MalformedInput(f"unknown role {value!r}: expected one of {', '.join(Role)}") from None


def digest(secret: str) -> str:
    """The stored form of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeys:
    """The keys kept in a store, in a table of their own created beside the ledger's."""

    def __init__(self, store: Store) -> None:
        """Connect to ``store`` and create the keys' table if it is missing."""
        self.store = store
        self._connection = store.connect()
        self._lock = threading.Lock()
        with store.creating_tables(self._connection), self._transaction() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                "name TEXT PRIMARY KEY, role TEXT NOT NULL, key_digest TEXT NOT NULL UNIQUE, "
                "created_at TEXT NOT NULL, revoked_at TEXT)"
            )

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock, self.store.write_transaction(self._connection) as cursor:
            yield cursor

    def create(self, name: str, role: str) -> tuple[ApiKey, str]:
        """A new key and its secret (shown to nobody again); ``Refused`` if the name was ever used."""
        name = parse_actor(name)
        chosen = parse_role(role)
        secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        now = datetime.now(UTC)
        with self._transaction() as cursor:
            cursor.execute(f"SELECT 1 FROM {TABLE} WHERE name = ?{self.store.for_update()}", (name,))
            if cursor.fetchone() is not None:
                raise Refused(f"a key named {name} exists already (names are never reused, even revoked)")
            cursor.execute(
                f"INSERT INTO {TABLE} (name, role, key_digest, created_at) VALUES (?, ?, ?, ?)",
                (name, chosen.value, digest(secret), now.isoformat()),
            )
        return ApiKey(name, chosen, now, None), secret

    def all(self) -> list[ApiKey]:
        """Every key, revoked ones too, by name."""
        with self._transaction() as cursor:
            cursor.execute(f"SELECT name, role, created_at, revoked_at FROM {TABLE} ORDER BY name")
            rows = cursor.fetchall()
        return [
            ApiKey(
                str(name),
                Role(role),
                datetime.fromisoformat(created),
                datetime.fromisoformat(revoked) if revoked else None,
            )
            for name, role, created, revoked in rows
        ]

    def revoke(self, name: str) -> ApiKey:
        """Revoke a key at once; revoking it again changes nothing. ``Refused`` for an unknown name."""
        name = parse_actor(name)
        now = datetime.now(UTC).isoformat()
        with self._transaction() as cursor:
            cursor.execute(f"UPDATE {TABLE} SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name))
        for key in self.all():
            if key.name == name:
                return key
        raise Refused(f"no key named {name}")

    def authenticate(self, presented: str) -> tuple[str, Role] | None:
        """The name and role of a live key, or None for a secret that is unknown, revoked or malformed."""
        if not presented.startswith(KEY_PREFIX) or len(presented) > MAX_PRESENTED_CHARS:
            return None
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute(
                f"SELECT name, role FROM {TABLE} WHERE key_digest = ? AND revoked_at IS NULL", (digest(presented),)
            )
            row = cursor.fetchone()
        return (str(row[0]), Role(row[1])) if row is not None else None

    def live_role(self, name: str) -> Role | None:
        """The role of the live key called ``name``; None once it is revoked (or was never created).

        For sessions that remember a key by its name (the console's), so that a
        revocation ends them at once, as it ends the key's own requests.
        """
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute(f"SELECT role FROM {TABLE} WHERE name = ? AND revoked_at IS NULL", (name,))
            row = cursor.fetchone()
        return Role(row[0]) if row is not None else None


def keys_table(keys: list[ApiKey]) -> Table:
    """``keys list`` as a table."""
    table = Table(title=f"API keys ({len(keys)})", title_justify="left")
    for column in ("name", "role", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        table.add_row(
            key.name,
            key.role.value,
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
    return table
