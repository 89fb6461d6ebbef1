"""Every place the ledger overrides, or leans on, a private part of the ``eventsourcing`` library.

The library (9.5.x) is used through its public API everywhere else. Here, and only
here, the ledger replaces or calls members the library does not promise to keep:
each for a reason written beside it (speed measured in docs/performance.md, a
transaction the library would split, a lock it would not bound). The classes and
applications that need one of these keep a one-line call to it.

:data:`GUARDED` names each library member the code below replaces, calls or
copies, with a hash of its source as it was when that code was written. The test
``test_library_overrides`` compares them with the installed library and fails,
naming the member and what to re-check, when an upgrade changed one: read the
library's new version of it, adapt the code here, then record the new hash.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import InterfaceError, StoredEvent
from eventsourcing.sqlite import SQLITE3_DEFAULT_LOCK_TIMEOUT, SQLiteConnection, SQLiteConnectionPool, SQLiteCursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain import DepositEvent, InvariantBroken, ShopDeposit
from ledger.store.snapshots import DepositSnapshot
from ledger.store.urls import QmarkCursor

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresFactory
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteFactory


@dataclass(frozen=True)
class Guarded:
    """A library member the code here depends on: where it is, its source's hash, what to re-check if it changed."""

    member: str
    """``module:Qualified.name`` in the ``eventsourcing`` package."""
    source_sha256: str
    """The SHA-256 of ``inspect.getsource`` of the member when the code here was written (9.5.6)."""
    recheck: str
    """What the code here assumes of it."""

    def current_sha256(self) -> str:
        """The hash of the installed library's source of the member."""
        module_name, _, qualified = self.member.partition(":")
        found: Any = importlib.import_module(module_name)
        for part in qualified.split("."):
            found = getattr(found, part)
        return hashlib.sha256(inspect.getsource(found).encode()).hexdigest()


