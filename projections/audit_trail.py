"""Audit-trail view: one row per event, in the event log's global order.

Each row says what the event was, how much money it moved (for a requirement
change: the new requirement), the frozen balance after it, the channel, trade
number, reason, case and note where the event has them, who asked for it and
when. The running frozen balance continues from the
deposit's previous row, so the view needs nothing but its own table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain import (
    AppealFiled,
    AppealRejected,
    ClosureRequested,
    Deducted,
    DeductionReversed,
    DepositEvent,
    ExcessRefunded,
    Forfeited,
    Frozen,
    HoldPlaced,
    HoldReleased,
    Opened,
    Paid,
    Refunded,
    RequirementChanged,
    WrittenOff,
    frozen_change,
)
from projections.view import Carry, Cursor, Positioned, UnreadableRow, View, read_stored_time, stored_time


class AuditRow(BaseModel):
    """One event as the audit trail shows it; amounts in minor units of ``currency``."""

    model_config = ConfigDict(frozen=True)

    position: int
    shop_id: str
    type: str
    currency: str
    amount_minor: int | None
    frozen_after_minor: int
    actor: str
    effective_at: AwareDatetime
    recorded_at: AwareDatetime
    channel: str | None = None
    ref: str | None = None
    reason: str | None = None
    case: str | None = None
    note: str | None = None


_COLUMNS = (
    "position",
    "deposit_id",
    "shop_id",
    "type",
    "currency",
    "amount_minor",
    "frozen_after_minor",
    "actor",
    "effective_at",
    "recorded_at",
    "channel",
    "ref",
    "reason",
    "case_id",
    "note",
)
_SELECT = ", ".join(_COLUMNS)


class AuditTrailView(View):
    """Every event once, in global order, with the frozen balance after it."""

    name = "audit_trail"
    table: ClassVar[str] = "audit_trail"
    columns: ClassVar[tuple[str, ...]] = _COLUMNS

    def create_statements(self, table: str, position_key: str = "BIGINT PRIMARY KEY") -> list[str]:
        """The audit table, keyed by the event's position in the store."""
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            f"position {position_key}, deposit_id TEXT NOT NULL, shop_id TEXT NOT NULL, "
            "type TEXT NOT NULL, currency TEXT NOT NULL, amount_minor BIGINT, "
            "frozen_after_minor BIGINT NOT NULL, actor TEXT NOT NULL, effective_at TEXT NOT NULL, "
            "recorded_at TEXT NOT NULL, channel TEXT, ref TEXT, reason TEXT, case_id TEXT, note TEXT)"
        ]

    def index_statements(self, table: str) -> list[str]:
        """A deposit's rows in order: for the trail of one shop and for the running balance."""
        return [f"CREATE INDEX IF NOT EXISTS {table}_deposit ON {table} (deposit_id, position)"]

    def apply(self, cursor: Cursor, table: str, batch: Sequence[Positioned], carry: Carry | None = None) -> None:
        """Append one row per event, carrying each deposit's frozen balance forward."""
        # Deposits keyed by their ids' integers: hashing UUID objects is a Python call.
        continued = {p.event.originator_id.int for p in batch if not isinstance(p.event, Opened)}
        last: dict[int, tuple[str, str, int]] = {}
        if carry is not None:
            last, continued = carry.recall(continued)
        last.update(self._last_rows(cursor, table, continued))
        times: dict[datetime, str] = {}
        rows = []
        for positioned in batch:
            event = positioned.event
            deposit = event.originator_id.int
            if isinstance(event, Opened):
                shop_id, currency, frozen = event.shop_id, event.currency, 0
            else:
                try:
                    shop_id, currency, frozen = last[deposit]
                except KeyError:
                    raise LookupError(f"no audit rows for deposit {event.originator_id}") from None
                frozen += frozen_change(event)
            last[deposit] = (shop_id, currency, frozen)
            rows.append(_row(positioned.position, shop_id, currency, frozen, event, times))
        cursor.executemany(
            f"INSERT INTO {table} ({_SELECT}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            rows,
        )
        if carry is not None:
            for deposit in dict.fromkeys(p.event.originator_id.int for p in batch):
                carry.remember(deposit, last[deposit])

    def _last_rows(self, cursor: Cursor, table: str, deposits: set[int]) -> dict[int, tuple[str, str, int]]:
        # Each deposit's latest row, a few hundred deposits a query rather than one each.
        found: dict[int, tuple[str, str, int]] = {}
        ids = sorted(f"{deposit:032x}" for deposit in deposits)  # UUID.hex
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            cursor.execute(
                f"SELECT deposit_id, shop_id, currency, frozen_after_minor FROM {table} WHERE position IN "
                f"(SELECT MAX(position) FROM {table} WHERE deposit_id IN ({', '.join('?' * len(chunk))}) "
                "GROUP BY deposit_id)",
                chunk,
            )
            for deposit_hex, shop_id, currency, frozen in cursor.fetchall():
                found[int(deposit_hex, 16)] = (shop_id, currency, frozen)
        return found

    def expected_row(
        self, position: int, shop_id: str, currency: str, frozen_after_minor: int, event: DepositEvent
    ) -> tuple[Any, ...]:
        """The row this view must hold for ``event``: what a verifier compares against."""
        return _row(position, shop_id, currency, frozen_after_minor, event)

    @staticmethod
    def column_names() -> tuple[str, ...]:
        """The columns of a row, in the order of the tuples above."""
        return _COLUMNS

    def stored_row(self, cursor: Cursor, position: int) -> tuple[Any, ...] | None:
        """The row held for ``position``, as a tuple comparable with :meth:`expected_row`."""
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE position = ?", (position,))
        row = cursor.fetchone()
        return None if row is None else tuple(row)

    # ------------------------------------------------------------------ queries

    def rows(self, cursor: Cursor, deposit: UUID) -> list[AuditRow]:
        """The deposit's rows, oldest first."""
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE deposit_id = ? ORDER BY position", (deposit.hex,))
        return [_audit_row(row) for row in cursor.fetchall()]


