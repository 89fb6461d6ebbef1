"""A deposit's figures and how each event changes them: the one definition of the arithmetic.

``ShopDeposit`` keeps a ``Balance`` beside the bookkeeping its rules need
(payments, cases); the balances view keeps one per row. Both call
:meth:`Balance.apply`, so a view rebuilt from the events and a deposit replayed
from them cannot disagree about a figure.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict

from domain.errors import InvariantBroken
from domain.events import (
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
)


class Phase(StrEnum):
    """Where a deposit is in its lifecycle."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    FORFEITED = "forfeited"


class Status(StrEnum):
    """The status the ledger reports: the phase, refined by the balance (and the time) while open."""

    AWAITING_PAYMENT = "awaiting_payment"
    ACTIVE = "active"
    UNDERFUNDED = "underfunded"
    RESTRICTED = "restricted"
    CLOSING = "closing"
    CLOSED = "closed"
    FORFEITED = "forfeited"


@dataclass(frozen=True, slots=True)
class Figure:
    """How a figure of a deposit is reported, kept beside its type in :class:`DepositFigures`."""

    place: int | None
    """Its place when a deposit's figures are listed (the JSON object of ``show --json``, the
    table): a fixed contract, so a new figure takes the next free place. None: listed last, and
    only in tables."""
    always: bool = True
    """Listed in a table even when zero or unset (a JSON object lists every figure it has)."""


@dataclass
class DepositFigures:
    """The one list of a deposit's figures: what :class:`Balance` keeps, reports, snapshots and stores.

    :class:`Balance` (with the rules of how each event changes a figure),
    :class:`DepositState` (what the ledger reports), the snapshot and the balances
    view's row all take their fields from here, and the reports list them in
    their :class:`Figure` places. Adding a figure is one line here plus its rule
    in :meth:`Balance.opened` and :meth:`Balance.apply`; a snapshot class version
    and its upcaster then tell older snapshots what it was. The fields that are
    not figures of the money (the id, the version, the phase) and the figures
    derived from the others (status, shortfall) are declared where they live.
    """

    __slots__ = ()

    shop_id: Annotated[str, Figure(0)]
    """The shop this deposit belongs to."""
    site: Annotated[str | None, Figure(18, always=False)]
    """The marketplace site the shop sells on (None if set by hand)."""
    currency: Annotated[str, Figure(2)]
    """ISO 4217 code of every amount."""
    required_minor: Annotated[int, Figure(3)]
    """What the platform requires the deposit to hold."""
    paid_minor: Annotated[int, Figure(4)]
    """Every payment into the deposit."""
    frozen_minor: Annotated[int, Figure(5)]
    """Money that counts for the shop and cannot be withdrawn."""
    deducted_minor: Annotated[int, Figure(6)]
    """What penalties collected, net of what upheld appeals gave back."""
    refunded_minor: Annotated[int, Figure(7)]
    """What went back to the shop through the channels it paid by."""
    forfeited_minor: Annotated[int, Figure(8)]
    """What a forced closure kept."""
    owed_minor: Annotated[int, Figure(9)]
    """What deductions could not collect."""
    settlement_due: Annotated[AwareDatetime | None, Figure(19, always=False)]
    """When a closing deposit may be refunded."""
    last_effective_at: Annotated[AwareDatetime, Figure(None)]
    """When the last event happened, in business terms."""
    held_minor: Annotated[int, Figure(12)]
    """Frozen money set aside for open cases."""
    reversed_minor: Annotated[int, Figure(13)]
    """What upheld appeals gave back."""
    top_up_due: Annotated[AwareDatetime | None, Figure(14, always=False)]
    """When the shop is restricted unless it has topped up its shortfall."""
    policy_version: Annotated[str | None, Figure(15, always=False)]
    """The version of the deposit policy the requirement follows (None if set by hand)."""
    categories: Annotated[tuple[str, ...], Figure(16, always=False)]
    """The product categories the requirement is derived from (empty when set by hand)."""
    written_off_minor: Annotated[int, Figure(17, always=False)]
    """Debt the platform gave up collecting after the deposit closed."""


FIGURE_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(DepositFigures))
"""The names of :class:`DepositFigures`, in order."""


class DepositState(BaseModel, DepositFigures):
    """A deposit's figures at one version: what ``show`` and ``balance`` report."""

    model_config = ConfigDict(frozen=True)

    status: Annotated[Status, Figure(1)]
    shortfall_minor: Annotated[int, Figure(10)]
    version: Annotated[int, Figure(11)]


def listed_figures(*, always: bool = False) -> tuple[str, ...]:
    """The reported figures in their places (those without one last); only those always listed if asked."""
    placed = [
        (figure.place if figure.place is not None else len(DepositState.model_fields), name)
        for name, field in DepositState.model_fields.items()
        for figure in field.metadata
        if isinstance(figure, Figure) and (figure.always or not always)
    ]
    return tuple(name for _, name in sorted(placed))


