"""The event recorders: events, their chain links and the current views, in one transaction."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteFactory,
)
from eventsourcing.utils import Environment, EnvType, retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain import DepositEvent
from ledger.store import chain, library_overrides, trade_numbers
from ledger.store.chain import ChainKey
from ledger.store.chain_keys import KeyRing, key_for_new_links
from ledger.store.urls import StoreLocked

LOOKUP_CHUNK = 500
"""Deposit ids per ``IN`` list: SQLite bounds the parameters of one statement."""

AfterInsert = Callable[[Any, int, Sequence[int], Sequence[DepositEvent]], None]
"""Called inside the insert's transaction with a cursor, the position of the event before the new
ones (the head as it was), the new positions and their domain events."""

AfterCommit = Callable[[int], None]
"""Called once the insert's transaction has committed, with the position of its last event."""

Alongside = Callable[[Any], None]
"""A write of the caller's own, given a cursor inside the insert's transaction (``?`` placeholders):
it commits with the events or not at all. Passed to ``insert_events`` as ``alongside=[...]``."""


class ChainHead:
    """The chain's head and key as this process last committed them, so the next insert need not read them back.

    Valid only while nobody has inserted since: the next insert uses them when its
    first position directly follows the remembered one (positions only grow, and the
    ledger never deletes an event; a key record is only written with an insert), and
    reads the head and the chain's key from the tables otherwise. A transaction that
    rolls back changes nothing: what it extended is never remembered.
    """

    def __init__(self) -> None:
        """Nothing remembered yet; no keys until the application hands over where they come from."""
        self._committed: tuple[int, bytes, ChainKey] | None = None
        self._pending: tuple[int, bytes, ChainKey] | None = None
        self._ring: KeyRing | None = None
        self.keys: Callable[[], KeyRing] | None = None
        """Where the chain's keys come from, asked once, at the first insert."""

    def extend(self, cursor: Any, rows: Sequence[tuple[int, str, int, str, bytes]]) -> int:
        """:func:`chain.extend`, from the remembered head and key when they are the ones before ``rows``."""
        known = self._committed
        if known is not None and known[0] == rows[0][0] - 1:
            head, key = (known[0], known[1]), known[2]
        else:
            if self._ring is None:
                assert self.keys is not None, "the chain's keys were never given"
                self._ring = self.keys()
            head, key = chain.last_link(cursor), key_for_new_links(cursor, self._ring, rows[0][0])
        previous_head, (position, link) = chain.extend(cursor, rows, key, head)
        self._pending = (position, link, key)
        return previous_head

    def committed(self, head: int) -> None:
        """The insert whose last event is at ``head`` has committed: its last link is the head now."""
        if self._pending is not None and self._pending[0] == head:
            self._committed = self._pending


def _chain_rows(
    positions: Sequence[int], stored_events: Sequence[StoredEvent]
) -> list[tuple[int, str, int, str, bytes]]:
    return [
        (position, stored_id(event.originator_id), event.originator_version, event.topic, event.state)
        for position, event in zip(positions, stored_events, strict=True)
    ]


def stored_id(originator_id: UUID | str) -> str:
    """A deposit id as the chain hashes it: 32 hex digits, whatever column type holds it."""
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(originator_id).hex


