"""The hash chain that makes a rewritten history show.

Every stored event gets a link: a hash over a format tag, the previous link,
and the event exactly as stored (position, deposit id, version, topic, state
bytes), each length-prefixed so no two different records hash alike. The links
live in ``event_chain``, written in the same transaction as the events. Editing,
deleting, inserting or reordering a stored event breaks the chain at that
position.

Links are keyed: an HMAC-SHA256 under a chain key the ledger reads from outside
the database (``ledger.store.chain_keys``), so appending a forged event with a
recomputed link needs the key. The table ``chain_keys`` says from which position
on which key links (its id, never the key); a store made before keys existed
has unkeyed links (plain SHA-256, format v1) up to its first key record.
Rewriting history and recomputing links under the key is caught by a checkpoint
of the head kept outside the database.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

CHAIN_FORMAT = b"deposit-ledger/event-chain/v1"
"""Hashed into every unkeyed link (stores made before chain keys): a change of format can never collide with it."""

KEYED_CHAIN_FORMAT = b"deposit-ledger/event-chain/v2"
"""Hashed into every keyed link, with the key's id."""

KEY_RECORD_FORMAT = b"deposit-ledger/key-rotated/v1"
"""MACed into every key record (``KeyRotated``) by the new key and, when there was one, the old."""

CHECKPOINT_FORMAT = b"deposit-ledger/checkpoint/v1"
"""MACed into every checkpoint's signature."""

KEY_ID_FORMAT = b"deposit-ledger/chain-key-id/v1"
"""Hashed with a key into its id: the id names the key without revealing it."""

GENESIS = bytes(32)
"""The link before the first event."""


def create_table_statement(
    table: str = "event_chain", blob_type: str = "BLOB", position_key: str = "BIGINT PRIMARY KEY"
) -> str:
    """SQL creating the table of links (``table`` may be schema-qualified; see ``Store.position_key``)."""
    return f"CREATE TABLE IF NOT EXISTS {table} (position {position_key}, link {blob_type} NOT NULL)"


def create_key_table_statement(
    table: str = "chain_keys", blob_type: str = "BLOB", position_key: str = "BIGINT PRIMARY KEY"
) -> str:
    """SQL creating the table of key records: from ``position`` on, links are keyed by ``key_id``."""
    columns = f"position {position_key}, key_id TEXT NOT NULL, proof {blob_type} NOT NULL"
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"


class ChainKey:
    """A secret key the chain's links are MACed with, and its public id."""

    __slots__ = ("key_id", "secret")

    def __init__(self, secret: bytes) -> None:
        """A key of at least 32 bytes; its id is derived from it."""
        assert len(secret) >= MIN_KEY_BYTES, "a chain key has at least 32 bytes"
        self.secret = secret
        self.key_id = hashlib.sha256(_field(KEY_ID_FORMAT) + secret).hexdigest()[:16]

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key."""
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"ChainKey(key_id={self.key_id!r})"


MIN_KEY_BYTES = 32
"""A chain key's least length: as long as the HMAC's hash."""


class Checkpoint(BaseModel):
    """The head of the chain: keep it outside the database to prove later that history only grew."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    position: int
    """The position of the newest event when the checkpoint was taken."""
    chain_hash: str
    """Its link in the chain, as 64 hex digits."""
    key_id: str | None = None
    """The id of the chain key that signed it (none: taken unsigned, by a release before chain keys)."""
    signature: str | None = None
    """HMAC-SHA256 under that key of the format tag, the position and the chain hash, as 64 hex digits."""


def checkpoint_signature(key: ChainKey, position: int, chain_hash: str) -> str:
    """The signature a checkpoint of ``chain_hash`` at ``position`` carries under ``key``."""
    return key.mac(_FORMAT_CHECKPOINT + _LENGTH.pack(position) + _field(bytes.fromhex(chain_hash))).hex()


def key_record_proof(position: int, key: ChainKey, previous: ChainKey | None) -> bytes:
    """The proof of a key record: MACed by the new key and, after another key, by the old one too.

    Without the old key nobody can rotate to a key of their own; without the new
    key nobody can write a record naming it.
    """
    message = _FORMAT_KEY_RECORD + _LENGTH.pack(position) + _field((previous.key_id if previous else "").encode())
    message += _field(key.key_id.encode())
    return key.mac(message) + (previous.mac(message) if previous is not None else b"")


