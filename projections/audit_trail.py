"""Audit-trail view: one row per event, in the event log's global order; a refund's per channel.

Each row says what the event was, how much money it moved (for a requirement
change: the new requirement), the frozen balance after it, the channel, trade
number, reason, case and note where the event has them, who asked for it and
when. The running frozen balance continues from the
deposit's previous row, so the view needs nothing but its own table.

A refund (``Refunded``, ``ExcessRefunded``) that goes back through channels has
one row per channel share instead: ``share`` 1, 2, ... in the refund's own order
(newest payment first), each with the amount returned through that channel, the
trade numbers it returns to (``ref``, comma-separated) and the frozen balance
after that share. Every other row is ``share`` 0. Rows are keyed by
``(position, share)``: the event's position in the store, and its part.
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
from projections.view import (
    Carry,
    Cursor,
    Positioned,
    UnreadableRow,
    View,
    page_limit,
    read_stored_time,
    stored_time,
)


class AuditRow(BaseModel):
    """One event as the audit trail shows it; amounts in minor units of ``currency``."""

    model_config = ConfigDict(frozen=True)

    position: int
    share: int = 0
    """0 for an event's only row; 1, 2, ... for the channel shares of a refund."""
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
    "share",
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
_CASE_OPENINGS = ("HoldPlaced", "AppealFiled")
"""The events that open a case the work queue lists until a later event of the case closes it."""


class AuditTrailView(View):
    """Every event once, in global order, with the frozen balance after it."""

    name: ClassVar[str] = "audit_trail"
    table: ClassVar[str] = "audit_trail"
    columns: ClassVar[tuple[str, ...]] = _COLUMNS

    def create_statements(self, table: str, position_key: str = "BIGINT PRIMARY KEY") -> list[str]:
        """The audit table, keyed by the event's position in the store and the row's share of it.

        Where positions are SQLite row ids (``INTEGER PRIMARY KEY``), the table is
        ``WITHOUT ROWID``: the composite key is then the table's own b-tree, as the
        position alone was, rather than a second b-tree beside it.
        """
        clustered = " WITHOUT ROWID" if position_key.startswith("INTEGER") else ""
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "position BIGINT NOT NULL, share INTEGER NOT NULL, deposit_id TEXT NOT NULL, shop_id TEXT NOT NULL, "
            "type TEXT NOT NULL, currency TEXT NOT NULL, amount_minor BIGINT, "
            "frozen_after_minor BIGINT NOT NULL, actor TEXT NOT NULL, effective_at TEXT NOT NULL, "
            "recorded_at TEXT NOT NULL, channel TEXT, ref TEXT, reason TEXT, case_id TEXT, note TEXT, "
            f"PRIMARY KEY (position, share)){clustered}"
        ]

    def index_statements(self, table: str) -> list[str]:
        """A deposit's rows in order (the trail of one shop, the running balance); the cases' openings by time."""
        return [
            f"CREATE INDEX IF NOT EXISTS {table}_deposit ON {table} (deposit_id, position)",
            *(
                f"CREATE INDEX IF NOT EXISTS {table}_{opening.lower()} ON {table} (effective_at, position) "
                f"WHERE type = '{opening}'"
                for opening in _CASE_OPENINGS
            ),
        ]

    def lookup_index_statements(self, table: str) -> list[str]:
        """The deposit index alone: :meth:`apply` reads a deposit's last row through it."""
        return self.index_statements(table)[:1]

    def apply(self, cursor: Cursor, table: str, batch: Sequence[Positioned], carry: Carry | None = None) -> None:
        """Append each event's rows, carrying each deposit's frozen balance forward."""
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
            rows.extend(_rows(positioned.position, shop_id, currency, frozen, event, times))
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
                "GROUP BY deposit_id) ORDER BY position, share",
                chunk,
            )
            # A refund's last share holds the balance after the whole event: it comes last.
            for deposit_hex, shop_id, currency, frozen in cursor.fetchall():
                found[int(deposit_hex, 16)] = (shop_id, currency, frozen)
        return found

    def expected_rows(
        self, position: int, shop_id: str, currency: str, frozen_after_minor: int, event: DepositEvent
    ) -> list[tuple[Any, ...]]:
        """The rows this view must hold for ``event``, by share: what a verifier compares against."""
        return _rows(position, shop_id, currency, frozen_after_minor, event)

    @staticmethod
    def column_names() -> tuple[str, ...]:
        """The columns of a row, in the order of the tuples above."""
        return _COLUMNS

    def stored_rows(self, cursor: Cursor, position: int) -> list[tuple[Any, ...]]:
        """The rows held for ``position``, by share, as tuples comparable with :meth:`expected_rows`."""
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE position = ? ORDER BY share", (position,))
        return [tuple(row) for row in cursor.fetchall()]

    # ------------------------------------------------------------------ queries

    def open_holds(self, cursor: Cursor, limit: int) -> list[AuditRow]:
        """The ``HoldPlaced`` rows of the holds still open, the oldest first.

        A case is held before it is deducted, never after, and once: its hold is
        open until a release or a deduction of that case (which takes what it
        needs and releases the rest).
        """
        return self._still_open(cursor, "HoldPlaced", ("HoldReleased", "Deducted"), limit)

    def pending_appeals(self, cursor: Cursor, limit: int) -> list[AuditRow]:
        """The ``AppealFiled`` rows of the appeals awaiting a decision, the oldest first (filed once per case)."""
        return self._still_open(cursor, "AppealFiled", ("AppealRejected", "DeductionReversed"), limit)

    def _still_open(self, cursor: Cursor, opening: str, closings: tuple[str, str], limit: int) -> list[AuditRow]:
        # Read through the opening's partial index in time order; each is checked against its deposit's later
        # rows. The type is written into the SQL, not bound: only then can the planners use a partial index.
        assert opening in _CASE_OPENINGS and all(closing.isalpha() for closing in closings)
        cursor.execute(
            f"SELECT {_SELECT} FROM {self.table} o WHERE o.type = '{opening}' AND NOT EXISTS ("
            f"SELECT 1 FROM {self.table} c WHERE c.deposit_id = o.deposit_id AND c.position > o.position "
            f"AND c.case_id = o.case_id AND c.type IN ('{closings[0]}', '{closings[1]}')) "
            "ORDER BY o.effective_at, o.position LIMIT ?",
            (limit,),
        )
        return [_audit_row(row) for row in cursor.fetchall()]

    def rows(
        self, cursor: Cursor, deposit: UUID, *, after: tuple[int, int] | None = None, limit: int | None = None
    ) -> list[AuditRow]:
        """The deposit's rows, oldest first.

        A page: the first ``limit`` rows after ``after``, the ``(position, share)``
        of the previous page's last row. The query seeks to it in the index by
        deposit and position, so a page reads about ``limit`` rows however deep it is.
        """
        conditions = "deposit_id = ?"
        params: list[Any] = [deposit.hex]
        if after is not None:
            # A refund's shares share a position: a page may end between two of them.
            conditions += " AND position >= ? AND (position > ? OR share > ?)"
            params += [after[0], after[0], after[1]]
        page = page_limit(limit, params)
        cursor.execute(f"SELECT {_SELECT} FROM {self.table} WHERE {conditions} ORDER BY position, share{page}", params)
        return [_audit_row(row) for row in cursor.fetchall()]


