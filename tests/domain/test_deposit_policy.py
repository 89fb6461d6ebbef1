"""``ShopDeposit`` under a policy: requirement changes, the top-up clock, excess refunds,
deductions priced by the catalogue, holds and appeals. On the aggregate alone: no store, no clock.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from domain import (
    AppealFiled,
    AppealRejected,
    Channel,
    ClosureRequested,
    Deducted,
    DeductionReason,
    DeductionReversed,
    DepositEvent,
    DuplicateConflict,
    ExcessRefunded,
    Forfeited,
    Frozen,
    HoldPlaced,
    HoldReleased,
    MalformedInput,
    OutOfOrder,
    Refunded,
    RefundLine,
    Refused,
    RequirementChanged,
    ShopDeposit,
    Status,
    WrongStatus,
)
from ledger.store.snapshots import DepositSnapshot, project_stored
from tests.domain.policy_fixtures import DAY, T0, conserved, figures, funded, policy, stamp

FAKE = DeductionReason.FAKE_LISTING
LATE = DeductionReason.LATE_SHIPMENT
TERMS = policy().terms


def types(events: list[DepositEvent]) -> list[type[DepositEvent]]:
    return [type(event) for event in events]


def deduct(deposit: ShopDeposit, amount_minor: int, case: str, hours: float = 1) -> bool:
    return deposit.deduct(
        amount_minor=amount_minor, reason=LATE, case_id=case, note="", stamp=stamp(hours), terms=TERMS
    )


def pay(deposit: ShopDeposit, amount_minor: int, ref: str, hours: float = 2) -> bool:
    return deposit.pay(
        amount_minor=amount_minor, channel=Channel.WECHAT_PAY, trade_no=ref, payer=None, stamp=stamp(hours)
    )


def replayed(deposit: ShopDeposit, events: list[DepositEvent]) -> ShopDeposit:
    """The deposit rebuilt from a snapshot of ``deposit`` and then ``events``."""
    rebuilt = project_stored(None, [DepositSnapshot.take(deposit), *events])
    assert rebuilt is not None
    return rebuilt


# ----------------------------------------------------------- the top-up clock


def test_a_deduction_that_leaves_a_funded_deposit_short_starts_the_top_up_clock() -> None:
    deposit = funded()
    deduct(deposit, 5_000, "C1")
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted)
    assert event.top_up_due == T0 + timedelta(hours=1) + TERMS.top_up_deadline
    assert event.policy_version == "2026.1"
    assert deposit.top_up_due == event.top_up_due
    assert deposit.state().status is Status.UNDERFUNDED


def test_the_status_reads_restricted_once_the_top_up_is_overdue() -> None:
    deposit = funded()
    deduct(deposit, 5_000, "C1")
    due = deposit.top_up_due
    assert due is not None
    assert deposit.state(now=due - timedelta(seconds=1)).status is Status.UNDERFUNDED
    assert deposit.state(now=due).status is Status.RESTRICTED
    assert deposit.state().status is Status.UNDERFUNDED, "without a time of the question, never restricted"


def test_paying_the_shortfall_clears_the_due_time_and_the_restriction() -> None:
    deposit = funded()
    deduct(deposit, 5_000, "C1")
    pay(deposit, 3_000, "W1")
    assert deposit.top_up_due is not None, "a partial top-up keeps the clock running"
    pay(deposit, 2_000, "W2", hours=3)
    assert deposit.top_up_due is None
    assert deposit.state(now=T0 + 365 * DAY).status is Status.ACTIVE


def test_a_second_deduction_does_not_restart_a_running_clock() -> None:
    deposit = funded()
    deduct(deposit, 5_000, "C1", hours=1)
    first_due = deposit.top_up_due
    deduct(deposit, 5_000, "C2", hours=48)
    [event] = deposit.collect_events()[-1:]
    assert isinstance(event, Deducted) and event.top_up_due is None and event.policy_version is None
    assert deposit.top_up_due == first_due


def test_a_deposit_never_fully_funded_has_no_top_up_clock() -> None:
    deposit = ShopDeposit.open(shop_id="shop-1", site="CN", currency="CNY", required_minor=200_000, stamp=stamp())
    pay(deposit, 100_000, "W1", hours=0)
    deduct(deposit, 5_000, "C1")
    assert deposit.top_up_due is None
    assert deposit.state(now=T0 + 365 * DAY).status is Status.UNDERFUNDED


def test_a_deduction_while_closing_starts_no_clock() -> None:
    deposit = funded()
    deposit.close(settlement_window=TERMS.settlement_window, stamp=stamp(1))
    deduct(deposit, 5_000, "C1", hours=2)
    assert deposit.top_up_due is None


def test_closing_ends_a_running_clock() -> None:
    deposit = funded()
    deduct(deposit, 5_000, "C1")
    deposit.close(settlement_window=TERMS.settlement_window, stamp=stamp(2), policy_version="2026.1")
    [event] = deposit.collect_events()[-1:]
    assert isinstance(event, ClosureRequested) and event.policy_version == "2026.1"
    assert deposit.top_up_due is None
    assert deposit.state(now=T0 + 365 * DAY).status is Status.CLOSING


# ------------------------------------------------------ requirement changes


def test_adding_a_dearer_category_raises_the_requirement_and_starts_the_clock() -> None:
    deposit = funded()
    assert deposit.change_categories(policy=policy(), add=["jewelry"], remove=[], stamp=stamp(1)) is True
    [event] = deposit.collect_events()
    assert isinstance(event, RequirementChanged)
    assert (event.old_required_minor, event.new_required_minor) == (200_000, 500_000)
    assert (event.categories, event.why, event.policy_version) == (
        ("general", "jewelry"),
        "categories added jewelry",
        "2026.1",
    )
    assert event.top_up_due == stamp(1).effective_at + TERMS.top_up_deadline
    assert figures(deposit)["shortfall"] == 300_000
    pay(deposit, 300_000, "W1")
    assert (deposit.top_up_due, deposit.status) == (None, Status.ACTIVE)


def test_removing_the_dearest_category_lowers_the_requirement_and_makes_the_excess_refundable() -> None:
    deposit = funded(500_000, ("general", "jewelry"))
    deposit.change_categories(policy=policy(), add=[], remove=["jewelry"], stamp=stamp(1))
    [changed] = deposit.collect_events()
    assert isinstance(changed, RequirementChanged) and changed.why == "categories removed jewelry"
    assert (changed.new_required_minor, changed.top_up_due) == (200_000, None)

    deposit.refund_excess(stamp=stamp(2))
    [refunded] = deposit.collect_events()
    assert isinstance(refunded, ExcessRefunded)
    assert refunded.amount_minor == 300_000
    assert refunded.lines == (RefundLine(channel=Channel.ALIPAY, trade_no="A1", amount_minor=300_000),)
    assert (deposit.status, figures(deposit)["frozen"], figures(deposit)["refunded"]) == (
        Status.ACTIVE,
        200_000,
        300_000,
    )
    assert conserved(deposit)


def test_the_excess_goes_back_newest_payment_first_and_the_final_refund_counts_it() -> None:
    deposit = funded(500_000, ("jewelry",))
    pay(deposit, 100_000, "W1")  # 600 000 frozen against 500 000 required
    deposit.change_categories(policy=policy(), add=["general"], remove=["jewelry"], stamp=stamp(3))
    deposit.refund_excess(stamp=stamp(4))
    [excess] = deposit.collect_events()[-1:]
    assert isinstance(excess, ExcessRefunded)
    assert [(line.trade_no, line.amount_minor) for line in excess.lines] == [("W1", 100_000), ("A1", 300_000)]
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(5))
    deposit.refund(stamp=stamp(5 + 24))
    [final] = deposit.collect_events()[-1:]
    assert isinstance(final, Refunded)
    assert [(line.trade_no, line.amount_minor) for line in final.lines] == [("A1", 200_000)]


def test_refund_excess_is_refused_without_an_excess() -> None:
    deposit = funded()
    with pytest.raises(Refused, match=re.escape("has no excess: 2000.00 CNY frozen, 2000.00 CNY required")):
        deposit.refund_excess(stamp=stamp(1))


def test_a_category_change_that_changes_nothing_records_nothing() -> None:
    deposit = funded()
    assert deposit.change_categories(policy=policy(), add=["general"], remove=["weapons"], stamp=stamp(1)) is False
    assert deposit.collect_events() == []


@pytest.mark.parametrize(
    ("add", "remove", "error", "message"),
    [
        pytest.param(["weapons"], [], MalformedInput, "no category weapons on site CN", id="unknown"),
        pytest.param(["food"], ["food"], MalformedInput, "both added and removed", id="both"),
        pytest.param([], ["general"], Refused, "must keep at least one category", id="none-left"),
    ],
)
def test_category_changes_are_checked(add: list[str], remove: list[str], error: type[Exception], message: str) -> None:
    deposit = funded()
    with pytest.raises(error, match=message):
        deposit.change_categories(policy=policy(), add=add, remove=remove, stamp=stamp(1))
    assert deposit.collect_events() == []


def test_a_new_policy_version_is_applied_to_a_shop_and_recorded_even_at_the_same_amount() -> None:
    deposit = funded()
    raised = policy("2026.2", general=300_000)
    assert deposit.apply_policy(policy=raised, stamp=stamp(1)) is True
    [event] = deposit.collect_events()
    assert isinstance(event, RequirementChanged)
    assert (event.new_required_minor, event.why, event.policy_version) == (300_000, "policy 2026.2 applied", "2026.2")
    assert deposit.apply_policy(policy=raised, stamp=stamp(2)) is False
    assert deposit.apply_policy(policy=policy("2026.3", general=300_000), stamp=stamp(3)) is True
    assert deposit.state().policy_version == "2026.3"


def test_a_policy_follows_only_shops_whose_requirement_it_derives() -> None:
    by_hand = ShopDeposit.open(shop_id="shop-2", site="CN", currency="CNY", required_minor=1_000, stamp=stamp())
    with pytest.raises(Refused, match="has no categories: its requirement was set by hand"):
        by_hand.apply_policy(policy=policy(), stamp=stamp(1))
    elsewhere = ShopDeposit.open(shop_id="shop-3", site="CN", currency="USD", required_minor=1_000, stamp=stamp())
    with pytest.raises(Refused, match="prices site CN in CNY, but shop shop-3's deposit is in USD"):
        elsewhere.change_categories(policy=policy(), add=["general"], remove=[], stamp=stamp(1))
    nowhere = ShopDeposit.open(shop_id="shop-4", site=None, currency="CNY", required_minor=1_000, stamp=stamp())
    with pytest.raises(Refused, match="has no site"):
        nowhere.change_categories(policy=policy(), add=["general"], remove=[], stamp=stamp(1))


def test_a_policy_that_dropped_a_category_is_refused_until_the_shop_drops_it() -> None:
    deposit = funded(500_000, ("general", "jewelry"))
    with pytest.raises(Refused, match="no longer prices category jewelry on site CN"):
        deposit.apply_policy(policy=policy("2026.2", general=200_000), stamp=stamp(1))


def test_requirement_changes_are_open_deposits_only() -> None:
    deposit = funded()
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(1))
    with pytest.raises(WrongStatus, match="is closing and cannot change categories"):
        deposit.change_categories(policy=policy(), add=["food"], remove=[], stamp=stamp(2))
    with pytest.raises(WrongStatus, match="cannot have its excess refunded"):
        deposit.refund_excess(stamp=stamp(2))


# -------------------------------------------------------- deduction by policy


def deduct_by_policy(
    deposit: ShopDeposit,
    case: str,
    reason: DeductionReason = FAKE,
    order_value_minor: int | None = None,
    hours: float = 1,
) -> bool:
    return deposit.deduct_by_policy(
        policy=policy(), reason=reason, case_id=case, order_value_minor=order_value_minor, note="", stamp=stamp(hours)
    )


def test_a_deduction_priced_by_the_catalogue_records_the_rule_and_the_version() -> None:
    deposit = funded()
    assert deduct_by_policy(deposit, "LS-1", LATE, order_value_minor=25_000) is True
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted)
    assert (event.amount_collected_minor, event.order_value_minor) == (2_500, 25_000)
    assert event.rule == "late_shipment: 10% of the order value, at least 5.00, at most 100.00 CNY"
    assert event.policy_version == "2026.1"


def test_the_daily_cap_counts_priced_deductions_of_the_reason_per_utc_day() -> None:
    deposit = funded(500_000, ("jewelry",))
    deduct_by_policy(deposit, "FL-1", hours=1)  # 500
    deduct_by_policy(deposit, "FL-2", hours=2)  # 500
    deduct(deposit, 90_000, "LS-9", hours=3)  # another reason, by hand: not counted
    deduct_by_policy(deposit, "FL-3", hours=4)  # 200: the cap is 1 200 a day
    third = deposit.collect_events()[-1]
    assert isinstance(third, Deducted) and third.amount_collected_minor == 20_000
    assert third.rule is not None and "cut to 200.00 by the daily cap (1000.00 charged today)" in third.rule
    with pytest.raises(Refused, match="nothing left to charge"):
        deduct_by_policy(deposit, "FL-4", hours=5)
    # T0 is 09:00 UTC: 15 hours later is the next calendar day in UTC.
    deduct_by_policy(deposit, "FL-4", hours=15)
    assert deposit.cases["FL-4"].amount_minor == 50_000


def test_a_repeated_priced_deduction_is_a_duplicate_even_when_the_cap_would_price_it_lower() -> None:
    deposit = funded(500_000, ("jewelry",))
    deduct_by_policy(deposit, "FL-1")
    deduct_by_policy(deposit, "FL-2")
    deduct_by_policy(deposit, "FL-3")
    deposit.collect_events()
    assert deduct_by_policy(deposit, "FL-1", hours=2) is False
    assert deposit.collect_events() == []
    with pytest.raises(
        DuplicateConflict, match=re.escape("case FL-1 was deducted as fake_listing 500.00 CNY priced by the policy")
    ):
        deduct_by_policy(deposit, "FL-1", LATE, order_value_minor=100)
    with pytest.raises(DuplicateConflict):
        deduct(deposit, 40_000, "FL-1")


def test_a_shop_without_a_site_cannot_be_priced() -> None:
    deposit = ShopDeposit.open(shop_id="shop-2", site=None, currency="CNY", required_minor=1_000, stamp=stamp())
    with pytest.raises(Refused, match="has no site"):
        deduct_by_policy(deposit, "FL-1")


# ---------------------------------------------------------------------- holds


def test_a_hold_moves_money_from_frozen_to_held_and_still_counts_for_the_requirement() -> None:
    deposit = funded()
    assert deposit.hold(case_id="AS-1", amount_minor=30_000, note="buyer complaint", stamp=stamp(1)) is True
    [event] = deposit.collect_events()
    assert isinstance(event, HoldPlaced) and (event.case_id, event.amount_minor) == ("AS-1", 30_000)
    assert (figures(deposit)["frozen"], figures(deposit)["held"], figures(deposit)["shortfall"]) == (170_000, 30_000, 0)
    assert deposit.status is Status.ACTIVE
    assert conserved(deposit)


def test_releasing_a_hold_freezes_the_money_again_and_a_second_release_is_a_duplicate() -> None:
    deposit = funded()
    deposit.hold(case_id="AS-1", amount_minor=30_000, note="", stamp=stamp(1))
    deposit.collect_events()
    assert deposit.release(case_id="AS-1", note="no fault found", stamp=stamp(2)) is True
    assert types(deposit.collect_events()) == [HoldReleased, Frozen]
    assert (figures(deposit)["frozen"], figures(deposit)["held"]) == (200_000, 0)
    assert deposit.release(case_id="AS-1", note="", stamp=stamp(3)) is False
    assert deposit.collect_events() == []


def test_a_deduction_takes_its_case_s_hold_first_and_releases_the_rest() -> None:
    deposit = funded()
    deposit.hold(case_id="AS-1", amount_minor=30_000, note="", stamp=stamp(1))
    deposit.collect_events()
    deposit.deduct(
        amount_minor=10_000, reason=DeductionReason.AFTER_SALES_DISPUTE, case_id="AS-1", note="", stamp=stamp(2)
    )
    deducted, released, frozen = deposit.collect_events()
    assert isinstance(deducted, Deducted) and (deducted.amount_collected_minor, deducted.collected_from_hold_minor) == (
        10_000,
        10_000,
    )
    assert isinstance(released, HoldReleased) and released.amount_minor == 20_000
    assert isinstance(frozen, Frozen) and frozen.amount_minor == 20_000
    assert figures(deposit) == {
        "paid": 200_000,
        "frozen": 190_000,
        "held": 0,
        "deducted": 10_000,
        "reversed": 0,
        "refunded": 0,
        "forfeited": 0,
        "owed": 0,
        "shortfall": 10_000,
    }


def test_a_deduction_beyond_its_hold_takes_the_frozen_balance_next_then_owes() -> None:
    deposit = funded()
    deposit.hold(case_id="AS-1", amount_minor=30_000, note="", stamp=stamp(1))
    deposit.collect_events()
    deduct(deposit, 250_000, "AS-1", hours=2)
    [event] = deposit.collect_events()
    assert isinstance(event, Deducted)
    assert (event.collected_from_hold_minor, event.amount_collected_minor, event.amount_owed_minor) == (
        30_000,
        200_000,
        50_000,
    )
    assert (figures(deposit)["held"], figures(deposit)["frozen"], figures(deposit)["owed"]) == (0, 0, 50_000)


def test_a_released_hold_settles_what_other_cases_owe_before_it_is_frozen() -> None:
    deposit = funded()
    deposit.hold(case_id="H-1", amount_minor=50_000, note="", stamp=stamp(1))
    deduct(deposit, 200_000, "C-2", hours=2)  # takes the 150 000 frozen, owes 50 000
    deposit.collect_events()
    deposit.release(case_id="H-1", note="", stamp=stamp(3))
    released, settled = deposit.collect_events()
    assert isinstance(released, HoldReleased)
    assert isinstance(settled, Deducted) and settled.settles_debt
    assert settled.note == "settles 500.00 CNY owed, from the released hold of case H-1"
    assert (figures(deposit)["frozen"], figures(deposit)["owed"]) == (0, 0)


@pytest.mark.parametrize(
    ("action", "error", "message"),
    [
        pytest.param(
            lambda d: d.hold(case_id="H-1", amount_minor=199_801, note="", stamp=stamp(1)),
            Refused,
            "exceeds shop shop-1's frozen balance of 1998.00 CNY",
            id="beyond-frozen",
        ),
        pytest.param(
            lambda d: d.hold(case_id="C-1", amount_minor=100, note="", stamp=stamp(1)),
            Refused,
            "is deducted already: a hold comes before",
            id="after-deduction",
        ),
        pytest.param(
            lambda d: d.hold(case_id="H-0", amount_minor=200, note="", stamp=stamp(1)),
            DuplicateConflict,
            "case H-0 was held with 1.00 CNY, not 2.00 CNY",
            id="conflict",
        ),
        pytest.param(
            lambda d: d.release(case_id="H-9", note="", stamp=stamp(1)),
            Refused,
            "has no hold on case H-9",
            id="release-unknown",
        ),
        pytest.param(
            lambda d: d.hold(case_id="H-2", amount_minor=100, note="", stamp=stamp(-1)),
            OutOfOrder,
            "is before shop shop-1's last event",
            id="out-of-order",
        ),
    ],
)
def test_holds_are_checked(action: object, error: type[Exception], message: str) -> None:
    deposit = funded()
    deposit.hold(case_id="H-0", amount_minor=100, note="", stamp=stamp(0.5))
    deduct(deposit, 100, "C-1", hours=0.5)
    deposit.collect_events()
    with pytest.raises(error, match=message):
        action(deposit)  # type: ignore[operator]
    assert deposit.collect_events() == []


def test_held_money_blocks_the_refund_until_released() -> None:
    deposit = funded()
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(1))
    deposit.hold(case_id="AS-1", amount_minor=30_000, note="case opened in the cool-down", stamp=stamp(2))
    with pytest.raises(Refused, match=re.escape("cannot be refunded while case AS-1 holds 300.00 CNY")):
        deposit.refund(stamp=stamp(48))
    deposit.release(case_id="AS-1", note="", stamp=stamp(48))
    deposit.refund(stamp=stamp(48))
    assert deposit.state().refunded_minor == 200_000


def test_a_forced_closure_releases_the_holds_and_forfeits_everything() -> None:
    deposit = funded()
    deposit.hold(case_id="AS-1", amount_minor=30_000, note="", stamp=stamp(1))
    deposit.collect_events()
    deposit.force_close(reason="counterfeit goods", stamp=stamp(2))
    assert types(deposit.collect_events()) == [HoldReleased, Frozen, Forfeited]
    assert (figures(deposit)["forfeited"], figures(deposit)["held"]) == (200_000, 0)


# -------------------------------------------------------------------- appeals


def deducted(amount_minor: int = 50_000) -> ShopDeposit:
    deposit = funded()
    deduct(deposit, amount_minor, "C-1", hours=1)
    deposit.collect_events()
    return deposit


def test_an_appeal_within_the_window_is_filed_once() -> None:
    deposit = deducted()
    assert deposit.appeal(case_id="C-1", note="tracking shows delivery", stamp=stamp(2), terms=TERMS) is True
    [event] = deposit.collect_events()
    assert isinstance(event, AppealFiled)
    assert (event.window_ends_at, event.policy_version) == (stamp(1).effective_at + TERMS.appeal_window, "2026.1")
    assert deposit.appeal(case_id="C-1", note="", stamp=stamp(3), terms=TERMS) is False


@pytest.mark.parametrize(
    ("case", "hours", "message"),
    [
        pytest.param("C-9", 2, "has no deduction on case C-9 to appeal", id="unknown-case"),
        pytest.param("C-1", 1 + 30 * 24 + 1, "the appeal window for case C-1 closed at", id="too-late"),
    ],
)
def test_an_appeal_is_refused_without_a_deduction_or_after_the_window(case: str, hours: float, message: str) -> None:
    deposit = deducted()
    with pytest.raises(Refused, match=message):
        deposit.appeal(case_id=case, note="", stamp=stamp(hours), terms=TERMS)


def test_an_upheld_appeal_restores_the_collection_and_clears_the_shortfall() -> None:
    deposit = deducted()
    assert deposit.top_up_due is not None
    deposit.appeal(case_id="C-1", note="", stamp=stamp(2), terms=TERMS)
    assert deposit.resolve_appeal(case_id="C-1", upheld=True, note="proof accepted", stamp=stamp(3), terms=TERMS)
    reversed_, frozen = deposit.collect_events()[-2:]
    assert isinstance(reversed_, DeductionReversed)
    assert (reversed_.amount_restored_minor, reversed_.amount_cancelled_minor, reversed_.reason) == (50_000, 0, LATE)
    assert isinstance(frozen, Frozen) and frozen.amount_minor == 50_000
    assert figures(deposit) == {
        "paid": 200_000,
        "frozen": 200_000,
        "held": 0,
        "deducted": 0,
        "reversed": 50_000,
        "refunded": 0,
        "forfeited": 0,
        "owed": 0,
        "shortfall": 0,
    }
    assert (deposit.top_up_due, deposit.status) == (None, Status.ACTIVE)


def test_an_upheld_appeal_cancels_what_was_still_owed_and_restores_what_a_payment_settled() -> None:
    deposit = funded()
    deduct(deposit, 250_000, "C-1")  # collects 200 000, owes 50 000
    pay(deposit, 20_000, "W1")  # settles 20 000 of it
    deposit.appeal(case_id="C-1", note="", stamp=stamp(3), terms=TERMS)
    deposit.collect_events()
    deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(4), terms=TERMS)
    reversed_, _ = deposit.collect_events()
    assert isinstance(reversed_, DeductionReversed)
    assert (reversed_.amount_restored_minor, reversed_.amount_cancelled_minor) == (220_000, 30_000)
    assert (figures(deposit)["frozen"], figures(deposit)["owed"], figures(deposit)["deducted"]) == (220_000, 0, 0)
    assert conserved(deposit)


def test_a_rejected_appeal_leaves_the_deduction_and_conflicts_with_an_upheld_one() -> None:
    deposit = deducted()
    deposit.appeal(case_id="C-1", note="", stamp=stamp(2), terms=TERMS)
    deposit.collect_events()
    deposit.resolve_appeal(case_id="C-1", upheld=False, note="no proof", stamp=stamp(3), terms=TERMS)
    [event] = deposit.collect_events()
    assert isinstance(event, AppealRejected) and event.settlement_due is None
    assert figures(deposit)["deducted"] == 50_000
    assert deposit.resolve_appeal(case_id="C-1", upheld=False, note="", stamp=stamp(4), terms=TERMS) is False
    with pytest.raises(DuplicateConflict, match="was rejected, not upheld"):
        deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(4), terms=TERMS)
    with pytest.raises(Refused, match="was rejected already"):
        deposit.appeal(case_id="C-1", note="", stamp=stamp(4), terms=TERMS)


def test_resolving_needs_a_pending_appeal() -> None:
    deposit = deducted()
    with pytest.raises(Refused, match="has no appeal on case C-1 to resolve"):
        deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(2), terms=TERMS)


def test_an_open_appeal_blocks_the_refund_and_an_appeal_filed_while_closing_restarts_settlement() -> None:
    deposit = deducted()
    deposit.close(settlement_window=TERMS.settlement_window, stamp=stamp(2))
    deposit.appeal(case_id="C-1", note="", stamp=stamp(3), terms=TERMS)
    with pytest.raises(Refused, match="while the appeal on case C-1 is open"):
        deposit.refund(stamp=stamp(2 + 91 * 24))
    deposit.collect_events()
    deposit.resolve_appeal(case_id="C-1", upheld=False, note="", stamp=stamp(10 * 24), terms=TERMS)
    [event] = deposit.collect_events()
    assert isinstance(event, AppealRejected)
    assert event.settlement_due == stamp(10 * 24).effective_at + TERMS.settlement_window
    assert (event.policy_version, deposit.settlement_due) == ("2026.1", event.settlement_due)
    with pytest.raises(Refused, match="before its settlement is due"):
        deposit.refund(stamp=stamp(2 + 91 * 24))


def test_an_appeal_upheld_after_the_refund_is_refunded_again_by_a_correcting_event() -> None:
    deposit = deducted()
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(2))
    # Refunded under a policy whose appeal window had passed; a newer policy's longer
    # window lets the merchant appeal after the refund all the same.
    deposit.refund(stamp=stamp(30), terms=TERMS.model_copy(update={"appeal_window": timedelta(hours=10)}))
    deposit.appeal(case_id="C-1", note="", stamp=stamp(40), terms=TERMS)
    history = deposit.collect_events()
    deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(50), terms=TERMS)
    correction = deposit.collect_events()
    assert types(correction) == [DeductionReversed, Frozen, Refunded]
    refund = correction[-1]
    assert isinstance(refund, Refunded)
    assert refund.lines == (RefundLine(channel=Channel.ALIPAY, trade_no="A1", amount_minor=50_000),)
    assert (deposit.status, figures(deposit)["refunded"], figures(deposit)["deducted"]) == (Status.CLOSED, 200_000, 0)
    assert all(isinstance(event, DepositEvent) for event in history), "history is only ever appended to"


def test_an_appeal_upheld_after_a_forced_closure_is_forfeited_with_the_rest() -> None:
    deposit = deducted()
    deposit.appeal(case_id="C-1", note="", stamp=stamp(2), terms=TERMS)
    deposit.force_close(reason="fraud", stamp=stamp(3))
    deposit.collect_events()
    deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(4), terms=TERMS)
    correction = deposit.collect_events()
    assert types(correction) == [DeductionReversed, Frozen, Forfeited]
    assert (deposit.status, figures(deposit)["forfeited"], figures(deposit)["deducted"]) == (
        Status.FORFEITED,
        200_000,
        0,
    )


def test_an_upheld_appeal_frees_the_daily_cap_it_used() -> None:
    deposit = funded(500_000, ("jewelry",))
    for number in (1, 2):
        deposit.deduct_by_policy(
            policy=policy(), reason=FAKE, case_id=f"FL-{number}", order_value_minor=None, note="", stamp=stamp(1)
        )
    deposit.appeal(case_id="FL-1", note="", stamp=stamp(2), terms=TERMS)
    deposit.resolve_appeal(case_id="FL-1", upheld=True, note="", stamp=stamp(3), terms=TERMS)
    deposit.deduct_by_policy(
        policy=policy(), reason=FAKE, case_id="FL-3", order_value_minor=None, note="", stamp=stamp(4)
    )
    assert deposit.cases["FL-3"].amount_minor == 50_000


# ------------------------------------------------------------------ snapshots


def test_a_snapshot_keeps_holds_appeals_refunds_and_the_policy_figures() -> None:
    deposit = funded(500_000, ("general", "jewelry"))
    deposit.hold(case_id="H-1", amount_minor=10_000, note="", stamp=stamp(1))
    deduct(deposit, 30_000, "C-1", hours=2)
    deposit.appeal(case_id="C-1", note="", stamp=stamp(3), terms=TERMS)
    deposit.change_categories(policy=policy(), add=[], remove=["jewelry"], stamp=stamp(4))
    deposit.collect_events()
    restored = DepositSnapshot.take(deposit).restore()
    assert restored.state() == deposit.state()
    assert DepositSnapshot.take(restored) == DepositSnapshot.take(deposit)
    restored.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(5), terms=TERMS)
    deposit.resolve_appeal(case_id="C-1", upheld=True, note="", stamp=stamp(5), terms=TERMS)
    assert restored.collect_events() == deposit.collect_events()
    restored.release(case_id="H-1", note="", stamp=stamp(6))
    restored.refund_excess(stamp=stamp(6))
    assert replayed(deposit, []).state() == deposit.state()


def test_replayed_events_give_the_same_deposit_as_the_commands_did() -> None:
    deposit = funded()
    start = DepositSnapshot.take(deposit)
    deposit.hold(case_id="H-1", amount_minor=10_000, note="", stamp=stamp(1))
    deduct(deposit, 30_000, "H-1", hours=2)
    deposit.appeal(case_id="H-1", note="", stamp=stamp(3), terms=TERMS)
    deposit.resolve_appeal(case_id="H-1", upheld=True, note="", stamp=stamp(4), terms=TERMS)
    deposit.change_categories(policy=policy(), add=["food"], remove=[], stamp=stamp(5))
    pay(deposit, 200_000, "W1", hours=6)
    rebuilt = project_stored(None, [start, *deposit.collect_events()])
    assert rebuilt is not None
    assert DepositSnapshot.take(rebuilt) == DepositSnapshot.take(deposit)