def check_key_record_proof(
    position: int, key: ChainKey, previous_id: str | None, previous: ChainKey | None, proof: bytes
) -> bool:
    """Whether ``proof`` is the key record's: the old key's half is checked when that key is held."""
    message = _FORMAT_KEY_RECORD + _LENGTH.pack(position) + _field((previous_id or "").encode())
    message += _field(key.key_id.encode())
    if not hmac.compare_digest(proof[:32], key.mac(message)):
        return False
    if previous_id is None:
        return len(proof) == 32
    return len(proof) == 64 and (previous is None or hmac.compare_digest(proof[32:], previous.mac(message)))


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


_LENGTH = struct.Struct(">Q")
_PAIR = struct.Struct(">QQ")
_FORMAT_FIELD = _field(CHAIN_FORMAT)
_FORMAT_KEYED = _field(KEYED_CHAIN_FORMAT)
_FORMAT_KEY_RECORD = _field(KEY_RECORD_FORMAT)
_FORMAT_CHECKPOINT = _field(CHECKPOINT_FORMAT)


def link(previous: bytes, position: int, originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    """The link of the event stored at ``position``, given the link before it.

    SHA-256 over the format tag, the previous link, the position, the deposit id,
    the version, the topic and the state, each variable field preceded by its
    length (8 bytes, big-endian, as are the numbers).
    """
    identity, name = originator_id.encode(), topic.encode()
    return hashlib.sha256(
        b"".join(
            (
                _FORMAT_FIELD,
                _LENGTH.pack(len(previous)),
                previous,
                _PAIR.pack(position, len(identity)),
                identity,
                _PAIR.pack(version, len(name)),
                name,
                _LENGTH.pack(len(state)),
                state,
            )
        )
    ).digest()


def keyed_link(
    key: ChainKey, previous: bytes, position: int, originator_id: str, version: int, topic: str, state: bytes
) -> bytes:
    """The keyed link of the event stored at ``position``: HMAC-SHA256 under ``key``.

    Over the keyed format tag, the key's id, then the same fields as :func:`link`.
    """
    identity, name = originator_id.encode(), topic.encode()
    return key.mac(
        b"".join(
            (
                _FORMAT_KEYED,
                _field(key.key_id.encode()),
                _LENGTH.pack(len(previous)),
                previous,
                _PAIR.pack(position, len(identity)),
                identity,
                _PAIR.pack(version, len(name)),
                name,
                _LENGTH.pack(len(state)),
                state,
            )
        )
    )


def link_under(
    key: ChainKey | None, previous: bytes, position: int, originator_id: str, version: int, topic: str, state: bytes
) -> bytes:
    """The link of an event: keyed under ``key``, or unkeyed where no key record covers it (``None``)."""
    if key is None:
        return link(previous, position, originator_id, version, topic, state)
    return keyed_link(key, previous, position, originator_id, version, topic, state)


def key_records(cursor: Any) -> list[tuple[int, str, bytes]]:
    """Every key record ``(position, key_id, proof)``, oldest first (a handful: one per rotation)."""
    cursor.execute("SELECT position, key_id, proof FROM chain_keys ORDER BY position")
    return [(int(row[0]), str(row[1]), bytes(row[2])) for row in cursor.fetchall()]


def last_key_id(cursor: Any) -> str | None:
    """The id of the key the chain's newest links are keyed with (None: unkeyed so far)."""
    cursor.execute("SELECT key_id FROM chain_keys ORDER BY position DESC LIMIT 1")
    row = cursor.fetchone()
    return None if row is None else str(row[0])


def last_link(cursor: Any) -> tuple[int, bytes]:
    """The position and link of the chain's head (0 and the genesis link when empty)."""
    cursor.execute("SELECT position, link FROM event_chain ORDER BY position DESC LIMIT 1")
    row = cursor.fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def extend(
    cursor: Any,
    rows: Sequence[tuple[int, str, int, str, bytes]],
    key: ChainKey,
    head: tuple[int, bytes] | None = None,
) -> tuple[int, tuple[int, bytes]]:
    """Add the keyed links of just-inserted events ``(position, deposit id, version, topic, state)``.

    ``head`` is the chain's head (position and link) if the caller knows it;
    otherwise it is read from the table. The caller has made sure ``key`` is the
    one the chain is keyed with from here on (see ``ledger.store.chain_keys``). Returns
    the position of the event before the new ones (the head of the log as it was)
    and the new head.
    """
    before, previous = head if head is not None else last_link(cursor)
    links = []
    for position, originator_id, version, topic, state in rows:
        previous = keyed_link(key, previous, position, originator_id, version, topic, state)
        links.append((position, previous))
    cursor.executemany("INSERT INTO event_chain (position, link) VALUES (?, ?)", links)
    return before, links[-1]
