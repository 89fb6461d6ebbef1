"""The snapshot codec: a deposit's whole state at one version, as the snapshot store keeps it.

Snapshots are a cache of the events (every ``SNAPSHOT_INTERVAL`` events of a
deposit, see the application): derived from them, stored apart, deletable at any
time. The domain knows nothing of them; a deposit is rebuilt from one through
:meth:`ShopDeposit.restored`. :func:`project_deposit` is the repository's
projector, a snapshot first perhaps, then events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter

from domain import (
    HISTORY_EVENTS,
    AppealStage,
    Balance,
    Channel,
    DeductionReason,
    DepositEvent,
    Phase,
    ShopDeposit,
    project_deposit,
)
from domain.balance import DepositFigures, figures_of
from domain.deposit import Case, Hold, Payment
from domain.errors import InvariantBroken


class OutdatedSnapshot(ValueError):
    """A snapshot taken by an older ledger lacks what the rules now keep: replay the events instead."""


_PAYMENT_ROWS: TypeAdapter[tuple[tuple[Channel, str, int, int], ...]] = TypeAdapter(
    tuple[tuple[Channel, str, int, int], ...]
)
_CaseRow = tuple[str, DeductionReason, int, int, int, AwareDatetime, int | None, bool, AppealStage | None, bool, int]
_CASE_ROWS: TypeAdapter[tuple[_CaseRow, ...]] = TypeAdapter(tuple[_CaseRow, ...])
_HOLD_ROWS: TypeAdapter[tuple[tuple[str, int, int], ...]] = TypeAdapter(tuple[tuple[str, int, int], ...])


def _rows(rows: list[list[Any]]) -> str:
    # Bookkeeping as a snapshot keeps it: an entry per payment, case or hold, separated by
    # ";", its fields by spaces ("-" for none, 1 and 0 for yes and no). No field can hold
    # either separator (ids, trade numbers, enum values, integers, ISO times), and nothing
    # needs escaping inside the snapshot's JSON.
    return ";".join(" ".join(_field_text(field) for field in row) for row in rows)


def _field_text(field: Any) -> str:
    if field is None:
        return "-"
    if isinstance(field, bool):
        return "1" if field else "0"
    text = str(field)
    if not (text and " " not in text and ";" not in text and text != "-"):
        raise InvariantBroken(f"{text!r} cannot be kept as a field")
    return text


def _split(text: str) -> list[list[str | None]]:
    return [[None if field == "-" else field for field in row.split(" ")] for row in text.split(";")] if text else []


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class DepositSnapshot(BaseModel, DepositFigures):
    """The whole state of a deposit at one version, so a long history loads fast.

    Snapshots are a cache: they are derived from the events, stored apart from
    them, and can be deleted at any time without losing anything. Version 2
    added holds, appeals, case times, per-payment refunds and the policy figures;
    a version-1 snapshot cannot supply them, so reading one raises
    :class:`OutdatedSnapshot` and the ledger replays the events instead.

    Version 3 keeps the bookkeeping (``payments``, ``cases``, ``holds``) as
    compact text, entries separated by ``;`` and their fields by spaces, parsed
    and validated only when the deposit is restored (:meth:`bookkeeping`): a
    deposit with a long history holds tens of thousands of payments, and its
    figures (:meth:`figures`) are all a query of its state needs.

    Version 4 added the ``written_off_minor`` figure and, per case, what was
    written off of it (zero in every older snapshot: write-offs came with it).

    Its figures are those of :class:`DepositFigures` (the unfrozen money is
    always zero between commands, and status and shortfall follow from the rest).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str] = "ShopDeposit.Snapshot"
    class_version: ClassVar[int] = 4

    originator_id: UUID
    originator_version: int
    phase: Phase
    payments: str
    """``channel trade_no amount_minor refunded_minor`` per payment, oldest first."""
    cases: str
    """``case_id reason amount_minor owed_minor collected_minor deducted_at order_value_minor
    priced appeal appealed_while_closing written_off_minor`` per case, oldest first."""
    holds: str
    """``case_id amount_minor held_minor`` per hold."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 1 kept neither case times nor holds: it cannot be brought up to date."""
        raise OutdatedSnapshot(f"snapshot of version 1 at deposit version {state.get('originator_version')}")

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """Version 2 kept the bookkeeping as objects: the same entries, as the arrays of version 3."""
        state["payments"] = _rows(
            [[p["channel"], p["trade_no"], p["amount_minor"], p["refunded_minor"]] for p in state["payments"]]
        )
        state["cases"] = _rows(
            [
                [
                    c["case_id"],
                    c["reason"],
                    c["amount_minor"],
                    c["owed_minor"],
                    c["collected_minor"],
                    _time_text(datetime.fromisoformat(c["deducted_at"])),
                    c["order_value_minor"],
                    c["priced"],
                    c["appeal"],
                    c["appealed_while_closing"],
                ]
                for c in state["cases"]
            ]
        )
        state["holds"] = _rows([[h["case_id"], h["amount_minor"], h["held_minor"]] for h in state["holds"]])

    @staticmethod
    def upcast_v3_v4(state: dict[str, Any]) -> None:
        """Version 3 came before write-offs: nothing was written off, of the deposit or of any case."""
        state["written_off_minor"] = 0
        state["cases"] = ";".join(f"{row} 0" for row in state["cases"].split(";")) if state["cases"] else ""

    @classmethod
    def take(cls, deposit: ShopDeposit) -> DepositSnapshot:
        """Capture a deposit whose last command has finished."""
        deposit.check_invariants()
        deposit.recount()
        balance = deposit.balance
        values = balance.figures()
        values.update(
            originator_id=balance.deposit_id,
            originator_version=balance.version,
            phase=balance.phase,
            payments=_rows(
                [[p.channel.value, p.trade_no, p.amount_minor, p.refunded_minor] for p in deposit.payments.values()]
            ),
            cases=_rows(
                [
                    [
                        case_id,
                        c.reason.value,
                        c.amount_minor,
                        c.owed_minor,
                        c.collected_minor,
                        _time_text(c.deducted_at),
                        c.order_value_minor,
                        c.priced,
                        c.appeal.value if c.appeal is not None else None,
                        c.appealed_while_closing,
                        c.written_off_minor,
                    ]
                    for case_id, c in deposit.cases.items()
                ]
            ),
            holds=_rows([[case_id, h.amount_minor, h.held_minor] for case_id, h in deposit.holds.items()]),
        )
        return cls.model_validate(values)

    def figures(self) -> Balance:
        """The deposit's figures at the snapshot's version: all a query of its state needs."""
        return Balance(
            deposit_id=self.originator_id,
            phase=self.phase,
            unfrozen_minor=0,
            version=self.originator_version,
            **figures_of(self),
        )

    def bookkeeping(self) -> tuple[dict[tuple[Channel, str], Payment], dict[str, Case], dict[str, Hold]]:
        """The payments, cases and holds: what the rules need besides the figures.

        ``OutdatedSnapshot`` if they cannot be read: the events are replayed instead.
        """
        try:
            return self._bookkeeping()
        except ValueError as error:  # pydantic's ValidationError included
            first_line = str(error).splitlines()[0]
            raise OutdatedSnapshot(
                f"snapshot at version {self.originator_version} of {self.shop_id}: {first_line}"
            ) from None

    def _bookkeeping(self) -> tuple[dict[tuple[Channel, str], Payment], dict[str, Case], dict[str, Hold]]:
        payments = {
            (channel, trade_no): Payment(channel, trade_no, amount, refunded)
            for channel, trade_no, amount, refunded in _PAYMENT_ROWS.validate_python(_split(self.payments))
        }
        cases = {
            row[0]: Case(
                reason=row[1],
                amount_minor=row[2],
                owed_minor=row[3],
                collected_minor=row[4],
                deducted_at=row[5],
                order_value_minor=row[6],
                priced=row[7],
                appeal=row[8],
                appealed_while_closing=row[9],
                written_off_minor=row[10],
            )
            for row in _CASE_ROWS.validate_python(_split(self.cases))
        }
        holds = {
            case_id: Hold(amount, held) for case_id, amount, held in _HOLD_ROWS.validate_python(_split(self.holds))
        }
        return payments, cases, holds

    def restore(self) -> ShopDeposit:
        """The deposit as it stood when the snapshot was taken."""
        return ShopDeposit.restored(self.figures(), *self.bookkeeping())


_STORED: tuple[type[DepositEvent] | type[DepositSnapshot], ...] = (*HISTORY_EVENTS, DepositSnapshot)
STORED_TYPES: dict[str, type[DepositEvent] | type[DepositSnapshot]] = {cls.TOPIC: cls for cls in _STORED}
"""Every stored record type by its stable topic: the mapper's only way to find a class."""


def project_stored(
    deposit: ShopDeposit | None, records: Iterable[DepositEvent | DepositSnapshot]
) -> ShopDeposit | None:
    """The repository's projector: a deposit from its stored records, a snapshot first perhaps, then events."""
    records = iter(records)
    if deposit is None:
        first = next(records, None)
        if first is None:
            return None
        deposit = first.restore() if isinstance(first, DepositSnapshot) else project_deposit(None, [first])
    if deposit is None:
        return None
    return project_deposit(deposit, (_event(record) for record in records))


def _event(record: DepositEvent | DepositSnapshot) -> DepositEvent:
    if not isinstance(record, DepositEvent):
        raise InvariantBroken("a snapshot can only start a history")
    return record