def _rows(
    position: int,
    shop_id: str,
    currency: str,
    frozen_after: int,
    event: DepositEvent,
    times: dict[datetime, str] | None = None,
) -> list[tuple[Any, ...]]:
    # A refund through channels: one row per channel, the balance running down share by share.
    if isinstance(event, Refunded | ExcessRefunded) and event.lines:
        shares: dict[str, tuple[int, list[str]]] = {}
        for line in event.lines:
            amount, refs = shares.get(line.channel.value, (0, []))
            shares[line.channel.value] = (amount + line.amount_minor, [*refs, line.trade_no])
        rows = []
        frozen = frozen_after + event.amount_minor
        for number, (channel, (amount, refs)) in enumerate(shares.items(), start=1):
            frozen -= amount
            rows.append(
                _row(
                    position,
                    number,
                    shop_id,
                    currency,
                    frozen,
                    event,
                    times,
                    amount=amount,
                    channel=channel,
                    ref=",".join(refs),
                )
            )
        assert frozen == frozen_after, f"refund lines of position {position} do not add up to its amount"
        return rows
    return [_row(position, 0, shop_id, currency, frozen_after, event, times)]


def _row(
    position: int,
    share: int,
    shop_id: str,
    currency: str,
    frozen_after: int,
    event: DepositEvent,
    times: dict[datetime, str] | None = None,
    **share_fields: Any,
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
        amount = share_fields.get("amount", event.amount_minor)
        channel, ref = share_fields.get("channel"), share_fields.get("ref")
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
        share,
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
        share=row[1],
        shop_id=row[3],
        type=row[4],
        currency=row[5],
        amount_minor=row[6],
        frozen_after_minor=row[7],
        actor=row[8],
        effective_at=read_stored_time(row[9]),
        recorded_at=read_stored_time(row[10]),
        channel=row[11],
        ref=row[12],
        reason=row[13],
        case=row[14],
        note=row[15],
    )
