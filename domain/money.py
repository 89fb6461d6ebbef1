"""Exact money: integer minor units inside, ``Decimal`` at the edges, never float.

Each currency's number of minor-unit digits comes from Babel's copy of the CLDR
data (``CNY`` has 2, ``JPY`` has 0, ``BHD`` has 3), not from a hand-written table.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import cache

from babel.core import get_global
from babel.numbers import get_currency_precision, is_currency

from domain.errors import InvariantBroken, MalformedInput

MAX_AMOUNT_MINOR = 10**13
"""The largest single amount the ledger accepts, in minor units.

10^13 fen is 100 billion yuan: three orders of magnitude above the largest
deposit any platform asks for, yet far enough below 2^63 that sums of many
such amounts stay exact in a 64-bit SQL integer column.
"""

MAX_AMOUNT_TEXT_LENGTH = 40
"""Longer amount texts are refused before ``Decimal`` parses them."""

# ASCII digits in plain notation only: Decimal alone would also take "1_000", full-width or
# Arabic-Indic digits, and exponents ("1E2", "2e-1"), which no bill or bank statement writes
# and which hide a typo's factor of ten. The special values pass here so that the refusal
# can name them.
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$|^[+-]?(s?nan|inf|infinity)$", re.ASCII | re.IGNORECASE)


@cache
def _legal_tender() -> frozenset[str]:
    # Currencies some territory uses as legal tender today, per CLDR: this keeps out
    # ISO codes that are not money a shop can pay with (XAU gold, XTS testing, XXX none).
    territories = get_global("territory_currencies")
    return frozenset(
        code
        for currencies in territories.values()
        for code, _start, end, tender in currencies
        if tender and end is None
    )


def normalise_currency(code: str) -> str:
    """Return the ISO 4217 code in upper case, or raise ``MalformedInput``."""
    candidate = code.strip().upper()
    if len(candidate) != 3 or not is_currency(candidate) or candidate not in _legal_tender():
        raise MalformedInput(f"unknown currency {code!r}: expected an ISO 4217 code such as CNY, USD or JPY")
    return candidate


def minor_digits(currency: str) -> int:
    """How many digits the currency's minor unit has (2 for CNY, 0 for JPY)."""
    return int(get_currency_precision(currency))


def parse_decimal(text: str | Decimal) -> Decimal:
    """Parse a positive, finite decimal amount in major units, or raise ``MalformedInput``.

    The currency is not needed yet: callers check its precision with :func:`to_minor`
    once they know which deposit the amount is for.
    """
    if isinstance(text, Decimal):
        value = text
    else:
        if not isinstance(text, str):
            raise MalformedInput(f"amount {text!r} is not a decimal number")
        cleaned = text.strip()
        if len(cleaned) > MAX_AMOUNT_TEXT_LENGTH or not _DECIMAL_TEXT.match(cleaned):
            raise MalformedInput(f"amount {text[:MAX_AMOUNT_TEXT_LENGTH]!r} is not a decimal number")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise MalformedInput(f"amount {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise MalformedInput(f"amount {text!r} is not a finite number")
    if value <= 0:
        raise MalformedInput(f"amount {text!r} must be greater than zero")
    return value


def to_minor(amount: str | Decimal, currency: str) -> int:
    """Convert a major-unit amount to integer minor units of ``currency``.

    Refuses more decimals than the currency has (``1.001`` CNY, ``1.5`` JPY) rather
    than rounding: a ledger never invents or drops a fraction of a cent.
    """
    value = parse_decimal(amount)
    digits = minor_digits(currency)
    # Work on the digits and the exponent, never with Decimal arithmetic: the default
    # context rounds past 28 digits (1.000...0001 would become 1) and overflows on
    # huge exponents (1e999999).
    _, coefficient_digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise InvariantBroken("parse_decimal admits only finite amounts")
    leading_power = value.adjusted() + digits  # power of ten of the leading digit, in minor units
    if leading_power >= len(str(MAX_AMOUNT_MINOR)):
        raise MalformedInput(_too_large(amount, currency))
    whole_digits = coefficient_digits[: leading_power + 1]
    if leading_power < 0 or any(coefficient_digits[leading_power + 1 :]):
        raise MalformedInput(f"amount {amount} has more decimals than {currency} allows ({digits})")
    amount_minor: int = int("".join(map(str, whole_digits))) * 10 ** max(exponent + digits, 0)
    if amount_minor > MAX_AMOUNT_MINOR:
        raise MalformedInput(_too_large(amount, currency))
    return amount_minor


def _too_large(amount: str | Decimal, currency: str) -> str:
    return f"amount {amount} exceeds the limit of {format_minor(MAX_AMOUNT_MINOR, currency)} {currency}"


def to_decimal(amount_minor: int, currency: str) -> Decimal:
    """The exact major-unit ``Decimal`` for an integer of minor units."""
    digits = minor_digits(currency)
    return Decimal(amount_minor).scaleb(-digits)


def format_minor(amount_minor: int, currency: str) -> str:
    """A decimal string in major units with the currency's digits: ``"1700.00"``, ``"70000"``."""
    digits = minor_digits(currency)
    sign = "-" if amount_minor < 0 else ""
    magnitude = abs(amount_minor)
    if digits == 0:
        return f"{sign}{magnitude}"
    whole, fraction = divmod(magnitude, 10**digits)
    return f"{sign}{whole}.{fraction:0{digits}d}"
