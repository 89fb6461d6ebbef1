"""Where the chain's keys come from, and which key the chain is keyed with from here on.

The keys live outside the database, so that writing to the database is not
enough to forge a link:

1. ``DEPOSIT_LEDGER_CHAIN_KEY``: the keys as hex (at least 32 bytes each),
   separated by commas, oldest first; the last one keys new links.
2. ``DEPOSIT_LEDGER_CHAIN_KEY_FILE``: a file holding the same, one key per line.
3. Neither, on SQLite: the file ``<store>.chain-key`` beside the store, which the
   first write generates (32 random bytes, readable by its owner alone).

PostgreSQL has no "beside": its writers need one of the first two, the same on
every machine that writes. A key file readable by others is refused, as ssh
refuses such a private key.

Rotation: add the new key as the last one and keep the old one before it. The
next write finds the chain keyed with an older key it holds and records a
``KeyRotated`` record (``chain_keys``) proven by both keys; links from there on
are keyed with the new key. Verifying the whole history needs every key it
names; a key never leaves its file for the database, only its id does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from domain import MalformedInput
from ledger.store import chain
from ledger.store.chain import ChainKey
from ledger.store.urls import Store

KEY_ENV_VAR = "DEPOSIT_LEDGER_CHAIN_KEY"
KEY_FILE_ENV_VAR = "DEPOSIT_LEDGER_CHAIN_KEY_FILE"
KEY_FILE_SUFFIX = ".chain-key"
MAX_KEYS = 64
"""Keys one ring may hold: a rotation a month for five years, with room."""


class ChainKeyProblem(MalformedInput):
    """The chain's key is missing, malformed, unsafe or not the store's: a setting to correct (exit 2)."""


class KeyRing:
    """The chain keys the ledger holds: the newest keys new links, older ones verify older links."""

    def __init__(self, keys: Sequence[ChainKey], source: str) -> None:
        """``keys`` oldest first; ``source`` says where they came from, for messages."""
        assert keys, "a key ring holds at least one key"
        self.keys = tuple(keys)
        self.source = source

    @property
    def current(self) -> ChainKey:
        """The key new links are keyed with."""
        return self.keys[-1]

    def find(self, key_id: str) -> ChainKey | None:
        """The key with this id, if held."""
        return next((key for key in self.keys if key.key_id == key_id), None)


def default_key_file(store: Store) -> Path | None:
    """Where an SQLite store's generated key lives: beside the store, never inside it."""
    if store.kind != "sqlite" or store.sqlite_path is None:
        return None
    return store.sqlite_path.with_name(store.sqlite_path.name + KEY_FILE_SUFFIX)


def key_ring(store: Store, *, create: bool = False, environ: dict[str, str] | None = None) -> KeyRing | None:
    """The keys configured for ``store``; ``create`` generates an SQLite store's key file if missing.

    None when no key is configured (and none generated). Malformed or unsafe
    keys raise :class:`ChainKeyProblem`.
    """
    environment = os.environ if environ is None else environ
    text = environment.get(KEY_ENV_VAR, "").strip()
    if text:
        return KeyRing(_parse_keys(text.split(","), KEY_ENV_VAR), KEY_ENV_VAR)
    named = environment.get(KEY_FILE_ENV_VAR, "").strip()
    path = Path(named) if named else default_key_file(store)
    if path is None:
        return None
    if not path.exists():
        if named:
            raise ChainKeyProblem(f"no chain key file at {path} ({KEY_FILE_ENV_VAR})")
        if not create:
            return None
        _generate(path)
    return KeyRing(_read_key_file(path), f"key file {path}")


def require_ring(store: Store) -> Callable[[], KeyRing]:
    """What a writer calls (once, at its first write) for the keys to extend the chain with."""

    def ring() -> KeyRing:
        found = key_ring(store, create=True)
        if found is None:
            raise ChainKeyProblem(
                f"the chain of a PostgreSQL store is keyed: set {KEY_ENV_VAR} or {KEY_FILE_ENV_VAR} "
                "(the same key on every machine that writes)"
            )
        return found

    return ring


def key_for_new_links(cursor: Any, ring: KeyRing, first_position: int) -> ChainKey:
    """Inside an insert's transaction: the key the links from ``first_position`` on are keyed with.

    A store never keyed (new, or made by a release before chain keys) gets its
    first key record here; a chain keyed with an older key of the ring is
    rotated to the newest (a ``KeyRotated`` record proven by both). A chain
    keyed with a key the ring does not hold is refused: writing on under
    another key would leave links nobody can verify with one key file.
    """
    latest = chain.last_key_id(cursor)
    current = ring.current
    if latest == current.key_id:
        return current
    previous = None
    if latest is not None:
        previous = ring.find(latest)
        if previous is None:
            raise wrong_key(latest, ring)
    cursor.execute(
        "INSERT INTO chain_keys (position, key_id, proof) VALUES (?, ?, ?)",
        (first_position, current.key_id, chain.key_record_proof(first_position, current, previous)),
    )
    return current


def wrong_key(store_key_id: str, ring: KeyRing | None) -> ChainKeyProblem:
    """The one line for a chain keyed with a key that was not given."""
    if ring is None:
        return ChainKeyProblem(
            f"the chain is keyed with key {store_key_id}, and no chain key is set "
            f"({KEY_ENV_VAR}, {KEY_FILE_ENV_VAR} or the key file beside the store)"
        )
    held = ", ".join(key.key_id for key in ring.keys)
    return ChainKeyProblem(
        f"the chain is keyed with key {store_key_id}, not with the key given ({held}, {ring.source})"
    )


def _parse_keys(texts: Sequence[str], where: str) -> list[ChainKey]:
    keys = []
    for text in texts:
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            raise ChainKeyProblem(f"{where}: a chain key must be hex digits") from None
        if len(secret) < chain.MIN_KEY_BYTES:
            raise ChainKeyProblem(
                f"{where}: a chain key must have at least {chain.MIN_KEY_BYTES} bytes (64 hex digits)"
            )
        keys.append(ChainKey(secret))
    if not 0 < len(keys) <= MAX_KEYS:
        raise ChainKeyProblem(f"{where}: between 1 and {MAX_KEYS} chain keys expected")
    return keys


def _read_key_file(path: Path) -> list[ChainKey]:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ChainKeyProblem(f"chain key file {path} is open to other users: chmod 600 it")
        lines = [line for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ChainKeyProblem(f"cannot read chain key file {path}: {error}") from None
    return _parse_keys(lines, f"chain key file {path}")


def _generate(path: Path) -> None:
    # Written complete under a temporary name, then linked into place: two processes
    # generating at once cannot leave a half-written key, and the second keeps the first's.
    temporary = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(secrets.token_bytes(chain.MIN_KEY_BYTES).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
