"""Which event store a ledger uses: the one place that reads store URLs and knows SQL dialects.

- Nothing given: an SQLite file ``deposits.db`` in the working directory.
- A plain path, or ``sqlite:///path`` (``sqlite:////abs/path`` for an absolute one).
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?schema=NAME]``: a shared
  PostgreSQL database; several ledgers can share one database under different
  schemas.

The views and the auditor write their SQL once, with ``?`` placeholders and
unqualified table names; a :class:`Store` hands them connections and cursors
that speak its dialect.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError

from domain import LedgerError, MalformedInput

DEFAULT_SQLITE_FILE = "deposits.db"
STORE_ENV_VAR = "DEPOSIT_LEDGER_DB"
LOCK_TIMEOUT_S = 30
"""How long any statement waits for a lock another session holds, unless ``$DEPOSIT_LEDGER_LOCK_TIMEOUT`` says."""
LOCK_TIMEOUT_ENV_VAR = "DEPOSIT_LEDGER_LOCK_TIMEOUT"
MAX_LOCK_TIMEOUT_S = 3600
CONNECT_TIMEOUT_S = 5
"""How long to wait for a PostgreSQL server to answer."""

APPLICATION_TABLE_PREFIX = "depositledger"
"""The library names PostgreSQL tables after the application: ``DepositLedger`` in lower case."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SYSTEM_SCHEMA = re.compile(r"^(information_schema|pg_.*)$")
"""PostgreSQL's own schemas (``pg_catalog``, ``pg_toast``, ``information_schema``...): never a ledger's."""


class StoreUnavailable(LedgerError):
    """The store cannot be reached or opened: a bad URL, a server down, a wrong password."""


class StoreLocked(LedgerError):
    """Another session held a lock the command needed for longer than the lock timeout: nothing was written."""


class StoreNotMigrated(MalformedInput):
    """The store has no ledger tables (or an older release's): ``deposit-ledger migrate`` creates them."""


UNAVAILABLE: tuple[type[BaseException], ...] = (
    StoreUnavailable,
    StoreLocked,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OperationalError,
    InterfaceError,
    sqlite3.OperationalError,
)
"""Errors that mean the store cannot be reached just now (a server restarting, a locked file):
a long-lived process drops its connections and tries again later."""


