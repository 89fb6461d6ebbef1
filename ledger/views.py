"""Keeping the read models current on the SQLite store, each event applied exactly once.

Three paths, one rule: a view's rows and its tracking record (the position of
the last event applied) change in the same transaction.

- **Inline.** When a command saves events, the views that were current before it
  apply them inside the very transaction that inserts the events: queries read
  their writes, and the command pays no second commit. A view that fails here
  is rolled back to a savepoint and simply falls behind; the command succeeds.
- **Catch-up.** Polls the event table in batches (the SQLite recorder has no
  subscription), one write transaction per batch.
- **Rebuild.** Builds a fresh copy of a view from position 0 beside the live
  one, and swaps it in, in one transaction, once it has caught up; queries
  keep reading the live table meanwhile.

Tracking records live in the library's ``tracking`` table, one row per view,
named ``<application>.<view>``, so several views share one database file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent, Tracking
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from domain import DepositEvent, LedgerError
from projections.view import BatchRecorder, Cursor, Positioned, View

CATCH_UP_BATCH = 1000
"""Events applied per transaction when catching up or rebuilding."""

LOCK_TIMEOUT_S = 30.0
"""How long a catch-up waits for the write lock held by a command."""

Progress = Callable[[int, int], None]
"""Called with (events done, events to do) after each batch."""


class ViewFailed(LedgerError):
    """A view cannot apply an event (a poison event): it stops there, nothing is skipped."""

    def __init__(self, view: str, position: int, reason: str) -> None:
        super().__init__(f"view {view} stopped at position {position}: {reason}")
        self.view = view
        self.position = position
        self.reason = reason


@dataclass(frozen=True)
class ViewStatus:
    """Where a view stands against the head of the event log."""

    name: str
    position: int
    head: int
    error: str | None = None

    @property
    def lag(self) -> int:
        """Events committed but not yet applied to the view."""
        return self.head - self.position


class LedgerRecorder(SQLiteProcessRecorder):
    """The SQLite event recorder, with a hook inside the transaction that inserts events."""

    after_insert: Callable[[SQLiteCursor, Sequence[int], Sequence[DepositEvent]], None] | None = None

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        events = kwargs.get("deposit_events")
        if self.after_insert is not None and positions and events:
            self.after_insert(c, positions, events)
        return positions


class SQLiteViews(BatchRecorder):
    """The read models of one ledger, in the same SQLite file as its events."""

    def __init__(self, path: Path, application_name: str, mapper: Mapper[Any], views: Sequence[type[View]]) -> None:
        """Open a connection of its own to ``path``; ``views`` are the view classes to keep."""
        self.application_name = application_name
        self.mapper = mapper
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=LOCK_TIMEOUT_S)
        self.views: dict[str, View] = {view.name: view(view=self) for view in views}
        self._current_after_insert = True

    def close(self) -> None:
        """Close the views' connection."""
        self.connection.close()

    def tracking_name(self, view: View, *, rebuilding: bool = False) -> str:
        """The tracking record's name for ``view`` (or for its rebuild in progress)."""
        name = f"{self.application_name}.{view.name}"
        return f"{name}.rebuild" if rebuilding else name

    def view(self, name: str) -> View:
        """The view called ``name``; ``LookupError`` naming the known ones otherwise."""
        try:
            return self.views[name]
        except KeyError:
            raise LookupError(f"unknown view {name!r}: expected one of {', '.join(self.views)}") from None

    # ------------------------------------------------------------------ set-up

    def ensure_tables(self) -> None:
        """Create missing view tables; a table that vanished loses its tracking record too.

        Without that, a dropped table would be recreated empty while its tracking
        record claimed every event applied: rows would be silently lost.
        """
        with self._write() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS projection_errors "
                "(name TEXT PRIMARY KEY, position INTEGER NOT NULL, reason TEXT NOT NULL)"
            )
            for view in self.views.values():
                cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (view.table,))
                if cursor.fetchone() is None:
                    for statement in view.create_statements(view.table) + view.index_statements(view.table):
                        cursor.execute(statement)
                    cursor.execute("DELETE FROM tracking WHERE application_name = ?", (self.tracking_name(view),))

    # ---------------------------------------------------------- tracking recorder

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a position on its own (the library's tracking-recorder protocol)."""
        with self._write() as cursor:
            _track(cursor, tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        """The last position recorded under ``application_name``, or None."""
        row = self.connection.execute(
            "SELECT notification_id FROM tracking WHERE application_name = ?", (application_name,)
        ).fetchone()
        return None if row is None else int(row[0])

    def record_batch(self, view: View, batch: Sequence[Positioned], tracking: Tracking) -> None:
        """Apply ``batch`` to the live tables of ``view`` and record ``tracking``, atomically."""
        with self._write() as cursor:
            view.apply(cursor, view.table, batch)
            _track(cursor, tracking)

    # ------------------------------------------------------------------ inline

    def apply_inline(self, cursor: SQLiteCursor, positions: Sequence[int], events: Sequence[DepositEvent]) -> None:
        """Apply just-inserted events to every view that was current, inside the insert's transaction."""
        batch = [Positioned(position, event) for position, event in zip(positions, events, strict=True)]
        self._current_after_insert = True
        for view in self.views.values():
            name = self.tracking_name(view)
            cursor.execute("SELECT notification_id FROM tracking WHERE application_name = ?", (name,))
            row = cursor.fetchone()
            if (row[0] if row else 0) != positions[0] - 1:
                self._current_after_insert = False
                continue
            cursor.execute("SAVEPOINT inline_view")
            try:
                view.apply(cursor, view.table, batch)
                _track(cursor, Tracking(name, positions[-1]))
            except Exception:
                # The command must not fail because a read model cannot follow:
                # undo this view's part, let it fall behind, and let catch-up report why.
                cursor.execute("ROLLBACK TO inline_view")
                self._current_after_insert = False
            cursor.execute("RELEASE inline_view")

    @property
    def current_after_insert(self) -> bool:
        """Whether the last insert brought every view up to date."""
        return self._current_after_insert

    # ---------------------------------------------------------------- catch-up

    def head(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        row = self.connection.execute("SELECT MAX(rowid) FROM stored_events").fetchone()
        return int(row[0] or 0)

    def status(self) -> list[ViewStatus]:
        """Each view's position, the head of the log, and any error that stopped it."""
        head = self.head()
        errors = {
            name: f"position {position}: {reason}"
            for name, position, reason in self.connection.execute(
                "SELECT name, position, reason FROM projection_errors"
            )
        }
        return [
            ViewStatus(
                name=view.name,
                position=self.max_tracking_id(self.tracking_name(view)) or 0,
                head=head,
                error=errors.get(view.name),
            )
            for view in self.views.values()
        ]

    def catch_up(self, names: Sequence[str] | None = None, progress: Progress | None = None) -> int:
        """Apply every pending event to the named views (all by default); return how many.

        Every view is tried; if any hit a poison event, the first failure is raised
        after the others have caught up.
        """
        applied = 0
        failures: list[ViewFailed] = []
        for name in names or list(self.views):
            view = self.view(name)
            try:
                applied += self._follow(view, view.table, self.tracking_name(view), progress)
            except ViewFailed as failure:
                failures.append(failure)
        if failures:
            raise failures[0]
        return applied

    def rebuild(self, name: str, progress: Progress | None = None) -> int:
        """Build ``name`` afresh from position 0 beside the live copy, then swap it in."""
        view = self.view(name)
        building = f"{view.table}__rebuild"
        tracking_name = self.tracking_name(view, rebuilding=True)
        with self._write() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {building}")
            # Indexed from the start: a view reads its own rows while it applies (the audit
            # trail, each deposit's last row), and on an unindexed copy every such lookup
            # scans the table, which makes the rebuild quadratic.
            for statement in view.create_statements(building) + view.index_statements(building):
                cursor.execute(statement)
            cursor.execute("DELETE FROM tracking WHERE application_name = ?", (tracking_name,))
        applied = self._follow(view, building, tracking_name, progress)
        with self._write() as cursor:
            # Events committed since the last batch are applied under the same lock as the swap.
            done, failure = self._apply_pending(cursor, view, building, tracking_name, limit=None)
            if failure is not None:
                raise failure
            applied += done
            position = self._position(cursor, tracking_name)
            cursor.execute(f"DROP TABLE IF EXISTS {view.table}")
            # Index names follow the table's, and a renamed table keeps its indexes' names:
            # drop the copy's, so that the live names (and the next rebuild's) stay free.
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (building,)
            )
            for (index,) in cursor.fetchall():
                cursor.execute(f"DROP INDEX {index}")
            cursor.execute(f"ALTER TABLE {building} RENAME TO {view.table}")
            for statement in view.index_statements(view.table):
                cursor.execute(statement)
            cursor.execute(
                "DELETE FROM tracking WHERE application_name IN (?, ?)", (tracking_name, self.tracking_name(view))
            )
            if position:
                _track(cursor, Tracking(self.tracking_name(view), position))
            cursor.execute("DELETE FROM projection_errors WHERE name = ?", (view.name,))
        return applied

    def _follow(self, view: View, table: str, tracking_name: str, progress: Progress | None) -> int:
        applied = 0
        total = max(0, self.head() - (self.max_tracking_id(tracking_name) or 0))
        while True:
            with self._write() as cursor:
                done, failure = self._apply_pending(cursor, view, table, tracking_name, limit=CATCH_UP_BATCH)
            # Raised only now, after the events before the poison one were committed.
            if failure is not None:
                raise failure
            if done == 0:
                return applied
            applied += done
            if progress is not None:
                progress(applied, max(total, applied))

    def _apply_pending(
        self, cursor: sqlite3.Cursor, view: View, table: str, tracking_name: str, *, limit: int | None
    ) -> tuple[int, ViewFailed | None]:
        # Inside a write transaction: read the position, then the events after it.
        position = self._position(cursor, tracking_name)
        cursor.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (position, -1 if limit is None else limit),
        )
        rows = cursor.fetchall()
        if not rows:
            return 0, None
        cursor.execute("SAVEPOINT view_batch")
        try:
            view.apply(cursor, table, [self._positioned(row) for row in rows])
        except Exception:
            cursor.execute("ROLLBACK TO view_batch")
            cursor.execute("RELEASE view_batch")
            return self._apply_one_by_one(cursor, view, table, tracking_name, rows)
        cursor.execute("RELEASE view_batch")
        _track(cursor, Tracking(tracking_name, rows[-1][0]))
        cursor.execute("DELETE FROM projection_errors WHERE name = ?", (view.name,))
        return len(rows), None

    def _apply_one_by_one(
        self, cursor: sqlite3.Cursor, view: View, table: str, tracking_name: str, rows: list[Any]
    ) -> tuple[int, ViewFailed | None]:
        # A batch failed: find the exact event, keep what comes before it, and stop there.
        applied = 0
        failure: ViewFailed | None = None
        for row in rows:
            cursor.execute("SAVEPOINT view_event")
            try:
                view.apply(cursor, table, [self._positioned(row)])
            except Exception as error:
                cursor.execute("ROLLBACK TO view_event")
                cursor.execute("RELEASE view_event")
                failure = ViewFailed(view.name, row[0], f"{type(error).__name__}: {error}".splitlines()[0])
                cursor.execute(
                    "INSERT OR REPLACE INTO projection_errors VALUES (?, ?, ?)",
                    (view.name, failure.position, failure.reason),
                )
                break
            cursor.execute("RELEASE view_event")
            applied += 1
        if applied:
            _track(cursor, Tracking(tracking_name, rows[applied - 1][0]))
        return applied, failure

    def _positioned(self, row: Sequence[Any]) -> Positioned:
        stored = StoredEvent(originator_id=row[1], originator_version=row[2], topic=row[3], state=row[4])
        event = self.mapper.to_domain_event(stored)
        assert isinstance(event, DepositEvent), f"position {row[0]} holds {type(event).__name__}"
        return Positioned(int(row[0]), event)

    @staticmethod
    def _position(cursor: sqlite3.Cursor, tracking_name: str) -> int:
        cursor.execute("SELECT notification_id FROM tracking WHERE application_name = ?", (tracking_name,))
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    # ----------------------------------------------------------------- queries

    def read(self) -> sqlite3.Cursor:
        """A cursor for queries; each statement reads a committed, consistent state."""
        return self.connection.cursor()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        # BEGIN IMMEDIATE takes the write lock first, so what we read (the tracking
        # position) cannot go stale before we write.
        cursor = self.connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            if self.connection.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")


def _track(cursor: Cursor, tracking: Tracking) -> None:
    # The library's single-row tracking upsert: it only ever moves forward, so a
    # second catch-up racing over the same events fails instead of applying them twice.
    cursor.execute(
        "INSERT INTO tracking (application_name, notification_id) VALUES (?, ?) "
        "ON CONFLICT (application_name) DO UPDATE SET notification_id = excluded.notification_id "
        "WHERE tracking.notification_id < excluded.notification_id RETURNING notification_id",
        (tracking.application_name, tracking.notification_id),
    )
    if cursor.fetchone() is None:
        raise IntegrityError(f"{tracking.application_name} is already past position {tracking.notification_id}")
