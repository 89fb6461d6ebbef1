"""Keeping the read models current, each event applied exactly once, on SQLite or PostgreSQL.

Three paths, one rule: a view's rows and its tracking record (the position of
the last event applied) change in the same transaction.

- **Inline.** When a command saves events, the views that were current before it
  apply them inside the very transaction that inserts the events: queries read
  their writes, and the command pays no second commit. A view that fails here
  is rolled back to a savepoint and simply falls behind; the command succeeds.
- **Catch-up.** Reads the events after the view's position in batches, one write
  transaction per batch (the SQLite recorder has no subscription; PostgreSQL
  workers are woken by LISTEN/NOTIFY and then do the same).
- **Rebuild.** Builds a fresh copy of a view from position 0 beside the live
  one, and swaps it in, in one transaction, once it has caught up; queries
  keep reading the live table meanwhile.

Tracking records live in ``view_tracking``, one row per view. They only move
forward: a second process racing over the same events fails its transaction
instead of applying them twice. On PostgreSQL a catch-up locks its view's row
first, so concurrent workers take turns instead of colliding.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent

from domain import DepositEvent, LedgerError
from domain.reconciliation import RECONCILIATION_TYPES
from ledger.store.urls import Store
from ledger.views.collector import collect_young, collector_paused
from projections.view import Carry, Cursor, Positioned, View

CATCH_UP_BATCH = 1000
"""Events applied per transaction when catching up."""

REBUILD_BATCH = 20_000
"""Events applied per transaction when rebuilding: a deposit's rows are written once per
batch however many of its events the batch holds, so larger batches write less (measured
over a million events: 25,000 events/s at 10,000 a batch, 29,000 at 20,000, peak memory
190 and 220 MiB)."""

INLINE_CARRY_LIMIT = 2_000
"""Deposits whose view rows a process remembers between its own commands (as many as it caches)."""

Progress = Callable[[int, int], None]
"""Called with (events done, events to do) after each batch."""

StopRequested = Callable[[], bool]
"""Asked after each committed batch: True ends a catch-up there (the rest stays pending)."""


class ViewFailed(LedgerError):
    """A view cannot apply an event (a poison event): it stops there, nothing is skipped."""

    def __init__(self, view: str, position: int, reason: str) -> None:
        super().__init__(f"view {view} stopped at position {position}: {reason}")
        self.view = view
        self.position = position
        self.reason = reason


@dataclass
class _Copy:
    """A view's copy being rebuilt: the view, the copy's table, the copy's tracking name, what it carries.

    ``carried_to`` is the position up to which this rebuild committed the copy: the
    carry is exact only while the copy's tracking row still stands there (another
    rebuild of the same view may have dropped and restarted the copy meanwhile).
    """

    view: View
    table: str
    tracking_name: str
    carry: Carry = field(default_factory=Carry)
    carried_to: int = 0


@dataclass(frozen=True)
class ViewStatus:
    """Where a view stands against the head of the event log."""

    name: str
    position: int
    head: int
    error: str | None = None

    @property
    def lag(self) -> int:
        """Events committed but not yet applied to the view (never negative)."""
        return max(0, self.head - self.position)


class ViewKeeper:
    """The read models of one ledger, kept in the same database as its events: the one runner of its views.

    Catch-up, rebuild and inline application all apply batches through
    :meth:`View.apply` and move the view's tracking row in the same transaction.
    """

    OWN_TABLES = ("view_tracking", "projection_errors")
    """The tables of the views' positions and stopping errors, beside the views' own."""

    def __init__(
        self, store: Store, mapper: Mapper[Any], views: Sequence[type[View]], connection: Any | None = None
    ) -> None:
        """Keep ``views`` (the view classes) on a connection of their own to ``store`` (or ``connection``)."""
        self.store = store
        self.mapper = mapper
        self.connection = connection if connection is not None else store.connect()
        self.views: dict[str, View] = {view.name: view() for view in views}
        self._current_after_insert = True
        # What the views wrote inline, per deposit: exact while their tracking rows stay
        # where this process's last committed insert left them (_carried_to).
        self._inline_carries = {name: Carry(INLINE_CARRY_LIMIT) for name in self.views}
        self._carried_to: int | None = None
        self._carrying: int | None = None
        position = store.position_column
        self._select_after = (
            f"SELECT {position}, originator_id, originator_version, topic, state FROM {self.store.events_table} "
            f"WHERE {position} > ? ORDER BY {position}"
        )

    def close(self) -> None:
        """Close the views' connection."""
        self.connection.close()

    def view(self, name: str) -> View:
        """The view called ``name``; ``LookupError`` naming the known ones otherwise."""
        try:
            return self.views[name]
        except KeyError:
            raise LookupError(f"unknown view {name!r}: expected one of {', '.join(self.views)}") from None

    # ------------------------------------------------------------------ set-up

    def tables_current(self) -> bool:
        """Whether every view's table exists with this release's columns and indexes (the catalogue alone is read)."""
        cursor = self.connection.cursor()
        return all(
            self.store.table_columns(cursor, view.table) == view.columns
            and view.index_names(view.table) <= self.store.index_names(cursor, view.table)
            for view in self.views.values()
        ) and all(self.store.table_exists(cursor, table) for table in self.OWN_TABLES)

    def ensure_tables(self) -> None:
        """Create missing view tables; a table that vanished restarts its view from position 0.

        Without that, a dropped table would be recreated empty while its tracking
        record claimed every event applied: rows would be silently lost. A table
        whose columns are not the view's (an older ledger's) is dropped and
        restarts the same way.
        """
        with self.store.write_transaction(self.connection) as cursor:
            self.store.serialise_schema_changes(cursor)
            cursor.execute("CREATE TABLE IF NOT EXISTS view_tracking (name TEXT PRIMARY KEY, position BIGINT NOT NULL)")
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS projection_errors "
                "(name TEXT PRIMARY KEY, position BIGINT NOT NULL, reason TEXT NOT NULL)"
            )
            for view in self.views.values():
                if self.store.table_exists(cursor, view.table) and (
                    self.store.table_columns(cursor, view.table) != view.columns
                ):
                    # Written by an older ledger: the view is derived, so rebuild it from the events.
                    cursor.execute(f"DROP TABLE {view.table}")
                if not self.store.table_exists(cursor, view.table):
                    statements = view.create_statements(view.table, self.store.position_key)
                    for statement in statements + view.index_statements(view.table):
                        cursor.execute(statement)
                    cursor.execute("DELETE FROM view_tracking WHERE name = ?", (view.name,))
                else:
                    # A table of this release's columns from before an index was added: add it (once, on open).
                    for statement in view.index_statements(view.table):
                        cursor.execute(statement)
                cursor.execute(
                    "INSERT INTO view_tracking (name, position) VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
                    (view.name,),
                )

    # ---------------------------------------------------------------- tracking

    def track(self, name: str, position: int) -> None:
        """Record that the view (or copy) ``name`` has applied the events up to ``position``; only ever forward."""
        with self.store.write_transaction(self.connection) as cursor:
            _track(cursor, name, position)

    def tracked_position(self, name: str) -> int | None:
        """The last position recorded for the view (or copy) ``name``, or None."""
        row = self.connection.cursor().execute("SELECT position FROM view_tracking WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def record_batch(self, view: View, batch: Sequence[Positioned]) -> None:
        """Apply ``batch`` to the live tables of ``view`` and track its last position, atomically."""
        with self.store.write_transaction(self.connection) as cursor:
            view.apply(cursor, view.table, batch)
            _track(cursor, view.name, batch[-1].position)

    # ------------------------------------------------------------------ inline

    def apply_inline(
        self, cursor: Cursor, previous_head: int, positions: Sequence[int], events: Sequence[DepositEvent]
    ) -> None:
        """Apply just-inserted events to every view that was current, inside the insert's transaction.

        A view was current if it had applied the event before these, ``previous_head``:
        not necessarily ``positions[0] - 1``, since PostgreSQL's numbering skips the
        numbers of inserts that were rolled back.
        """
        # Events of other aggregates (reconciliations) move the views' positions, nothing else.
        batch = [
            Positioned(position, event)
            for position, event in zip(positions, events, strict=True)
            if isinstance(event, DepositEvent)
        ]
        carried = self._carried_to == previous_head
        # Nothing is trusted until this transaction is known to have committed: neither what
        # the carries hold now, nor (for a commit another thread reports late) what they held.
        self._carried_to = self._carrying = None
        # Every current view under one savepoint. Lock order everywhere: the events (held by
        # the insert), then the views' tracking rows, then their tables; catch-ups and
        # rebuilds never wait on the events' lock.
        cursor.execute("SAVEPOINT inline_views")
        current = self._move_current(cursor, previous_head, positions[-1])
        self._current_after_insert = len(current) == len(self.views)
        for name, carry in self._inline_carries.items():
            # A view that is not current misses these events: whatever brings it up to date
            # later (a catch-up, a rebuild, another process), its carry would be behind.
            if not carried or name not in current:
                carry.clear()
        try:
            for view in current.values():
                if batch:
                    view.apply(cursor, view.table, batch, self._inline_carries[view.name])
        except Exception:
            # The carries may now describe rows about to be rolled back: _carrying stays
            # where it was, so they are never trusted again (the next insert clears them).
            cursor.execute("ROLLBACK TO SAVEPOINT inline_views")
            cursor.execute("RELEASE SAVEPOINT inline_views")
            self._apply_inline_one_by_one(cursor, list(current.values()), batch)
            return
        cursor.execute("RELEASE SAVEPOINT inline_views")
        self._carrying = positions[-1]

    def committed(self, head: int) -> None:
        """The transaction that inserted the events up to ``head`` has committed.

        What the views carry since the last insert is then exactly what their tables
        hold, for as long as their tracking rows stay at ``head``: no other writer
        has touched them. The next insert checks that before using it.
        """
        if self._carrying == head:
            self._carried_to = head

    def _move_current(self, cursor: Cursor, previous_head: int, head: int) -> dict[str, View]:
        # The views whose tracking row was at ``previous_head``, moved on to ``head`` in one
        # statement that also tells which they were (their rows locked, on PostgreSQL).
        names = list(self.views)
        cursor.execute(
            f"UPDATE view_tracking SET position = ? WHERE name IN ({', '.join('?' * len(names))}) AND position = ? "
            "RETURNING name",
            (head, *names, previous_head),
        )
        moved = {name for (name,) in cursor.fetchall()}
        return {name: view for name, view in self.views.items() if name in moved}

    def _apply_inline_one_by_one(self, cursor: Cursor, views: list[View], batch: list[Positioned]) -> None:
        # One view could not follow: let each view that can apply the events, alone.
        for view in views:
            cursor.execute("SAVEPOINT inline_view")
            try:
                view.apply(cursor, view.table, batch)
                _track(cursor, view.name, batch[-1].position)
            except Exception:
                # The command must not fail because a read model cannot follow:
                # undo this view's part, let it fall behind, and let catch-up report why.
                cursor.execute("ROLLBACK TO SAVEPOINT inline_view")
                self._current_after_insert = False
            cursor.execute("RELEASE SAVEPOINT inline_view")

    @property
    def current_after_insert(self) -> bool:
        """Whether the last insert brought every view up to date."""
        return self._current_after_insert

    # ---------------------------------------------------------------- catch-up

    def head(self) -> int:
        """The position of the newest event in the store (0 when empty)."""
        row = (
            self.connection.cursor()
            .execute(f"SELECT MAX({self.store.position_column}) FROM {self.store.events_table}")
            .fetchone()
        )
        return int(row[0] or 0)

    def status(self) -> list[ViewStatus]:
        """Each view's position, the head of the log, and any error that stopped it."""
        head = self.head()
        cursor = self.connection.cursor()
        cursor.execute("SELECT name, position, reason FROM projection_errors")
        errors = {name: f"position {position}: {reason}" for name, position, reason in cursor.fetchall()}
        return [
            ViewStatus(
                name=view.name, position=self.tracked_position(view.name) or 0, head=head, error=errors.get(view.name)
            )
            for view in self.views.values()
        ]

    def catch_up(
        self,
        names: Sequence[str] | None = None,
        progress: Progress | None = None,
        stop_requested: StopRequested | None = None,
    ) -> int:
        """Apply every pending event to the named views (all by default); return how many.

        Every view is tried; if any hit a poison event, the first failure is raised
        after the others have caught up. ``stop_requested`` is asked after each
        committed batch, so a worker asked to stop ends between batches.
        """
        applied = 0
        failures: list[ViewFailed] = []
        for name in names or list(self.views):
            view = self.view(name)
            if stop_requested is not None and stop_requested():
                break
            try:
                with collector_paused():
                    applied += self._follow(view, view.table, view.name, progress, stop_requested)
            except ViewFailed as failure:
                failures.append(failure)
        if failures:
            raise failures[0]
        return applied

    def rebuild(self, *names: str, progress: Progress | None = None) -> int:
        """Build the named views (all by default) afresh from position 0 beside the live copies, then swap them in.

        The copies are built together: each batch of events is read and decoded
        once for all of them. Returns how many events each copy applied.
        """
        views = [self.view(name) for name in names or list(self.views)]
        copies = [_Copy(view, f"{view.table}__rebuild", f"{view.name}.rebuild") for view in views]
        with self.store.write_transaction(self.connection) as cursor:
            for copy in copies:
                cursor.execute(f"DROP TABLE IF EXISTS {copy.table}")
                # With the indexes the view reads through from the start (the audit trail's, for
                # each deposit's last row): on an unindexed copy every such lookup would scan
                # the table, which makes the rebuild quadratic. The others come at the swap.
                statements = copy.view.create_statements(copy.table, self.store.position_key)
                for statement in statements + copy.view.lookup_index_statements(copy.table):
                    cursor.execute(statement)
                cursor.execute("DELETE FROM view_tracking WHERE name = ?", (copy.tracking_name,))
        with collector_paused():
            applied = self._build(copies, progress)
        arrived_since = [self._swap(copy) for copy in copies]
        return applied + max(arrived_since)

    def _build(self, copies: list[_Copy], progress: Progress | None) -> int:
        # Like _follow, for several copies at once.
        applied = 0
        total = max(0, self.head() - min(self.tracked_position(copy.tracking_name) or 0 for copy in copies))
        while done := self._build_batch(copies):
            applied += done
            # The batch's events and rows are gone by now: only what survives it is walked.
            collect_young()
            if progress is not None:
                progress(applied, max(total, applied))
        return applied

    def _build_batch(self, copies: list[_Copy]) -> int:
        # One transaction: the next events, decoded once, applied to every copy that has
        # not seen them. Returns how many events were read (0 at the head).
        failure: ViewFailed | None = None
        with self.store.write_transaction(self.connection) as cursor:
            positions = [self._position(cursor, copy.tracking_name, lock=True) for copy in copies]
            rows = self._rows_after(cursor, min(positions), REBUILD_BATCH)
            try:
                decoded: list[Positioned | None] | None = [self._positioned(row) for row in rows]
            except Exception:
                decoded = None  # a poison event: each copy finds it one by one
            for copy, position in zip(copies, positions, strict=True):
                if position != copy.carried_to:
                    copy.carry.clear()  # someone else has written this copy since
                start = bisect_right(rows, position, key=lambda row: int(row[0]))
                mine = decoded[start:] if decoded is not None else None
                _, failed = self._apply_rows(
                    cursor, copy.view, copy.table, copy.tracking_name, rows[start:], mine, copy.carry
                )
                failure = failure or failed
        # Raised only now, after the events before the poison one were committed.
        if failure is not None:
            raise failure
        if rows:
            for copy in copies:
                copy.carried_to = int(rows[-1][0])
        return len(rows)

    def _swap(self, copy: _Copy) -> int:
        view, building, tracking_name = copy.view, copy.table, copy.tracking_name
        with self.store.write_transaction(self.connection) as cursor:
            # Lock the live view's position, then apply what arrived since the last batch
            # under the same transaction as the swap.
            self._position(cursor, view.name, lock=True)
            done, failure = self._apply_pending(cursor, view, building, tracking_name, limit=None)
            if failure is not None:
                raise failure
            position = self._position(cursor, tracking_name)
            cursor.execute(f"DROP TABLE IF EXISTS {view.table}")
            # A renamed table keeps its indexes' names: drop the copy's, so that the live
            # names (and the next rebuild's) stay free.
            self.store.drop_indexes(cursor, building)
            self.store.rename_table(cursor, building, view.table)
            for statement in view.index_statements(view.table):
                cursor.execute(statement)
            cursor.execute("DELETE FROM view_tracking WHERE name = ?", (tracking_name,))
            cursor.execute("UPDATE view_tracking SET position = ? WHERE name = ?", (position, view.name))
            cursor.execute("DELETE FROM projection_errors WHERE name = ?", (view.name,))
        return done

    def _follow(
        self,
        view: View,
        table: str,
        tracking_name: str,
        progress: Progress | None,
        stop_requested: StopRequested | None = None,
    ) -> int:
        applied = 0
        total = max(0, self.head() - (self.tracked_position(tracking_name) or 0))
        while True:
            with self.store.write_transaction(self.connection) as cursor:
                done, failure = self._apply_pending(cursor, view, table, tracking_name, limit=CATCH_UP_BATCH)
            # Raised only now, after the events before the poison one were committed.
            if failure is not None:
                raise failure
            if done == 0:
                return applied
            applied += done
            collect_young()
            if progress is not None:
                progress(applied, max(total, applied))
            if stop_requested is not None and stop_requested():
                return applied

    def _apply_pending(
        self, cursor: Cursor, view: View, table: str, tracking_name: str, *, limit: int | None
    ) -> tuple[int, ViewFailed | None]:
        # Inside a write transaction: lock and read the position, then the events after it.
        position = self._position(cursor, tracking_name, lock=True)
        rows = self._rows_after(cursor, position, limit)
        return self._apply_rows(cursor, view, table, tracking_name, rows, None)

    def _rows_after(self, cursor: Cursor, position: int, limit: int | None) -> list[Any]:
        query = self._select_after if limit is None else f"{self._select_after} LIMIT {int(limit)}"
        cursor.execute(query, (position,))
        return list(cursor.fetchall())

    def _apply_rows(
        self,
        cursor: Cursor,
        view: View,
        table: str,
        tracking_name: str,
        rows: list[Any],
        decoded: list[Positioned | None] | None,
        carry: Carry | None = None,
    ) -> tuple[int, ViewFailed | None]:
        # Apply the rows (decoded already, or not) as one batch; if that fails, one by one.
        if not rows:
            return 0, None
        cursor.execute("SAVEPOINT view_batch")
        try:
            found = decoded if decoded is not None else [self._positioned(row) for row in rows]
            batch = [positioned for positioned in found if positioned is not None]
            if batch:
                view.apply(cursor, table, batch, carry)
        except Exception:
            if carry is not None:
                carry.clear()  # it may describe rows about to be rolled back
            cursor.execute("ROLLBACK TO SAVEPOINT view_batch")
            cursor.execute("RELEASE SAVEPOINT view_batch")
            return self._apply_one_by_one(cursor, view, table, tracking_name, rows)
        cursor.execute("RELEASE SAVEPOINT view_batch")
        _track(cursor, tracking_name, rows[-1][0])
        if tracking_name == view.name:
            # The live view got past whatever stopped it. A rebuild's copy getting past
            # it proves nothing about the live view, which stays reported until the swap.
            cursor.execute("DELETE FROM projection_errors WHERE name = ?", (view.name,))
        return len(rows), None

    def _apply_one_by_one(
        self, cursor: Cursor, view: View, table: str, tracking_name: str, rows: list[Any]
    ) -> tuple[int, ViewFailed | None]:
        # A batch failed: find the exact event, keep what comes before it, and stop there.
        applied = 0
        failure: ViewFailed | None = None
        for row in rows:
            cursor.execute("SAVEPOINT view_event")
            try:
                positioned = self._positioned(row)
                if positioned is not None:
                    view.apply(cursor, table, [positioned])
            except Exception as error:
                cursor.execute("ROLLBACK TO SAVEPOINT view_event")
                cursor.execute("RELEASE SAVEPOINT view_event")
                failure = ViewFailed(view.name, int(row[0]), f"{type(error).__name__}: {error}".splitlines()[0])
                cursor.execute("DELETE FROM projection_errors WHERE name = ?", (view.name,))
                cursor.execute(
                    "INSERT INTO projection_errors (name, position, reason) VALUES (?, ?, ?)",
                    (view.name, failure.position, failure.reason),
                )
                break
            cursor.execute("RELEASE SAVEPOINT view_event")
            applied += 1
        if applied:
            _track(cursor, tracking_name, rows[applied - 1][0])
        return applied, failure

    def _positioned(self, row: Sequence[Any]) -> Positioned | None:
        # None for an event of another aggregate (a reconciliation): the views pass over it.
        if row[3] in RECONCILIATION_TYPES:
            return None
        stored = StoredEvent(originator_id=row[1], originator_version=row[2], topic=row[3], state=bytes(row[4]))
        event = self.mapper.to_domain_event(stored)
        if not isinstance(event, DepositEvent):
            raise TypeError(f"position {row[0]} holds {type(event).__name__}, not a deposit event")
        return Positioned(int(row[0]), event)

    def _position(self, cursor: Cursor, name: str, *, lock: bool = False) -> int:
        lock_clause = self.store.for_update() if lock else ""
        cursor.execute(f"SELECT position FROM view_tracking WHERE name = ?{lock_clause}", (name,))
        row = cursor.fetchone()
        return int(row[0]) if row else 0

    # ----------------------------------------------------------------- queries

    def read(self) -> Cursor:
        """A cursor for queries; each statement reads a committed, consistent state."""
        cursor: Cursor = self.connection.cursor()
        return cursor


def _track(cursor: Cursor, name: str, position: int) -> None:
    # Only ever forward: a second catch-up racing over the same events fails here,
    # and its whole transaction (view rows included) rolls back.
    cursor.execute(
        "INSERT INTO view_tracking (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position "
        "WHERE view_tracking.position < excluded.position RETURNING position",
        (name, position),
    )
    if cursor.fetchone() is None:
        raise IntegrityError(f"view {name} is already past position {position}")
