"""The SQLite event recorder: events, their chain links and the current views, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteProcessRecorder

from domain import DepositEvent
from ledger import chain


class LedgerRecorder(SQLiteProcessRecorder):
    """Inserts events, extends the hash chain over them, and lets current views follow, atomically.

    A process recorder rather than a plain application recorder, so that the
    library creates its ``tracking`` table, where the views keep their positions.
    """

    after_insert: Callable[[SQLiteCursor, Sequence[int], Sequence[DepositEvent]], None] | None = None
    """Called inside the insert's transaction with the new positions and their domain events."""

    def construct_create_table_statements(self) -> list[str]:
        """The library's tables, and the chain of links beside the events."""
        return [*super().construct_create_table_statements(), chain.CREATE_CHAIN_TABLE]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if not positions:
            return positions
        chain.extend(
            c,
            [
                (position, _stored_id(event.originator_id), event.originator_version, event.topic, event.state)
                for position, event in zip(positions, stored_events, strict=True)
            ],
        )
        events = kwargs.get("deposit_events")
        if self.after_insert is not None and events:
            self.after_insert(c, positions, events)
        return positions


def _stored_id(originator_id: UUID | str) -> str:
    # Exactly what the events table holds in its originator_id column.
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id