def _row(
    position: int,
    shop_id: str,
    currency: str,
    frozen_after: int,
    event: DepositEvent,
    times: dict[datetime, str] | None = None,
) -> tuple[Any, ...]:
    amount: int | None = None
    channel = ref = reason = case = note = None
    if isinstance(event, Opened):
        amount = event.required_minor
        note = _categories(event.categories)
    elif isinstance(event, Paid):
        amount, channel, ref = event.amount_minor, event.channel.value, event.trade_no
    elif isinstance(event, Frozen):
        amount = event.amount_minor
    elif isinstance(event, Deducted):
        amount, reason, case, note = event.amount_collected_minor, event.reason.value, event.case_id, event.note
    elif isinstance(event, Refunded | ExcessRefunded):
        amount = event.amount_minor
        channel = ",".join(sorted({line.channel.value for line in event.lines})) or None
    elif isinstance(event, Forfeited):
        amount, reason = event.amount_minor, event.reason
    elif isinstance(event, RequirementChanged):
        amount, reason, note = event.new_required_minor, event.why, _categories(event.categories)
    elif isinstance(event, HoldPlaced | HoldReleased):
        amount, case, note = event.amount_minor, event.case_id, event.note
    elif isinstance(event, AppealFiled | AppealRejected):
        case, note = event.case_id, event.note
    elif isinstance(event, DeductionReversed):
        amount, reason, case, note = event.amount_restored_minor, event.reason.value, event.case_id, event.note
    elif isinstance(event, WrittenOff):
        amount, reason, case = event.amount_minor, event.reason, event.case_id
    elif not isinstance(event, ClosureRequested):
        raise AssertionError(f"the audit trail does not know {type(event).__name__}")
    return (
        position,
        event.originator_id.hex,
        shop_id,
        event.type_name,
        currency,
        amount,
        frozen_after,
        event.actor,
        _stored_time(event.effective_at, times),
        _stored_time(event.recorded_at, times),
        channel,
        ref,
        reason,
        case,
        note or None,
    )


def _stored_time(moment: datetime, times: dict[datetime, str] | None) -> str:
    # The events of one command share their times: a batch formats each time once.
    if times is None:
        return stored_time(moment)
    text = times.get(moment)
    if text is None:
        text = times[moment] = stored_time(moment)
    return text


def _categories(categories: tuple[str, ...]) -> str | None:
    return f"categories: {', '.join(categories)}" if categories else None


def _audit_row(row: Sequence[Any]) -> AuditRow:
    try:
        return _decoded_audit_row(row)
    except (ValueError, TypeError, KeyError) as error:
        raise UnreadableRow(
            f"the audit trail cannot read its row at position {row[0]} ({error}): rebuild the view from the events"
        ) from None


def _decoded_audit_row(row: Sequence[Any]) -> AuditRow:
    return AuditRow(
        position=row[0],
        shop_id=row[2],
        type=row[3],
        currency=row[4],
        amount_minor=row[5],
        frozen_after_minor=row[6],
        actor=row[7],
        effective_at=read_stored_time(row[8]),
        recorded_at=read_stored_time(row[9]),
        channel=row[10],
        ref=row[11],
        reason=row[12],
        case=row[13],
        note=row[14],
    )
