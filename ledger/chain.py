"""The hash chain that makes a rewritten history show.

Every stored event gets a link: SHA-256 over a format tag, the previous link,
and the event exactly as stored (position, deposit id, version, topic, state
bytes), each length-prefixed so no two different records hash alike. The links
live in ``event_chain``, written in the same transaction as the events. Editing,
deleting, inserting or reordering a stored event breaks the chain at that
position; recomputing every later link to hide it is caught by a checkpoint of
the head kept outside the database.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

CHAIN_FORMAT = b"deposit-ledger/event-chain/v1"
"""Hashed into every link: a change of format can never collide with the old one."""

GENESIS = bytes(32)
"""The link before the first event."""


def create_table_statement(
    table: str = "event_chain", blob_type: str = "BLOB", position_key: str = "BIGINT PRIMARY KEY"
) -> str:
    """SQL creating the table of links (``table`` may be schema-qualified; see ``Store.position_key``)."""
    return f"CREATE TABLE IF NOT EXISTS {table} (position {position_key}, link {blob_type} NOT NULL)"


class Checkpoint(BaseModel):
    """The head of the chain: keep it outside the database to prove later that history only grew."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    position: int
    """The position of the newest event when the checkpoint was taken."""
    chain_hash: str
    """Its link in the chain, as 64 hex digits."""


def _field(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big") + value


_LENGTH = struct.Struct(">Q")
_PAIR = struct.Struct(">QQ")
_FORMAT_FIELD = _field(CHAIN_FORMAT)


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


def last_link(cursor: Any) -> tuple[int, bytes]:
    """The position and link of the chain's head (0 and the genesis link when empty)."""
    cursor.execute("SELECT position, link FROM event_chain ORDER BY position DESC LIMIT 1")
    row = cursor.fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))


def extend(
    cursor: Any, rows: Sequence[tuple[int, str, int, str, bytes]], head: tuple[int, bytes] | None = None
) -> tuple[int, tuple[int, bytes]]:
    """Add the links of just-inserted events ``(position, deposit id, version, topic, state)``.

    ``head`` is the chain's head (position and link) if the caller knows it;
    otherwise it is read from the table. Returns the position of the event before
    the new ones (the head of the log as it was) and the new head.
    """
    before, previous = head if head is not None else last_link(cursor)
    links = []
    for position, originator_id, version, topic, state in rows:
        previous = link(previous, position, originator_id, version, topic, state)
        links.append((position, previous))
    cursor.executemany("INSERT INTO event_chain (position, link) VALUES (?, ?)", links)
    return before, links[-1]
