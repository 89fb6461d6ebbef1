"""Random command sequences through ``DepositLedger``, checked against a reference model.

The model below is written from the rule book alone, in plain integers: it
never calls the domain to work out an expectation. After every step the ledger
must agree with it figure by figure (the status as of the clock, so an overdue
top-up reads ``restricted``), keep the conservation law with holds, and a fresh
``DepositLedger`` reading the same store must rebuild exactly the live state;
the balances view must say the same.

Payments are accepted while closing (frozen, refunded at settlement); after
closure only to settle a debt; a debt is written off once its deduction is
final; a refund waits for every appeal window.

Shops are opened by hand or by the policy below (site and categories); the
policy's catalogue prices deductions, its short windows let random waits carry
deposits past their top-up, appeal and settlement deadlines. The policy has two
versions, the second in force three days into the run: every command is priced
and timed by the version in force at its effective time (back-dated ones by the
older), and a deduction keeps the appeal window of the version it was made under.
One trade number is one payment ledger-wide: a refusal names the shop holding it.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain import (
    DeductionReversed,
    DepositState,
    DuplicateConflict,
    ExcessRefunded,
    LedgerError,
    MalformedInput,
    OutOfOrder,
    Refunded,
    Refused,
    ShopAlreadyOpen,
    ShopNotFound,
    TradeNumberTaken,
    WrongStatus,
)
from ledger import CommandResult, DepositLedger
from tests.conftest import POSTGRES_SKIP_REASON, FakeClock, fresh_store, postgres_url

SHOPS = ("shop-a", "shop-b", "shop-c")
MINOR_DIGITS = {"CNY": 2, "JPY": 0}
CHANNELS = ("alipay", "wechat_pay")
REASONS = ("fake_listing", "order_brushing", "late_shipment", "after_sales_dispute", "other")
SETTLEMENT_WINDOW = timedelta(days=2)
"""Short, so that random waits often carry a closing deposit past its settlement (every version's)."""
START = datetime(2026, 1, 1, tzinfo=UTC)

SITES = {"CNY": "CN", "JPY": "JP"}
CATEGORIES = ("general", "food", "jewelry")


@dataclass(frozen=True)
class ModelVersion:
    """One version of the policy, in minor units of either site's currency."""

    name: str
    starts: datetime | None
    required: dict[str, int]
    fixed_penalty: int
    """fake_listing: this much a violation, ..."""
    fixed_daily_cap: int
    """... at most this much a shop a UTC day."""
    share_bp: int
    """late_shipment: this share of the order value, rounded down, ..."""
    share_floor: int
    share_cap: int
    top_up_deadline: timedelta
    appeal_window: timedelta


VERSIONS = (
    ModelVersion(
        "machine.1",
        None,
        {"general": 1_500, "food": 3_000, "jewelry": 4_500},
        500,
        1_200,
        1_000,
        50,
        1_000,
        timedelta(days=3),
        timedelta(days=2),
    ),
    ModelVersion(
        "machine.2",
        START + timedelta(days=3),
        {"general": 2_000, "food": 3_000, "jewelry": 6_000},
        800,
        2_000,
        2_000,
        100,
        1_500,
        timedelta(days=2),
        timedelta(days=1),
    ),
)
"""Dearer from the third day, with shorter limits; random waits and back-dated commands cross the change."""


def version_at(at: datetime) -> ModelVersion:
    """The version in force at ``at``."""
    return [version for version in VERSIONS if version.starts is None or version.starts <= at][-1]


def _policy_version_toml(version: ModelVersion) -> str:
    def sites(code: str, currency: str, unit: int) -> str:
        def text(minor: int) -> str:
            return str(minor // unit) if minor % unit == 0 else f'"{major(minor, currency)}"'

        required = ", ".join(f"{category} = {text(amount)}" for category, amount in version.required.items())
        return (
            f'[versions.sites.{code}]\ncurrency = "{currency}"\nrequired = {{ {required} }}\n'
            f"violations.fake_listing = {{ fixed = {text(version.fixed_penalty)}, "
            f"daily_cap = {text(version.fixed_daily_cap)} }}\n"
            f"violations.late_shipment = {{ share_bp = {version.share_bp}, floor = {text(version.share_floor)}, "
            f"cap = {text(version.share_cap)} }}\n"
        )

    starts = "" if version.starts is None else f"effective_from = {version.starts.isoformat()}\n"
    return (
        f'[[versions]]\nversion = "{version.name}"\n{starts}settlement_window_days = 2\n'
        f"top_up_deadline_days = {version.top_up_deadline.days}\nappeal_window_days = {version.appeal_window.days}\n"
        + sites("CN", "CNY", 100)
        + sites("JP", "JPY", 1)
    )


# Minutes before the clock (None: no time sent, the ledger takes its clock). Going back
# up to a day often lands before a deposit's last event.
at_offsets = st.one_of(st.none(), st.integers(min_value=-24 * 60, max_value=0))
amounts = st.integers(min_value=1, max_value=6_000)
category_sets = st.one_of(st.just(frozenset()), st.frozensets(st.sampled_from(CATEGORIES), min_size=1, max_size=2))
"""No categories: a shop opened by hand; else opened by the policy on those categories."""

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


POLICY = "\n".join(_policy_version_toml(version) for version in VERSIONS)
"""The versions above, as the ledger reads them."""


@dataclass
class ModelCase:
    """One deduction case: what was asked, collected and still owed, and its appeal."""

    reason: str
    amount: int
    owed: int
    collected: int
    at: datetime
    priced: bool = False
    order_value: int | None = None
    appeal: str | None = None
    appealed_while_closing: bool = False
    written_off: int = 0


def window_end(case: ModelCase) -> datetime:
    """The last moment a case's deduction can be appealed: by the version it was made under."""
    return case.at + version_at(case.at).appeal_window


@dataclass
class ModelHold:
    """Money held for a case: how much was placed, how much is still held."""

    amount: int
    held: int


@dataclass
class ModelShop:
    """One deposit as the rule book describes it."""

    currency: str
    required: int
    last_at: datetime
    site: str | None = None
    categories: tuple[str, ...] = ()
    policy_version: str | None = None
    """The version the requirement follows (None: set by hand)."""
    phase: str = "open"
    paid: int = 0
    frozen: int = 0
    held: int = 0
    deducted: int = 0
    reversed: int = 0
    refunded: int = 0
    forfeited: int = 0
    written_off: int = 0
    settlement_due: datetime | None = None
    top_up_due: datetime | None = None
    payments: dict[tuple[str, str], int] = field(default_factory=dict)
    refunded_through: dict[tuple[str, str], int] = field(default_factory=dict)
    cases: dict[str, ModelCase] = field(default_factory=dict)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    refund_lines: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def owed(self) -> int:
        return sum(case.owed for case in self.cases.values())

    @property
    def shortfall(self) -> int:
        # Nothing is required of a closed shop: only its debt is still due.
        if self.phase in ("closed", "forfeited"):
            return self.owed
        # Held money is still the shop's: it counts towards the requirement.
        return max(0, self.required - self.frozen - self.held) + self.owed

    def status(self, now: datetime) -> str:
        if self.phase != "open":
            return self.phase
        if self.top_up_due is not None and now >= self.top_up_due:
            return "restricted"
        if self.paid == 0:
            return "awaiting_payment"
        return "active" if self.shortfall == 0 else "underfunded"

    def changed(self, at: datetime, was_short: bool) -> None:
        """After a change at ``at``: start the top-up clock if a funded deposit fell short, or stop it."""
        if self.phase != "open" or self.shortfall == 0:
            self.top_up_due = None
        elif not was_short:
            self.top_up_due = at + version_at(at).top_up_deadline
        self.last_at = at

    def place(self, money: int) -> None:
        """Money back in hand settles what is owed, oldest case first; the rest is frozen."""
        for case in self.cases.values():
            settled = min(case.owed, money)
            case.owed -= settled
            case.collected += settled
            self.deducted += settled
            money -= settled
        self.frozen += money

    def refund_newest_first(self, amount: int) -> list[tuple[str, str, int]]:
        lines = []
        for key, paid in reversed(self.payments.items()):
            share = min(paid - self.refunded_through.get(key, 0), amount)
            if share:
                lines.append((*key, share))
                self.refunded_through[key] = self.refunded_through.get(key, 0) + share
                amount -= share
        assert amount == 0
        return lines

    def open_case(self) -> bool:
        return any(hold.held for hold in self.holds.values()) or any(
            case.appeal == "pending" for case in self.cases.values()
        )

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
        # Open or closing: the money is frozen (and refunded at settlement). Closed or
        # forfeited: accepted only to settle what is still owed, never beyond it.
        settled = self.phase in ("closed", "forfeited")
        if settled and self.owed == 0:
            return WrongStatus
        if at < self.last_at:
            return OutOfOrder
        if settled and amount > self.owed:
            return Refused
        was_short = self.shortfall > 0
        self.payments[(channel, ref)] = amount
        self.paid += amount
        self.place(amount)
        self.changed(at, was_short)
        return False

    def deduct(self, case_id: str, reason: str, amount: int, at: datetime) -> Outcome:
        known = self.cases.get(case_id)
        if known is not None:
            return True if (known.amount, known.reason) == (amount, reason) else DuplicateConflict
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        self.take(case_id, reason, amount, at)
        return False

    def deduct_by_policy(self, case_id: str, reason: str, order_value: int | None, at: datetime) -> Outcome:
        known = self.cases.get(case_id)
        if known is not None:
            same = known.priced and (known.reason, known.order_value) == (reason, order_value)
            return True if same else DuplicateConflict
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        if self.site is None:
            return Refused
        rules = version_at(at)  # back-dated: the version in force then
        if reason == "fake_listing":
            charged_today = sum(
                case.amount
                for case in self.cases.values()
                if case.priced and case.reason == reason and case.appeal != "upheld" and case.at.date() == at.date()
            )
            amount = min(rules.fixed_penalty, rules.fixed_daily_cap - charged_today)
        elif reason == "late_shipment" and order_value is not None:
            amount = min(max(order_value * rules.share_bp // 10_000, rules.share_floor), rules.share_cap)
        else:
            return MalformedInput  # no rule for the reason, or no order value for a share
        if amount <= 0:
            return Refused  # the daily cap is used up
        self.take(case_id, reason, amount, at)
        self.cases[case_id].priced, self.cases[case_id].order_value = True, order_value
        return False

    def take(self, case_id: str, reason: str, amount: int, at: datetime) -> None:
        """A penalty takes the case's hold first, then the frozen balance; the rest is owed."""
        was_short = self.shortfall > 0
        hold = self.holds.get(case_id)
        from_hold = min(amount, hold.held) if hold else 0
        from_frozen = min(amount - from_hold, self.frozen)
        self.held -= from_hold
        self.frozen -= from_frozen
        self.deducted += from_hold + from_frozen
        self.cases[case_id] = ModelCase(
            reason=reason,
            amount=amount,
            owed=amount - from_hold - from_frozen,
            collected=from_hold + from_frozen,
            at=at,
        )
        self.changed(at, was_short)
        if hold is not None:
            hold.held -= from_hold
            leftover, hold.held = hold.held, 0
            self.held -= leftover
            self.place(leftover)
            self.changed(at, True)

    def hold(self, case_id: str, amount: int, at: datetime) -> Outcome:
        known = self.holds.get(case_id)
        if known is not None:
            return True if known.amount == amount else DuplicateConflict
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        if case_id in self.cases or amount > self.frozen:
            return Refused
        self.holds[case_id] = ModelHold(amount=amount, held=amount)
        self.frozen -= amount
        self.held += amount
        self.last_at = at
        return False

    def release(self, case_id: str, at: datetime) -> Outcome:
        hold = self.holds.get(case_id)
        if hold is None:
            return Refused
        if hold.held == 0:
            return True
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        money, hold.held = hold.held, 0
        self.held -= money
        self.place(money)
        self.changed(at, True)
        return False

    def appeal(self, case_id: str, at: datetime) -> Outcome:
        case = self.cases.get(case_id)
        if case is None:
            return Refused
        if case.appeal == "pending":
            return True
        if case.appeal is not None or case.written_off:
            return Refused
        if at < self.last_at:
            return OutOfOrder
        if at > window_end(case):
            return Refused
        case.appeal = "pending"
        case.appealed_while_closing = self.phase == "closing"
        self.last_at = at
        return False

    def resolve(self, case_id: str, upheld: bool, at: datetime) -> Outcome:
        case = self.cases.get(case_id)
        if case is None or case.appeal is None:
            return Refused
        outcome = "upheld" if upheld else "rejected"
        if case.appeal == outcome:
            return True
        if case.appeal != "pending":
            return DuplicateConflict
        if at < self.last_at:
            return OutOfOrder
        case.appeal = outcome
        if case.appealed_while_closing and self.phase == "closing":
            self.settlement_due = at + SETTLEMENT_WINDOW
        if upheld:
            restored, case.collected, case.owed = case.collected, 0, 0
            self.deducted -= restored
            self.reversed += restored
            self.place(restored)
            # A settled deposit keeps its outcome: the money goes where the rest of it went.
            if self.phase == "closed":
                self.refund_lines = self.refund_newest_first(self.frozen)
                self.refunded += self.frozen
                self.frozen = 0
            elif self.phase == "forfeited":
                self.forfeited += self.frozen
                self.frozen = 0
        self.changed(at, True)
        return False

    def change_categories(self, add: set[str], remove: set[str], at: datetime) -> Outcome:
        if add & remove:
            return MalformedInput
        if self.phase != "open":
            return WrongStatus
        if self.site is None:
            return Refused
        categories = tuple(sorted((set(self.categories) | add) - remove))
        if not categories:
            return Refused
        rules = version_at(at)
        required = max(rules.required[category] for category in categories)
        if (required, categories, rules.name) == (self.required, self.categories, self.policy_version):
            return True
        if at < self.last_at:
            return OutOfOrder
        was_short = self.shortfall > 0
        self.required, self.categories, self.policy_version = required, categories, rules.name
        self.changed(at, was_short)
        return False

    def apply_policy(self, at: datetime) -> Outcome:
        """The requirement follows the version in force; recorded even when only the version changes."""
        if self.phase != "open":
            return WrongStatus
        if self.site is None or not self.categories:
            return Refused
        return self.change_categories(set(), set(), at)

    def refund_excess(self, at: datetime) -> Outcome:
        refusal = self.refusal(("open",), at)
        if refusal:
            return refusal
        if self.open_case() or self.frozen <= self.required:
            return Refused
        excess = self.frozen - self.required
        self.refund_lines = self.refund_newest_first(excess)
        self.frozen -= excess
        self.refunded += excess
        self.last_at = at
        return False

    def close(self, at: datetime) -> Outcome:
        refusal = self.refusal(("open",), at)
        if refusal:
            return refusal
        self.phase = "closing"
        self.settlement_due = at + SETTLEMENT_WINDOW
        self.changed(at, True)
        return False

    def refund(self, at: datetime) -> Outcome:
        refusal = self.refusal(("closing",), at)
        if refusal:
            return refusal
        assert self.settlement_due is not None
        if at < self.settlement_due or self.open_case():
            return Refused
        # Every appeal window must have passed: an appeal may be filed up to its last moment.
        if any(case.appeal is None and at <= window_end(case) for case in self.cases.values()):
            return Refused
        self.refund_lines = self.refund_newest_first(self.frozen)
        self.refunded += self.frozen
        self.frozen = 0
        self.phase = "closed"
        self.last_at = at
        return False

    def write_off(self, case_id: str, at: datetime) -> Outcome:
        """What a case still owes becomes a loss: only after closure, once its deduction is final."""
        case = self.cases.get(case_id)
        if case is None:
            return Refused
        if case.written_off:
            return True
        if self.phase not in ("closed", "forfeited"):
            return WrongStatus
        if case.owed == 0:
            return Refused
        if at < self.last_at:
            return OutOfOrder
        if case.appeal == "pending" or (case.appeal is None and at <= window_end(case)):
            return Refused
        case.written_off, case.owed = case.owed, 0
        self.written_off += case.written_off
        self.last_at = at
        return False

    def force_close(self, at: datetime) -> Outcome:
        refusal = self.refusal(("open", "closing"), at)
        if refusal:
            return refusal
        for hold in self.holds.values():
            money, hold.held = hold.held, 0
            self.held -= money
            self.place(money)
        self.forfeited += self.frozen
        self.frozen = 0
        self.phase = "forfeited"
        self.changed(at, True)
        return False


class DepositLedgerMachine(RuleBasedStateMachine):
    """Drives one ledger on a fresh store (a temporary SQLite file by default) and a fake clock."""

    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.resources = ExitStack()
        self.folder = Path(self.resources.enter_context(tempfile.TemporaryDirectory(prefix="deposits-")))
        self.db = self.resources.enter_context(fresh_store(self.backend))
        self.clock = FakeClock(START)
        policy = self.folder / "policy.toml"
        policy.write_text(POLICY, encoding="utf-8")
        self.ledger = DepositLedger(
            self.db, actor="machine", clock=self.clock, settlement_window=SETTLEMENT_WINDOW, policy=policy
        )
        self.model: dict[str, ModelShop] = {}
        self.live: dict[str, DepositState] = {}
        self.payments_made: list[tuple[str, str, str, int]] = []
        self.trade_number_holders: dict[tuple[str, str], str] = {}
        """Which shop holds each (channel, trade number): one payment, one shop, ledger-wide."""
        self.deductions_made: list[tuple[str, str, str, int]] = []
        self.priced_made: list[tuple[str, str, str, int | None]] = []
        self.holds_made: list[tuple[str, str, int]] = []
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

    def check(
        self, label: str, shop: str, expected: Outcome, command: Callable[[], CommandResult], names: str = ""
    ) -> bool:
        """Run ``command``, compare its outcome with ``expected``; True when it recorded something.

        A refusal's message must contain ``names`` (the shop holding a trade number, say).
        """
        event(f"{label}: {expected.__name__ if isinstance(expected, type) else ('duplicate' if expected else 'done')}")
        before = self.ledger.recorder.max_notification_id()
        if isinstance(expected, type):
            with pytest.raises(expected) as raised:
                command()
            assert type(raised.value) is expected, raised.value
            assert names in str(raised.value), raised.value
            assert self.ledger.recorder.max_notification_id() == before
            return False
        result = command()
        assert result.duplicate is expected
        if expected:
            assert self.ledger.recorder.max_notification_id() == before
            # The figures are the same; the status may have moved on with the clock (restricted).
            assert figures(result.state) == figures(self.live[shop])
        self.live[shop] = result.state
        return not expected

    def cases_of(self, shop: str) -> list[str]:
        return list(self.model[shop].cases) if shop in self.model else []

    # -------------------------------------------------------------- rules

    @initialize(
        cny_required=amounts,
        jpy_required=amounts,
        cny_categories=st.frozensets(st.sampled_from(CATEGORIES), min_size=1, max_size=2),
        jpy_categories=category_sets,
    )
    def open_two_shops(
        self, cny_required: int, jpy_required: int, cny_categories: frozenset[str], jpy_categories: frozenset[str]
    ) -> None:
        self.open(SHOPS[0], "CNY", cny_required, None, cny_categories)
        self.open(SHOPS[1], "JPY", jpy_required, None, jpy_categories)
        # One fully funded deposit from the start: the first deduction on it starts a top-up clock.
        self.attempt_payment(SHOPS[0], "alipay", self.next_id("T"), self.model[SHOPS[0]].required, None)

    @rule(minutes=st.integers(min_value=1, max_value=4 * 24 * 60))
    def wait(self, minutes: int) -> None:
        self.clock.advance(minutes=minutes)

    @precondition(lambda self: any(d.top_up_due or d.settlement_due for d in self.model.values()))
    @rule(pick=st.integers(min_value=0), minutes_past=st.integers(min_value=-1, max_value=60))
    def wait_for_a_deadline(self, pick: int, minutes_past: int) -> None:
        """Wait until just before, at or after a top-up or settlement due time, or the end of an appeal window."""
        deadlines = sorted(
            [due for d in self.model.values() for due in (d.top_up_due, d.settlement_due) if due is not None]
            + [window_end(case) for d in self.model.values() for case in d.cases.values() if case.owed]
        )
        target = deadlines[pick % len(deadlines)] + timedelta(minutes=minutes_past)
        if target > self.clock.now:
            self.clock.now = target

    @rule(
        shop=st.sampled_from(SHOPS),
        currency=st.sampled_from(sorted(MINOR_DIGITS)),
        required=amounts,
        offset=at_offsets,
        categories=category_sets,
    )
    def open(self, shop: str, currency: str, required: int, offset: int | None, categories: frozenset[str]) -> None:
        """By hand (no categories: the given amount, no site), or by the policy (site and categories)."""
        at = self.moment(offset)
        expected: Outcome = False
        if at is not None and at > self.clock.now:
            expected = MalformedInput
        elif shop in self.model:
            expected = ShopAlreadyOpen
        text = major(required, currency)
        site = SITES[currency]

        def request() -> CommandResult:
            if categories:
                return self.ledger.open(shop, site=site, categories=sorted(categories), at=at)
            return self.ledger.open(shop, currency=currency, required=text, at=at)

        if self.check("open by policy" if categories else "open", shop, expected, request):
            opened = ModelShop(currency=currency, required=required, last_at=at or self.clock.now)
            if categories:
                rules = version_at(at or self.clock.now)
                opened.site, opened.categories = site, tuple(sorted(categories))
                opened.required = max(rules.required[category] for category in categories)
                opened.policy_version = rules.name
            self.model[shop] = opened

    def attempt_payment(self, shop: str, channel: str, ref: str, amount: int, offset: int | None) -> None:
        at = self.moment(offset)
        text = major(amount, self.currency_of(shop))
        expected = self.outcome(shop, at, lambda effective: self.decide_payment(shop, channel, ref, amount, effective))
        holder = f"shop {self.trade_number_holders[(channel, ref)]}" if expected is TradeNumberTaken else ""
        pay = lambda: self.ledger.pay(shop, text, channel=channel, ref=ref, at=at)  # noqa: E731
        if self.check("pay", shop, expected, pay, names=holder):
            self.payments_made.append((shop, channel, ref, amount))
            self.trade_number_holders[(channel, ref)] = shop

    def decide_payment(self, shop: str, channel: str, ref: str, amount: int, at: datetime) -> Outcome:
        """The shop's own rules first; a payment they would record is refused if another shop holds its number."""
        holder = self.trade_number_holders.get((channel, ref))
        if holder is not None and holder != shop:
            would = copy.deepcopy(self.model[shop]).pay(channel, ref, amount, at)
            return TradeNumberTaken if would is False else would
        return self.model[shop].pay(channel, ref, amount, at)

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

    def attempt_priced_deduction(
        self, shop: str, case: str, reason: str, order_value: int | None, offset: int | None
    ) -> None:
        at = self.moment(offset)
        value = None if order_value is None else major(order_value, self.currency_of(shop))
        expected = self.outcome(
            shop, at, lambda effective: self.model[shop].deduct_by_policy(case, reason, order_value, effective)
        )
        if self.check(
            "deduct by policy",
            shop,
            expected,
            lambda: self.ledger.deduct(shop, reason=reason, case=case, order_value=value, at=at),
        ):
            self.priced_made.append((shop, case, reason, order_value))

    @rule(
        shop=st.sampled_from(SHOPS),
        reason=st.sampled_from(("fake_listing", "fake_listing", "late_shipment", "other")),
        order_value=st.one_of(st.none(), st.integers(min_value=1, max_value=20_000)),
        offset=at_offsets,
    )
    def deduct_by_policy(self, shop: str, reason: str, order_value: int | None, offset: int | None) -> None:
        """No amount: the catalogue prices it, within the daily cap."""
        self.attempt_priced_deduction(shop, self.next_id("P"), reason, order_value, offset)

    @precondition(lambda self: self.priced_made)
    @rule(pick=st.integers(min_value=0), other_order=st.booleans(), offset=at_offsets)
    def replay_priced_deduction(self, pick: int, other_order: bool, offset: int | None) -> None:
        """The same priced case again: a duplicate, even if the cap would price it lower now; else a conflict."""
        shop, case, reason, order_value = self.priced_made[pick % len(self.priced_made)]
        self.attempt_priced_deduction(
            shop, case, reason, (order_value or 0) + 1 if other_order else order_value, offset
        )

    def attempt_hold(self, shop: str, case: str, amount: int, offset: int | None) -> None:
        at = self.moment(offset)
        text = major(amount, self.currency_of(shop))
        expected = self.outcome(shop, at, lambda effective: self.model[shop].hold(case, amount, effective))
        if self.check("hold", shop, expected, lambda: self.ledger.hold(shop, text, case=case, at=at)):
            self.holds_made.append((shop, case, amount))

    @rule(shop=st.sampled_from(SHOPS), amount=amounts, offset=at_offsets)
    def hold(self, shop: str, amount: int, offset: int | None) -> None:
        self.attempt_hold(shop, self.next_id("H"), amount, offset)

    @precondition(lambda self: self.holds_made)
    @rule(pick=st.integers(min_value=0), extra=st.sampled_from((0, 0, 1)), offset=at_offsets)
    def replay_hold(self, pick: int, extra: int, offset: int | None) -> None:
        shop, case, amount = self.holds_made[pick % len(self.holds_made)]
        self.attempt_hold(shop, case, amount + extra, offset)

    @precondition(lambda self: self.holds_made)
    @rule(pick=st.integers(min_value=0), amount=amounts, offset=at_offsets)
    def deduct_a_held_case(self, pick: int, amount: int, offset: int | None) -> None:
        """A deduction for a held case takes its hold first."""
        shop, case, _ = self.holds_made[pick % len(self.holds_made)]
        self.attempt_deduction(shop, case, "after_sales_dispute", amount, offset)

    @precondition(lambda self: self.holds_made)
    @rule(pick=st.integers(min_value=0), offset=at_offsets)
    def release(self, pick: int, offset: int | None) -> None:
        shop, case, _ = self.holds_made[pick % len(self.holds_made)]
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].release(case, effective))
        self.check("release", shop, expected, lambda: self.ledger.release(shop, case=case, at=at))

    @precondition(lambda self: self.deductions_made or self.priced_made)
    @rule(pick=st.integers(min_value=0), offset=at_offsets)
    def appeal(self, pick: int, offset: int | None) -> None:
        made = [(shop, case) for shop, case, *_ in (*self.deductions_made, *self.priced_made)]
        shop, case = made[pick % len(made)]
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].appeal(case, effective))
        self.check("appeal", shop, expected, lambda: self.ledger.appeal(shop, case=case, at=at))

    @precondition(lambda self: self.deductions_made or self.priced_made)
    @rule(pick=st.integers(min_value=0), upheld=st.booleans(), offset=at_offsets)
    def resolve_appeal(self, pick: int, upheld: bool, offset: int | None) -> None:
        made = [(shop, case) for shop, case, *_ in (*self.deductions_made, *self.priced_made)]
        shop, case = made[pick % len(made)]
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].resolve(case, upheld, effective))
        if self.check(
            "resolve appeal", shop, expected, lambda: self.ledger.resolve_appeal(shop, case=case, upheld=upheld, at=at)
        ):
            history = self.ledger.history(shop)
            reversal = [event for event in history if isinstance(event, DeductionReversed)]
            if upheld:
                assert reversal[-1].case_id == case
            if upheld and self.model[shop].phase == "closed":
                refund = history[-1]
                assert isinstance(refund, Refunded)
                assert [(line.channel.value, line.trade_no, line.amount_minor) for line in refund.lines] == (
                    self.model[shop].refund_lines
                )

    @rule(
        shop=st.sampled_from(SHOPS),
        add=st.frozensets(st.sampled_from(CATEGORIES), max_size=2),
        remove=st.frozensets(st.sampled_from(CATEGORIES), max_size=2),
        offset=at_offsets,
    )
    def change_categories(self, shop: str, add: frozenset[str], remove: frozenset[str], offset: int | None) -> None:
        if not add and not remove:
            return
        at = self.moment(offset)
        expected = self.outcome(
            shop, at, lambda effective: self.model[shop].change_categories(set(add), set(remove), effective)
        )
        self.check(
            "categories",
            shop,
            expected,
            lambda: self.ledger.change_categories(shop, add=sorted(add), remove=sorted(remove), at=at),
        )

    # Rules aimed at deposits that can take the command: random shops rarely can.

    def pick(self, pick: int, fits: Callable[[ModelShop], bool]) -> str:
        fitting = sorted(shop for shop, deposit in self.model.items() if fits(deposit))
        return fitting[pick % len(fitting)]

    @precondition(lambda self: any(d.site and d.phase in ("open", "closing") for d in self.model.values()))
    @rule(
        pick=st.integers(min_value=0),
        reason=st.sampled_from(("fake_listing", "late_shipment")),
        order_value=st.integers(min_value=1, max_value=20_000),
    )
    def deduct_a_priced_shop_by_policy(self, pick: int, reason: str, order_value: int) -> None:
        shop = self.pick(pick, lambda d: bool(d.site) and d.phase in ("open", "closing"))
        self.attempt_priced_deduction(shop, self.next_id("P"), reason, order_value, None)

    @precondition(lambda self: any(d.frozen and d.phase in ("open", "closing") for d in self.model.values()))
    @rule(pick=st.integers(min_value=0), share=st.integers(min_value=1, max_value=100))
    def hold_frozen_money(self, pick: int, share: int) -> None:
        shop = self.pick(pick, lambda d: d.frozen > 0 and d.phase in ("open", "closing"))
        self.attempt_hold(shop, self.next_id("H"), max(1, self.model[shop].frozen * share // 100), None)

    @precondition(lambda self: any(c.appeal is None for d in self.model.values() for c in d.cases.values()))
    @rule(pick=st.integers(min_value=0))
    def appeal_a_deduction(self, pick: int) -> None:
        open_cases = sorted(
            (shop, case_id)
            for shop, d in self.model.items()
            for case_id, case in d.cases.items()
            if case.appeal is None
        )
        shop, case_id = open_cases[pick % len(open_cases)]
        expected = self.outcome(shop, None, lambda effective: self.model[shop].appeal(case_id, effective))
        self.check("appeal", shop, expected, lambda: self.ledger.appeal(shop, case=case_id))

    @precondition(lambda self: any(c.appeal == "pending" for d in self.model.values() for c in d.cases.values()))
    @rule(pick=st.integers(min_value=0), upheld=st.booleans())
    def resolve_a_pending_appeal(self, pick: int, upheld: bool) -> None:
        pending = sorted(
            (shop, case_id)
            for shop, d in self.model.items()
            for case_id, case in d.cases.items()
            if case.appeal == "pending"
        )
        shop, case_id = pending[pick % len(pending)]
        expected = self.outcome(shop, None, lambda effective: self.model[shop].resolve(case_id, upheld, effective))
        self.check(
            "resolve appeal", shop, expected, lambda: self.ledger.resolve_appeal(shop, case=case_id, upheld=upheld)
        )

    @precondition(lambda self: any(d.site and d.phase == "open" for d in self.model.values()))
    @rule(pick=st.integers(min_value=0), add=st.sampled_from(CATEGORIES), remove=st.sampled_from((None, *CATEGORIES)))
    def change_a_policy_shop_s_categories(self, pick: int, add: str, remove: str | None) -> None:
        shop = self.pick(pick, lambda d: bool(d.site) and d.phase == "open")
        removed = set() if remove is None or remove == add else {remove}
        expected = self.outcome(
            shop, None, lambda effective: self.model[shop].change_categories({add}, removed, effective)
        )
        self.check(
            "categories", shop, expected, lambda: self.ledger.change_categories(shop, add=[add], remove=sorted(removed))
        )

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def apply_policy(self, shop: str, offset: int | None) -> None:
        """The requirement follows the version in force at the effective time (back-dated: the older one)."""
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].apply_policy(effective))
        self.check("apply-policy", shop, expected, lambda: self.ledger.apply_policy(shop, at=at))

    @precondition(lambda self: self.clock.now > VERSIONS[1].starts and any(d.site for d in self.model.values()))
    @rule(
        pick=st.integers(min_value=0),
        reason=st.sampled_from(("fake_listing", "late_shipment")),
        order_value=amounts,
        minutes_before=st.integers(min_value=1, max_value=120),
    )
    def deduct_by_policy_just_before_the_new_version(
        self, pick: int, reason: str, order_value: int, minutes_before: int
    ) -> None:
        """A deduction back-dated to just before the second version: priced by the first (or out of order)."""
        shop = self.pick(pick, lambda d: bool(d.site))
        assert VERSIONS[1].starts is not None
        at = VERSIONS[1].starts - timedelta(minutes=minutes_before)
        self.attempt_priced_deduction(
            shop, self.next_id("P"), reason, order_value, (at - self.clock.now) // timedelta(minutes=1)
        )

    @precondition(lambda self: any(hold.held for d in self.model.values() for hold in d.holds.values()))
    @rule(pick=st.integers(min_value=0))
    def release_a_hold(self, pick: int) -> None:
        held = sorted((shop, case) for shop, d in self.model.items() for case, hold in d.holds.items() if hold.held)
        shop, case = held[pick % len(held)]
        expected = self.outcome(shop, None, lambda effective: self.model[shop].release(case, effective))
        self.check("release", shop, expected, lambda: self.ledger.release(shop, case=case))

    @precondition(lambda self: any(d.phase == "open" and d.frozen > d.required for d in self.model.values()))
    @rule(pick=st.integers(min_value=0))
    def refund_the_excess(self, pick: int) -> None:
        self.refund_excess(self.pick(pick, lambda d: d.phase == "open" and d.frozen > d.required), None)

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def refund_excess(self, shop: str, offset: int | None) -> None:
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].refund_excess(effective))
        if self.check("refund excess", shop, expected, lambda: self.ledger.refund_excess(shop, at=at)):
            event = self.ledger.history(shop)[-1]
            assert isinstance(event, ExcessRefunded)
            lines = [(line.channel.value, line.trade_no, line.amount_minor) for line in event.lines]
            assert lines == self.model[shop].refund_lines

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

    @precondition(lambda self: any(d.phase in ("closed", "forfeited") and d.owed for d in self.model.values()))
    @rule(
        pick=st.integers(min_value=0), channel=st.sampled_from(CHANNELS), share=st.integers(min_value=1, max_value=150)
    )
    def collect_a_debt_after_closure(self, pick: int, channel: str, share: int) -> None:
        """A closed shop pays part, all or more than its debt (the part beyond it is refused)."""
        shop = self.pick(pick, lambda d: d.phase in ("closed", "forfeited") and d.owed > 0)
        self.attempt_payment(shop, channel, self.next_id("T"), max(1, self.model[shop].owed * share // 100), None)

    @precondition(lambda self: any(d.phase in ("open", "closing") and d.owed for d in self.model.values()))
    @rule(pick=st.integers(min_value=0))
    def force_close_a_shop_that_owes(self, pick: int) -> None:
        """A debt that outlives the deposit: collected by later payments, or written off."""
        self.force_close(self.pick(pick, lambda d: d.phase in ("open", "closing") and d.owed > 0), None)

    @precondition(lambda self: any(c.owed or c.written_off for d in self.model.values() for c in d.cases.values()))
    @rule(pick=st.integers(min_value=0), offset=at_offsets)
    def write_off(self, pick: int, offset: int | None) -> None:
        owing = sorted(
            (shop, case_id)
            for shop, d in self.model.items()
            for case_id, case in d.cases.items()
            if case.owed or case.written_off
        )
        shop, case_id = owing[pick % len(owing)]
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].write_off(case_id, effective))
        self.check(
            "write-off", shop, expected, lambda: self.ledger.write_off(shop, case=case_id, reason="unreachable", at=at)
        )

    @rule(shop=st.sampled_from(SHOPS), offset=at_offsets)
    def force_close(self, shop: str, offset: int | None) -> None:
        at = self.moment(offset)
        expected = self.outcome(shop, at, lambda effective: self.model[shop].force_close(effective))
        self.check("force-close", shop, expected, lambda: self.ledger.force_close(shop, reason="fraud", at=at))

    @rule(
        shop=st.sampled_from(SHOPS),
        command=st.sampled_from(
            ("open", "pay", "deduct", "close", "refund", "force-close", "hold", "appeal", "categories", "refund-excess")
        ),
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
            "hold": lambda: self.ledger.hold(shop, "1", case=self.next_id("H"), at=at),
            "appeal": lambda: self.ledger.appeal(shop, case=self.next_id("C"), at=at),
            "categories": lambda: self.ledger.change_categories(shop, add=["food"], at=at),
            "refund-excess": lambda: self.ledger.refund_excess(shop, at=at),
        }
        self.check(command, shop, MalformedInput, requests[command])

    # --------------------------------------------------------- invariants

    @invariant()
    def figures_match_the_model_and_the_store(self) -> None:
        now = self.clock.now
        with closing(DepositLedger(self.db, actor="reader", clock=self.clock)) as fresh:
            for shop in SHOPS:
                if shop not in self.model:
                    with pytest.raises(ShopNotFound):
                        fresh.show(shop)
                    continue
                state = self.ledger.show(shop)
                assert figures(state) == figures(self.live[shop])
                assert fresh.show(shop) == state
                assert self.ledger.balance(shop) == state
                expected = self.model[shop]
                assert (
                    state.currency,
                    state.status,
                    state.required_minor,
                    state.paid_minor,
                    state.frozen_minor,
                    state.held_minor,
                    state.deducted_minor,
                    state.reversed_minor,
                    state.refunded_minor,
                    state.forfeited_minor,
                    state.owed_minor,
                    state.written_off_minor,
                    state.shortfall_minor,
                    state.settlement_due,
                    state.top_up_due,
                    state.categories,
                    state.policy_version,
                    state.last_effective_at,
                ) == (
                    expected.currency,
                    expected.status(now),
                    expected.required,
                    expected.paid,
                    expected.frozen,
                    expected.held,
                    expected.deducted,
                    expected.reversed,
                    expected.refunded,
                    expected.forfeited,
                    expected.owed,
                    expected.written_off,
                    expected.shortfall,
                    expected.settlement_due,
                    expected.top_up_due,
                    expected.categories,
                    expected.policy_version,
                    expected.last_at,
                )
                assert state.paid_minor == (
                    state.frozen_minor
                    + state.held_minor
                    + state.deducted_minor
                    + state.refunded_minor
                    + state.forfeited_minor
                )
                parts = (state.frozen_minor, state.held_minor, state.deducted_minor, state.refunded_minor)
                assert min(*parts, state.forfeited_minor, state.reversed_minor) >= 0
                assert state.owed_minor == 0 or state.frozen_minor == 0
                # What the standing deductions charged was collected, is owed, or was written off.
                charged = sum(case.amount for case in expected.cases.values() if case.appeal != "upheld")
                assert charged == state.deducted_minor + state.owed_minor + state.written_off_minor
                assert state.top_up_due is None or (state.shortfall_minor > 0 and expected.phase == "open")
                if state.status == "restricted":
                    event("a deposit reads restricted")


def figures(state: DepositState) -> dict[str, Any]:
    """Everything a state says but its status, which depends on when it is asked."""
    return state.model_dump(exclude={"status"})


DepositLedgerMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
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
