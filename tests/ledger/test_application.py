"""``DepositLedger`` through its Python API, on a fresh store of each backend.

What the domain tests cannot see: parsing at the edges, refusals that leave the
store untouched, idempotent replays, effective and recording times, the
configurable settlement window, snapshots and retries on concurrent writers.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain import (
    Deducted,
    DeductionReason,
    DepositState,
    DuplicateConflict,
    Frozen,
    MalformedInput,
    Opened,
    OutOfOrder,
    Paid,
    Refunded,
    Refused,
    ShopAlreadyOpen,
    ShopDeposit,
    ShopNotFound,
    Status,
    WrongStatus,
)
from domain.money import MAX_AMOUNT_MINOR
from ledger import CommandResult, ConcurrencyExhausted, DepositLedger
from ledger.app.service import SNAPSHOT_INTERVAL
from ledger.app.unit_of_work import MAX_ATTEMPTS
from ledger.store.snapshots import DepositSnapshot
from ledger.store.urls import Store
from tests.conftest import FakeClock, fetch_all, writes_nothing

Command = Callable[[DepositLedger], object]


@pytest.fixture
def shops(ledger: DepositLedger, clock: FakeClock) -> DepositLedger:
    """``shop-cn`` (CNY 2000, paid by Alipay A1) and ``shop-jp`` (JPY 70000, unpaid)."""
    ledger.open("shop-cn", currency="CNY", required="2000", site="CN")
    ledger.pay("shop-cn", "2000", channel="alipay", ref="A1")
    ledger.open("shop-jp", currency="JPY", required="70000", site="JP")
    clock.advance(hours=1)
    return ledger


def event_types(ledger: DepositLedger, shop_id: str) -> list[str]:
    return [event.type_name for event in ledger.history(shop_id)]


# ------------------------------------------------------------------ commands


def test_commands_answer_with_the_deposit_s_new_state(ledger: DepositLedger, clock: FakeClock) -> None:
    opened = ledger.open("shop-1", currency="cny", required="1700.50", site="cn")
    assert isinstance(opened, CommandResult) and isinstance(opened.state, DepositState)
    assert (opened.state.shop_id, opened.state.site, opened.state.currency) == ("shop-1", "CN", "CNY")
    assert (opened.state.required_minor, opened.state.status, opened.duplicate) == (170_050, "awaiting_payment", False)
    clock.advance(minutes=5)
    paid = ledger.pay("shop-1", "1700.50", channel="WeChat_Pay", ref="4200001", payer="merchant-co")
    assert (paid.state.frozen_minor, paid.state.status, paid.state.version) == (170_050, "active", 3)
    assert ledger.show("shop-1") == paid.state


def test_history_lists_the_events_oldest_first(shops: DepositLedger, clock: FakeClock) -> None:
    shops.deduct("shop-cn", "2500", reason="fake_listing", case="C1", note="listing 42")
    shops.pay("shop-cn", "1000", channel="wechat_pay", ref="W1")
    history = shops.history("shop-cn")
    assert [type(event) for event in history] == [Opened, Paid, Frozen, Deducted, Paid, Deducted, Frozen]
    assert [event.originator_version for event in history] == list(range(1, 8))
    settlement = history[5]
    assert isinstance(settlement, Deducted)
    assert (settlement.case_id, settlement.settles_debt, settlement.amount_collected_minor) == ("C1", True, 50_000)


def test_a_second_opening_of_a_shop_is_refused(shops: DepositLedger) -> None:
    with writes_nothing(shops), pytest.raises(ShopAlreadyOpen, match="shop-cn"):
        shops.open("shop-cn", currency="CNY", required="2000", site="CN")
    assert shops.show("shop-cn").required_minor == 200_000


UNKNOWN_SHOP_COMMANDS: dict[str, Command] = {
    "pay": lambda ledger: ledger.pay("shop-x", "1", channel="alipay", ref="A1"),
    "deduct": lambda ledger: ledger.deduct("shop-x", "1", reason="other", case="C1"),
    "close": lambda ledger: ledger.close_shop("shop-x"),
    "refund": lambda ledger: ledger.refund("shop-x"),
    "force_close": lambda ledger: ledger.force_close("shop-x", reason="fraud"),
    "show": lambda ledger: ledger.show("shop-x"),
    "history": lambda ledger: ledger.history("shop-x"),
    "deposit": lambda ledger: ledger.deposit("shop-x"),
}


@pytest.mark.parametrize("command", UNKNOWN_SHOP_COMMANDS.values(), ids=UNKNOWN_SHOP_COMMANDS.keys())
def test_an_unknown_shop_is_refused(shops: DepositLedger, command: Command) -> None:
    with writes_nothing(shops), pytest.raises(ShopNotFound, match="shop-x"):
        command(shops)


# ------------------------------------------------------------- bad requests


def in_a_second(ledger: DepositLedger) -> datetime:
    return ledger.clock() + timedelta(seconds=1)


def pay_cn(amount: str, **options: Any) -> Command:
    return lambda ledger: ledger.pay("shop-cn", amount, **{"channel": "alipay", "ref": "A9", **options})


def deduct_cn(amount: str, **options: Any) -> Command:
    return lambda ledger: ledger.deduct("shop-cn", amount, **{"reason": "other", "case": "C9", **options})


def open_new(shop_id: str = "shop-new", **options: Any) -> Command:
    return lambda ledger: ledger.open(shop_id, **{"currency": "CNY", "required": "2000", **options})


MALFORMED: dict[str, Command] = {
    "zero payment": pay_cn("0"),
    "zero payment with decimals": pay_cn("0.00"),
    "negative payment": pay_cn("-5"),
    "fraction of a fen": pay_cn("1.001"),
    "fraction of a yen": lambda ledger: ledger.pay("shop-jp", "1.5", channel="alipay", ref="A9"),
    "words": pay_cn("twelve"),
    "thousands separator": pay_cn("1,000"),
    "NaN": pay_cn("NaN"),
    "Infinity": pay_cn("Infinity"),
    "minus Infinity": pay_cn("-Infinity"),
    "payment above the limit": pay_cn("100000000000.01"),
    "yen above the limit": lambda ledger: ledger.pay("shop-jp", str(MAX_AMOUNT_MINOR + 1), channel="alipay", ref="A9"),
    "huge exponent": pay_cn("1e999999"),
    "unknown channel": pay_cn("10", channel="paypal"),
    "malformed trade number": pay_cn("10", ref="A 9"),
    "payer with a line break": pay_cn("10", payer="acct\n2"),
    "zero deduction": deduct_cn("0"),
    "negative deduction": deduct_cn("-0.01"),
    "deduction with a fraction of a fen": deduct_cn("0.005"),
    "deduction of NaN": deduct_cn("nan"),
    "deduction above the limit": deduct_cn("1e14"),
    "unknown reason": deduct_cn("10", reason="speeding"),
    "malformed case id": deduct_cn("10", case="C 9"),
    "note too long": deduct_cn("10", note="x" * 501),
    "unknown currency": open_new(currency="RMB"),
    "zero required": open_new(required="0"),
    "required fraction of a yen": open_new(currency="JPY", required="70000.5"),
    "required above the limit": open_new(required="100000000000.01"),
    "malformed site": open_new(site="C N"),
    "empty shop id": open_new(shop_id=""),
    "shop id with a space": open_new(shop_id="shop new"),
    "shop id too long": open_new(shop_id="s" * 65),
    "bad shop id on pay": lambda ledger: ledger.pay("-cn", "1", channel="alipay", ref="A9"),
    "bad shop id on deduct": lambda ledger: ledger.deduct("shop/cn", "1", reason="other", case="C9"),
    "bad shop id on close": lambda ledger: ledger.close_shop("shop cn"),
    "bad shop id on refund": lambda ledger: ledger.refund(""),
    "bad shop id on force close": lambda ledger: ledger.force_close("shop\tcn", reason="fraud"),
    "empty force-close reason": lambda ledger: ledger.force_close("shop-cn", reason=""),
    "actor with a line break": pay_cn("10", actor="ops\nbot"),
    "actor too long": lambda ledger: ledger.close_shop("shop-cn", actor="a" * 65),
    "time without zone": pay_cn("10", at="2026-03-05T08:00:00"),
    "naive datetime": deduct_cn("10", at=datetime(2026, 3, 5, 8, 0)),
    "time that is no time": lambda ledger: ledger.close_shop("shop-cn", at="yesterday"),
    "future payment": lambda ledger: ledger.pay("shop-cn", "1", channel="alipay", ref="A9", at=in_a_second(ledger)),
    "future deduction": lambda ledger: ledger.deduct("shop-cn", "1", reason="other", case="C9", at=in_a_second(ledger)),
    "future closure": lambda ledger: ledger.close_shop("shop-cn", at=in_a_second(ledger)),
    "future refund": lambda ledger: ledger.refund("shop-cn", at=in_a_second(ledger)),
    "future force close": lambda ledger: ledger.force_close("shop-cn", reason="fraud", at=in_a_second(ledger)),
    "future opening": open_new(at="2099-01-01T00:00:00+08:00"),
}


@pytest.mark.parametrize("command", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_input_is_refused_and_writes_nothing(shops: DepositLedger, command: Command) -> None:
    before = shops.show("shop-cn")
    with writes_nothing(shops), pytest.raises(MalformedInput):
        command(shops)
    assert shops.show("shop-cn") == before


def test_a_malformed_amount_is_reported_before_an_unknown_shop(shops: DepositLedger) -> None:
    with pytest.raises(MalformedInput):
        shops.pay("shop-x", "NaN", channel="alipay", ref="A9")


# ----------------------------------------------------------------- refusals


def close_cn(ledger: DepositLedger) -> None:
    ledger.close_shop("shop-cn")


def force_close_cn(ledger: DepositLedger) -> None:
    ledger.force_close("shop-cn", reason="counterfeit goods")


def refund_cn_after_the_window(ledger: DepositLedger) -> None:
    ledger.close_shop("shop-cn")
    advance(ledger, days=91)
    ledger.refund("shop-cn")


def advance(ledger: DepositLedger, **delta: float) -> None:
    assert isinstance(ledger.clock, FakeClock)
    ledger.clock.advance(**delta)


BEFORE_THE_FIRST_PAYMENT = "2026-03-05T16:59:00+08:00"
"""A minute before ``shop-cn`` was paid (09:00 UTC): earlier than its last event."""

REFUSALS: dict[str, tuple[list[Command], Command, type[Refused]]] = {
    "payment conflict": ([], pay_cn("1999", ref="A1"), DuplicateConflict),
    "payment conflict on another channel's number": (
        [pay_cn("5", channel="wechat_pay", ref="W1")],
        pay_cn("6", channel="wechat_pay", ref="W1"),
        DuplicateConflict,
    ),
    "deduction conflict": ([deduct_cn("10", case="C1")], deduct_cn("11", case="C1"), DuplicateConflict),
    "deduction conflict on reason": (
        [deduct_cn("10", case="C1")],
        deduct_cn("10", case="C1", reason="fake_listing"),
        DuplicateConflict,
    ),
    "payment after refund": ([refund_cn_after_the_window], pay_cn("10"), WrongStatus),
    "payment after forfeiture": ([force_close_cn], pay_cn("10"), WrongStatus),
    "deduction after refund": ([refund_cn_after_the_window], deduct_cn("10"), WrongStatus),
    "deduction after forfeiture": ([force_close_cn], deduct_cn("10"), WrongStatus),
    "second closure": ([close_cn], close_cn, WrongStatus),
    "closure after forfeiture": ([force_close_cn], close_cn, WrongStatus),
    "refund while open": ([], lambda ledger: ledger.refund("shop-cn"), WrongStatus),
    "refund before settlement is due": ([close_cn], lambda ledger: ledger.refund("shop-cn"), Refused),
    "second refund": ([refund_cn_after_the_window], lambda ledger: ledger.refund("shop-cn"), WrongStatus),
    "force close after refund": ([refund_cn_after_the_window], force_close_cn, WrongStatus),
    "second force close": ([force_close_cn], force_close_cn, WrongStatus),
    "payment out of order": ([], pay_cn("10", at=BEFORE_THE_FIRST_PAYMENT), OutOfOrder),
    "deduction out of order": ([], deduct_cn("10", at=BEFORE_THE_FIRST_PAYMENT), OutOfOrder),
    "closure out of order": ([], lambda ledger: ledger.close_shop("shop-cn", at=BEFORE_THE_FIRST_PAYMENT), OutOfOrder),
    "force close out of order": (
        [],
        lambda ledger: ledger.force_close("shop-cn", reason="fraud", at=BEFORE_THE_FIRST_PAYMENT),
        OutOfOrder,
    ),
}


@pytest.mark.parametrize(("setup", "command", "refusal"), REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_command_writes_nothing(
    shops: DepositLedger, setup: list[Command], command: Command, refusal: type[Refused]
) -> None:
    for step in setup:
        step(shops)
    before = shops.show("shop-cn")
    with writes_nothing(shops), pytest.raises(refusal) as raised:
        command(shops)
    assert type(raised.value) is refusal
    assert shops.show("shop-cn") == before


def test_out_of_order_is_a_refusal_not_malformed_input() -> None:
    assert issubclass(OutOfOrder, Refused)
    assert not issubclass(OutOfOrder, MalformedInput)


# --------------------------------------------------------------- duplicates


def test_replaying_a_payment_reports_a_duplicate_and_writes_nothing(shops: DepositLedger, clock: FakeClock) -> None:
    before = shops.show("shop-cn")
    clock.advance(days=2)
    with writes_nothing(shops):
        replay = shops.pay("shop-cn", "2000.00", channel="alipay", ref="A1")
    assert replay.duplicate is True
    assert replay.state == before
    assert replay.state.version == 3


def test_replaying_a_deduction_reports_a_duplicate_and_writes_nothing(shops: DepositLedger) -> None:
    first = shops.deduct("shop-cn", "30", reason="late_shipment", case="C1", note="order 7")
    with writes_nothing(shops):
        replay = shops.deduct("shop-cn", "30.00", reason="late_shipment", case="C1", note="another note")
    assert (first.duplicate, replay.duplicate) == (False, True)
    assert replay.state == first.state


def test_a_duplicate_is_recognised_by_a_fresh_ledger(shops: DepositLedger, reopen: Callable[[], DepositLedger]) -> None:
    other = reopen()
    with writes_nothing(shops):
        assert other.pay("shop-cn", "2000", channel="alipay", ref="A1").duplicate is True


# ------------------------------------------------------------------- timing


def test_settlement_is_due_ninety_days_after_closure_by_default(shops: DepositLedger) -> None:
    closing = shops.close_shop("shop-cn", at="2026-03-05T18:00:00+08:00")
    assert closing.state.settlement_due == datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
    assert closing.state.status == Status.CLOSING


def test_the_settlement_window_is_configurable(store_url: str, clock: FakeClock) -> None:
    ledger = DepositLedger(store_url, actor="tester", clock=clock, settlement_window=timedelta(days=30))
    try:
        ledger.open("shop-1", currency="USD", required="500")
        ledger.pay("shop-1", "500", channel="alipay", ref="A1")
        due = ledger.close_shop("shop-1").state.settlement_due
        assert due == clock.now + timedelta(days=30)
        clock.advance(days=30)
        assert ledger.refund("shop-1").state.refunded_minor == 50_000
    finally:
        ledger.close()


def test_a_refund_is_judged_at_its_effective_time_not_at_recording(shops: DepositLedger, clock: FakeClock) -> None:
    closed_at = clock.now
    shops.close_shop("shop-cn")
    clock.advance(days=200)
    due = closed_at + timedelta(days=90)
    with writes_nothing(shops), pytest.raises(Refused, match="settlement is due"):
        shops.refund("shop-cn", at=due - timedelta(seconds=1))
    refunded = shops.refund("shop-cn", at=due)
    assert (refunded.state.status, refunded.state.refunded_minor) == (Status.CLOSED, 200_000)
    [event] = shops.history("shop-cn")[-1:]
    assert isinstance(event, Refunded)
    assert (event.effective_at, event.recorded_at) == (due, clock.now)


def test_events_carry_effective_time_recording_time_and_actor(shops: DepositLedger, clock: FakeClock) -> None:
    shops.deduct("shop-cn", "10", reason="other", case="C1", at="2026-03-05T17:30:00+08:00", actor="risk-bot")
    shops.deduct("shop-cn", "10", reason="other", case="C2")
    by_bot, by_default = shops.history("shop-cn")[-2:]
    assert by_bot.effective_at == datetime(2026, 3, 5, 9, 30, tzinfo=UTC)
    assert by_bot.effective_at.utcoffset() == timedelta(0)
    assert (by_bot.recorded_at, by_bot.actor) == (clock.now, "risk-bot")
    assert (by_default.effective_at, by_default.recorded_at, by_default.actor) == (clock.now, clock.now, "tester")


def test_an_effective_time_in_another_zone_is_compared_as_an_instant(shops: DepositLedger) -> None:
    # 16:59 in Beijing is 08:59 UTC: a minute before the payment at 09:00 UTC.
    with pytest.raises(OutOfOrder):
        shops.deduct(
            "shop-cn",
            "1",
            reason="other",
            case="C1",
            at=datetime(2026, 3, 5, 16, 59, tzinfo=timezone(timedelta(hours=8))),
        )
    assert shops.deduct("shop-cn", "1", reason="other", case="C1", at="2026-03-05T17:00:00+08:00").duplicate is False


def test_commands_without_a_time_take_the_clock(ledger: DepositLedger, clock: FakeClock) -> None:
    ledger.open("shop-1", currency="CNY", required="1")
    clock.advance(days=3)
    ledger.pay("shop-1", "1", channel="alipay", ref="A1")
    assert ledger.show("shop-1").last_effective_at == clock.now


# ---------------------------------------------------------------- snapshots

LONG_SHOP = "shop-long"


def record_a_long_history(ledger: DepositLedger) -> int:
    """Debts, settlements and top-ups on both channels, past one snapshot interval.

    Returns how many payments were made. The two deductions put version 3 behind
    the opening, so each payment takes versions 2k+2 and 2k+3: the 99th payment's
    ``Paid`` lands on version 200, the interval, and its second event on 201.
    """
    assert SNAPSHOT_INTERVAL == 200, "the arithmetic below places a payment across the boundary"
    ledger.open(LONG_SHOP, currency="CNY", required="10")
    ledger.deduct(LONG_SHOP, "200", reason="late_shipment", case="C1")
    ledger.deduct(LONG_SHOP, "100", reason="order_brushing", case="C2")
    payments = 99
    for k in range(1, payments + 1):
        channel = "alipay" if k % 2 else "wechat_pay"
        ledger.pay(LONG_SHOP, "10", channel=channel, ref=f"R{k}")
    return payments


def stored_snapshot_versions(store: Store) -> list[int]:
    rows = fetch_all(store, f"SELECT originator_version FROM {store.snapshots_table} ORDER BY originator_version")
    return [version for (version,) in rows]


def delete_snapshots(store: Store) -> None:
    connection = store.connect()
    try:
        connection.cursor().execute(f"DELETE FROM {store.snapshots_table}")
    finally:
        connection.close()


def loaded(deposit: ShopDeposit) -> tuple[object, ...]:
    """Everything a loaded deposit decides with: figures, payments, cases, phase."""
    return (deposit.state(), deposit.payments, deposit.cases, deposit.phase)


def test_a_long_history_loads_the_same_with_and_without_snapshots(
    ledger: DepositLedger, store: Store, reopen: Callable[[], DepositLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    record_a_long_history(ledger)
    ledger.deduct(LONG_SHOP, "15", reason="fake_listing", case="C3")
    ledger.close_shop(LONG_SHOP)
    assert ledger.show(LONG_SHOP).version > SNAPSHOT_INTERVAL
    assert stored_snapshot_versions(store) == [201]
    restored: list[int] = []
    restore = DepositSnapshot.restore

    def counting_restore(snapshot: DepositSnapshot) -> ShopDeposit:
        restored.append(snapshot.originator_version)
        return restore(snapshot)

    monkeypatch.setattr(DepositSnapshot, "restore", counting_restore)

    with_snapshot = reopen().deposit(LONG_SHOP)
    assert restored == [201]
    delete_snapshots(store)
    without_snapshot = reopen().deposit(LONG_SHOP)
    assert restored == [201]

    assert loaded(with_snapshot) == loaded(without_snapshot)
    assert with_snapshot.state().status == Status.CLOSING
    assert len(with_snapshot.payments) == 99 and set(with_snapshot.cases) == {"C1", "C2", "C3"}


def test_a_deposit_loaded_from_a_snapshot_still_knows_its_payments_and_cases(
    ledger: DepositLedger, store: Store, reopen: Callable[[], DepositLedger]
) -> None:
    record_a_long_history(ledger)
    assert stored_snapshot_versions(store) == [201]
    fresh = reopen()
    with writes_nothing(fresh):
        assert fresh.pay(LONG_SHOP, "10", channel="alipay", ref="R1").duplicate is True
        assert fresh.deduct(LONG_SHOP, "200", reason="late_shipment", case="C1").duplicate is True
        with pytest.raises(DuplicateConflict):
            fresh.pay(LONG_SHOP, "11", channel="wechat_pay", ref="R98")
        with pytest.raises(OutOfOrder):
            fresh.pay(LONG_SHOP, "10", channel="alipay", ref="R100", at=fresh.clock() - timedelta(seconds=1))
    # 300 owed was settled by the first 30 payments; 69 x 10 yuan are frozen.
    assert fresh.show(LONG_SHOP).frozen_minor == 69_000
    assert fresh.show(LONG_SHOP).deducted_minor == 30_000


def test_a_snapshot_is_never_taken_half_way_through_a_payment(ledger: DepositLedger, store: Store) -> None:
    record_a_long_history(ledger)
    boundary_payment = [event for event in ledger.history(LONG_SHOP) if event.originator_version >= SNAPSHOT_INTERVAL]
    assert [(event.originator_version, type(event)) for event in boundary_payment] == [(200, Paid), (201, Frozen)]
    assert stored_snapshot_versions(store) == [201]


def test_a_snapshot_is_taken_each_time_a_command_reaches_the_next_interval(ledger: DepositLedger, store: Store) -> None:
    record_a_long_history(ledger)
    for n in range(SNAPSHOT_INTERVAL - 1):  # one-event commands: versions 202 to 400
        ledger.deduct(LONG_SHOP, "0.01", reason="other", case=f"D{n}")
    assert ledger.show(LONG_SHOP).version == 2 * SNAPSHOT_INTERVAL
    assert stored_snapshot_versions(store) == [201, 400]


# -------------------------------------------------------------- concurrency


def saved_by_a_rival(rival: DepositLedger, shop_id: str, amount_minor: int, reason: DeductionReason, case: str) -> None:
    """A deduction saved by another writer straight through the repository.

    Not through a command: on PostgreSQL a command waits for the deposit's lock,
    which the command under test holds, so commands never race there. Writers
    that save without commands (bulk loads, other tools) still can.
    """
    deposit = rival.deposit(shop_id)
    deposit.deduct(amount_minor=amount_minor, reason=reason, case_id=case, note="", stamp=rival._stamp(None, None))
    rival.save(deposit)


def test_a_write_that_loses_a_race_is_retried_on_the_new_version(
    shops: DepositLedger, reopen: Callable[[], DepositLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    if shops.store.kind == "sqlite":
        pytest.skip("an SQLite command reads and writes in one write transaction: no writer can come between")
    rival = reopen()
    load = shops.deposits.check_out
    raced: list[bool] = []

    def load_then_lose_the_race(*args: Any, **kwargs: Any) -> Any:
        deposit = load(*args, **kwargs)
        if not raced:
            raced.append(True)
            saved_by_a_rival(rival, "shop-cn", 30_000, DeductionReason.LATE_SHIPMENT, "C-rival")
        return deposit

    monkeypatch.setattr(shops.deposits, "check_out", load_then_lose_the_race)
    result = shops.pay("shop-cn", "100", channel="wechat_pay", ref="W1")
    assert result.state.version == 6  # opened, paid, frozen, the rival's deduction, then paid, frozen
    assert (result.state.paid_minor, result.state.frozen_minor, result.state.deducted_minor) == (
        210_000,
        180_000,
        30_000,
    )
    assert event_types(shops, "shop-cn")[-3:] == ["Deducted", "Paid", "Frozen"]


def test_a_write_that_keeps_losing_gives_up_after_bounded_attempts(
    shops: DepositLedger, reopen: Callable[[], DepositLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    if shops.store.kind == "sqlite":
        pytest.skip("an SQLite command reads and writes in one write transaction: no writer can come between")
    rival = reopen()
    load = shops.deposits.check_out
    rival_writes: list[int] = []

    def load_then_lose_the_race(*args: Any, **kwargs: Any) -> Any:
        deposit = load(*args, **kwargs)
        rival_writes.append(1)
        saved_by_a_rival(rival, "shop-cn", 100, DeductionReason.OTHER, f"C{len(rival_writes)}")
        return deposit

    monkeypatch.setattr(shops.deposits, "check_out", load_then_lose_the_race)
    with pytest.raises(ConcurrencyExhausted):
        shops.pay("shop-cn", "100", channel="wechat_pay", ref="W1")
    assert len(rival_writes) == MAX_ATTEMPTS
    assert event_types(rival, "shop-cn") == ["Opened", "Paid", "Frozen"] + ["Deducted"] * MAX_ATTEMPTS


# ------------------------------------------- a cached deposit behind the store


def test_a_payment_on_a_stale_cached_deposit_is_decided_again_on_the_stored_one(
    shops: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    shops.pay("shop-cn", "10", channel="alipay", ref="A2")  # shop-cn is now cached here
    rival = reopen()
    rival.deduct("shop-cn", "300", reason="late_shipment", case="C-rival")
    result = shops.pay("shop-cn", "100", channel="wechat_pay", ref="W1")
    assert event_types(shops, "shop-cn")[-3:] == ["Deducted", "Paid", "Frozen"]
    assert (result.state.paid_minor, result.state.deducted_minor, result.state.frozen_minor) == (
        211_000,
        30_000,
        181_000,
    )
    assert shops.balance("shop-cn") == shops.show("shop-cn")


def test_a_duplicate_on_a_stale_cached_deposit_answers_with_the_stored_state(
    shops: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    shops.pay("shop-cn", "10", channel="alipay", ref="A2")
    rival = reopen()
    rival.deduct("shop-cn", "300", reason="late_shipment", case="C-rival")
    result = shops.pay("shop-cn", "10", channel="alipay", ref="A2")
    assert result.duplicate
    assert (result.state.version, result.state.deducted_minor) == (6, 30_000)


def test_a_refusal_on_a_stale_cached_deposit_is_judged_again_on_the_stored_one(
    shops: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    shops.pay("shop-jp", "70000", channel="alipay", ref="J1")  # cached here: nothing above the requirement
    rival = reopen()
    rival.pay("shop-jp", "5000", channel="wechat_pay", ref="W9")
    result = shops.refund_excess("shop-jp")  # the cached copy would refuse; the stored deposit has 5,000 extra
    assert event_types(shops, "shop-jp")[-1] == "ExcessRefunded"
    assert (result.state.frozen_minor, result.state.refunded_minor) == (70_000, 5_000)


def test_a_refusal_stands_when_the_cached_deposit_was_current(
    shops: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    shops.pay("shop-jp", "70000", channel="alipay", ref="J1")
    confirmed: list[int] = []
    confirm = shops.deposits.confirm_current
    monkeypatch.setattr(shops.deposits, "confirm_current", lambda *args: confirmed.append(1) or confirm(*args))
    with writes_nothing(shops), pytest.raises(Refused):
        shops.refund_excess("shop-jp")
    # PostgreSQL brings a cached copy up to date before the command: nothing left to confirm.
    assert confirmed == ([1] if shops.store.kind == "sqlite" else [])


def test_shops_and_audit_trails_come_in_pages(shops: DepositLedger) -> None:
    assert [state.shop_id for state in shops.shops(limit=1)] == ["shop-cn"]
    assert [state.shop_id for state in shops.shops(after="shop-cn", limit=5)] == ["shop-jp"]
    assert shops.shops(after="shop-jp", limit=5) == []
    rows = shops.audit("shop-cn")
    first = shops.audit("shop-cn", limit=1)
    assert first == rows[:1]
    assert shops.audit("shop-cn", after=(first[0].position, first[0].share), limit=10) == rows[1:]
    assert shops.audit("shop-cn", after=(rows[-1].position, rows[-1].share), limit=10) == []
    with pytest.raises(ShopNotFound):
        shops.audit("shop-nowhere", after=(1, 0), limit=10)
    for refused in (
        lambda: shops.shops(limit=0),
        lambda: shops.shops(limit=10_001),
        lambda: shops.shops(after="not a shop id!"),
        lambda: shops.audit("shop-cn", after=(-1, 0)),
        lambda: shops.audit("shop-cn", limit=0),
    ):
        with pytest.raises(MalformedInput):
            refused()
