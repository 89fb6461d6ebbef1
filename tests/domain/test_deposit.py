"""The rules of ``ShopDeposit``, exercised on the aggregate alone: no store, no clock.

Each test drives the deposit with explicit ``Stamp``s and checks the events it
records and the figures it reports against numbers worked out by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from domain import (
    DEFAULT_SETTLEMENT_WINDOW,
    Channel,
    ClosureRequested,
    Deducted,
    DeductionReason,
    DepositEvent,
    DuplicateConflict,
    Forfeited,
    Frozen,
    MalformedInput,
    Opened,
    OutOfOrder,
    Paid,
    Refunded,
    RefundLine,
    Refused,
    ShopDeposit,
    Stamp,
    Status,
    WrongStatus,
    deposit_id,
    project_deposit,
)
from ledger.store.snapshots import DepositSnapshot

T0 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
WINDOW = DEFAULT_SETTLEMENT_WINDOW
ALIPAY, WECHAT = Channel.ALIPAY, Channel.WECHAT_PAY
LATE = DeductionReason.LATE_SHIPMENT


def stamp(hours: float = 0) -> Stamp:
    """A stamp ``hours`` after the first day of the tests."""
    moment = T0 + timedelta(hours=hours)
    return Stamp(effective_at=moment, recorded_at=moment, actor="ops")


def opened(required_minor: int = 200_000, currency: str = "CNY") -> ShopDeposit:
    """A freshly opened deposit whose ``Opened`` event has been handed over already."""
    deposit = ShopDeposit.open(
        shop_id="shop-1", site="CN", currency=currency, required_minor=required_minor, stamp=stamp()
    )
    deposit.collect_events()
    return deposit


def pay(deposit: ShopDeposit, amount_minor: int, ref: str, channel: Channel = ALIPAY, hours: float = 0) -> bool:
    return deposit.pay(amount_minor=amount_minor, channel=channel, trade_no=ref, payer=None, stamp=stamp(hours))


def deduct(
    deposit: ShopDeposit, amount_minor: int, case: str, reason: DeductionReason = LATE, hours: float = 0
) -> bool:
    return deposit.deduct(amount_minor=amount_minor, reason=reason, case_id=case, note="", stamp=stamp(hours))


def close(deposit: ShopDeposit, hours: float = 0) -> None:
    deposit.close(settlement_window=WINDOW, stamp=stamp(hours))


def refund_after_window(deposit: ShopDeposit) -> None:
    deposit.refund(stamp=stamp(WINDOW / timedelta(hours=1)))


def figures(deposit: ShopDeposit) -> tuple[int, int, int, int, int, int]:
    """(paid, frozen, deducted, refunded, forfeited, owed)."""
    state = deposit.state()
    return (
        state.paid_minor,
        state.frozen_minor,
        state.deducted_minor,
        state.refunded_minor,
        state.forfeited_minor,
        state.owed_minor,
    )


def closing() -> ShopDeposit:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    close(deposit)
    deposit.collect_events()
    return deposit


def closed() -> ShopDeposit:
    deposit = closing()
    refund_after_window(deposit)
    deposit.collect_events()
    return deposit


def forfeited() -> ShopDeposit:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deposit.force_close(reason="counterfeit goods", stamp=stamp())
    deposit.collect_events()
    return deposit


def types(events: list[DepositEvent]) -> list[type[DepositEvent]]:
    return [type(event) for event in events]


# ---------------------------------------------------------------------- open


def test_opening_records_the_required_amount_and_awaits_payment() -> None:
    deposit = ShopDeposit.open(shop_id="shop-1", site="CN", currency="CNY", required_minor=200_000, stamp=stamp())
    [event] = deposit.collect_events()
    assert isinstance(event, Opened)
    assert (event.shop_id, event.site, event.currency, event.required_minor) == ("shop-1", "CN", "CNY", 200_000)
    assert (event.originator_id, event.originator_version) == (deposit_id("shop-1"), 1)
    assert (event.effective_at, event.actor) == (T0, "ops")
    state = deposit.state()
    assert (state.status, state.version, state.shortfall_minor) == (Status.AWAITING_PAYMENT, 1, 200_000)


def test_the_deposit_id_is_derived_from_the_shop_id() -> None:
    assert deposit_id("shop-1") == deposit_id("shop-1")
    assert deposit_id("shop-1") != deposit_id("shop-2")
    assert deposit_id("shop-1").version == 5


@pytest.mark.parametrize(
    "fields",
    [
        {"shop_id": "-leading-dash"},
        {"shop_id": "x" * 65},
        {"site": "c n"},
        {"currency": "cny"},
        {"required_minor": 0},
    ],
)
def test_opening_refuses_malformed_fields(fields: dict[str, object]) -> None:
    arguments: dict[str, object] = {"shop_id": "shop-1", "site": "CN", "currency": "CNY", "required_minor": 1}
    with pytest.raises(MalformedInput):
        ShopDeposit.open(**{**arguments, **fields}, stamp=stamp())  # type: ignore[arg-type]


# ----------------------------------------------------------------------- pay


def test_a_payment_is_recorded_as_paid_then_frozen() -> None:
    deposit = opened()
    assert pay(deposit, 150_000, "A1", hours=1) is True
    paid, frozen = deposit.collect_events()
    assert isinstance(paid, Paid) and isinstance(frozen, Frozen)
    assert (paid.amount_minor, paid.channel, paid.trade_no, paid.originator_version) == (150_000, ALIPAY, "A1", 2)
    assert (frozen.amount_minor, frozen.originator_version) == (150_000, 3)
    assert figures(deposit) == (150_000, 150_000, 0, 0, 0, 0)
    assert (deposit.status, deposit.balance.shortfall_minor) == (Status.UNDERFUNDED, 50_000)


def test_top_ups_add_up_until_the_deposit_is_active() -> None:
    deposit = opened()
    pay(deposit, 150_000, "A1")
    pay(deposit, 50_000, "W1", channel=WECHAT)
    assert figures(deposit) == (200_000, 200_000, 0, 0, 0, 0)
    assert (deposit.status, deposit.balance.shortfall_minor) == (Status.ACTIVE, 0)


def test_replaying_a_payment_with_the_same_amount_records_nothing() -> None:
    deposit = opened()
    pay(deposit, 150_000, "A1")
    deposit.collect_events()
    before = deposit.state()
    assert pay(deposit, 150_000, "A1", hours=5) is False
    assert deposit.collect_events() == []
    assert deposit.state() == before


def test_the_same_trade_number_with_another_amount_is_a_conflict() -> None:
    deposit = opened()
    pay(deposit, 150_000, "A1")
    deposit.collect_events()
    before = deposit.state()
    with pytest.raises(DuplicateConflict, match="A1"):
        pay(deposit, 150_001, "A1")
    assert deposit.collect_events() == []
    assert deposit.state() == before


def test_the_same_trade_number_through_the_other_channel_is_another_payment() -> None:
    deposit = opened()
    pay(deposit, 100_000, "T1", channel=ALIPAY)
    assert pay(deposit, 100_000, "T1", channel=WECHAT) is True
    assert deposit.state().paid_minor == 200_000


@pytest.mark.parametrize("make", [closed, forfeited], ids=["closed", "forfeited"])
def test_a_new_payment_is_refused_by_a_settled_deposit_that_owes_nothing(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    before = deposit.state()
    with pytest.raises(WrongStatus, match="owes nothing and cannot accept payments"):
        pay(deposit, 1_000, "A2", hours=WINDOW / timedelta(hours=1))
    assert deposit.collect_events() == []
    assert deposit.state() == before


@pytest.mark.parametrize("make", [closing, closed, forfeited], ids=["closing", "closed", "forfeited"])
def test_a_redelivered_payment_is_still_a_duplicate_after_closure(make: Callable[[], ShopDeposit]) -> None:
    # Channels redeliver notifications for days; the ledger answers them without a refusal.
    deposit = make()
    assert pay(deposit, 200_000, "A1", hours=-1) is False
    with pytest.raises(DuplicateConflict):
        pay(deposit, 1, "A1")
    assert deposit.collect_events() == []


def test_a_payment_settles_the_oldest_debt_first_then_freezes_the_rest() -> None:
    deposit = opened(required_minor=10_000)
    pay(deposit, 10_000, "A1")
    deduct(deposit, 13_000, "C-old")  # collects 10 000, owes 3 000
    deduct(deposit, 2_000, "C-new", reason=DeductionReason.ORDER_BRUSHING)  # owes 2 000
    deposit.collect_events()
    assert figures(deposit) == (10_000, 0, 10_000, 0, 0, 5_000)

    pay(deposit, 4_000, "W1", channel=WECHAT)
    events = deposit.collect_events()
    assert types(events) == [Paid, Deducted, Deducted]
    old, new = events[1], events[2]
    assert isinstance(old, Deducted) and isinstance(new, Deducted)
    assert (old.case_id, old.reason, old.amount_collected_minor, old.amount_owed_minor) == ("C-old", LATE, 3_000, 0)
    assert (new.case_id, new.amount_collected_minor, new.amount_owed_minor) == ("C-new", 1_000, 1_000)
    assert old.settles_debt and new.settles_debt
    assert figures(deposit) == (14_000, 0, 14_000, 0, 0, 1_000)

    pay(deposit, 5_000, "A2")
    events = deposit.collect_events()
    assert types(events) == [Paid, Deducted, Frozen]
    assert events[2].amount_minor == 4_000  # type: ignore[attr-defined]
    assert figures(deposit) == (19_000, 4_000, 15_000, 0, 0, 0)
    assert (deposit.status, deposit.balance.shortfall_minor) == (Status.UNDERFUNDED, 6_000)


def test_settling_a_debt_keeps_the_case_identity_for_replays() -> None:
    deposit = opened(required_minor=1_000)
    deduct(deposit, 3_000, "C1")
    pay(deposit, 3_000, "A1")
    assert deposit.state().owed_minor == 0
    assert deduct(deposit, 3_000, "C1") is False
    with pytest.raises(DuplicateConflict):
        deduct(deposit, 1_000, "C1")


# -------------------------------------------------------------------- deduct


def test_a_deduction_collects_from_the_frozen_balance() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deposit.collect_events()
    assert deduct(deposit, 5_000, "C1") is True
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted)
    assert (event.amount_collected_minor, event.amount_owed_minor, event.settles_debt) == (5_000, 0, False)
    assert figures(deposit) == (200_000, 195_000, 5_000, 0, 0, 0)
    assert (deposit.status, deposit.balance.shortfall_minor) == (Status.UNDERFUNDED, 5_000)


def test_a_deduction_larger_than_the_frozen_balance_leaves_the_rest_owed() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deduct(deposit, 250_000, "C1")
    assert figures(deposit) == (200_000, 0, 200_000, 0, 0, 50_000)
    assert deposit.balance.shortfall_minor == 200_000 + 50_000


def test_a_deduction_with_nothing_frozen_is_owed_in_full() -> None:
    deposit = opened()
    deduct(deposit, 7_000, "C1")
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted)
    assert (event.amount_collected_minor, event.amount_owed_minor) == (0, 7_000)
    assert figures(deposit) == (0, 0, 0, 0, 0, 7_000)
    assert (deposit.status, deposit.balance.shortfall_minor) == (Status.AWAITING_PAYMENT, 207_000)


def test_replaying_a_deduction_of_the_same_case_records_nothing() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deduct(deposit, 5_000, "C1")
    deposit.collect_events()
    before = deposit.state()
    assert deduct(deposit, 5_000, "C1", hours=3) is False
    assert deposit.collect_events() == []
    assert deposit.state() == before


@pytest.mark.parametrize(
    ("amount_minor", "reason"), [(5_001, LATE), (5_000, DeductionReason.FAKE_LISTING)], ids=["amount", "reason"]
)
def test_the_same_case_with_other_figures_is_a_conflict(amount_minor: int, reason: DeductionReason) -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deduct(deposit, 5_000, "C1")
    deposit.collect_events()
    with pytest.raises(DuplicateConflict, match="C1"):
        deduct(deposit, amount_minor, "C1", reason=reason)
    assert deposit.collect_events() == []


def test_a_deduction_is_allowed_while_closing() -> None:
    deposit = closing()
    deduct(deposit, 30_000, "C-dispute", reason=DeductionReason.AFTER_SALES_DISPUTE)
    assert figures(deposit) == (200_000, 170_000, 30_000, 0, 0, 0)
    assert deposit.status is Status.CLOSING


def test_a_replayed_deduction_is_still_a_duplicate_after_forfeiture() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deduct(deposit, 5_000, "C1")
    deposit.force_close(reason="fraud", stamp=stamp())
    deposit.collect_events()
    assert deduct(deposit, 5_000, "C1") is False
    assert deposit.collect_events() == []


@pytest.mark.parametrize("make", [closed, forfeited], ids=["closed", "forfeited"])
def test_a_deduction_is_refused_once_the_deposit_is_finished(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    with pytest.raises(WrongStatus, match="cannot accept deductions"):
        deduct(deposit, 1_000, "C9", hours=WINDOW / timedelta(hours=1))
    assert deposit.collect_events() == []


@pytest.mark.parametrize(("case", "note"), [("C1", "x" * 501), ("bad case", ""), ("C1", "line\x00break")])
def test_a_deduction_refuses_a_malformed_case_or_note(case: str, note: str) -> None:
    deposit = opened()
    with pytest.raises(MalformedInput):
        deposit.deduct(amount_minor=1_000, reason=LATE, case_id=case, note=note, stamp=stamp())
    assert deposit.collect_events() == []
    assert deposit.state().version == 1


def test_a_note_of_the_maximum_length_is_accepted() -> None:
    deposit = opened()
    deposit.deduct(amount_minor=1_000, reason=LATE, case_id="C1", note="注" * 500, stamp=stamp())
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted) and len(event.note) == 500


# --------------------------------------------------------------------- close


def test_closing_makes_settlement_due_after_the_window() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deposit.collect_events()
    deposit.close(settlement_window=timedelta(days=30), stamp=stamp(hours=5))
    [event] = deposit.collect_events()
    assert isinstance(event, ClosureRequested)
    assert event.settlement_due == T0 + timedelta(hours=5) + timedelta(days=30)
    assert (deposit.status, deposit.settlement_due) == (Status.CLOSING, event.settlement_due)
    assert figures(deposit) == (200_000, 200_000, 0, 0, 0, 0)


@pytest.mark.parametrize("make", [closing, closed, forfeited], ids=["closing", "closed", "forfeited"])
def test_closing_is_refused_unless_the_deposit_is_open(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    with pytest.raises(WrongStatus, match="cannot be closed"):
        close(deposit, hours=WINDOW / timedelta(hours=1))


# -------------------------------------------------------------------- refund


def test_a_refund_before_settlement_is_due_is_refused() -> None:
    deposit = closing()
    just_before = WINDOW / timedelta(hours=1) - 1 / 3600
    with pytest.raises(Refused, match="settlement is due"):
        deposit.refund(stamp=stamp(just_before))
    assert deposit.collect_events() == []
    assert deposit.status is Status.CLOSING


def test_a_refund_once_settlement_is_due_returns_the_frozen_balance_and_closes() -> None:
    deposit = closing()
    deduct(deposit, 30_000, "C1")
    deposit.collect_events()
    refund_after_window(deposit)
    [event] = deposit.collect_events()
    assert isinstance(event, Refunded)
    assert (event.amount_minor, event.lines) == (
        170_000,
        (RefundLine(channel=ALIPAY, trade_no="A1", amount_minor=170_000),),
    )
    assert figures(deposit) == (200_000, 0, 30_000, 170_000, 0, 0)
    assert deposit.status is Status.CLOSED


@pytest.mark.parametrize(
    ("deducted_minor", "expected_lines"),
    [
        (200, [("A3", 300), ("W2", 500), ("A1", 800)]),
        (1_000, [("A3", 300), ("W2", 500)]),
        (1_500, [("A3", 300)]),
        (1_600, [("A3", 200)]),
    ],
)
def test_a_refund_goes_to_the_newest_payments_first_never_more_than_each_brought(
    deducted_minor: int, expected_lines: list[tuple[str, int]]
) -> None:
    deposit = opened(required_minor=1_800)
    pay(deposit, 1_000, "A1", channel=ALIPAY)
    pay(deposit, 500, "W2", channel=WECHAT)
    pay(deposit, 300, "A3", channel=ALIPAY)
    deduct(deposit, deducted_minor, "C1")
    close(deposit)
    deposit.collect_events()
    refund_after_window(deposit)
    [event] = deposit.collect_events()
    assert isinstance(event, Refunded)
    assert [(line.trade_no, line.amount_minor) for line in event.lines] == expected_lines
    assert [line.channel for line in event.lines] == [{"A": ALIPAY, "W": WECHAT}[ref[0]] for ref, _ in expected_lines]
    assert event.amount_minor == 1_800 - deducted_minor


def test_a_refund_with_nothing_frozen_refunds_zero_and_closes() -> None:
    deposit = opened()
    pay(deposit, 200_000, "A1")
    deduct(deposit, 260_000, "C1")
    close(deposit)
    deposit.collect_events()
    refund_after_window(deposit)
    [event] = deposit.collect_events()
    assert isinstance(event, Refunded)
    assert (event.amount_minor, event.lines) == (0, ())
    assert deposit.status is Status.CLOSED
    assert figures(deposit) == (200_000, 0, 200_000, 0, 0, 60_000)


@pytest.mark.parametrize("make", [opened, closed, forfeited], ids=["open", "closed", "forfeited"])
def test_a_refund_is_refused_unless_the_deposit_is_closing(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    with pytest.raises(WrongStatus, match="cannot be refunded"):
        deposit.refund(stamp=stamp(2 * WINDOW / timedelta(hours=1)))
    assert deposit.collect_events() == []


# --------------------------------------------------------------- force close


@pytest.mark.parametrize("make", [opened, closing], ids=["open", "closing"])
def test_force_closing_forfeits_the_frozen_balance(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    frozen_before = deposit.frozen_minor
    deposit.force_close(reason="counterfeit goods", stamp=stamp(1))
    [event] = deposit.collect_events()
    assert isinstance(event, Forfeited)
    assert (event.amount_minor, event.reason) == (frozen_before, "counterfeit goods")
    assert (deposit.frozen_minor, deposit.balance.forfeited_minor, deposit.status) == (
        0,
        frozen_before,
        Status.FORFEITED,
    )


def test_force_closing_keeps_what_is_still_owed() -> None:
    deposit = opened()
    pay(deposit, 100_000, "A1")
    deduct(deposit, 120_000, "C1")
    deposit.force_close(reason="fraud", stamp=stamp())
    assert figures(deposit) == (100_000, 0, 100_000, 0, 0, 20_000)


@pytest.mark.parametrize("make", [closed, forfeited], ids=["closed", "forfeited"])
def test_force_closing_is_refused_once_the_deposit_is_finished(make: Callable[[], ShopDeposit]) -> None:
    deposit = make()
    with pytest.raises(WrongStatus, match="cannot be force-closed"):
        deposit.force_close(reason="fraud", stamp=stamp(2 * WINDOW / timedelta(hours=1)))


@pytest.mark.parametrize("reason", ["", "two\nlines", "x" * 201])
def test_force_closing_refuses_a_malformed_reason(reason: str) -> None:
    deposit = opened()
    with pytest.raises(MalformedInput):
        deposit.force_close(reason=reason, stamp=stamp())
    assert deposit.status is Status.AWAITING_PAYMENT


# ------------------------------------------------------------ effective time

COMMANDS_AT: dict[str, Callable[[ShopDeposit, float], object]] = {
    "pay": lambda deposit, hours: pay(deposit, 1_000, "A-late", hours=hours),
    "deduct": lambda deposit, hours: deduct(deposit, 1_000, "C-late", hours=hours),
    "close": lambda deposit, hours: close(deposit, hours=hours),
    "force_close": lambda deposit, hours: deposit.force_close(reason="fraud", stamp=stamp(hours)),
}


@pytest.mark.parametrize("command", COMMANDS_AT.values(), ids=COMMANDS_AT.keys())
def test_a_command_effective_before_the_last_event_is_out_of_order(
    command: Callable[[ShopDeposit, float], object],
) -> None:
    deposit = opened()
    pay(deposit, 1_000, "A1", hours=10)
    deposit.collect_events()
    before = deposit.state()
    with pytest.raises(OutOfOrder, match="before shop shop-1's last event") as refusal:
        command(deposit, 9)
    assert isinstance(refusal.value, Refused)
    assert deposit.collect_events() == []
    assert deposit.state() == before


@pytest.mark.parametrize("command", COMMANDS_AT.values(), ids=COMMANDS_AT.keys())
def test_a_command_effective_at_the_same_time_as_the_last_event_is_accepted(
    command: Callable[[ShopDeposit, float], object],
) -> None:
    deposit = opened()
    pay(deposit, 1_000, "A1", hours=10)
    deposit.collect_events()
    command(deposit, 10)
    assert deposit.collect_events()


def test_a_refund_effective_before_the_closure_is_out_of_order() -> None:
    deposit = closing()
    with pytest.raises(OutOfOrder):
        deposit.refund(stamp=stamp(-1))


def test_a_late_replay_of_a_payment_is_still_a_duplicate() -> None:
    deposit = opened()
    pay(deposit, 1_000, "A1", hours=1)
    pay(deposit, 1_000, "A2", hours=10)
    assert pay(deposit, 1_000, "A1", hours=1) is False


# ------------------------------------------------------------------- figures


@pytest.mark.parametrize(
    ("commands", "status", "shortfall_minor"),
    [
        ([], Status.AWAITING_PAYMENT, 10_000),
        ([("pay", 10_000)], Status.ACTIVE, 0),
        ([("pay", 12_000)], Status.ACTIVE, 0),
        ([("pay", 4_000)], Status.UNDERFUNDED, 6_000),
        ([("pay", 10_000), ("deduct", 1)], Status.UNDERFUNDED, 1),
        ([("pay", 10_000), ("deduct", 12_500)], Status.UNDERFUNDED, 12_500),
        ([("deduct", 500)], Status.AWAITING_PAYMENT, 10_500),
        ([("pay", 12_000), ("deduct", 2_000)], Status.ACTIVE, 0),
        ([("pay", 10_000), ("close", 0)], Status.CLOSING, 0),
        # Nothing is required of a closed shop: its shortfall is its debt alone.
        ([("pay", 10_000), ("close", 0), ("refund", 0)], Status.CLOSED, 0),
        ([("pay", 10_000), ("force_close", 0)], Status.FORFEITED, 0),
        ([("pay", 10_000), ("deduct", 12_500), ("force_close", 0)], Status.FORFEITED, 2_500),
    ],
)
def test_status_and_shortfall_follow_the_figures(
    commands: list[tuple[str, int]], status: Status, shortfall_minor: int
) -> None:
    deposit = opened(required_minor=10_000)
    actions: dict[str, Callable[[int, int], object]] = {
        "pay": lambda n, amount: pay(deposit, amount, f"A{n}"),
        "deduct": lambda n, amount: deduct(deposit, amount, f"C{n}"),
        "close": lambda n, _: close(deposit),
        "refund": lambda n, _: refund_after_window(deposit),
        "force_close": lambda n, _: deposit.force_close(reason="fraud", stamp=stamp()),
    }
    for n, (name, amount) in enumerate(commands):
        actions[name](n, amount)
    state = deposit.state()
    assert (state.status, state.shortfall_minor) == (status, shortfall_minor)
    required = (
        state.required_minor
        if state.status in (Status.AWAITING_PAYMENT, Status.ACTIVE, Status.UNDERFUNDED, Status.CLOSING)
        else 0
    )
    assert state.shortfall_minor == max(0, required - state.frozen_minor) + state.owed_minor


# ---------------------------------------------------------------- invariants


def a_busy_history() -> tuple[ShopDeposit, list[DepositEvent]]:
    """A deposit through debts, settlements, top-ups, closure and refund, with all its events."""
    deposit = ShopDeposit.open(shop_id="shop-1", site=None, currency="JPY", required_minor=70_000, stamp=stamp())
    pay(deposit, 50_000, "A1", hours=1)
    deduct(deposit, 60_000, "C1", hours=2)
    deduct(deposit, 5_000, "C2", reason=DeductionReason.FAKE_LISTING, hours=3)
    pay(deposit, 12_000, "W1", channel=WECHAT, hours=4)
    pay(deposit, 70_000, "A2", hours=5)
    deduct(deposit, 1_000, "C3", hours=6)
    close(deposit, hours=7)
    deduct(deposit, 2_000, "C4", reason=DeductionReason.AFTER_SALES_DISPUTE, hours=8)
    deposit.refund(stamp=stamp(7 + WINDOW / timedelta(hours=1)))
    return deposit, deposit.collect_events()


def test_replaying_the_recorded_events_rebuilds_the_same_deposit() -> None:
    live, events = a_busy_history()
    rebuilt = project_deposit(None, events)
    assert rebuilt is not None
    assert rebuilt.state() == live.state()
    assert (rebuilt.payments, rebuilt.cases) == (live.payments, live.cases)
    assert figures(live) == (132_000, 0, 68_000, 64_000, 0, 0)


def test_conservation_holds_after_every_event() -> None:
    _, events = a_busy_history()
    deposit = None
    for event in events:
        deposit = project_deposit(deposit, [event])
        assert deposit is not None
        state = deposit.state()
        assert min(figures(deposit)) >= 0
        assert state.paid_minor == (
            deposit.unfrozen_minor
            + state.frozen_minor
            + state.deducted_minor
            + state.refunded_minor
            + state.forfeited_minor
        )
        assert state.owed_minor == 0 or state.frozen_minor == 0


def test_an_event_that_would_break_conservation_is_rejected() -> None:
    deposit = opened()
    forged = Frozen(originator_id=deposit.id, originator_version=2, currency="CNY", amount_minor=1, **_envelope())
    with pytest.raises(AssertionError, match="negative figure"):
        deposit.apply(forged)


def test_an_event_out_of_version_sequence_is_rejected() -> None:
    deposit = opened()
    skipped = ClosureRequested(originator_id=deposit.id, originator_version=3, settlement_due=T0, **_envelope())
    with pytest.raises(AssertionError, match="version gap"):
        deposit.apply(skipped)


def _envelope() -> dict[str, object]:
    return stamp().model_dump()


# ----------------------------------------------------------------- snapshots


def test_a_snapshot_restores_figures_payments_and_cases() -> None:
    deposit = opened(required_minor=10_000)
    pay(deposit, 8_000, "A1")
    deduct(deposit, 9_000, "C1")
    deposit.collect_events()
    restored = DepositSnapshot.take(deposit).restore()
    assert restored.state() == deposit.state()
    assert pay(restored, 8_000, "A1") is False
    assert deduct(restored, 9_000, "C1") is False
    pay(restored, 3_000, "W1", channel=WECHAT)
    assert figures(restored) == (11_000, 2_000, 9_000, 0, 0, 0)


def test_a_snapshot_cannot_capture_a_half_applied_payment() -> None:
    deposit = opened()
    deposit.apply(
        Paid(
            originator_id=deposit.id,
            originator_version=2,
            currency="CNY",
            amount_minor=1_000,
            channel=ALIPAY,
            trade_no="A1",
            **_envelope(),
        )
    )
    with pytest.raises(AssertionError, match="unfrozen"):
        DepositSnapshot.take(deposit)
