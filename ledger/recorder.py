"""The event recorders: events, their chain links and the current views, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from eventsourcing.utils import retry
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from domain import DepositEvent
from ledger import chain
from ledger.store import QmarkCursor

AfterInsert = Callable[[Any, int, Sequence[int], Sequence[DepositEvent]], None]
"""Called inside the insert's transaction with a cursor, the position of the event before the new
ones (the head as it was), the new positions and their domain events."""


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


class LedgerRecorder(SQLiteApplicationRecorder):
    """SQLite: inserts events, extends the hash chain over them, lets current views follow."""

    after_insert: AfterInsert | None = None

    def construct_create_table_statements(self) -> list[str]:
        """The library's events table, and the chain of links beside it."""
        return [*super().construct_create_table_statements(), chain.create_table_statement()]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if positions:
            previous_head = chain.extend(c, _chain_rows(positions, stored_events))
            events = kwargs.get("deposit_events")
            if self.after_insert is not None and events:
                self.after_insert(c, previous_head, positions, events)
        return positions


class PostgresLedgerRecorder(PostgresApplicationRecorder):
    """PostgreSQL: the same, inside the library's table-locked insert transaction."""

    after_insert: AfterInsert | None = None

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        """Add the chain table to what the library creates."""
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements.append(
            SQL(chain.create_table_statement("{schema}.event_chain", "BYTEA")).format(
                schema=Identifier(self.datastore.schema)
            )
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert, chain and project in one transaction (no pipelining: our statements read results)."""
        if not stored_events:
            return []
        with self.datastore.get_connection() as connection, connection.transaction():
            with connection.cursor() as library_cursor:
                self._insert_stored_events(library_cursor, stored_events, **kwargs)
                positions = [row["notification_id"] for row in library_cursor.fetchall()]
            with connection.cursor(row_factory=tuple_row) as raw:
                raw.execute(SQL("SET LOCAL search_path TO {0}").format(Identifier(self.datastore.schema)))
                cursor = QmarkCursor(raw)
                previous_head = chain.extend(cursor, _chain_rows(positions, stored_events))
                events = kwargs.get("deposit_events")
                if self.after_insert is not None and events:
                    self.after_insert(cursor, previous_head, positions, events)
        return positions
