"""``ShopDeposit``: one merchant shop's security deposit, rebuilt from its events.

Command methods (``open``, ``pay``, ``deduct``, ``hold``, ``appeal``, ``close``,
``refund``, ``force_close``...) check the rules and record new events; ``apply``
is the only place an event changes the state, so replaying history and running
a command change the state in exactly the same way.

The conservation law holds after every event and is asserted in code::

    paid = unfrozen + frozen + held + deducted + refunded + forfeited

where ``unfrozen`` is money in hand but not yet frozen (a payment, a released
hold or a reversed deduction, between its arrival and the ``Frozen`` event that
places it); it is zero whenever a command has finished, which gives the
published form ``paid = frozen + held + deducted + refunded + forfeited``.
``deducted`` is net of upheld appeals (``reversed`` counts what they gave back).

Penalties obey a second law, over the deductions that stand (all but those
reversed by an upheld appeal)::

    charged = deducted + owed + written_off

what they charged was collected, is still owed, or was written off as a loss.

Money coming back into the deposit always takes the same path: it settles
what the shop owes first, oldest case first, and only the rest is frozen.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from domain.balance import FIGURE_NAMES, Balance, DepositFigures, DepositState, Phase, Status
from domain.errors import (
    DuplicateConflict,
    InvariantBroken,
    MalformedInput,
    OutOfOrder,
    Refused,
    ShopNotFound,
    WrongStatus,
)
from domain.events import (
    AppealFiled,
    AppealRejected,
    Channel,
    ClosureRequested,
    Deducted,
    DeductionReason,
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
    RefundLine,
    RequirementChanged,
    Stamp,
    WrittenOff,
)
from domain.money import format_minor
from domain.policy import STANDARD_TERMS, DepositPolicy, DepositTerms, price_violation

SHOP_NAMESPACE = UUID("5c0b2f6e-6f0e-4d55-9a8a-3f4f3c1d0b7e")
"""Namespace of the name-based (version 5) UUIDs that identify deposits by shop id."""

FORCED_CLOSURE_RELEASE = "released by the forced closure"
"""The note of the ``HoldReleased`` events a forced closure records before it forfeits."""


@functools.lru_cache(maxsize=4096)
def deposit_id(shop_id: str) -> UUID:
    """The aggregate id of a shop's deposit: derived from the shop id, so no index is needed."""
    # Cached: a command derives it several times, and a SHA-1 each time was a visible cost.
    return uuid.uuid5(SHOP_NAMESPACE, shop_id)


@dataclass(slots=True)
class Payment:
    """One payment into the deposit, kept for idempotency and for refunds."""

    channel: Channel
    trade_no: str
    amount_minor: int
    refunded_minor: int = 0

    @property
    def refundable_minor(self) -> int:
        """What may still go back through this payment: never more than it brought in."""
        return self.amount_minor - self.refunded_minor


class AppealStage(StrEnum):
    """Where the appeal of a deduction stands."""

    PENDING = "pending"
    UPHELD = "upheld"
    REJECTED = "rejected"


@dataclass(slots=True)
class Case:
    """One deduction case: what was asked for, collected and still owed, and its appeal."""

    reason: DeductionReason
    amount_minor: int
    owed_minor: int
    collected_minor: int
    deducted_at: datetime
    order_value_minor: int | None = None
    priced: bool = False
    """Priced by the policy's catalogue (and counted against its daily cap)."""
    appeal: AppealStage | None = None
    appealed_while_closing: bool = False
    written_off_minor: int = 0
    """What the platform gave up collecting after the deposit closed."""

    @property
    def stands(self) -> bool:
        """Whether the deduction still counts: not reversed by an upheld appeal."""
        return self.appeal is not AppealStage.UPHELD


@dataclass(slots=True)
class Hold:
    """Money set aside for one open case: how much was placed and how much is still held."""

    amount_minor: int
    held_minor: int


@dataclass(slots=True)
class BookkeepingTotals:
    """What the cases still owe, the holds still hold and the payments have had back, in sum.

    ``charged_minor`` is what the standing deductions charged, ``written_off_minor``
    what was written off of them: the two sides of the penalties' law.
    """

    owed_minor: int = 0
    held_minor: int = 0
    refunded_minor: int = 0
    charged_minor: int = 0
    written_off_minor: int = 0

    @classmethod
    def count(
        cls, payments: dict[tuple[Channel, str], Payment], cases: dict[str, Case], holds: dict[str, Hold]
    ) -> BookkeepingTotals:
        """The totals summed afresh, a pass over every payment, case and hold."""
        return cls(
            owed_minor=sum(case.owed_minor for case in cases.values()),
            held_minor=sum(hold.held_minor for hold in holds.values()),
            refunded_minor=sum(payment.refunded_minor for payment in payments.values()),
            charged_minor=sum(case.amount_minor for case in cases.values() if case.stands),
            written_off_minor=sum(case.written_off_minor for case in cases.values()),
        )