GUARDED = (
    Guarded(
        "eventsourcing.application:Application.save",
        "4e9747d14b8fd046df1b9b8ce688be89030978de0c04a632e6a7ec783dc7c5cc",
        ":func:`save` replaces it: it must still collect, record, snapshot and notify in that order",
    ),
    Guarded(
        "eventsourcing.application:Application._record",
        "104c6186b29d50595198443b697de23b0dab4344c50d4dca54688b32fce52340",
        ":func:`record` calls it with the domain events in ``saved_kwargs``: they must still reach "
        "``events.put`` (and so the recorder's insert) as keyword arguments",
    ),
    Guarded(
        "eventsourcing.application:Application._take_snapshots",
        "ae98c5b97ed9a8e3c50f324a01081e277572d192fac93ef738fdb3c053421562",
        ":func:`take_snapshots` replaces it: when it is called and what it is given",
    ),
    Guarded(
        "eventsourcing.application:Application._notify",
        "6b32f9fc4b4cf4552a6e87205e218d3a65403a116435604c75513ce101a83785",
        ":func:`save` calls it after the snapshots, as the library's save did",
    ),
    Guarded(
        "eventsourcing.application:ProcessingEvent.collect_events",
        "7e3a7e6b1abd2bef334f1ebe7015d887cf935916f87f3c7fbd75127907ab3488",
        ":func:`save` fills ``events``, ``aggregates`` and ``saved_kwargs`` itself for the ledger's own types",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteConnectionPool._create_connection",
        "4635cb356e9ae4ec242c34f322390bc2fa6057f53a2d3e1a1eb70bc114921101",
        ":class:`StatementCachingPool` copies it, changing only ``cached_statements``",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteFactory.__init__",
        "31a496bb9dab899aae17d9e347683c19449f66f8eb2a434e0267f00f40d66b67",
        ":func:`swap_sqlite_datastore` replaces the datastore it built (and its pool) before any connection",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteDatastore.__init__",
        "6f70a3c7d7e9d8ae4d0ca38acb51a89efc1a64a14b00392272cb22c04b7b48ef",
        ":func:`swap_sqlite_datastore` rebuilds the datastore from its pool's db_name and lock_timeout, "
        "its single_row_tracking and originator_id_type",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteDatastore.transaction",
        "20e2038a98e68bdd51cad3b4b950be6140b1dbe8173caae3b7c564a9e04ce79d",
        "the ledger's datastore runs it outside a writing turn and joins the turn inside one",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteApplicationRecorder.__init__",
        "9eee5bfa898419314c6100a50abf08efa284dd813a21921bd211aa3e4b3a4f1a",
        ":func:`insert_sqlite_events` uses ``insert_events_statement`` and ``select_max_notification_id_statement``",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteApplicationRecorder.insert_events",
        "32f60619a2ca6e6a68cc63612d17c5e2e64defa63baa14cb1800f8e7d872eed5",
        "it must still call ``_insert_events`` inside one committed transaction",
    ),
    Guarded(
        "eventsourcing.sqlite:SQLiteApplicationRecorder._insert_events",
        "413cdf219c7bae6361386b240f477256549c5675adc02089fed33453160f1611",
        ":func:`insert_sqlite_events` replaces it: one row per event, the positions returned in order",
    ),
    Guarded(
        "eventsourcing.postgres:PostgresFactory.__init__",
        "5ffbe90fd4f3e6e20ccd41e22678c8c6166943aca971a8f7b9a25d2aad97b2e2",
        ":func:`bound_postgres_lock_waits` changes the class of the datastore it built and the "
        "connection options of its pool",
    ),
    Guarded(
        "eventsourcing.postgres:PostgresDatastore.get_connection",
        "8837a84cf3a8492e1611e2c1c1b9042fd7655fe4365a11a4fe5a9e5a7badf7d4",
        "the ledger's datastore wraps it to turn a lock timeout into StoreLocked",
    ),
    Guarded(
        "eventsourcing.postgres:PostgresApplicationRecorder.__init__",
        "db36fb3de49a5292adbe422c79bfc1ef22658df8f60915befa85d16949b3fa9e",
        ":func:`drop_insert_function_statement` deletes ``sql_create_statements"
        "[create_insert_function_statement_index]``",
    ),
    Guarded(
        "eventsourcing.postgres:PostgresApplicationRecorder.insert_events",
        "f1a98da0239e3ea7462c6b725cd66d0c932fc533814c92e04bf9802ac81ebddf",
        ":func:`insert_postgres_events` replaces it, in pipeline mode as it is: the lock timeout, the "
        "table lock, the insert, the NOTIFY, all in one transaction",
    ),
    Guarded(
        "eventsourcing.postgres:PostgresApplicationRecorder._insert_stored_events",
        "139580714a6590854299f5b5c1630b9cf56c65825cb463eb287bbf97996b29f1",
        ":func:`insert_postgres_events` calls it: it must lock the table, insert, return the "
        "notification ids and NOTIFY",
    ),
)
"""Every library member the code below depends on beyond the public API (test_library_overrides checks them)."""


def changed_members(guards: Sequence[Guarded] = GUARDED) -> list[str]:
    """One line for each guarded member whose source the installed library has changed: what to re-check."""
    version = importlib.metadata.version("eventsourcing")
    lines = []
    for guarded in guards:
        current = guarded.current_sha256()
        if current != guarded.source_sha256:
            lines.append(
                f"eventsourcing {version} changed {guarded.member} since ledger/store/library_overrides.py was "
                f"written against it: {guarded.recheck}. Read its new source, adapt the override, then record "
                f"its new hash {current}"
            )
    return lines


# ------------------------------------------------------------------ application


