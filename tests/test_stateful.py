"""Random command sequences through ``DepositLedger``, checked against a reference model.

The model below is written from the rule book alone, in plain integers: it
never calls the domain to work out an expectation. After every step the ledger
must agree with it figure by figure, keep the conservation law, and a fresh
``DepositLedger`` reading the same store must rebuild exactly the live state.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain import (
    DepositState,
    DuplicateConflict,
    LedgerError,
    MalformedInput,
    OutOfOrder,
    Refunded,
    Refused,
    ShopAlreadyOpen,
    ShopNotFound,
    WrongStatus,
)
from ledger import CommandResult, DepositLedger
from tests.conftest import POSTGRES_SKIP_REASON, FakeClock, fresh_store, postgres_url

SHOPS = ("shop-a", "shop-b", "shop-c")
MINOR_DIGITS = {"CNY": 2, "JPY": 0}
CHANNELS = ("alipay", "wechat_pay")
REASONS = ("fake_listing", "order_brushing", "late_shipment", "after_sales_dispute", "other")
SETTLEMENT_WINDOW = timedelta(days=2)
"""Short, so that random waits often carry a closing deposit past its settlement."""
START = datetime(2026, 1, 1, tzinfo=UTC)

# Minutes before the clock (None: no time sent, the ledger takes its clock). Going back
# up to a day often lands before a deposit's last event.
at_offsets = st.one_of(st.none(), st.integers(min_value=-24 * 60, max_value=0))
amounts = st.integers(min_value=1, max_value=6_000)

Outcome = type[LedgerError] | bool
"""The refusal the ledger must raise, or whether a successful command is a duplicate."""
Decision = Callable[[datetime], Outcome]


def major(amount_minor: int, currency: str) -> str:
    """The amount as a decimal string in major units, written out by hand."""
    digits = MINOR_DIGITS[currency]
    if digits == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d}"


@dataclass
class ModelCase:
    """One deduction case: what was asked and what is still owed."""

    reason: str
    amount: int
    owed: int


@dataclass
class ModelShop:
    """One deposit as the rule book describes it."""

    currency: str
    required: int
    last_at: datetime
    phase: str = "open"
    paid: int = 0
    frozen: int = 0
    deducted: int = 0
    refunded: int = 0
    forfeited: int = 0
    settlement_due: datetime | None = None
    payments: dict[tuple[str, str], int] = field(default_factory=dict)
    cases: dict[str, ModelCase] = field(default_factory=dict)
    refund_lines: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def owed(self) -> int:
        return sum(case.owed for case in self.cases.values())

    @property
    def shortfall(self) -> int:
        return max(0, self.required - self.frozen) + self.owed

    @property
    def status(self) -> str:
        if self.phase != "open":
            return self.phase
        if self.paid == 0:
            return "awaiting_payment"
        return "active" if self.shortfall == 0 else "underfunded"

    def refusal(self, allowed: tuple[str, ...], at: datetime) -> type[Refused] | None:
        if self.phase not in allowed:
            return WrongStatus
        if at < self.last_at:
            return OutOfOrder
        return None

    def pay(self, channel: str, ref: str, amount: int, at: datetime) -> Outcome:
        """Returns the refusal, or whether the payment was a duplicate."""
        known = self.payments.get((channel, ref))
        if known is not None:
            return True if known == amount else DuplicateConflict
        refusal = self.refusal(("open",), at)
        if refusal:
            return refusal
        self.payments[(channel, ref)] = amount
        self.paid += amount
        rest = amount
        for case in self.cases.values():  # oldest case first
            settled = min(case.owed, rest)
            case.owed -= settled
            self.deducted += settled
            rest -= settled
        self.frozen += rest
        self.last_at = at
        return False

    def deduct(self, case_id: str, reason: str, amount: int, at: datetime) -> Outcome:
        known = self.cases.get(case_id)
        if known is not None:
            return True if (known.amount, known.reason) == (amount, reason) else DuplicateConflict
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        collected = min(amount, self.frozen)
        self.frozen -= collected
        self.deducted += collected
        self.cases[case_id] = ModelCase(reason=reason, amount=amount, owed=amount - collected)
        self.last_at = at
        return False

    def close(self, at: datetime) -> Outcome:
        refusal = self.refusal(("open",), at)
        if refusal:
            return refusal
        self.phase = "closing"
        self.settlement_due = at + SETTLEMENT_WINDOW
        self.last_at = at
        return False

    def refund(self, at: datetime) -> Outcome:
        refusal = self.refusal(("closing",), at)
        if refusal:
            return refusal
        assert self.settlement_due is not None
        if at < self.settlement_due:
            return Refused
        remaining = self.frozen
        self.refund_lines = []
        for (channel, ref), paid in reversed(self.payments.items()):  # newest payment first
            if remaining == 0:
                break
            share = min(paid, remaining)
            self.refund_lines.append((channel, ref, share))
            remaining -= share
        self.refunded += self.frozen
        self.frozen = 0
        self.phase = "closed"
        self.last_at = at
        return False

    def force_close(self, at: datetime) -> Outcome:
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        self.forfeited += self.frozen
        self.frozen = 0
        self.phase = "forfeited"
        self.last_at = at
        return False


class DepositLedgerMachine(RuleBasedStateMachine):
    """Drives one ledger on a fresh store (a temporary SQLite file by default) and a fake clock."""

    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.resources = ExitStack()
        self.db = self.resources.enter_context(fresh_store(self.backend))
        self.clock = FakeClock(START)
        self.ledger = DepositLedger(self.db, actor="machine", clock=self.clock, settlement_window=SETTLEMENT_WINDOW)
        self.model: dict[str, ModelShop] = {}
        self.live: dict[str, DepositState] = {}
        self.payments_made: list[tuple[str, str, str, int]] = []
        self.deductions_made: list[tuple[str, str, str, int]] = []
        self.serial = 0

    def teardown(self) -> None:
        self.ledger.close()
        self.resources.close()

    # ------------------------------------------------------------ helpers

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def moment(self, offset_minutes: int | None) -> datetime | None:
        return None if offset_minutes is None else self.clock.now + timedelta(minutes=offset_minutes)

    def currency_of(self, shop: str) -> str:
        return self.model[shop].currency if shop in self.model else "CNY"

    def outcome(self, shop: str, at: datetime | None, decide: Decision) -> Outcome:
        """What the ledger must answer: checked in the order the ledger checks.

        The model's own rule (``decide``) is consulted, and updated, only for a
        well-formed request on a shop that exists.
        """
        if at is not None and at > self.clock.now:
            return MalformedInput
        if shop not in self.model:
            return ShopNotFound
        return decide(at or self.clock.now)

    def check(self, label: str, shop: str, expected: Outcome, command: Callable[[], CommandResult]) -> bool:
        """Run ``command``, compare its outcome with ``expected``; True when it recorded something."""
        event(f"{label}: {expected.__name__ if isinstance(expected, type) else ('duplicate' if expected else 'done')}")
        before = self.ledger.recorder.max_notification_id()
        if isinstance(expected, type):
            with pytest.raises(expected) as raised:
                command()
            assert type(raised.value) is expected, raised.value
            assert self.ledger.recorder.max_notification_id() == before
            return False
        result = command()
        assert result.duplicate is expected
        if expected:
            assert self.ledger.recorder.max_notification_id() == before
            assert result.state == self.live[shop]
        self.live[shop] = result.state
        return not expected

    # -------------------------------------------------------------- rules

    @initialize(cny_required=amounts, jpy_required=amounts)
    def open_two_shops(self, cny_required: int, jpy_required: int) -> None:
        self.open(SHOPS[0], "CNY", cny_required, None)
        self.open(SHOPS[1], "JPY", jpy_required, None)

    @rule(minutes=st.integers(min_value=1, max_value=4 * 24 * 60))
    def wait(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @rule(
        shop=st.sampled_from(SHOPS),
        currency=st.sampled_from(sorted(MINOR_DIGITS)),
        required=amounts,
        offset=at_offsets,
    )
    def open(self, shop: str, currency: str, required: int, offset: int | None) -> None:
        at = self.moment(offset)
        expected: Outcome = False
        if at is not None and at > self.clock.now:
            expected = MalformedInput
        elif shop in self.model:
            expected = ShopAlreadyOpen
        text = major(required, currency)
        if self.check("open", shop, expected, lambda: self.ledger.open(shop, currency=currency, required=text, at=at)):
            self.model[shop] = ModelShop(currency=currency, required=required, last_at=at or self.clock.now)

    def attempt_payment(self, shop: str, channel: str, ref: str, amount: int, offset: int | None) -> None:
        at = self.moment(offset)
        text = major(amount, self.currency_of(shop))
        expected = self.outcome(shop, at, lambda effective: self.model[shop].pay(channel, ref, amount, effective))
        if self.check("pay", shop, expected, lambda: self.ledger.pay(shop, text, channel=channel, ref=ref, at=at)):
            self.payments_made.append((shop, channel, ref, amount))

    @rule(shop=st.sampled_from(SHOPS), channel=st.sampled_from(CHANNELS), amount=amounts, offset=at_offsets)
    def pay(self, shop: str, channel: str, amount: int, offset: int | None) -> None:
        self.attempt_payment(shop, channel, self.next_id("T"), amount, offset)

    @precondition(lambda self: any(shop.phase == "open" and shop.shortfall for shop in self.model.values()))
    @rule(pick=st.integers(min_value=0), channel=st.sampled_from(CHANNELS), offset=at_offsets)
    def top_up(self, pick: int, channel: str, offset: int | None) -> None:
        """The merchant pays exactly what the ledger says is missing."""
        short = sorted(shop for shop, deposit in self.model.items() if deposit.phase == "open" and deposit.shortfall)
        shop = short[pick % len(short)]
        self.attempt_payment(shop, channel, self.next_id("T"), self.live[shop].shortfall_minor, offset)

    @precondition(lambda self: self.payments_made)
    @rule(
        pick=st.integers(min_value=0),
        extra=st.one_of(st.none(), st.integers(min_value=1, max_value=50)),
        elsewhere=st.sampled_from((None, *SHOPS)),
        offset=at_offsets,
    )
    def replay_payment(self, pick: int, extra: int | None, elsewhere: str | None, offset: int | None) -> None:
        """The same notification again (a duplicate), with another amount (a conflict), or to another shop."""
        shop, channel, ref, amount = self.payments_made[pick % len(self.payments_made)]
        self.attempt_payment(elsewhere or shop, channel, ref, amount + (extra or 0), offset)

    def attempt_deduction(self, shop: str, case: str, reason: str, amount: int, offset: int | None) -> None:
        at = self.moment(offset)
        text = major(amount, self.currency_of(shop))
        expected = self.outcome(shop, at, lambda effective: self.model[shop].deduct(case, reason, amount, effective))
        if self.check(
            "deduct", shop, expected, lambda: self.ledger.deduct(shop, text, reason=reason, case=case, at=at)
        ):
            self.deductions_made.append((shop, case, reason, amount))

    @rule(shop=st.sampled_from(SHOPS), reason=st.sampled_from(REASONS), amount=amounts, offset=at_offsets)
    def deduct(self, shop: str, reason: str, amount: int, offset: int | None) -> None:
        self.attempt_deduction(shop, self.next_id("C"), reason, amount, offset)

    @precondition(lambda self: self.deductions_made)
    @rule(
        pick=st.integers(min_value=0),
        change=st.sampled_from((None, "amount", "reason")),
        extra=st.integers(min_value=1, max_value=50),
        offset=at_offsets,
    )
    def replay_deduction(self, pick: int, change: str | None, extra: int, offset: int | None) -> None:
        """The same case again (a duplicate), or with another amount or reason (a conflict)."""
        shop, case, reason, amount = self.deductions_made[pick % len(self.deductions_made)]
        if change == "reason":
            reason = REASONS[(REASONS.index(reason) + 1) % len(REASONS)]
        elif change == "amount":
            amount += extra
        self.attempt_deduction(shop, case, reason, amount, offset)

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def close(self, shop: str, offset: int | None) -> None:
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].close(effective))
        self.check("close", shop, expected, lambda: self.ledger.close_shop(shop, at=at))

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def refund(self, shop: str, offset: int | None) -> None:
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].refund(effective))
        if self.check("refund", shop, expected, lambda: self.ledger.refund(shop, at=at)):
            event = self.ledger.history(shop)[-1]
            assert isinstance(event, Refunded)
            lines = [(line.channel.value, line.trade_no, line.amount_minor) for line in event.lines]
            assert lines == self.model[shop].refund_lines

    @precondition(lambda self: any(shop.phase == "closing" for shop in self.model.values()))
    @rule(pick=st.integers(min_value=0), offset=at_offsets)
    def refund_a_closing_deposit(self, pick: int, offset: int | None) -> None:
        # Aims the refund at a deposit that can take one; random shops rarely are.
        closing_shops = sorted(shop for shop, deposit in self.model.items() if deposit.phase == "closing")
        self.refund(closing_shops[pick % len(closing_shops)], offset)

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def force_close(self, shop: str, offset: int | None) -> None:
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].force_close(effective))
        self.check("force-close", shop, expected, lambda: self.ledger.force_close(shop, reason="fraud", at=at))

    @rule(
        shop=st.sampled_from(SHOPS),
        command=st.sampled_from(("open", "pay", "deduct", "close", "refund", "force-close")),
        minutes=st.integers(min_value=1, max_value=60),
    )
    def date_a_command_in_the_future(self, shop: str, command: str, minutes: int) -> None:
        at = self.clock.now + timedelta(minutes=minutes)
        requests: dict[str, Callable[[], CommandResult]] = {
            "open": lambda: self.ledger.open(shop, currency="CNY", required="1", at=at),
            "pay": lambda: self.ledger.pay(shop, "1", channel="alipay", ref=self.next_id("T"), at=at),
            "deduct": lambda: self.ledger.deduct(shop, "1", reason="other", case=self.next_id("C"), at=at),
            "close": lambda: self.ledger.close_shop(shop, at=at),
            "refund": lambda: self.ledger.refund(shop, at=at),
            "force-close": lambda: self.ledger.force_close(shop, reason="fraud", at=at),
        }
        self.check(command, shop, MalformedInput, requests[command])

    # --------------------------------------------------------- invariants

    @invariant()
    def figures_match_the_model_and_the_store(self) -> None:
        with closing(DepositLedger(self.db, actor="reader", clock=self.clock)) as fresh:
            for shop in SHOPS:
                if shop not in self.model:
                    with pytest.raises(ShopNotFound):
                        fresh.show(shop)
                    continue
                state = self.live[shop]
                assert self.ledger.show(shop) == state
                assert fresh.show(shop) == state
                expected = self.model[shop]
                assert (
                    state.currency,
                    state.status,
                    state.required_minor,
                    state.paid_minor,
                    state.frozen_minor,
                    state.deducted_minor,
                    state.refunded_minor,
                    state.forfeited_minor,
                    state.owed_minor,
                    state.shortfall_minor,
                    state.settlement_due,
                    state.last_effective_at,
                ) == (
                    expected.currency,
                    expected.status,
                    expected.required,
                    expected.paid,
                    expected.frozen,
                    expected.deducted,
                    expected.refunded,
                    expected.forfeited,
                    expected.owed,
                    expected.shortfall,
                    expected.settlement_due,
                    expected.last_at,
                )
                assert state.paid_minor == (
                    state.frozen_minor + state.deducted_minor + state.refunded_minor + state.forfeited_minor
                )
                assert min(state.frozen_minor, state.deducted_minor, state.refunded_minor, state.forfeited_minor) >= 0
                assert state.owed_minor == 0 or state.frozen_minor == 0


DepositLedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_deposit_ledger_agrees_with_the_reference_model = DepositLedgerMachine.TestCase


class PostgresDepositLedgerMachine(DepositLedgerMachine):
    """The same machine on a fresh PostgreSQL schema per example.

    Fewer and shorter examples: every step also opens a fresh ledger, about
    a tenth of a second there; the SQLite run explores the command space.
    """

    backend = "postgresql"


PostgresDepositLedgerMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=15, deadline=None)
test_deposit_ledger_agrees_with_the_reference_model_on_postgresql = pytest.mark.skipif(
    postgres_url() is None, reason=POSTGRES_SKIP_REASON
)(PostgresDepositLedgerMachine.TestCase)
