"""The policy's own rules: requirement by category, pricing by catalogue, daily caps, validation."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from domain import (
    STANDARD_TERMS,
    DeductionReason,
    DepositPolicy,
    FixedPenalty,
    MalformedInput,
    Refused,
    SharePenalty,
    SitePolicy,
    ViolationRule,
    price_violation,
)
from tests.domain.policy_fixtures import policy

LATE = DeductionReason.LATE_SHIPMENT
FAKE = DeductionReason.FAKE_LISTING


# ---------------------------------------------------------------- requirement


def test_the_requirement_is_the_highest_category_amount_not_the_sum() -> None:
    assert policy().requirement_minor("CN", ["general"]) == 200_000
    assert policy().requirement_minor("CN", ["general", "jewelry", "food"]) == 500_000


def test_the_requirement_ignores_repeated_categories() -> None:
    assert policy().requirement_minor("CN", ["food", "food"]) == 400_000


@pytest.mark.parametrize(
    ("site", "categories", "message"),
    [
        pytest.param("CN", [], "at least one --category", id="no-category"),
        pytest.param(
            "CN", ["weapons"], "no category weapons on site CN: expected one of food, general, jewelry", id="unknown"
        ),
        pytest.param("JP", ["general"], "no site 'JP': expected one of CN, US", id="unknown-site"),
    ],
)
def test_a_requirement_the_policy_cannot_derive_is_malformed_input(
    site: str, categories: list[str], message: str
) -> None:
    with pytest.raises(MalformedInput, match=message):
        policy().requirement_minor(site, categories)


def test_the_policy_terms_carry_its_version_and_time_limits() -> None:
    terms = policy("2026.7").terms
    assert terms.policy_version == "2026.7"
    assert (terms.settlement_window, terms.top_up_deadline, terms.appeal_window) == (
        timedelta(days=90),
        timedelta(days=30),
        timedelta(days=30),
    )
    assert STANDARD_TERMS.policy_version is None


# -------------------------------------------------------------------- pricing


def price(rule: ViolationRule, order_value_minor: int | None = None, charged_today_minor: int = 0) -> tuple[int, str]:
    pricing = price_violation(
        rule, reason=LATE, currency="CNY", order_value_minor=order_value_minor, charged_today_minor=charged_today_minor
    )
    return pricing.amount_minor, pricing.rule


def test_a_fixed_penalty_ignores_the_order_value() -> None:
    rule = ViolationRule(penalty=FixedPenalty(amount_minor=50_000))
    assert price(rule) == (50_000, "late_shipment: fixed 500.00 CNY")
    assert price(rule, 99_999_00)[0] == 50_000


@pytest.mark.parametrize(
    ("order_value_minor", "expected"),
    [
        pytest.param(25_000, 2_500, id="10%-of-250"),
        pytest.param(1_000, 500, id="raised-to-the-floor"),
        pytest.param(500_000, 10_000, id="cut-to-the-cap"),
        pytest.param(25_009, 2_500, id="rounded-down-to-the-fen"),
    ],
)
def test_a_share_penalty_is_floored_capped_and_rounded_down(order_value_minor: int, expected: int) -> None:
    rule = ViolationRule(penalty=SharePenalty(rate=Decimal("0.1"), floor_minor=500, cap_minor=10_000))
    amount, words = price(rule, order_value_minor)
    assert amount == expected
    assert words == "late_shipment: 10% of the order value, at least 5.00, at most 100.00 CNY"


def test_a_share_is_exact_for_the_largest_order_and_a_fine_rate() -> None:
    rule = ViolationRule(penalty=SharePenalty(rate=Decimal("0.000001")))
    assert price(rule, 10**13)[0] == 10**7
    assert price(ViolationRule(penalty=SharePenalty(rate=Decimal("0.333333"))), 10**13)[0] == 3_333_330_000_000


def test_a_share_penalty_needs_the_order_value() -> None:
    rule = ViolationRule(penalty=SharePenalty(rate=Decimal("0.1")))
    with pytest.raises(MalformedInput, match="give the order value"):
        price(rule)


def test_the_daily_cap_cuts_the_penalty_to_what_is_left_today() -> None:
    rule = ViolationRule(penalty=FixedPenalty(amount_minor=50_000), daily_cap_minor=120_000)
    assert price(rule, charged_today_minor=50_000)[0] == 50_000
    amount, words = price(rule, charged_today_minor=100_000)
    assert amount == 20_000
    assert words.endswith("; daily cap 1200.00 CNY; cut to 200.00 by the daily cap (1000.00 charged today)")


def test_nothing_is_deducted_once_the_daily_cap_is_used_up() -> None:
    rule = ViolationRule(penalty=FixedPenalty(amount_minor=50_000), daily_cap_minor=100_000)
    with pytest.raises(Refused, match="nothing left to charge; give the amount to deduct anyway"):
        price(rule, charged_today_minor=100_000)


def test_a_share_that_prices_at_zero_is_refused_rather_than_recorded() -> None:
    rule = ViolationRule(penalty=SharePenalty(rate=Decimal("0.01")))
    with pytest.raises(Refused, match="nothing left to charge"):
        price(rule, 99)


def test_the_catalogue_names_a_missing_rule() -> None:
    assert policy().rule("CN", FAKE).penalty == FixedPenalty(amount_minor=50_000)
    with pytest.raises(
        MalformedInput, match=re.escape("policy 2026.1 has no rule for other on site CN: give the amount")
    ):
        policy().rule("CN", DeductionReason.OTHER)


# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"rate": Decimal(0)}, id="zero-rate"),
        pytest.param({"rate": Decimal("1.5")}, id="rate-above-one"),
        pytest.param({"rate": Decimal("0.1234567")}, id="rate-too-fine"),
        pytest.param({"rate": Decimal("NaN")}, id="rate-nan"),
        pytest.param({"rate": Decimal("0.1"), "floor_minor": 200, "cap_minor": 100}, id="floor-above-cap"),
        pytest.param({"rate": Decimal("0.1"), "cap_minor": 0}, id="zero-cap"),
    ],
)
def test_a_share_rule_is_validated(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SharePenalty.model_validate(fields)


def test_a_policy_is_validated() -> None:
    good = policy().model_dump()
    with pytest.raises(ValidationError):
        DepositPolicy.model_validate({**good, "sites": {}})
    with pytest.raises(ValidationError):
        DepositPolicy.model_validate({**good, "appeal_window": timedelta(0)})
    with pytest.raises(ValidationError):
        SitePolicy.model_validate({"currency": "CNY", "required": {"Bad Name": 1}})
