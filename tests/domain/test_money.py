"""Exact money: amounts in major units become integer minor units, or are refused.

The expectations here are exact arithmetic on ``Fraction`` and literal figures,
never the module's own conversions.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import MalformedInput
from domain.money import (
    MAX_AMOUNT_MINOR,
    MAX_AMOUNT_TEXT_LENGTH,
    format_minor,
    minor_digits,
    normalise_currency,
    to_decimal,
    to_minor,
)

CURRENCY_DIGITS = {"CNY": 2, "USD": 2, "GBP": 2, "JPY": 0, "BHD": 3}
"""Minor-unit digits as ISO 4217 publishes them."""


@pytest.mark.parametrize(("currency", "digits"), CURRENCY_DIGITS.items())
def test_minor_unit_digits_come_from_the_currency_data(currency: str, digits: int) -> None:
    assert minor_digits(currency) == digits


@pytest.mark.parametrize(
    ("amount", "currency", "expected_minor"),
    [
        ("1700", "CNY", 170_000),
        ("1700.5", "CNY", 170_050),
        ("1700.50", "CNY", 170_050),
        ("0.01", "USD", 1),
        ("70000", "JPY", 70_000),
        ("1.000", "JPY", 1),
        ("0.001", "BHD", 1),
        (Decimal("1E+2"), "CNY", 10_000),
        (" 4000 ", "GBP", 400_000),
        (Decimal("12.30"), "USD", 1_230),
        ("100000000000.00", "CNY", MAX_AMOUNT_MINOR),
    ],
)
def test_an_amount_becomes_exact_minor_units(amount: str | Decimal, currency: str, expected_minor: int) -> None:
    assert to_minor(amount, currency) == expected_minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("1.001", "CNY"),
        ("1.5", "JPY"),
        ("0.0001", "BHD"),
        (Decimal("1e-2000000"), "CNY"),
        # More digits than Decimal's default 28-digit context keeps: must not round to 1.00.
        ("1.00000000000000000000000000001", "CNY"),
        (Decimal("1." + "0" * 5000 + "1"), "CNY"),
    ],
)
def test_more_decimals_than_the_currency_has_are_refused(amount: str | Decimal, currency: str) -> None:
    with pytest.raises(MalformedInput, match="more decimals"):
        to_minor(amount, currency)


@pytest.mark.parametrize("amount", ["0", "0.00", "-0", "-1", "-0.01", Decimal("-5")])
def test_zero_and_negative_amounts_are_refused(amount: str | Decimal) -> None:
    with pytest.raises(MalformedInput, match="greater than zero"):
        to_minor(amount, "CNY")


@pytest.mark.parametrize("amount", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", Decimal("NaN")])
def test_nan_and_infinity_are_refused(amount: str | Decimal) -> None:
    with pytest.raises(MalformedInput, match="not a finite number"):
        to_minor(amount, "CNY")


@pytest.mark.parametrize(
    "amount", ["", "  ", "abc", "1,000", "1_000", "１２", "١٢", "12 CNY", "0x10", "¥12", 1.5, 5, None]
)
def test_non_numbers_are_refused(amount: object) -> None:
    with pytest.raises(MalformedInput, match="not a decimal number"):
        to_minor(amount, "CNY")  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", ["1E2", "2e-1", "1E+2", "1e999999", "-1e3", "1.5E0", "１e2"])
def test_exponent_notation_is_refused(amount: str) -> None:
    # No bill or statement writes 1E2; in a typed amount it hides a factor of ten.
    with pytest.raises(MalformedInput, match="not a decimal number"):
        to_minor(amount, "CNY")


def test_an_overlong_amount_text_is_refused_before_parsing() -> None:
    text = "1" + "0" * MAX_AMOUNT_TEXT_LENGTH
    with pytest.raises(MalformedInput, match="not a decimal number"):
        to_minor(text, "JPY")


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("100000000000.01", "CNY"),
        ("10000000000001", "JPY"),
        (Decimal("1E+14"), "JPY"),
        (Decimal("1E+999999999"), "CNY"),
    ],
)
def test_amounts_above_the_limit_are_refused(amount: str | Decimal, currency: str) -> None:
    with pytest.raises(MalformedInput, match="exceeds the limit"):
        to_minor(amount, currency)


def test_the_limit_stays_far_below_a_64_bit_integer() -> None:
    # Sums of a hundred thousand maximal amounts must still fit a signed 64-bit SQL column.
    assert MAX_AMOUNT_MINOR * 100_000 < 2**63


def _exact_minor(text: str, currency: str) -> int | None:
    """The reference: the amount in minor units by exact rational arithmetic, or None if unacceptable."""
    cleaned = text.strip()
    if not cleaned or len(cleaned) > MAX_AMOUNT_TEXT_LENGTH or "e" in cleaned.lower():
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    minor = Fraction(value) * 10 ** CURRENCY_DIGITS[currency]
    if minor.denominator != 1 or not 0 < minor <= MAX_AMOUNT_MINOR:
        return None
    return int(minor)


amount_texts = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,15}(\.[0-9]{1,4})?\Z"),
    st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{0,35})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)


@given(text=amount_texts, currency=st.sampled_from(sorted(CURRENCY_DIGITS)))
def test_to_minor_is_exact_or_refuses(text: str, currency: str) -> None:
    expected = _exact_minor(text, currency)
    if expected is None:
        with pytest.raises(MalformedInput):
            to_minor(text, currency)
    else:
        assert to_minor(text, currency) == expected


@given(
    amount_minor=st.integers(min_value=1, max_value=MAX_AMOUNT_MINOR),
    currency=st.sampled_from(sorted(CURRENCY_DIGITS)),
)
def test_formatted_amounts_convert_back_to_the_same_minor_units(amount_minor: int, currency: str) -> None:
    text = format_minor(amount_minor, currency)
    assert to_minor(text, currency) == amount_minor
    assert to_decimal(amount_minor, currency) == Decimal(text)
    assert Fraction(Decimal(text)) * 10 ** CURRENCY_DIGITS[currency] == amount_minor


@pytest.mark.parametrize(
    ("amount_minor", "currency", "text"),
    [
        (170_000, "CNY", "1700.00"),
        (5, "CNY", "0.05"),
        (-5, "CNY", "-0.05"),
        (0, "USD", "0.00"),
        (70_000, "JPY", "70000"),
        (1, "BHD", "0.001"),
    ],
)
def test_amounts_are_formatted_with_the_currency_digits(amount_minor: int, currency: str, text: str) -> None:
    assert format_minor(amount_minor, currency) == text


def test_to_decimal_keeps_the_currency_digits() -> None:
    assert str(to_decimal(170_000, "CNY")) == "1700.00"
    assert str(to_decimal(70_000, "JPY")) == "70000"


@pytest.mark.parametrize(("code", "expected"), [("CNY", "CNY"), ("cny", "CNY"), (" jpy ", "JPY"), ("Gbp", "GBP")])
def test_currency_codes_are_normalised_to_upper_case(code: str, expected: str) -> None:
    assert normalise_currency(code) == expected


@pytest.mark.parametrize("code", ["ABC", "RMB", "CN", "CNYY", "", "12$", "¥", "XAU", "XTS", "XXX"])
def test_unknown_currencies_are_refused(code: str) -> None:
    with pytest.raises(MalformedInput, match="unknown currency"):
        normalise_currency(code)