class LedgerSQLiteDatastore(SQLiteDatastore):
    """The library's SQLite datastore, where a command's reads and writes can share one write transaction.

    Inside :meth:`writing_turn` the thread holds SQLite's write lock from the
    start (``BEGIN IMMEDIATE``, waiting up to the lock timeout for other
    writers), and every transaction the recorders open in that thread runs
    inside it: the deposit a command loads cannot change before its events are
    inserted, so concurrent writers of one store queue instead of losing their
    writes to each other and giving up.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As the library's datastore, with no turn held yet."""
        super().__init__(*args, **kwargs)
        self._turn = threading.local()

    @contextmanager
    def writing_turn(self) -> Iterator[None]:
        """Hold the store's write lock while the block runs; commit at its end, roll back if it raises.

        What waited for the commit (:meth:`when_committed`) runs once it is done.
        A turn inside a turn is the same turn.
        """
        if getattr(self._turn, "connection", None) is not None:
            yield
            return
        connection = self.pool.get_connection()
        waiting: list[Callable[[], None]] = []
        try:
            try:
                connection.cursor().execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                if "locked" in str(error):
                    raise StoreLocked(
                        f"another session held the write lock of {self.pool.db_name} for more than "
                        f"{self.pool.lock_timeout} s; nothing was written: try again"
                    ) from None
                raise OperationalError(error) from error
            self._turn.connection, self._turn.waiting = connection, waiting
            try:
                yield
            except BaseException:
                connection.rollback()
                raise
            else:
                try:
                    connection.commit()
                except sqlite3.OperationalError as error:
                    raise OperationalError(error) from error
            finally:
                self._turn.connection = self._turn.waiting = None
        finally:
            self.pool.put_connection(connection)
        for callback in waiting:
            callback()

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what this thread wrote is committed: now, or at the end of its turn."""
        waiting = getattr(self._turn, "waiting", None)
        if waiting is None:
            callback()
        else:
            waiting.append(callback)

    @contextmanager
    def transaction(self, *, commit: bool) -> Iterator[SQLiteCursor]:
        """The library's transaction, or inside a turn a part of the turn's (which commits or rolls back whole)."""
        connection: SQLiteConnection | None = getattr(self._turn, "connection", None)
        if connection is None:
            with super().transaction(commit=commit) as cursor:
                yield cursor
            return
        try:
            yield connection.cursor()
        except sqlite3.IntegrityError as error:
            # A version taken (a stale cached deposit): the caller decides again, in a new turn.
            raise IntegrityError(error) from error


class LedgerSQLiteFactory(SQLiteFactory):
    """The library's SQLite factory, on a datastore with writing turns and a pool that caches prepared statements."""

    datastore: LedgerSQLiteDatastore

    def __init__(self, env: Environment | EnvType | None) -> None:
        """Build as the library does, then swap in the ledger's datastore before any connection exists."""
        super().__init__(env)
        library_overrides.swap_sqlite_datastore(self, LedgerSQLiteDatastore)


_CREATE_TABLE = re.compile(r'CREATE TABLE IF NOT EXISTS (?:"?\w+"?\.)?"?(\w+)"?', re.IGNORECASE)


def tables_created_by(recorder: Any) -> list[str]:
    """The tables a recorder of the library creates (its statements say), by name."""
    statements = getattr(recorder, "sql_create_statements", None)
    if statements is not None:
        texts = [statement.as_string(None) for statement in statements]
    else:
        texts = list(recorder.create_table_statements)
    return [found.group(1) for found in map(_CREATE_TABLE.search, texts) if found is not None]


class LedgerPostgresDatastore(PostgresDatastore):
    """The library's PostgreSQL datastore, whose sessions wait for locks no longer than the lock timeout.

    The library sets its lock timeout only inside its insert transactions: a read,
    or the index creation of opening, waited without limit behind another
    session's table lock. And it retries an operational error ten times, which
    would make a lock timeout ten lock timeouts: a lock timeout is raised as
    :class:`StoreLocked` instead, which nobody retries.
    """

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A pooled connection, as the library's; a lock timeout inside becomes :class:`StoreLocked`."""
        try:
            with super().get_connection() as connection:
                yield connection
        except OperationalError as error:
            if isinstance(error.__cause__, psycopg.errors.LockNotAvailable):
                raise StoreLocked(
                    f"another session held a lock on schema {self.schema} for more than {self.lock_timeout} s; "
                    "nothing was written: try again"
                ) from None
            raise


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, on a datastore whose every statement runs under the lock timeout."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        """Build as the library does; then, before any connection exists, bound every session's lock waits."""
        super().__init__(env)
        library_overrides.bound_postgres_lock_waits(self, LedgerPostgresDatastore)


