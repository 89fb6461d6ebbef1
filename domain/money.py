"""Exact money: integer minor units inside, ``Decimal`` at the edges, never float.

Each currency's number of minor-unit digits comes from Babel's copy of the CLDR
data (``CNY`` has 2, ``JPY`` has 0, ``BHD`` has 3), not from a hand-written table.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import get_currency_precision, is_currency

from domain.errors import MalformedInput

MAX_AMOUNT_MINOR = 10**13
"""The largest single amount the ledger accepts, in minor units.

10^13 fen is 100 billion yuan: three orders of magnitude above the largest
deposit any platform asks for, yet far enough below 2^63 that sums of many
such amounts stay exact in a 64-bit SQL integer column.
"""

MAX_AMOUNT_TEXT_LENGTH = 40
"""Longer amount texts are refused before ``Decimal`` parses them."""


def normalise_currency(code: str) -> str:
    """Return the ISO 4217 code in upper case, or raise ``MalformedInput``."""
    candidate = code.strip().upper()
    if len(candidate) != 3 or not candidate.isalpha() or not is_currency(candidate):
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
        if not cleaned or len(cleaned) > MAX_AMOUNT_TEXT_LENGTH:
            raise MalformedInput(f"amount {text!r} is not a decimal number")
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
    scaled = value.scaleb(digits)
    # Compare before converting: int() of a huge exponent would be slow and pointless.
    if scaled > MAX_AMOUNT_MINOR:
        limit = format_minor(MAX_AMOUNT_MINOR, currency)
        raise MalformedInput(f"amount {amount} exceeds the limit of {limit} {currency}")
    if scaled != scaled.to_integral_value():
        raise MalformedInput(f"amount {amount} has more decimals than {currency} allows ({digits})")
    return int(scaled)


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
