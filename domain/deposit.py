"""``ShopDeposit``: one merchant shop's security deposit, rebuilt from its events.

Command methods (``open``, ``pay``, ``deduct``, ``close``, ``refund``,
``force_close``) check the rules and record new events; ``apply`` is the only
place an event changes the state, so replaying history and running a command
change the state in exactly the same way.

The conservation law holds after every event and is asserted in code::

    paid = unfrozen + frozen + deducted + refunded + forfeited

where ``unfrozen`` is money received but not yet frozen; it is non-zero only
between the ``Paid`` and ``Frozen`` events of one payment, and zero whenever a
command has finished, which gives the published form
``paid = frozen + deducted + refunded + forfeited``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from domain.balance import Balance, DepositState, Phase, Status
from domain.errors import (
    DuplicateConflict,
    MalformedInput,
    OutOfOrder,
    Refused,
    ShopNotFound,
    WrongStatus,
)
from domain.events import (
    HISTORY_EVENTS,
    Channel,
    ClosureRequested,
    Deducted,
    DeductionReason,
    DepositEvent,
    Forfeited,
    Frozen,
    Opened,
    Paid,
    Refunded,
    RefundLine,
    Stamp,
)
from domain.money import format_minor

SHOP_NAMESPACE = UUID("5c0b2f6e-6f0e-4d55-9a8a-3f4f3c1d0b7e")
"""Namespace of the name-based (version 5) UUIDs that identify deposits by shop id."""

DEFAULT_SETTLEMENT_WINDOW = timedelta(days=90)
"""How long after a voluntary closure the refund waits for late claims (TikTok cross-border: 90 days)."""


def deposit_id(shop_id: str) -> UUID:
    """The aggregate id of a shop's deposit: derived from the shop id, so no index is needed."""
    return uuid.uuid5(SHOP_NAMESPACE, shop_id)


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment into the deposit, kept for idempotency and for refunds."""

    channel: Channel
    trade_no: str
    amount_minor: int


@dataclass(slots=True)
class Case:
    """One deduction case: what was asked for and what it still owes."""

    reason: DeductionReason
    amount_minor: int
    owed_minor: int


_Event = TypeVar("_Event", bound=DepositEvent)


class ShopDeposit:
    """The security deposit of one merchant shop."""

    def __init__(self, opened: Opened) -> None:
        """Start a deposit from its ``Opened`` event; use :meth:`open` to open a new one."""
        self.balance = Balance.opened(opened)
        self.payments: dict[tuple[Channel, str], Payment] = {}
        self.cases: dict[str, Case] = {}
        self._pending: list[DepositEvent] = []

    # ----------------------------------------------------------------- commands

    @classmethod
    def open(
        cls,
        *,
        shop_id: str,
        site: str | None,
        currency: str,
        required_minor: int,
        stamp: Stamp,
    ) -> ShopDeposit:
        """Open a shop's deposit account with the amount the platform requires."""
        opened = _build(
            Opened,
            originator_id=deposit_id(shop_id),
            originator_version=1,
            shop_id=shop_id,
            site=site,
            currency=currency,
            required_minor=required_minor,
            **stamp.model_dump(),
        )
        deposit = cls(opened)
        deposit._pending.append(opened)
        deposit.check_invariants()
        return deposit

    def pay(
        self,
        *,
        amount_minor: int,
        channel: Channel,
        trade_no: str,
        payer: str | None,
        stamp: Stamp,
    ) -> bool:
        """Record a payment and freeze it, settling what the shop owes first.

        Returns False, recording nothing, when this (channel, trade number) was
        recorded before with the same amount: notifications are delivered more
        than once, and the second delivery must change nothing.
        """
        known = self.payments.get((channel, trade_no))
        if known is not None:
            if known.amount_minor != amount_minor:
                raise DuplicateConflict(
                    f"payment {channel.value} {trade_no} was recorded with "
                    f"{self._fmt(known.amount_minor)}, not {self._fmt(amount_minor)}"
                )
            return False
        self._require_phase("accept payments", Phase.OPEN)
        self._require_in_order(stamp)
        self._record(
            Paid,
            stamp,
            currency=self.currency,
            amount_minor=amount_minor,
            channel=channel,
            trade_no=trade_no,
            payer=payer,
        )
        if self.owed_minor:
            self._settle_debts(f"{channel.value} {trade_no}", stamp)
        if self.balance.unfrozen_minor:
            self._record(Frozen, stamp, currency=self.currency, amount_minor=self.balance.unfrozen_minor)
        self.check_invariants()
        return True

    def deduct(
        self,
        *,
        amount_minor: int,
        reason: DeductionReason,
        case_id: str,
        note: str,
        stamp: Stamp,
    ) -> bool:
        """Deduct a penalty: collect what the frozen balance holds, record the rest as owed.

        Returns False, recording nothing, when this case was deducted before with
        the same amount and reason.
        """
        known = self.cases.get(case_id)
        if known is not None:
            if known.amount_minor != amount_minor or known.reason != reason:
                raise DuplicateConflict(
                    f"case {case_id} was deducted as {known.reason.value} "
                    f"{self._fmt(known.amount_minor)}, not {reason.value} {self._fmt(amount_minor)}"
                )
            return False
        self._require_phase("accept deductions", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        collected = min(amount_minor, self.frozen_minor)
        self._record(
            Deducted,
            stamp,
            currency=self.currency,
            amount_collected_minor=collected,
            amount_owed_minor=amount_minor - collected,
            reason=reason,
            case_id=case_id,
            note=note,
        )
        self.check_invariants()
        return True

    def close(self, *, settlement_window: timedelta, stamp: Stamp) -> None:
        """The merchant closes the shop: refund becomes possible once settlement is due."""
        self._require_phase("be closed", Phase.OPEN)
        self._require_in_order(stamp)
        self._record(ClosureRequested, stamp, settlement_due=stamp.effective_at + settlement_window)
        self.check_invariants()

    def refund(self, *, stamp: Stamp) -> None:
        """Refund the remaining frozen balance, newest payment first, and close the deposit."""
        self._require_phase("be refunded", Phase.CLOSING)
        self._require_in_order(stamp)
        assert self.balance.settlement_due is not None
        if stamp.effective_at < self.balance.settlement_due:
            raise Refused(
                f"shop {self.shop_id} cannot be refunded before its settlement is due at "
                f"{self.balance.settlement_due.isoformat()}"
            )
        self._record(
            Refunded,
            stamp,
            currency=self.currency,
            amount_minor=self.frozen_minor,
            lines=self._refund_lines(self.frozen_minor),
        )
        self.check_invariants()

    def force_close(self, *, reason: str, stamp: Stamp) -> None:
        """The platform force-closes the shop: the remaining frozen balance is forfeited."""
        self._require_phase("be force-closed", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        self._record(Forfeited, stamp, currency=self.currency, amount_minor=self.frozen_minor, reason=reason)
        self.check_invariants()

    def collect_events(self) -> list[DepositEvent]:
        """Hand over the events recorded since the last save (the library's protocol)."""
        pending, self._pending = self._pending, []
        return pending

    # ------------------------------------------------------------------ queries

    @property
    def id(self) -> UUID:
        """The aggregate id, derived from the shop id (see :func:`deposit_id`)."""
        return self.balance.deposit_id

    @property
    def version(self) -> int:
        """How many events the deposit's history holds."""
        return self.balance.version

    @property
    def shop_id(self) -> str:
        """The shop this deposit belongs to."""
        return self.balance.shop_id

    @property
    def currency(self) -> str:
        """ISO 4217 code of every amount."""
        return self.balance.currency

    @property
    def phase(self) -> Phase:
        """Where the deposit is in its lifecycle."""
        return self.balance.phase

    @property
    def status(self) -> Status:
        """The status the ledger reports."""
        return self.balance.status

    @property
    def frozen_minor(self) -> int:
        """Money that counts for the shop and cannot be withdrawn."""
        return self.balance.frozen_minor

    @property
    def unfrozen_minor(self) -> int:
        """Money received but not yet frozen (only inside a payment)."""
        return self.balance.unfrozen_minor

    @property
    def owed_minor(self) -> int:
        """What deductions could not collect."""
        return self.balance.owed_minor

    @property
    def settlement_due(self) -> datetime | None:
        """When a closing deposit may be refunded."""
        return self.balance.settlement_due

    @property
    def last_effective_at(self) -> datetime:
        """When the last event happened, in business terms."""
        return self.balance.last_effective_at

    def state(self) -> DepositState:
        """The deposit's figures as they stand at this version."""
        return self.balance.state()

    def check_invariants(self) -> None:
        """Assert the laws that hold whenever a command has finished.

        A failure is a bug in the ledger, never bad input.
        """
        self.balance.assert_balanced()
        assert self.balance.unfrozen_minor == 0, f"paid money left unfrozen in {self.shop_id}"
        assert self.balance.owed_minor == sum(case.owed_minor for case in self.cases.values()), (
            f"owed figure and open cases disagree in {self.shop_id}"
        )

    # ------------------------------------------------------------------- events

    def apply(self, event: DepositEvent) -> None:
        """Change the state by one event: the figures, then the rules' bookkeeping."""
        assert event.originator_id == self.id, "event of another deposit"
        self.balance.apply(event)
        if isinstance(event, Paid):
            self.payments[(event.channel, event.trade_no)] = Payment(event.channel, event.trade_no, event.amount_minor)
        elif isinstance(event, Deducted):
            if event.settles_debt:
                self.cases[event.case_id].owed_minor = event.amount_owed_minor
            else:
                self.cases[event.case_id] = Case(
                    reason=event.reason,
                    amount_minor=event.amount_collected_minor + event.amount_owed_minor,
                    owed_minor=event.amount_owed_minor,
                )

    # ------------------------------------------------------------------ helpers

    def _record(self, event_class: type[_Event], stamp: Stamp, **fields: Any) -> _Event:
        event = _build(
            event_class,
            originator_id=self.id,
            originator_version=self.version + 1,
            **stamp.model_dump(),
            **fields,
        )
        self.apply(event)
        self._pending.append(event)
        return event

    def _settle_debts(self, payment: str, stamp: Stamp) -> None:
        # Oldest case first: debts are settled in the order they arose.
        owing = [(case_id, case) for case_id, case in self.cases.items() if case.owed_minor]
        for case_id, case in owing:
            if self.balance.unfrozen_minor == 0:
                break
            settled = min(case.owed_minor, self.balance.unfrozen_minor)
            self._record(
                Deducted,
                stamp,
                currency=self.currency,
                amount_collected_minor=settled,
                amount_owed_minor=case.owed_minor - settled,
                reason=case.reason,
                case_id=case_id,
                note=f"settles {self._fmt(settled)} owed, from payment {payment}",
                settles_debt=True,
            )

    def _require_phase(self, action: str, *allowed: Phase) -> None:
        if self.phase not in allowed:
            raise WrongStatus(f"shop {self.shop_id} is {self.status.value} and cannot {action}")

    def _require_in_order(self, stamp: Stamp) -> None:
        if stamp.effective_at < self.last_effective_at:
            raise OutOfOrder(
                f"effective time {stamp.effective_at.isoformat()} is before shop "
                f"{self.shop_id}'s last event at {self.last_effective_at.isoformat()}"
            )

    def _refund_lines(self, amount_minor: int) -> tuple[RefundLine, ...]:
        # Newest payment first, never more to a payment than it brought in.
        lines = []
        remaining = amount_minor
        for payment in reversed(self.payments.values()):
            if remaining == 0:
                break
            share = min(remaining, payment.amount_minor)
            lines.append(RefundLine(channel=payment.channel, trade_no=payment.trade_no, amount_minor=share))
            remaining -= share
        assert remaining == 0, f"refund of {amount_minor} exceeds payments into {self.shop_id}"
        return tuple(lines)

    def _fmt(self, amount_minor: int) -> str:
        return f"{format_minor(amount_minor, self.currency)} {self.currency}"


class PaymentRecord(BaseModel):
    """A payment as a snapshot keeps it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    trade_no: str
    amount_minor: int


class CaseRecord(BaseModel):
    """A deduction case as a snapshot keeps it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    reason: DeductionReason
    amount_minor: int
    owed_minor: int


class DepositSnapshot(BaseModel):
    """The whole state of a deposit at one version, so a long history loads fast.

    Snapshots are a cache: they are derived from the events, stored apart from
    them, and can be deleted at any time without losing anything.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str] = "ShopDeposit.Snapshot"
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    shop_id: str
    site: str | None
    currency: str
    required_minor: int
    phase: Phase
    paid_minor: int
    frozen_minor: int
    deducted_minor: int
    refunded_minor: int
    forfeited_minor: int
    owed_minor: int
    settlement_due: AwareDatetime | None
    last_effective_at: AwareDatetime
    payments: tuple[PaymentRecord, ...]
    cases: tuple[CaseRecord, ...]

    @classmethod
    def take(cls, deposit: ShopDeposit) -> DepositSnapshot:
        """Capture a deposit whose last command has finished."""
        deposit.check_invariants()
        balance = deposit.balance
        return cls(
            originator_id=balance.deposit_id,
            originator_version=balance.version,
            shop_id=balance.shop_id,
            site=balance.site,
            currency=balance.currency,
            required_minor=balance.required_minor,
            phase=balance.phase,
            paid_minor=balance.paid_minor,
            frozen_minor=balance.frozen_minor,
            deducted_minor=balance.deducted_minor,
            refunded_minor=balance.refunded_minor,
            forfeited_minor=balance.forfeited_minor,
            owed_minor=balance.owed_minor,
            settlement_due=balance.settlement_due,
            last_effective_at=balance.last_effective_at,
            payments=tuple(
                PaymentRecord(channel=p.channel, trade_no=p.trade_no, amount_minor=p.amount_minor)
                for p in deposit.payments.values()
            ),
            cases=tuple(
                CaseRecord(case_id=case_id, reason=c.reason, amount_minor=c.amount_minor, owed_minor=c.owed_minor)
                for case_id, c in deposit.cases.items()
            ),
        )

    def restore(self) -> ShopDeposit:
        """The deposit as it stood when the snapshot was taken."""
        deposit = ShopDeposit.__new__(ShopDeposit)
        deposit.balance = Balance(
            deposit_id=self.originator_id,
            shop_id=self.shop_id,
            site=self.site,
            currency=self.currency,
            required_minor=self.required_minor,
            phase=self.phase,
            paid_minor=self.paid_minor,
            unfrozen_minor=0,
            frozen_minor=self.frozen_minor,
            deducted_minor=self.deducted_minor,
            refunded_minor=self.refunded_minor,
            forfeited_minor=self.forfeited_minor,
            owed_minor=self.owed_minor,
            settlement_due=self.settlement_due,
            version=self.originator_version,
            last_effective_at=self.last_effective_at,
        )
        deposit.payments = {
            (p.channel, p.trade_no): Payment(p.channel, p.trade_no, p.amount_minor) for p in self.payments
        }
        deposit.cases = {
            c.case_id: Case(reason=c.reason, amount_minor=c.amount_minor, owed_minor=c.owed_minor) for c in self.cases
        }
        deposit._pending = []
        deposit.check_invariants()
        return deposit


_STORED: tuple[type[DepositEvent] | type[DepositSnapshot], ...] = (*HISTORY_EVENTS, DepositSnapshot)
STORED_TYPES: dict[str, type[DepositEvent] | type[DepositSnapshot]] = {cls.TOPIC: cls for cls in _STORED}
"""Every stored record type by its stable topic: the mapper's only way to find a class."""


def project_deposit(
    deposit: ShopDeposit | None, events: Iterable[DepositEvent | DepositSnapshot]
) -> ShopDeposit | None:
    """Fold events (a snapshot first, perhaps) into a deposit: the repository's projector."""
    for event in events:
        if deposit is None:
            if isinstance(event, Opened):
                deposit = ShopDeposit(event)
            elif isinstance(event, DepositSnapshot):
                deposit = event.restore()
            else:
                raise AssertionError(f"history of {event.originator_id} starts with {type(event).__name__}")
        else:
            assert isinstance(event, DepositEvent), "a snapshot can only start a history"
            deposit.apply(event)
    return deposit


def require_deposit(deposit: ShopDeposit | None, shop_id: str) -> ShopDeposit:
    """The deposit, or ``ShopNotFound`` naming the shop."""
    if deposit is None:
        raise ShopNotFound(f"shop {shop_id} has no deposit")
    return deposit


def _build(event_class: type[_Event], **fields: Any) -> _Event:
    # Validation failures here are bad input (a too-long note, a malformed case id):
    # report the first one in a single line.
    try:
        return event_class(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise MalformedInput(f"invalid {field.replace('_', ' ')}: {first['msg']}") from None