@dataclass(frozen=True)
class Store:
    """A parsed store location: how the library reaches it, and how our own SQL does."""

    url: str
    kind: Literal["sqlite", "postgresql"]
    sqlite_path: Path | None = None
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = "public"
    lock_timeout_s: int = LOCK_TIMEOUT_S
    """How long a statement waits for another session's lock before the command gives up."""

    @property
    def events_table(self) -> str:
        """The table the library stores events in (named after the application on PostgreSQL)."""
        return "stored_events" if self.kind == "sqlite" else f"{APPLICATION_TABLE_PREFIX}_events"

    @property
    def snapshots_table(self) -> str:
        """The table the library stores snapshots in."""
        return "stored_snapshots" if self.kind == "sqlite" else f"{APPLICATION_TABLE_PREFIX}_snapshots"

    @property
    def position_column(self) -> str:
        """The events table's column that numbers events in the global log."""
        return "rowid" if self.kind == "sqlite" else "notification_id"

    @property
    def deposit_key(self) -> str:
        """An SQL expression of the events table's deposit id as 32 hex digits, as the views keep it."""
        return "originator_id" if self.kind == "sqlite" else "replace(originator_id::text, '-', '')"

    @property
    def position_key(self) -> str:
        """The column type of a primary key holding event positions.

        On SQLite ``INTEGER PRIMARY KEY`` makes the key the row id itself: the table
        is one b-tree, not a table and a unique index beside it (a command writes two
        pages fewer). PostgreSQL needs 64 bits.
        """
        return "INTEGER PRIMARY KEY" if self.kind == "sqlite" else "BIGINT PRIMARY KEY"

    @property
    def blob_type(self) -> str:
        """The SQL type of raw bytes."""
        return "BLOB" if self.kind == "sqlite" else "BYTEA"

    def environment(self) -> dict[str, str]:
        """The eventsourcing library's settings for this store."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            return {
                "PERSISTENCE_MODULE": "ledger.store.recorder:LedgerSQLiteFactory",
                "APPLICATION_RECORDER_TOPIC": "ledger.store.recorder:LedgerRecorder",
                "SQLITE_DBNAME": str(self.sqlite_path),
                "SQLITE_LOCK_TIMEOUT": str(self.lock_timeout_s),
            }
        return {
            "PERSISTENCE_MODULE": "ledger.store.recorder:LedgerPostgresFactory",
            "APPLICATION_RECORDER_TOPIC": "ledger.store.recorder:PostgresLedgerRecorder",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S),
            "POSTGRES_LOCK_TIMEOUT": str(self.lock_timeout_s),
            # One connection kept open (a command uses one at a time); more while threads need them.
            "POSTGRES_POOL_SIZE": "1",
            "POSTGRES_MAX_OVERFLOW": "4",
            # The database-function insert path drops process recorders' tracking records in 9.5.6.
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        }

    def describe(self) -> str:
        """A short human description for messages (never the password)."""
        if self.kind == "sqlite":
            return f"SQLite file {self.sqlite_path}"
        return f"PostgreSQL database {self.dbname} on {self.host}:{self.port}, schema {self.schema}"

    # ----------------------------------------------------------- own connections

    def connect(self) -> Any:
        """A connection of our own, in autocommit mode, whose cursors take ``?`` placeholders."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            return sqlite3.connect(
                self.sqlite_path, isolation_level=None, check_same_thread=False, timeout=self.lock_timeout_s
            )
        return _PostgresConnection(self)

    @contextmanager
    def write_transaction(self, connection: Any) -> Iterator[Any]:
        """A write transaction on our own connection: committed on success, rolled back on error.

        On SQLite it takes the write lock first (``BEGIN IMMEDIATE``), so what it
        reads cannot go stale before it writes. On PostgreSQL callers lock the rows
        they depend on (``SELECT ... FOR UPDATE``).
        """
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")

    @contextmanager
    def read_snapshot(self) -> Iterator[Any]:
        """A connection inside one read transaction: every query sees the same committed state."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN" if self.kind == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield connection
            cursor.execute("ROLLBACK")
        finally:
            connection.close()

    def for_update(self) -> str:
        """The clause that locks the rows a write transaction reads (none needed on SQLite)."""
        return "" if self.kind == "sqlite" else " FOR UPDATE"

    def deposit_param(self, deposit_hex: str) -> Any:
        """A deposit id as a parameter compared with the events table's ``originator_id``."""
        return deposit_hex if self.kind == "sqlite" else UUID(deposit_hex)

    def table_exists(self, cursor: Any, table: str) -> bool:
        """Whether ``table`` exists (in the store's schema)."""
        if self.kind == "sqlite":
            cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        else:
            cursor.execute("SELECT to_regclass(?) IS NOT NULL", (f"{self.schema}.{table}",))
            return bool(cursor.fetchone()[0])
        return cursor.fetchone() is not None

    def missing_tables(self, tables: list[str]) -> list[str]:
        """Which of ``tables`` the store lacks, read from the catalogue alone (no table is locked or created)."""
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            if not self.sqlite_path.exists():
                return list(tables)
        connection = self.connect()
        try:
            cursor = connection.cursor()
            return [table for table in tables if not self.table_exists(cursor, table)]
        finally:
            connection.close()

    def ensure_schema(self, connection: Any) -> None:
        """Create the PostgreSQL schema the URL names, if missing (and the role may)."""
        if self.kind != "postgresql":
            return
        cursor = connection.cursor()
        cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", (self.schema,))
        if cursor.fetchone() is not None:
            return
        try:
            cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        except psycopg.errors.InsufficientPrivilege:
            raise StoreUnavailable(
                f"schema {self.schema} does not exist in {self.dbname}, and this role may not create it"
            ) from None

    def table_columns(self, cursor: Any, table: str) -> tuple[str, ...]:
        """The columns of ``table`` (in the store's schema), in order."""
        if self.kind == "sqlite":
            cursor.execute("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))
        else:
            cursor.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position",
                (self.schema, table),
            )
        return tuple(str(row[0]) for row in cursor.fetchall())

    def index_names(self, cursor: Any, table: str) -> set[str]:
        """The names of the secondary indexes of ``table`` (not its primary key's), from the catalogue."""
        if self.kind == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
            )
        else:
            cursor.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = ? AND tablename = ? AND indexname != ?",
                (self.schema, table, f"{table}_pkey"),
            )
        return {str(row[0]) for row in cursor.fetchall()}

    def drop_indexes(self, cursor: Any, table: str) -> None:
        """Drop the secondary indexes of ``table`` (its primary key stays)."""
        for index in sorted(self.index_names(cursor, table)):
            cursor.execute(f"DROP INDEX {index}")

    def rename_table(self, cursor: Any, old: str, new: str) -> None:
        """Rename a table, and on PostgreSQL its primary-key index, so the old name is free again."""
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")
        if self.kind == "postgresql":
            cursor.execute(f"ALTER INDEX IF EXISTS {old}_pkey RENAME TO {new}_pkey")

    def serialise_schema_changes(self, cursor: Any) -> None:
        """Inside a transaction: wait for any other process creating tables in this store."""
        if self.kind == "postgresql":
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (self._schema_lock_key,))

    @contextmanager
    def creating_tables(self, connection: Any) -> Iterator[None]:
        """While held on ``connection``, no other process creates tables in this store.

        The library creates its tables in transactions of its own: on PostgreSQL
        two processes doing that at once in a new schema collide in the catalogue.
        SQLite serialises schema changes itself.
        """
        if self.kind == "sqlite":
            yield
            return
        connection.execute("SELECT pg_advisory_lock(hashtext(?))", (self._schema_lock_key,))
        try:
            yield
        finally:
            with suppress(*UNAVAILABLE):
                connection.execute("SELECT pg_advisory_unlock(hashtext(?))", (self._schema_lock_key,))

    @contextmanager
    def deposit_lock(self, connection: Any, deposit_hex: str) -> Iterator[None]:
        """While held on ``connection``, other processes' commands on this deposit wait (PostgreSQL).

        Writers of one deposit then take turns instead of loading the same version
        and all but one losing the write: under contention, wasted loads and
        retries were most of the work. The optimistic check stays the guarantee;
        this only makes it rarely needed. SQLite writers take turns on the file's
        lock already. A session lock, so a command may span several transactions;
        a dropped connection releases it.
        """
        if self.kind == "sqlite":
            yield
            return
        key = (self._schema_lock_key, deposit_hex)
        connection.execute("SELECT pg_advisory_lock(hashtext(?), hashtext(?))", key)
        try:
            yield
        finally:
            with suppress(*UNAVAILABLE):
                connection.execute("SELECT pg_advisory_unlock(hashtext(?), hashtext(?))", key)

    @property
    def _schema_lock_key(self) -> str:
        return f"deposit-ledger:{self.schema}"