def save(app: Application[UUID], objs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """The library's ``save``, collecting the ledger's own types without its protocol checks.

    The library tells aggregates from events with ``isinstance`` against a
    runtime-checkable protocol, about 20 µs per object: a batch of thousands of
    events would spend more there than in SQLite. Anything else goes the library's way.
    """
    processing_event: ProcessingEvent[UUID] = ProcessingEvent()
    for obj in objs:
        if isinstance(obj, ShopDeposit):
            processing_event.events.extend(obj.collect_events())
            processing_event.aggregates[obj.id] = obj
        elif isinstance(obj, DepositEvent):
            processing_event.events.append(obj)
        else:
            processing_event.collect_events(obj)
    processing_event.saved_kwargs.update(kwargs)
    recordings = app._record(processing_event)
    app._take_snapshots(processing_event)
    app._notify(recordings)
    return recordings


def record(app: Application[UUID], processing_event: ProcessingEvent[UUID]) -> Any:
    """The library's ``_record``, handing the domain events to the recorder beside their stored form.

    The views then apply them inside the transaction that inserts them, without
    decoding what was just encoded.
    """
    processing_event.saved_kwargs["deposit_events"] = processing_event.events
    return Application._record(app, processing_event)


def take_snapshots(app: Application[UUID], processing_event: ProcessingEvent[UUID], interval: int) -> None:
    """Snapshot each deposit whose command crossed an ``interval`` boundary, as the command left it.

    Never half way through a payment, and without reading the events back from
    the store (the library's way reads each aggregate back). One pass over the
    events: a batch saving many deposits must not cost deposits × events.
    """
    if app.snapshots is None:
        raise InvariantBroken("the ledger always keeps snapshots")
    first_versions: dict[UUID, int] = {}
    for event in processing_event.events:
        known = first_versions.get(event.originator_id)
        if known is None or event.originator_version < known:
            first_versions[event.originator_id] = event.originator_version
    snapshots = []
    for aggregate in processing_event.aggregates.values():
        if not isinstance(aggregate, ShopDeposit):
            continue
        first = first_versions.get(aggregate.id)
        if first is not None and (first - 1) // interval != aggregate.version // interval:
            snapshots.append(DepositSnapshot.take(aggregate))
    if snapshots:
        app.snapshots.put(snapshots)


# ------------------------------------------------------------------------ SQLite

STATEMENT_CACHE_SIZE = 256
"""Prepared statements kept per SQLite connection; a command runs about twenty."""

MAX_ROWID = 2**63 - 1
"""SQLite's largest rowid; only once a table holds it does SQLite pick new rowids at random."""


class StatementCachingPool(SQLiteConnectionPool):
    """The library's SQLite pool, with a real prepared-statement cache.

    The library opens connections with ``cached_statements=True``, which Python
    reads as a cache of one statement: every statement of a command was parsed
    again each time. Otherwise the connection is set up exactly as the library does.
    """

    def _create_connection(self) -> SQLiteConnection:
        try:
            connection = sqlite3.connect(
                database=self.db_name,
                uri=True,
                check_same_thread=False,
                isolation_level=None,
                cached_statements=STATEMENT_CACHE_SIZE,
                timeout=self.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT,
            )
        except (sqlite3.Error, TypeError) as error:
            raise InterfaceError(error) from error
        if not self.is_sqlite_memory_mode and not self.is_journal_mode_wal:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode;")
            if cursor.fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL;")
                self.journal_mode_was_changed_to_wal = True
            self.is_journal_mode_wal = True
        connection.row_factory = sqlite3.Row
        return SQLiteConnection(sqlite_conn=connection, max_age=self.max_age)


def swap_sqlite_datastore(factory: SQLiteFactory, datastore_class: Callable[..., Any]) -> None:
    """Replace the datastore the library's factory built by one of ``datastore_class``, on a caching pool.

    Done before any connection exists: the library's datastore is built inline in
    the factory's constructor, with no way to choose its class or its pool's.
    """
    unused = factory.datastore
    datastore = datastore_class(
        db_name=unused.pool.db_name,
        lock_timeout=unused.pool.lock_timeout,
        single_row_tracking=unused.single_row_tracking,
        originator_id_type=unused.originator_id_type,
    )
    datastore.pool.close()
    datastore.pool = StatementCachingPool(db_name=unused.pool.db_name, lock_timeout=unused.pool.lock_timeout)
    unused.close()
    factory.datastore = datastore


def insert_sqlite_events(
    recorder: SQLiteApplicationRecorder,
    c: SQLiteCursor,
    stored_events: Sequence[StoredEvent],
    then: Callable[[sqlite3.Cursor, list[int]], None],
) -> list[int]:
    """The library's ``_insert_events`` in one ``executemany``; ``then`` runs in the same transaction.

    The library runs a statement per event to read each rowid. The insert comes
    first, so it takes the write lock as the library's would. SQLite gives each
    new row the rowid one above the largest, unless the largest is already the
    maximum possible; below that, the new rows are the ones numbered up to the
    new largest rowid.
    """
    if not stored_events:
        return []
    cursor = c.sqlite_cursor
    cursor.executemany(
        recorder.insert_events_statement,
        [
            (
                event.originator_id.hex if isinstance(event.originator_id, UUID) else event.originator_id,
                event.originator_version,
                event.topic,
                event.state,
            )
            for event in stored_events
        ],
    )
    last = int(cursor.execute(recorder.select_max_notification_id_statement).fetchone()[0])
    if last >= MAX_ROWID:
        raise InvariantBroken("rowids exhausted: SQLite numbers new rows at random from here")
    positions = list(range(last - len(stored_events) + 1, last + 1))
    then(cursor, positions)
    return positions


# -------------------------------------------------------------------- PostgreSQL


def bound_postgres_lock_waits(factory: PostgresFactory, datastore_class: type[Any]) -> None:
    """Make the datastore the library's factory built one of ``datastore_class``, every session under the lock timeout.

    The library builds its datastore inline and sets its lock timeout only inside
    its insert transactions; a read, or the index creation of opening, waited
    without limit. Only the class of that same object changes, before any
    connection exists.
    """
    factory.datastore.__class__ = datastore_class
    lock_timeout_ms = factory.datastore.lock_timeout * 1000
    if lock_timeout_ms <= 0:
        raise InvariantBroken("the ledger always sets a lock timeout")
    connect_options = factory.datastore.pool.kwargs
    if not isinstance(connect_options, dict):
        raise InvariantBroken("the library's pool keeps its connection options in a dict")
    connect_options["options"] = f"-c lock_timeout={lock_timeout_ms}"


def drop_insert_function_statement(recorder: PostgresApplicationRecorder) -> None:
    """Leave out the library's insert function when database functions are off (the ledger's setting).

    Not used then; replacing it at every start only costs a catalogue write.
    """
    if not recorder.datastore.enable_db_functions:
        del recorder.sql_create_statements[recorder.create_insert_function_statement_index]


def insert_postgres_events(
    recorder: PostgresApplicationRecorder,
    stored_events: Sequence[StoredEvent],
    kwargs: dict[str, Any],
    then: Callable[[QmarkCursor, list[int]], None],
) -> list[int]:
    """The library's insert (lock timeout, table lock, NOTIFY, insert) in pipeline mode, then ``then``: one transaction.

    In pipeline mode statements are sent without waiting for each answer: the
    lock timeout, the table lock, the notification, the insert and the search
    path for what follows cost one round trip together. ``then`` (the chain, the
    trade numbers, the views) runs in the ordinary mode: it reads results as it
    goes, and the views roll back to a savepoint when one fails. It is given a
    cursor that takes ``?`` parameters, with the store's schema on the search path.
    """
    if not stored_events:
        return []
    with recorder.datastore.get_connection() as connection, connection.transaction():
        with connection.pipeline() as pipeline, connection.cursor() as library_cursor:
            library_cursor.execute(SQL("SET LOCAL search_path TO {0}").format(Identifier(recorder.datastore.schema)))
            recorder._insert_stored_events(library_cursor, stored_events, **kwargs)
            # A version taken is raised here, as the IntegrityError it is, before anything else is sent.
            pipeline.sync()
            positions = [row["notification_id"] for row in library_cursor.fetchall()]
        with connection.cursor(row_factory=tuple_row) as raw:
            then(QmarkCursor(raw, recorder.datastore.lock_timeout), positions)
    return positions
