"""What every read model is: a projection of the deposit events into SQL tables it owns.

A view is a plain class: the SQL of its tables (:meth:`View.create_statements`),
how a batch of events changes them (:meth:`View.apply`), and the queries it
answers. It is given a DB-API cursor inside a transaction that the caller
opened and never commits. The caller (the ledger's view runner: catch-up,
rebuild and inline application alike) writes the view's tracking record in that
same transaction, which is what makes every event count exactly once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from domain import DepositEvent, LedgerError

_INDEX_NAME = re.compile(r"INDEX IF NOT EXISTS (\w+) ON")


class UnreadableRow(LedgerError):
    """A view's row cannot be read back (written by a faulty release, or edited by hand).

    The view is derived from the events: rebuilding it repairs it. Raised instead of
    whatever the decoding raised, so that a query reports it in one line.
    """


STORED_TIME_LENGTH = len("2026-03-05T01:00:00.000000+00:00")
"""Every time a view stores is this wide: UTC, a four-digit year, microseconds, ``+00:00``."""


def stored_time(moment: datetime) -> str:
    """A time as the views (and the audit export) keep it: one fixed-width ISO-8601 form, in UTC.

    Fixed width makes text order time order, which the views' range queries rely on.
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def read_stored_time(text: str) -> datetime:
    """A time the views stored, back as an aware ``datetime``.

    Views written before times were fixed width stored years below 1000 unpadded
    (``25-01-06T...``); they are read as the year they meant, until a rebuild
    rewrites them.
    """
    if len(text) != STORED_TIME_LENGTH:
        year, _, rest = text.partition("-")
        text = f"{year.zfill(4)}-{rest}"
    return datetime.fromisoformat(text)


def page_limit(limit: int | None, params: list[Any]) -> str:
    """The ``LIMIT`` clause of a page of ``limit`` rows (its value appended to ``params``); none for all rows."""
    if limit is None:
        return ""
    assert limit > 0, f"a page of {limit} rows"
    params.append(limit)
    return " LIMIT ?"


def fixed_width_time(text: str) -> str:
    """A stored time in the fixed-width form, whichever form it was stored in (for exports)."""
    return text if len(text) == STORED_TIME_LENGTH else stored_time(read_stored_time(text))


@dataclass(frozen=True, slots=True)
class Positioned:
    """An event and its position (notification id) in the store's global order."""

    position: int
    event: DepositEvent


CARRY_LIMIT = 100_000
"""Deposits a view remembers between the batches of a rebuild (a few hundred bytes each)."""


class Carry:
    """What a view last wrote for each deposit while it builds a copy alone, kept for its next batches.

    A rebuild's copy has one writer, so the rows a batch wrote are exactly what the
    next batch would read back: remembering them saves the reads and their decoding.
    Bounded: the deposits used least recently are forgotten and read from the table
    again when needed, as after a restart. Whoever rolls back rows the carry saw
    must :meth:`clear` it. Deposits are keyed by their ids' integers (``UUID.int``):
    hashing and comparing ``UUID`` objects are Python calls, a tenth of a rebuild.
    """

    def __init__(self, limit: int | None = None) -> None:
        """Remember at most ``limit`` deposits (``CARRY_LIMIT`` by default)."""
        self.limit = CARRY_LIMIT if limit is None else limit
        self._items: dict[int, Any] = {}

    def get(self, deposit: int) -> Any | None:
        """What was remembered for ``deposit`` (a deposit id's ``UUID.int``), or None."""
        return self._items.get(deposit)

    def recall(self, deposits: set[int]) -> tuple[dict[int, Any], set[int]]:
        """What is remembered for ``deposits``, and the deposits it does not know (to be read back)."""
        known: dict[int, Any] = {}
        unknown: set[int] = set()
        for deposit in deposits:
            value = self._items.get(deposit)
            if value is None:
                unknown.add(deposit)
            else:
                known[deposit] = value
        return known, unknown

    def remember(self, deposit: int, value: Any) -> None:
        """Remember ``value`` for ``deposit`` as its most recent; forget the oldest beyond the limit."""
        items = self._items
        items.pop(deposit, None)
        items[deposit] = value
        if len(items) > self.limit:
            del items[next(iter(items))]

    def clear(self) -> None:
        """Forget everything (the rows it described were rolled back)."""
        self._items.clear()

    def __len__(self) -> int:
        """How many deposits are remembered."""
        return len(self._items)


class Cursor(Protocol):
    """The part of a DB-API cursor the views use."""

    def execute(self, statement: str, params: Any = ..., /) -> Any:
        """Run one statement."""

    def executemany(self, statement: str, params: Any, /) -> Any:
        """Run one statement for each parameter set."""

    def fetchall(self) -> Any:
        """All rows of the last query."""

    def fetchone(self) -> Any:
        """The next row of the last query."""


class View(ABC):
    """A read model: its tables, how events change them, and the questions it answers."""

    name: ClassVar[str]
    """The view's name: its tracking row, and how ``projections status`` and ``rebuild`` call it."""
    table: ClassVar[str]
    """The main table; its rebuild is built as ``<table>__rebuild`` and renamed over it."""
    columns: ClassVar[tuple[str, ...]]
    """The main table's columns, in order: a stored table with others is rebuilt from the events."""

    @abstractmethod
    def create_statements(self, table: str, position_key: str = "BIGINT PRIMARY KEY") -> list[str]:
        """SQL that creates the view's tables under the main table name ``table``.

        ``position_key`` is the column type of a key holding event positions: on
        SQLite ``INTEGER PRIMARY KEY``, the row id itself, so a table keyed by
        position is one b-tree instead of two.
        """

    @abstractmethod
    def index_statements(self, table: str) -> list[str]:
        """SQL that creates its indexes, on the live table and after a rebuild's swap."""

    def index_names(self, table: str) -> set[str]:
        """The names of the indexes :meth:`index_statements` creates on ``table``."""
        names = set()
        for statement in self.index_statements(table):
            found = _INDEX_NAME.search(statement)
            assert found is not None, f"an index statement that names no index: {statement}"
            names.add(found.group(1))
        return names

    def lookup_index_statements(self, table: str) -> list[str]:
        """The indexes :meth:`apply` reads through: a rebuild's copy has only these until the swap.

        Each index a copy lacks is one less to keep up for every row it writes; the
        rest are built once, in order, when the copy becomes the live table.
        """
        return self.index_statements(table)

    @abstractmethod
    def apply(self, cursor: Cursor, table: str, batch: Sequence[Positioned], carry: Carry | None = None) -> None:
        """Change the tables by ``batch``, in position order, inside the caller's transaction.

        ``carry``, given only while one process builds ``table`` alone, remembers
        between batches what the view wrote, so it need not read it back.
        """