_Event = TypeVar("_Event", bound=DepositEvent)


class ShopDeposit(DepositFigures):
    """The security deposit of one merchant shop; its figures are read from its :class:`Balance`."""

    def __init__(self, opened: Opened) -> None:
        """Start a deposit from its ``Opened`` event; use :meth:`open` to open a new one."""
        self.balance = Balance.opened(opened)
        self.payments: dict[tuple[Channel, str], Payment] = {}
        self.cases: dict[str, Case] = {}
        self.holds: dict[str, Hold] = {}
        self.totals = BookkeepingTotals()
        self._pending: list[DepositEvent] = []

    @classmethod
    def restored(
        cls,
        balance: Balance,
        payments: dict[tuple[Channel, str], Payment],
        cases: dict[str, Case],
        holds: dict[str, Hold],
    ) -> ShopDeposit:
        """A deposit as a snapshot kept it: its figures and its bookkeeping, checked against each other."""
        deposit = cls.__new__(cls)
        deposit.balance = balance
        deposit.payments, deposit.cases, deposit.holds = payments, cases, holds
        deposit.totals = BookkeepingTotals.count(payments, cases, holds)
        deposit._pending = []
        deposit.check_invariants()
        return deposit

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
        categories: Iterable[str] = (),
        policy_version: str | None = None,
    ) -> ShopDeposit:
        """Open a shop's deposit account with the amount the platform requires.

        ``categories`` and ``policy_version`` say where the requirement came from
        when the policy derived it.
        """
        opened = _build(
            Opened,
            originator_id=deposit_id(shop_id),
            originator_version=1,
            shop_id=shop_id,
            site=site,
            currency=currency,
            required_minor=required_minor,
            categories=tuple(sorted(set(categories))),
            policy_version=policy_version,
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
        channel_time: datetime | None = None,
    ) -> bool:
        """Record a payment and freeze it, settling what the shop owes first.

        Accepted while the deposit is open or closing (the channel has the money:
        frozen, it is refunded at settlement with the rest). A closed or
        forfeited deposit accepts a payment only to settle its debt: never more
        than it still owes.

        Returns False, recording nothing, when this (channel, trade number) was
        recorded before with the same amount: notifications are delivered more
        than once, and the second delivery must change nothing. ``channel_time``
        (when the channel says it was paid) is kept beside the effective time;
        it is not part of the comparison.
        """
        known = self.payments.get((channel, trade_no))
        if known is not None:
            if known.amount_minor != amount_minor:
                raise DuplicateConflict(
                    f"payment {channel.value} {trade_no} was recorded with "
                    f"{self._fmt(known.amount_minor)}, not {self._fmt(amount_minor)}"
                )
            return False
        settled = self.phase in (Phase.CLOSED, Phase.FORFEITED)
        if settled and self.owed_minor == 0:
            raise WrongStatus(f"shop {self.shop_id} is {self.status.value}, owes nothing and cannot accept payments")
        self._require_in_order(stamp)
        if settled and amount_minor > self.owed_minor:
            raise Refused(
                f"shop {self.shop_id} is {self.status.value}: a payment only settles its debt of "
                f"{self._fmt(self.owed_minor)}, not {self._fmt(amount_minor)}"
            )
        self._record(
            Paid,
            stamp,
            currency=self.currency,
            amount_minor=amount_minor,
            channel=channel,
            trade_no=trade_no,
            payer=payer,
            channel_time=channel_time,
        )
        self._place(f"payment {channel.value} {trade_no}", stamp)
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
        terms: DepositTerms = STANDARD_TERMS,
    ) -> bool:
        """Deduct a penalty: take the case's hold, then the frozen balance, record the rest as owed.

        Returns False, recording nothing, when this case was deducted before with
        the same amount and reason. A deduction that leaves a fully funded open
        deposit short starts the top-up clock (``terms.top_up_deadline``).
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
        self._deduct(amount_minor, reason, case_id, note, stamp, terms)
        self.check_invariants()
        return True

    def deduct_by_policy(
        self,
        *,
        policy: DepositPolicy,
        reason: DeductionReason,
        case_id: str,
        order_value_minor: int | None,
        note: str,
        stamp: Stamp,
    ) -> bool:
        """Deduct what the policy's catalogue charges for the violation, within its daily cap.

        Idempotent by case like :meth:`deduct`, but on what was asked (reason
        and order value), not on the amount: the daily cap may price a repeat
        differently, and a repeat must still change nothing.
        """
        known = self.cases.get(case_id)
        if known is not None:
            if not known.priced or known.reason != reason or known.order_value_minor != order_value_minor:
                raise DuplicateConflict(
                    f"case {case_id} was deducted as {self._describe_case(known)}, "
                    f"not {reason.value} priced by the policy{self._order_words(order_value_minor)}"
                )
            return False
        self._require_phase("accept deductions", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        site = self._priced_site(policy)
        pricing = price_violation(
            policy.rule(site, reason),
            reason=reason,
            currency=self.currency,
            order_value_minor=order_value_minor,
            charged_today_minor=self._charged_today(reason, stamp.effective_at, policy.sites[site].zone()),
        )
        self._deduct(
            pricing.amount_minor,
            reason,
            case_id,
            note,
            stamp,
            policy.terms,
            rule=pricing.rule,
            order_value_minor=order_value_minor,
        )
        self.check_invariants()
        return True

    def hold(self, *, case_id: str, amount_minor: int, note: str, stamp: Stamp) -> bool:
        """Hold part of the frozen balance for an open case: it cannot be refunded until released.

        Idempotent by case: the same hold again changes nothing; another amount
        is a conflict. A case can be held before it is deducted, not after.
        """
        known = self.holds.get(case_id)
        if known is not None:
            if known.amount_minor != amount_minor:
                raise DuplicateConflict(
                    f"case {case_id} was held with {self._fmt(known.amount_minor)}, not {self._fmt(amount_minor)}"
                )
            return False
        self._require_phase("place holds", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        if case_id in self.cases:
            raise Refused(f"case {case_id} of shop {self.shop_id} is deducted already: a hold comes before")
        if amount_minor > self.frozen_minor:
            raise Refused(
                f"a hold of {self._fmt(amount_minor)} exceeds shop {self.shop_id}'s frozen balance "
                f"of {self._fmt(self.frozen_minor)}"
            )
        self._record(HoldPlaced, stamp, currency=self.currency, amount_minor=amount_minor, case_id=case_id, note=note)
        self.check_invariants()
        return True

    def release(self, *, case_id: str, note: str, stamp: Stamp) -> bool:
        """Release what a case still holds: it settles what is owed first, the rest is frozen again.

        Returns False, recording nothing, when the hold was released (or taken
        by the case's deduction) before.
        """
        hold = self.holds.get(case_id)
        if hold is None:
            raise Refused(f"shop {self.shop_id} has no hold on case {case_id}")
        if hold.held_minor == 0:
            return False
        self._require_phase("release holds", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        self._release(case_id, hold, note, stamp)
        self.check_invariants()
        return True

    def appeal(self, *, case_id: str, note: str, stamp: Stamp, terms: DepositTerms = STANDARD_TERMS) -> bool:
        """The merchant appeals the deduction of a case, within the appeal window after it.

        The window is the one of the policy version in force when the case was
        deducted (``terms.appeal_windows``), recorded with that version.

        Accepted in every phase: an appeal may outlive the deposit, and its
        outcome is then recorded by correcting events. Filing the same appeal
        again while it is pending changes nothing.
        """
        case = self.cases.get(case_id)
        if case is None:
            raise Refused(f"shop {self.shop_id} has no deduction on case {case_id} to appeal")
        if case.appeal is AppealStage.PENDING:
            return False
        if case.appeal is not None:
            raise Refused(f"the appeal on case {case_id} of shop {self.shop_id} was {case.appeal.value} already")
        if case.written_off_minor:
            raise Refused(f"the debt of case {case_id} of shop {self.shop_id} was written off: its deduction is final")
        self._require_in_order(stamp)
        granted = terms.appeal_window_for(case.deducted_at)
        window_ends_at = case.deducted_at + granted.appeal_window
        if stamp.effective_at > window_ends_at:
            raise Refused(f"the appeal window for case {case_id} closed at {window_ends_at.isoformat()}")
        self._record(
            AppealFiled,
            stamp,
            case_id=case_id,
            window_ends_at=window_ends_at,
            policy_version=granted.policy_version,
            note=note,
        )
        self.check_invariants()
        return True

    def resolve_appeal(
        self, *, case_id: str, upheld: bool, note: str, stamp: Stamp, terms: DepositTerms = STANDARD_TERMS
    ) -> bool:
        """Record the outcome of a pending appeal; an upheld one reverses the deduction.

        Upheld: what the case collected comes back (settling other debts first,
        then frozen; on a closed deposit then refunded, on a forfeited one
        forfeited, like the rest of it) and what it still owed is cancelled.
        An appeal filed while the deposit was closing restarts the settlement
        window. The same outcome again changes nothing; the other one conflicts.
        """
        case = self.cases.get(case_id)
        if case is None or case.appeal is None:
            raise Refused(f"shop {self.shop_id} has no appeal on case {case_id} to resolve")
        outcome = AppealStage.UPHELD if upheld else AppealStage.REJECTED
        if case.appeal is outcome:
            return False
        if case.appeal is not AppealStage.PENDING:
            raise DuplicateConflict(f"the appeal on case {case_id} was {case.appeal.value}, not {outcome.value}")
        self._require_in_order(stamp)
        restart = case.appealed_while_closing and self.phase is Phase.CLOSING
        settlement_due = stamp.effective_at + terms.settlement_window if restart else None
        version = terms.policy_version if restart else None
        if not upheld:
            self._record(
                AppealRejected, stamp, case_id=case_id, settlement_due=settlement_due, policy_version=version, note=note
            )
            self.check_invariants()
            return True
        restored = case.collected_minor
        self._record(
            DeductionReversed,
            stamp,
            currency=self.currency,
            case_id=case_id,
            reason=case.reason,
            amount_restored_minor=restored,
            amount_cancelled_minor=case.owed_minor,
            settlement_due=settlement_due,
            policy_version=version,
            note=note,
        )
        self._place(f"the reversal of case {case_id}", stamp)
        # A deposit already settled keeps its outcome: the money goes where the rest went.
        if self.phase is Phase.CLOSED and self.frozen_minor:
            self._record(
                Refunded,
                stamp,
                currency=self.currency,
                amount_minor=self.frozen_minor,
                lines=self._refund_lines(self.frozen_minor),
            )
        elif self.phase is Phase.FORFEITED and self.frozen_minor:
            self._record(
                Forfeited,
                stamp,
                currency=self.currency,
                amount_minor=self.frozen_minor,
                reason=f"case {case_id} reversed after the forced closure: forfeited with the rest of the deposit",
            )
        self.check_invariants()
        return True

    def change_categories(
        self, *, policy: DepositPolicy, add: Iterable[str], remove: Iterable[str], stamp: Stamp
    ) -> bool:
        """The shop sells in other categories: the requirement becomes the highest of the new set.

        Returns False, recording nothing, when neither the categories nor the
        requirement change.
        """
        added, removed = set(add), set(remove)
        both = sorted(added & removed)
        if both:
            raise MalformedInput(f"category {', '.join(both)} is both added and removed")
        self._require_phase("change categories", Phase.OPEN)
        site = self._priced_site(policy)
        unknown = policy.unknown_categories(site, added)
        if unknown:
            known = ", ".join(sorted(policy.sites[site].required))
            raise MalformedInput(
                f"policy {policy.version} has no category {', '.join(unknown)} on site {site}: expected one of {known}"
            )
        current = set(self.balance.categories)
        categories = sorted((current | added) - removed)
        if not categories:
            raise Refused(f"shop {self.shop_id} must keep at least one category")
        self._require_priced(policy, site, categories)
        changes = []
        if added - current:
            changes.append(f"added {', '.join(sorted(added - current))}")
        if removed & current:
            changes.append(f"removed {', '.join(sorted(removed & current))}")
        why = f"categories {'; '.join(changes)}" if changes else f"policy {policy.version} applied"
        return self._change_requirement(
            policy.requirement_minor(site, categories), categories, why, policy.terms, stamp
        )

    def apply_policy(self, *, policy: DepositPolicy, stamp: Stamp) -> bool:
        """Bring the requirement in line with ``policy`` (a new version, new amounts).

        Only deposits whose requirement the policy derives (those with categories)
        can follow a policy; returns False, recording nothing, when it is already
        in line with this version.
        """
        self._require_phase("follow a new policy", Phase.OPEN)
        site = self._priced_site(policy)
        categories = list(self.balance.categories)
        if not categories:
            raise Refused(
                f"shop {self.shop_id} has no categories: its requirement was set by hand (use categories --add)"
            )
        self._require_priced(policy, site, categories)
        why = f"policy {policy.version} applied"
        return self._change_requirement(
            policy.requirement_minor(site, categories), categories, why, policy.terms, stamp
        )

    def close(self, *, settlement_window: timedelta, stamp: Stamp, policy_version: str | None = None) -> None:
        """The merchant closes the shop: refund becomes possible once settlement is due."""
        self._require_phase("be closed", Phase.OPEN)
        self._require_in_order(stamp)
        self._record(
            ClosureRequested,
            stamp,
            settlement_due=stamp.effective_at + settlement_window,
            policy_version=policy_version,
        )
        self.check_invariants()

    def refund(self, *, stamp: Stamp, terms: DepositTerms = STANDARD_TERMS) -> None:
        """Refund the remaining frozen balance, newest payment first, and close the deposit.

        Refused before settlement is due, while a case holds money or an appeal
        is open, and while any deduction can still be appealed (``terms``'
        appeal window, as :meth:`appeal` applies it): an upheld appeal after the
        refund would force a second one.
        """
        self._require_phase("be refunded", Phase.CLOSING)
        self._require_in_order(stamp)
        if self.balance.settlement_due is None:
            raise InvariantBroken(f"no settlement due time for {self.shop_id} while closing")
        if stamp.effective_at < self.balance.settlement_due:
            raise Refused(
                f"shop {self.shop_id} cannot be refunded before its settlement is due at "
                f"{self.balance.settlement_due.isoformat()}"
            )
        self._require_no_open_cases("be refunded")
        appealable = self._appealable_until(stamp, terms)
        if appealable is not None:
            case_id, window_ends_at = appealable
            raise Refused(
                f"shop {self.shop_id} cannot be refunded until after {window_ends_at.isoformat()}: "
                f"the deduction on case {case_id} can be appealed until then"
            )
        self._record(
            Refunded,
            stamp,
            currency=self.currency,
            amount_minor=self.frozen_minor,
            lines=self._refund_lines(self.frozen_minor),
        )
        self.check_invariants()

    def refund_excess(self, *, stamp: Stamp) -> None:
        """Refund the frozen money above the requirement (多退少补); the shop stays open.

        Newest payment first, like a refund, and refused likewise while a case
        holds money or an appeal is open.
        """
        self._require_phase("have its excess refunded", Phase.OPEN)
        self._require_in_order(stamp)
        self._require_no_open_cases("have its excess refunded")
        excess = self.frozen_minor - self.balance.required_minor
        if excess <= 0:
            raise Refused(
                f"shop {self.shop_id} has no excess: {self._fmt(self.frozen_minor)} frozen, "
                f"{self._fmt(self.balance.required_minor)} required"
            )
        self._record(
            ExcessRefunded, stamp, currency=self.currency, amount_minor=excess, lines=self._refund_lines(excess)
        )
        self.check_invariants()

    def force_close(self, *, reason: str, stamp: Stamp) -> None:
        """The platform force-closes the shop: holds are released, the whole remaining balance is forfeited."""
        self._require_phase("be force-closed", Phase.OPEN, Phase.CLOSING)
        self._require_in_order(stamp)
        for case_id, hold in list(self.holds.items()):
            if hold.held_minor:
                self._release(case_id, hold, FORCED_CLOSURE_RELEASE, stamp)
        self._record(Forfeited, stamp, currency=self.currency, amount_minor=self.frozen_minor, reason=reason)
        self.check_invariants()

    def write_off(self, *, case_id: str, reason: str, stamp: Stamp, terms: DepositTerms = STANDARD_TERMS) -> bool:
        """Record what a case still owes as a loss: the platform gives up collecting it.

        Only on a closed or forfeited deposit (an open or closing one still
        collects its debts from the next payments), only for a case that owes
        something, and only once its deduction is final: no appeal open, and
        none possible any more (rejected, or the appeal window has passed).
        Idempotent by case: writing off a case written off before changes
        nothing. No money moves; the deposit's ``written_off`` figure grows.
        """
        case = self.cases.get(case_id)
        if case is None:
            raise Refused(f"shop {self.shop_id} has no deduction on case {case_id} to write off")
        if case.written_off_minor:
            return False
        self._require_phase("write off a debt", Phase.CLOSED, Phase.FORFEITED)
        if case.owed_minor == 0:
            raise Refused(f"case {case_id} of shop {self.shop_id} owes nothing to write off")
        self._require_in_order(stamp)
        if case.appeal is AppealStage.PENDING:
            raise Refused(f"the debt of case {case_id} cannot be written off while its appeal is open")
        window_ends_at = _appeal_window_ends(case, terms)
        if case.appeal is None and stamp.effective_at <= window_ends_at:
            raise Refused(
                f"the debt of case {case_id} cannot be written off until after {window_ends_at.isoformat()}: "
                "its deduction can be appealed until then"
            )
        self._record(
            WrittenOff, stamp, currency=self.currency, amount_minor=case.owed_minor, case_id=case_id, reason=reason
        )
        self.check_invariants()
        return True

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
    def phase(self) -> Phase:
        """Where the deposit is in its lifecycle."""
        return self.balance.phase

    @property
    def status(self) -> Status:
        """The status the ledger reports, regardless of the time (see :meth:`state` for ``restricted``)."""
        return self.balance.status

    @property
    def unfrozen_minor(self) -> int:
        """Money in hand but not yet frozen (only inside a command)."""
        return self.balance.unfrozen_minor

    @property
    def shortfall_minor(self) -> int:
        """What the shop must pay: the gap to the requirement plus what it owes (only the debt once closed)."""
        return self.balance.shortfall_minor

    def state(self, now: datetime | None = None) -> DepositState:
        """The deposit's figures as they stand at this version; the status as of ``now`` when given."""
        return self.balance.state(now)

    def check_invariants(self) -> None:
        """Assert the laws that hold whenever a command has finished.

        A failure is a bug in the ledger, never bad input.
        """
        self.balance.assert_balanced()
        if self.balance.unfrozen_minor != 0:
            raise InvariantBroken(f"money left unfrozen in {self.shop_id}")
        # Against running totals: summing every case, hold and payment after each command
        # would make a command's cost grow with the deposit's history. recount() checks
        # the totals themselves whenever a deposit is restored or snapshot.
        totals = self.totals
        if self.balance.owed_minor != totals.owed_minor:
            raise InvariantBroken(f"owed figure and open cases disagree in {self.shop_id}")
        if self.balance.held_minor != totals.held_minor:
            raise InvariantBroken(f"held figure and holds disagree in {self.shop_id}")
        if self.balance.refunded_minor != totals.refunded_minor:
            raise InvariantBroken(f"refunds and payments disagree in {self.shop_id}")
        if self.balance.written_off_minor != totals.written_off_minor:
            raise InvariantBroken(f"written-off figure and cases disagree in {self.shop_id}")
        # charged = deducted + owed + written_off, over the deductions that stand.
        balance = self.balance
        if totals.charged_minor != balance.deducted_minor + balance.owed_minor + balance.written_off_minor:
            raise InvariantBroken(f"penalties charged and their outcomes disagree in {self.shop_id}")

    def recount(self) -> None:
        """Assert that the running totals are the sums of the cases, holds and payments (costs a pass over them)."""
        if self.totals != BookkeepingTotals.count(self.payments, self.cases, self.holds):
            raise InvariantBroken(f"running totals and bookkeeping disagree in {self.shop_id}")

    # ------------------------------------------------------------------- events

    def apply(self, event: DepositEvent) -> None:
        """Change the state by one event: the figures, then the rules' bookkeeping."""
        if event.originator_id != self.id:
            raise InvariantBroken("event of another deposit")
        closing = self.phase is Phase.CLOSING
        self.balance.apply(event)
        if isinstance(event, Paid):
            self.payments[(event.channel, event.trade_no)] = Payment(event.channel, event.trade_no, event.amount_minor)
        elif isinstance(event, Deducted):
            self._apply_deducted(event)
        elif isinstance(event, Refunded | ExcessRefunded):
            for line in event.lines:
                self.payments[(line.channel, line.trade_no)].refunded_minor += line.amount_minor
                self.totals.refunded_minor += line.amount_minor
        elif isinstance(event, HoldPlaced):
            self.holds[event.case_id] = Hold(amount_minor=event.amount_minor, held_minor=event.amount_minor)
            self.totals.held_minor += event.amount_minor
        elif isinstance(event, HoldReleased):
            self.holds[event.case_id].held_minor -= event.amount_minor
            self.totals.held_minor -= event.amount_minor
        elif isinstance(event, AppealFiled):
            self.cases[event.case_id].appeal = AppealStage.PENDING
            self.cases[event.case_id].appealed_while_closing = closing
        elif isinstance(event, AppealRejected):
            self.cases[event.case_id].appeal = AppealStage.REJECTED
        elif isinstance(event, DeductionReversed):
            case = self.cases[event.case_id]
            case.appeal = AppealStage.UPHELD
            case.collected_minor -= event.amount_restored_minor
            case.owed_minor -= event.amount_cancelled_minor
            self.totals.owed_minor -= event.amount_cancelled_minor
            self.totals.charged_minor -= case.amount_minor
        elif isinstance(event, WrittenOff):
            case = self.cases[event.case_id]
            case.owed_minor -= event.amount_minor
            case.written_off_minor += event.amount_minor
            self.totals.owed_minor -= event.amount_minor
            self.totals.written_off_minor += event.amount_minor

    def _apply_deducted(self, event: Deducted) -> None:
        if event.settles_debt:
            case = self.cases[event.case_id]
            self.totals.owed_minor += event.amount_owed_minor - case.owed_minor
            case.owed_minor = event.amount_owed_minor
            case.collected_minor += event.amount_collected_minor
            return
        self.cases[event.case_id] = Case(
            reason=event.reason,
            amount_minor=event.amount_collected_minor + event.amount_owed_minor,
            owed_minor=event.amount_owed_minor,
            collected_minor=event.amount_collected_minor,
            deducted_at=event.effective_at,
            order_value_minor=event.order_value_minor,
            priced=event.rule is not None,
        )
        self.totals.owed_minor += event.amount_owed_minor
        self.totals.charged_minor += event.amount_collected_minor + event.amount_owed_minor
        if event.collected_from_hold_minor:
            self.holds[event.case_id].held_minor -= event.collected_from_hold_minor
            self.totals.held_minor -= event.collected_from_hold_minor

    # ------------------------------------------------------------------ helpers

    def _record(self, event_class: type[_Event], stamp: Stamp, **fields: Any) -> _Event:
        event = _build(
            event_class,
            originator_id=self.id,
            originator_version=self.version + 1,
            effective_at=stamp.effective_at,
            recorded_at=stamp.recorded_at,
            actor=stamp.actor,
            **fields,
        )
        self.apply(event)
        self._pending.append(event)
        return event

    def _deduct(
        self,
        amount_minor: int,
        reason: DeductionReason,
        case_id: str,
        note: str,
        stamp: Stamp,
        terms: DepositTerms,
        *,
        rule: str | None = None,
        order_value_minor: int | None = None,
    ) -> None:
        # The case's own hold first: it was set aside for exactly this.
        hold = self.holds.get(case_id)
        from_hold = min(amount_minor, hold.held_minor) if hold else 0
        from_frozen = min(amount_minor - from_hold, self.frozen_minor)
        collected = from_hold + from_frozen
        owed = amount_minor - collected
        top_up_due = self._top_up_due_after(stamp, terms, covered_change=-collected, owed_change=owed)
        applied_policy = rule is not None or top_up_due is not None
        self._record(
            Deducted,
            stamp,
            currency=self.currency,
            amount_collected_minor=collected,
            amount_owed_minor=owed,
            reason=reason,
            case_id=case_id,
            note=note,
            collected_from_hold_minor=from_hold,
            order_value_minor=order_value_minor,
            rule=rule,
            policy_version=terms.policy_version if applied_policy else None,
            top_up_due=top_up_due,
        )
        if hold is not None and hold.held_minor:
            self._release(case_id, hold, "what the deduction did not take", stamp)

    def _release(self, case_id: str, hold: Hold, note: str, stamp: Stamp) -> None:
        self._record(
            HoldReleased, stamp, currency=self.currency, amount_minor=hold.held_minor, case_id=case_id, note=note
        )
        self._place(f"the released hold of case {case_id}", stamp)

    def _change_requirement(
        self, required_minor: int, categories: list[str], why: str, terms: DepositTerms, stamp: Stamp
    ) -> bool:
        unchanged = (
            required_minor == self.balance.required_minor
            and tuple(categories) == self.balance.categories
            and terms.policy_version == self.balance.policy_version
        )
        if unchanged:
            return False
        self._require_in_order(stamp)
        self._record(
            RequirementChanged,
            stamp,
            currency=self.currency,
            old_required_minor=self.balance.required_minor,
            new_required_minor=required_minor,
            categories=tuple(categories),
            why=why,
            policy_version=terms.policy_version,
            top_up_due=self._top_up_due_after(stamp, terms, required_minor=required_minor),
        )
        self.check_invariants()
        return True

    def _top_up_due_after(self, stamp: Stamp, terms: DepositTerms, **change: int) -> datetime | None:
        # The clock starts when an open deposit goes from fully funded to short; a
        # deposit never yet fully funded has no clock, and a running one is not reset.
        if self.phase is not Phase.OPEN or self.balance.shortfall_minor > 0:
            return None
        if self.balance.shortfall_after(**change) == 0:
            return None
        return stamp.effective_at + terms.top_up_deadline

    def _place(self, source: str, stamp: Stamp) -> None:
        # Money in hand settles what is owed first, oldest case first; the rest is frozen.
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
                note=f"settles {self._fmt(settled)} owed, from {source}",
                settles_debt=True,
            )
        if self.balance.unfrozen_minor:
            self._record(Frozen, stamp, currency=self.currency, amount_minor=self.balance.unfrozen_minor)

    def _appealable_until(self, stamp: Stamp, terms: DepositTerms) -> tuple[str, datetime] | None:
        # The case whose appeal window ends last, of those an appeal could still be filed
        # against at ``stamp``; None when no deduction can be appealed any more.
        latest: tuple[str, datetime] | None = None
        for case_id, case in self.cases.items():
            if case.appeal is not None:
                continue
            window_ends_at = _appeal_window_ends(case, terms)
            if stamp.effective_at <= window_ends_at and (latest is None or window_ends_at > latest[1]):
                latest = (case_id, window_ends_at)
        return latest

    def _charged_today(self, reason: DeductionReason, moment: datetime, zone: tzinfo) -> int:
        # Daily caps count calendar days in the site's time zone, as the platforms do
        # (Beijing time for CN): 23:30 UTC is already the next day there.
        day = moment.astimezone(zone).date()
        return sum(
            case.amount_minor
            for case in self.cases.values()
            if case.priced
            and case.reason is reason
            and case.appeal is not AppealStage.UPHELD
            and case.deducted_at.astimezone(zone).date() == day
        )

    def _priced_site(self, policy: DepositPolicy) -> str:
        site = self.balance.site
        if site is None:
            raise Refused(f"shop {self.shop_id} has no site: the policy cannot price its deposit")
        if site not in policy.sites:
            raise Refused(f"policy {policy.version} has no site {site}, the site of shop {self.shop_id}")
        currency = policy.sites[site].currency
        if currency != self.currency:
            raise Refused(
                f"policy {policy.version} prices site {site} in {currency}, "
                f"but shop {self.shop_id}'s deposit is in {self.currency}"
            )
        return site

    def _require_priced(self, policy: DepositPolicy, site: str, categories: list[str]) -> None:
        unknown = policy.unknown_categories(site, categories)
        if unknown:
            raise Refused(
                f"policy {policy.version} no longer prices category {', '.join(unknown)} on site {site}: "
                f"remove it from shop {self.shop_id} first"
            )

    def _require_no_open_cases(self, action: str) -> None:
        for case_id, hold in self.holds.items():
            if hold.held_minor:
                raise Refused(
                    f"shop {self.shop_id} cannot {action} while case {case_id} holds {self._fmt(hold.held_minor)}"
                )
        for case_id, case in self.cases.items():
            if case.appeal is AppealStage.PENDING:
                raise Refused(f"shop {self.shop_id} cannot {action} while the appeal on case {case_id} is open")

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
        # Newest payment first, never more through a payment than it brought in,
        # counting what earlier refunds sent back through it.
        lines = []
        remaining = amount_minor
        for payment in reversed(self.payments.values()):
            if remaining == 0:
                break
            share = min(remaining, payment.refundable_minor)
            if share:
                lines.append(RefundLine(channel=payment.channel, trade_no=payment.trade_no, amount_minor=share))
                remaining -= share
        if remaining != 0:
            raise InvariantBroken(f"refund of {amount_minor} exceeds payments into {self.shop_id}")
        return tuple(lines)

    def _describe_case(self, case: Case) -> str:
        how = f" priced by the policy{self._order_words(case.order_value_minor)}" if case.priced else ""
        return f"{case.reason.value} {self._fmt(case.amount_minor)}{how}"

    def _order_words(self, order_value_minor: int | None) -> str:
        return "" if order_value_minor is None else f" for an order of {self._fmt(order_value_minor)}"

    def _fmt(self, amount_minor: int) -> str:
        return f"{format_minor(amount_minor, self.currency)} {self.currency}"


for _name in FIGURE_NAMES:
    # Each figure reads through to the balance (a C-level getter: commands read figures often).
    setattr(ShopDeposit, _name, property(operator.attrgetter(f"balance.{_name}"), doc=f"The balance's {_name}."))
del _name


def _appeal_window_ends(case: Case, terms: DepositTerms) -> datetime:
    # The last moment the merchant may appeal the case's deduction (inclusive), by the window
    # of the policy version in force when it was deducted.
    return case.deducted_at + terms.appeal_window_for(case.deducted_at).appeal_window


def project_deposit(deposit: ShopDeposit | None, events: Iterable[DepositEvent]) -> ShopDeposit | None:
    """Fold events into a deposit (from its opening when ``deposit`` is None)."""
    for event in events:
        if deposit is None:
            if not isinstance(event, Opened):
                raise InvariantBroken(f"history of {event.originator_id} starts with {type(event).__name__}")
            deposit = ShopDeposit(event)
        else:
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