def _psycopg_connect(store: Store) -> Any:
    # In autocommit mode: our transactions are explicit; a LISTEN takes effect at once.
    try:
        return psycopg.connect(
            host=store.host,
            port=store.port,
            user=store.user,
            password=store.password,
            dbname=store.dbname,
            connect_timeout=CONNECT_TIMEOUT_S,
            autocommit=True,
            options=f"-c search_path={store.schema} -c lock_timeout={store.lock_timeout_s * 1000}",
        )
    except psycopg.OperationalError as error:
        raise StoreUnavailable(f"cannot reach {store.describe()}: {_first_line(error)}") from None


class NotifyListener:
    """A PostgreSQL session that LISTENs on one channel: it wakes a worker when events commit.

    The library's recorder sends ``NOTIFY`` on its channel inside every insert
    transaction; PostgreSQL delivers it when that transaction commits.
    """

    def __init__(self, store: Store, channel: str) -> None:
        """Connect and start listening at once: nothing committed from now on goes unnoticed."""
        from psycopg import sql

        assert store.kind == "postgresql"
        self._connection = _psycopg_connect(store)
        self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a notification; True if one (or more) arrived."""
        notified = any(True for _ in self._connection.notifies(timeout=timeout_s, stop_after=1))
        if notified:
            # Many commits, one wake-up: the catch-up that follows reads them all.
            for _ in self._connection.notifies(timeout=0):
                pass
        return notified

    def close(self) -> None:
        """Stop listening and close the session."""
        self._connection.close()


class _PostgresConnection:
    """A psycopg connection whose cursors accept ``?`` placeholders and return tuples."""

    def __init__(self, store: Store) -> None:
        self._connection = _psycopg_connect(store)
        self._lock_timeout_s = store.lock_timeout_s

    def cursor(self, name: str | None = None) -> QmarkCursor:
        """A cursor; a named one streams its rows from the server."""
        if name is None:
            return QmarkCursor(self._connection.cursor(), self._lock_timeout_s)
        return QmarkCursor(self._connection.cursor(name=name), self._lock_timeout_s)

    def execute(self, statement: str, params: Any = ()) -> QmarkCursor:
        """Run one statement on a fresh cursor."""
        cursor = self.cursor()
        cursor.execute(statement, params)
        return cursor

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


class QmarkCursor:
    """A psycopg cursor that takes our SQL: ``?`` placeholders become ``%s``; a lock timeout is :class:`StoreLocked`."""

    def __init__(self, cursor: Any, lock_timeout_s: int = LOCK_TIMEOUT_S) -> None:
        self._cursor = cursor
        self._lock_timeout_s = lock_timeout_s

    def execute(self, statement: str, params: Any = ()) -> QmarkCursor:
        try:
            self._cursor.execute(statement.replace("?", "%s"), params or None)
        except psycopg.errors.LockNotAvailable:
            raise StoreLocked(
                f"another session held a lock the ledger needed for more than {self._lock_timeout_s} s "
                "(the lock timeout); nothing was written: try again"
            ) from None
        return self

    def executemany(self, statement: str, params: Any) -> None:
        self._cursor.executemany(statement.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    def fetchmany(self, size: int) -> Any:
        return self._cursor.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def close(self) -> None:
        self._cursor.close()


def resolve_store(url: str | None = None) -> Store:
    """Parse ``url`` (or ``$DEPOSIT_LEDGER_DB``, or the default) into a :class:`Store`."""
    chosen = url if url else os.environ.get(STORE_ENV_VAR) or DEFAULT_SQLITE_FILE
    text = chosen.strip()
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("postgresql", "postgres"):
        return _postgres_store(chosen)
    if scheme and scheme != "sqlite":
        raise MalformedInput(f"unsupported store URL {chosen!r}: expected a file path, sqlite:/// or postgresql://")
    if scheme == "sqlite":
        rest = text.partition("://")[2]
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
    return Store(url=chosen, kind="sqlite", sqlite_path=path, lock_timeout_s=lock_timeout_setting())


def lock_timeout_setting() -> int:
    """``$DEPOSIT_LEDGER_LOCK_TIMEOUT`` in whole seconds (1 to 3600), else :data:`LOCK_TIMEOUT_S`."""
    text = os.environ.get(LOCK_TIMEOUT_ENV_VAR, "").strip()
    if not text:
        return LOCK_TIMEOUT_S
    if not text.isdigit() or not 1 <= int(text) <= MAX_LOCK_TIMEOUT_S:
        raise MalformedInput(f"{LOCK_TIMEOUT_ENV_VAR} must be whole seconds from 1 to {MAX_LOCK_TIMEOUT_S}")
    return int(text)


def locked(store: Store) -> StoreLocked:
    """The one line for a lock another session held longer than the store's lock timeout."""
    return StoreLocked(
        f"another session held a lock on {store.describe()} for more than {store.lock_timeout_s} s; "
        "nothing was written: try again"
    )


def _postgres_store(url: str) -> Store:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 5432
    except ValueError:
        raise MalformedInput(
            "malformed PostgreSQL URL: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
        ) from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not parts.username or not dbname or "/" in dbname:
        raise MalformedInput("malformed PostgreSQL URL: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    query = parse_qs(parts.query)
    unknown = set(query) - {"schema"}
    if unknown:
        raise MalformedInput(f"unsupported PostgreSQL URL option(s): {', '.join(sorted(unknown))}; only schema")
    schema = query.get("schema", ["public"])[-1]
    if not _SCHEMA_NAME.match(schema):
        raise MalformedInput(f"schema {schema!r} must be lower-case letters, digits and _, at most 63")
    if _SYSTEM_SCHEMA.match(schema):
        raise MalformedInput(f"schema {schema} is PostgreSQL's own: choose a schema of the ledger's")
    return Store(
        url=url,
        kind="postgresql",
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        dbname=dbname,
        schema=schema,
        lock_timeout_s=lock_timeout_setting(),
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