def frozen_change(event: DepositEvent) -> int:
    """How much the event moves into (+) or out of (−) the frozen balance, in minor units."""
    if isinstance(event, Frozen):
        return event.amount_minor
    if isinstance(event, Deducted) and not event.settles_debt:
        return -(event.amount_collected_minor - event.collected_from_hold_minor)
    if isinstance(event, Refunded | Forfeited | ExcessRefunded | HoldPlaced):
        return -event.amount_minor
    return 0


@dataclass(slots=True)
class Balance(DepositFigures):
    """The money figures of one deposit, in integer minor units of ``currency``.

    ``unfrozen_minor`` is money in hand but not yet frozen: a payment, a released
    hold or a reversed deduction between its arrival and the ``Frozen`` event that
    places it (after it has settled what is owed). ``held_minor`` is frozen money
    set aside for open cases. ``reversed_minor`` counts what upheld appeals gave
    back; ``deducted_minor`` is net of it. ``written_off_minor`` is debt the
    platform gave up collecting after the deposit closed (no money moved).
    """

    deposit_id: UUID
    phase: Phase
    unfrozen_minor: int
    version: int

    @classmethod
    def opened(cls, event: Opened) -> Balance:
        """The figures of a deposit that has just been opened."""
        return cls(
            deposit_id=event.originator_id,
            shop_id=event.shop_id,
            site=event.site,
            currency=event.currency,
            required_minor=event.required_minor,
            phase=Phase.OPEN,
            paid_minor=0,
            unfrozen_minor=0,
            frozen_minor=0,
            deducted_minor=0,
            refunded_minor=0,
            forfeited_minor=0,
            owed_minor=0,
            settlement_due=None,
            version=event.originator_version,
            last_effective_at=event.effective_at,
            held_minor=0,
            reversed_minor=0,
            top_up_due=None,
            policy_version=event.policy_version,
            categories=event.categories,
            written_off_minor=0,
        )

    def apply(self, event: DepositEvent) -> None:
        """Change the figures by one event (after ``Opened``), then assert they still balance."""
        if event.originator_version != self.version + 1:
            raise InvariantBroken(f"version gap in {self.shop_id}: {self.version} then {event.originator_version}")
        self.frozen_minor += frozen_change(event)
        if isinstance(event, Paid):
            self.paid_minor += event.amount_minor
            self.unfrozen_minor += event.amount_minor
        elif isinstance(event, Frozen):
            self.unfrozen_minor -= event.amount_minor
        elif isinstance(event, Deducted):
            self._deducted(event)
        elif isinstance(event, ClosureRequested):
            self.phase = Phase.CLOSING
            self.settlement_due = event.settlement_due
        elif isinstance(event, Refunded):
            # A second refund corrects a closed deposit after an upheld appeal.
            if self.phase not in (Phase.CLOSING, Phase.CLOSED):
                raise InvariantBroken(f"refund of {self.shop_id} while {self.phase}")
            self.refunded_minor += event.amount_minor
            self.phase = Phase.CLOSED
        elif isinstance(event, Forfeited):
            self.forfeited_minor += event.amount_minor
            self.phase = Phase.FORFEITED
        elif isinstance(event, RequirementChanged):
            if event.old_required_minor != self.required_minor:
                raise InvariantBroken(f"requirement of {self.shop_id} out of step")
            self.required_minor = event.new_required_minor
            self.categories = event.categories
            self.policy_version = event.policy_version
            self._start_top_up_clock(event.top_up_due)
        elif isinstance(event, HoldPlaced):
            self.held_minor += event.amount_minor
        elif isinstance(event, HoldReleased):
            # Back in hand: it settles debts, then a Frozen event places the rest.
            self.held_minor -= event.amount_minor
            self.unfrozen_minor += event.amount_minor
        elif isinstance(event, DeductionReversed):
            self.deducted_minor -= event.amount_restored_minor
            self.reversed_minor += event.amount_restored_minor
            self.unfrozen_minor += event.amount_restored_minor
            self.owed_minor -= event.amount_cancelled_minor
            self._restart_settlement(event.settlement_due)
        elif isinstance(event, AppealRejected):
            self._restart_settlement(event.settlement_due)
        elif isinstance(event, ExcessRefunded):
            self.refunded_minor += event.amount_minor
        elif isinstance(event, WrittenOff):
            if self.phase not in (Phase.CLOSED, Phase.FORFEITED):
                raise InvariantBroken(f"debt of {self.shop_id} written off while {self.phase}")
            self.owed_minor -= event.amount_minor
            self.written_off_minor += event.amount_minor
        elif not isinstance(event, AppealFiled):
            raise AssertionError(f"{type(event).__name__} cannot follow the opening of {self.shop_id}")
        if self.phase is not Phase.OPEN or self.shortfall_minor == 0:
            # Topped up (or no longer trading): nothing is due any more.
            self.top_up_due = None
        self.version = event.originator_version
        self.last_effective_at = event.effective_at
        self.assert_balanced()

    def _deducted(self, event: Deducted) -> None:
        self.deducted_minor += event.amount_collected_minor
        if event.settles_debt:
            # Collected from the money in hand, and the case owes that much less.
            self.unfrozen_minor -= event.amount_collected_minor
            self.owed_minor -= event.amount_collected_minor
        else:
            if event.collected_from_hold_minor > event.amount_collected_minor:
                raise InvariantBroken("hold beyond the collection")
            self.held_minor -= event.collected_from_hold_minor
            self.owed_minor += event.amount_owed_minor
            self._start_top_up_clock(event.top_up_due)

    def _start_top_up_clock(self, due: datetime | None) -> None:
        if due is not None:
            if self.top_up_due is not None:
                raise InvariantBroken(f"a second top-up clock in {self.shop_id}")
            self.top_up_due = due

    def _restart_settlement(self, due: datetime | None) -> None:
        if due is not None:
            if self.phase is not Phase.CLOSING:
                raise InvariantBroken(f"settlement restarted in {self.shop_id} while {self.phase}")
            self.settlement_due = due

    def assert_balanced(self) -> None:
        """Conservation and signs; holds after every single event, even inside a payment."""
        figures = (
            self.paid_minor,
            self.unfrozen_minor,
            self.frozen_minor,
            self.held_minor,
            self.deducted_minor,
            self.refunded_minor,
            self.forfeited_minor,
            self.owed_minor,
            self.reversed_minor,
            self.written_off_minor,
        )
        if min(figures) < 0:
            raise InvariantBroken(f"negative figure in {self.shop_id}: {figures}")
        # paid = unfrozen + frozen + held + deducted + refunded + forfeited
        if self.paid_minor != sum(figures[1:7]):
            raise InvariantBroken(f"conservation broken in {self.shop_id}: {figures}")
        if not (self.owed_minor == 0 or self.frozen_minor == 0):
            raise InvariantBroken(f"owed beside frozen money in {self.shop_id}")
        if not (self.top_up_due is None or (self.phase is Phase.OPEN and self.shortfall_minor > 0)):
            raise InvariantBroken(f"top-up due without a shortfall in {self.shop_id}")

    @property
    def shortfall_minor(self) -> int:
        """What the shop must pay to be fully funded again: the gap plus what it owes.

        Held money still counts towards the requirement: it is the shop's until a
        deduction takes it. A closed or forfeited deposit is required to hold
        nothing: its shortfall is its debt alone.
        """
        if self.phase in (Phase.CLOSED, Phase.FORFEITED):
            return self.owed_minor
        return max(0, self.required_minor - self.frozen_minor - self.held_minor) + self.owed_minor

    def shortfall_after(
        self, *, required_minor: int | None = None, covered_change: int = 0, owed_change: int = 0
    ) -> int:
        """The shortfall if the requirement, the frozen-plus-held money or the debts changed by so much."""
        required = self.required_minor if required_minor is None else required_minor
        covered = self.frozen_minor + self.held_minor + covered_change
        return max(0, required - covered) + self.owed_minor + owed_change

    @property
    def status(self) -> Status:
        """``awaiting_payment`` before any payment, then ``active`` or ``underfunded``; never ``restricted``.

        The status that does not depend on the time of the question: what the
        balances view stores. :meth:`status_at` adds the restriction.
        """
        if self.phase is not Phase.OPEN:
            return Status(self.phase.value)
        if self.paid_minor == 0:
            return Status.AWAITING_PAYMENT
        return Status.ACTIVE if self.shortfall_minor == 0 else Status.UNDERFUNDED

    def status_at(self, now: datetime | None) -> Status:
        """The status as of ``now``: ``restricted`` once a top-up is overdue, else :attr:`status`."""
        if now is not None and self.top_up_due is not None and now >= self.top_up_due:
            return Status.RESTRICTED
        return self.status

    def state(self, now: datetime | None = None) -> DepositState:
        """The figures as the ledger reports them; the status as of ``now`` when given.

        Without ``now`` the status is the one that does not depend on the time
        (never ``restricted``): the ledger passes its clock.
        """
        values = self.figures()
        values.update(status=self.status_at(now), shortfall_minor=self.shortfall_minor, version=self.version)
        return DepositState.model_validate(values)

    def figures(self) -> dict[str, Any]:
        """The figures of :class:`DepositFigures` by name."""
        return figures_of(self)


_figure_values = operator.attrgetter(*FIGURE_NAMES)


def figures_of(holder: DepositFigures) -> dict[str, Any]:
    """The figures of ``holder`` (a balance, a state, a snapshot) by name."""
    return dict(zip(FIGURE_NAMES, _figure_values(holder), strict=True))