class _ChainedAndProjected:
    """What both recorders do around the library's insert: the chain, the trade numbers, the current views, the news
    of the commit."""

    after_insert: AfterInsert | None = None
    after_commit: AfterCommit | None = None
    chain_head: ChainHead

    def _chain_and_project(
        self, cursor: Any, positions: Sequence[int], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Inside the insert's transaction: one link per event, the trade numbers its payments
        # claim (refused if another deposit holds one), the views that were current, then
        # the caller's own writes that must commit with the events.
        previous_head = self.chain_head.extend(cursor, _chain_rows(positions, stored_events))
        events = kwargs.get("deposit_events")
        trade_numbers.claim(cursor, trade_numbers.claims_of(positions, stored_events, events))
        if self.after_insert is not None and events:
            self.after_insert(cursor, previous_head, positions, events)
        for write in kwargs.get("alongside", ()):
            write(cursor)

    def _committed(self, positions: Sequence[int] | None) -> None:
        # After the commit: what the chain and the views remember may now be trusted.
        if positions:
            self.chain_head.committed(positions[-1])
            if self.after_commit is not None:
                self.after_commit(positions[-1])

    def writing_turn(self) -> AbstractContextManager[None]:
        """A command's turn to write: nothing to take here (PostgreSQL writers queue on the deposit's lock)."""
        return nullcontext()

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what this thread wrote is committed (here: it is)."""
        callback()


class LedgerRecorder(_ChainedAndProjected, SQLiteApplicationRecorder):
    """SQLite: inserts events, extends the hash chain over them, lets current views follow."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As the library's recorder, remembering the chain's head between inserts."""
        super().__init__(*args, **kwargs)
        self.chain_head = ChainHead()

    def construct_create_table_statements(self) -> list[str]:
        """The library's events table, and the chain of links beside it."""
        # Keyed by the row id itself: one b-tree, not a table and an index beside it.
        return [
            *super().construct_create_table_statements(),
            chain.create_table_statement(position_key="INTEGER PRIMARY KEY"),
            chain.create_key_table_statement(position_key="INTEGER PRIMARY KEY"),
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        return library_overrides.insert_sqlite_events(
            self,
            c,
            stored_events,
            lambda cursor, positions: self._chain_and_project(cursor, positions, stored_events, **kwargs),
        )

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert, chain and project in one transaction, as the library does; then tell who waits for the commit."""
        positions = super().insert_events(stored_events, **kwargs)
        self.when_committed(lambda: self._committed(positions))
        return positions

    def writing_turn(self) -> AbstractContextManager[None]:
        """Take SQLite's write lock for a whole command: see :meth:`LedgerSQLiteDatastore.writing_turn`."""
        return self._datastore.writing_turn()

    def when_committed(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once what this thread wrote is committed: now, or at the end of its turn."""
        self._datastore.when_committed(callback)

    @property
    def _datastore(self) -> LedgerSQLiteDatastore:
        assert isinstance(self.datastore, LedgerSQLiteDatastore)
        return self.datastore

    def latest_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Each deposit's latest version, a few hundred deposits a query; deposits without events are absent."""
        found: dict[UUID, int] = {}
        with self.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(originator_ids), LOOKUP_CHUNK):
                chunk = [originator_id.hex for originator_id in originator_ids[start : start + LOOKUP_CHUNK]]
                cursor.execute(
                    f"SELECT originator_id, MAX(originator_version) FROM {self.events_table_name} "
                    f"WHERE originator_id IN ({', '.join('?' * len(chunk))}) GROUP BY originator_id",
                    chunk,
                )
                found.update((UUID(row[0]), int(row[1])) for row in cursor.fetchall())
        return found


class PostgresLedgerRecorder(_ChainedAndProjected, PostgresApplicationRecorder):
    """PostgreSQL: the same, inside the library's table-locked insert transaction."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        """Add the chain table to what the library creates."""
        super().__init__(datastore, events_table_name=events_table_name)
        self.chain_head = ChainHead()
        library_overrides.drop_insert_function_statement(self)
        for statement in (
            chain.create_table_statement("{schema}.event_chain", "BYTEA"),
            chain.create_key_table_statement("{schema}.chain_keys", "BYTEA"),
        ):
            self.sql_create_statements.append(SQL(statement).format(schema=Identifier(self.datastore.schema)))

    def latest_versions(self, originator_ids: Sequence[UUID]) -> dict[UUID, int]:
        """Each deposit's latest version; deposits without events are absent."""
        statement = SQL(
            "SELECT originator_id, MAX(originator_version) FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        with self.datastore.get_connection() as connection, connection.cursor(row_factory=tuple_row) as cursor:
            cursor.execute(statement, [list(originator_ids)])
            return {UUID(str(row[0])): int(row[1]) for row in cursor.fetchall()}

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert, chain and project in one transaction; the insert in pipeline mode, as the library's."""
        positions = library_overrides.insert_postgres_events(
            self,
            stored_events,
            kwargs,
            lambda cursor, positions: self._chain_and_project(cursor, positions, stored_events, **kwargs),
        )
        self._committed(positions)
        return positions
