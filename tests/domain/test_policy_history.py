"""Policy versions in force by time: which version decides a moment, the history's own checks,
and the appeal window a deduction keeps from the version it was made under. No store, no clock."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from domain import AppealFiled, DeductionReason, PolicyHistory, Refused
from tests.domain.policy_fixtures import DAY, T0, funded, policy, stamp

LATE = DeductionReason.LATE_SHIPMENT


def versions(*starts: datetime | None, appeal_days: tuple[int, ...] = ()) -> PolicyHistory:
    """Versions 1, 2, ... taking effect at ``starts``; appeal windows of ``appeal_days`` (30 each by default)."""
    days = appeal_days or (30,) * len(starts)
    return PolicyHistory(
        versions=tuple(
            policy(f"v{number}").model_copy(update={"effective_from": start, "appeal_window": timedelta(days=window)})
            for number, (start, window) in enumerate(zip(starts, days, strict=True), start=1)
        )
    )


def test_the_version_in_force_is_the_last_to_take_effect_at_or_before_the_moment() -> None:
    history = versions(None, T0 + DAY, T0 + 3 * DAY)
    assert [history.in_force_at(T0 + offset).version for offset in (-DAY, DAY - timedelta(microseconds=1))] == [
        "v1",
        "v1",
    ]
    assert history.in_force_at(T0 + DAY).version == "v2"  # from its first moment
    assert history.in_force_at(T0 + 10 * DAY).version == "v3"
    assert history.latest.version == "v3"
    assert history.terms_at(T0 + 2 * DAY).policy_version == "v2"


def test_before_the_first_version_takes_effect_no_policy_is_in_force() -> None:
    history = versions(T0, T0 + DAY)
    with pytest.raises(Refused, match=re.escape("no deposit policy was in force at 2026-03-04T09:00:00+00:00")):
        history.in_force_at(T0 - DAY)
    assert history.in_force_at(T0).version == "v1"


@pytest.mark.parametrize(
    ("history", "message"),
    [
        pytest.param(lambda: versions(None, None), "version v2 needs an effective_from", id="later-undated"),
        pytest.param(lambda: versions(None, T0, T0), "version v3 takes effect at", id="same-time"),
        pytest.param(lambda: versions(T0 + DAY, T0), "list the versions in the order they take effect", id="order"),
        pytest.param(
            lambda: PolicyHistory(versions=(policy("v1"), policy("v1").model_copy(update={"effective_from": T0}))),
            "version v1 appears twice",
            id="twice",
        ),
    ],
)
def test_a_history_lists_distinct_versions_in_the_order_they_take_effect(history: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        history()  # type: ignore[operator]


def test_a_single_policy_is_a_history_of_one_version_in_force_from_the_start() -> None:
    history = PolicyHistory.of(policy())
    assert history.in_force_at(datetime.min.replace(tzinfo=T0.tzinfo)).version == "2026.1"


def test_a_back_dated_deduction_is_priced_by_the_version_in_force_at_its_time() -> None:
    dearer = policy("v2").model_copy(update={"effective_from": T0 + DAY})
    history = PolicyHistory(versions=(policy("v1"), dearer))
    deposit = funded()
    moment = stamp(5)  # before v2: priced by v1
    deposit.deduct_by_policy(
        policy=history.in_force_at(moment.effective_at),
        reason=LATE,
        case_id="LS-1",
        order_value_minor=32_000,
        note="",
        stamp=moment,
    )
    [deducted, *_] = deposit.collect_events()
    assert (deducted.policy_version, deducted.amount_collected_minor) == ("v1", 3_200)  # type: ignore[attr-defined]


def test_a_deduction_keeps_the_appeal_window_of_the_version_it_was_made_under() -> None:
    # v1 grants 30 days; v2, from day 2, grants 5. A case deducted on day 1 stays appealable on
    # day 20 under v2's terms; a case deducted on day 3 is not.
    history = versions(None, T0 + 2 * DAY, appeal_days=(30, 5))
    deposit = funded(500_000)
    for case, day in (("C-1", 1), ("C-2", 3)):
        deposit.deduct(amount_minor=1_000, reason=LATE, case_id=case, note="", stamp=stamp(24 * day))
    terms = history.terms_at(T0 + 20 * DAY)
    assert terms.policy_version == "v2"
    assert deposit.appeal(case_id="C-1", note="", stamp=stamp(24 * 20), terms=terms) is True
    filed = deposit.collect_events()[-1]
    assert isinstance(filed, AppealFiled)
    assert (filed.window_ends_at, filed.policy_version) == (T0 + 31 * DAY, "v1")
    with pytest.raises(Refused, match=re.escape("the appeal window for case C-2 closed at 2026-03-13T09:00:00")):
        deposit.appeal(case_id="C-2", note="", stamp=stamp(24 * 20), terms=terms)


def test_a_later_longer_window_does_not_reopen_an_older_deduction_s_appeal_nor_hold_up_its_refund() -> None:
    history = versions(None, T0 + 2 * DAY, appeal_days=(5, 60))
    deposit = funded()
    deposit.deduct(amount_minor=1_000, reason=LATE, case_id="C-1", note="", stamp=stamp(24))
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(25))
    later = history.terms_at(T0 + 10 * DAY)
    with pytest.raises(Refused, match="the appeal window for case C-1 closed at 2026-03-11T09:00:00"):
        deposit.appeal(case_id="C-1", note="", stamp=stamp(24 * 10), terms=later)
    deposit.refund(stamp=stamp(24 * 10), terms=later)  # v1's five days have passed: nothing to wait for
    assert deposit.state().refunded_minor == 199_000


def test_a_refund_waits_for_the_window_of_the_version_a_deduction_was_made_under() -> None:
    history = versions(None, T0 + 2 * DAY, appeal_days=(30, 5))
    deposit = funded()
    deposit.close(settlement_window=timedelta(days=1), stamp=stamp(1))
    deposit.deduct(amount_minor=1_000, reason=LATE, case_id="C-1", note="", stamp=stamp(24))
    with pytest.raises(Refused, match=re.escape("cannot be refunded until after 2026-04-05T09:00:00+00:00")):
        deposit.refund(stamp=stamp(24 * 10), terms=history.terms_at(T0 + 10 * DAY))
