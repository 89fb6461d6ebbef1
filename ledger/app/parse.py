"""Turning what a face receives into domain values: one module, one ``MalformedInput`` each.

Every command and query of the ledger passes its inputs through these functions
before anything is loaded or written. They check the type first (a Python caller
may pass bytes, floats or ``None`` where text is due: never coerced, always
refused), then the text. Their messages name the value and the rule in the
business's words and never a face's (no command-line option, no HTTP field), so
that the command line, the journal import and the HTTP service can all show them
as they are, or word their own.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from domain import InvariantBroken, MalformedInput
from domain.events import SHOP_ID_MAX_BYTES, SHOP_ID_MAX_CHARS, Actor, CaseId, CategoryCode, ShopId
from domain.money import parse_decimal

EARLIEST_EFFECTIVE_AT = datetime(2000, 1, 1, tzinfo=UTC)
"""No command takes effect before this instant: no platform held shop deposits before then,
and a time so far back is a typo (``0025`` for ``2025``)."""

MAX_VERSION = 2**63 - 1
"""The largest version a deposit's history could reach: the stores keep versions in 64-bit integers."""

MAX_PAGE_ITEMS = 10_000
"""The most items one page of a query returns: a caller wanting more pages on."""

_SHOP_ID: TypeAdapter[str] = TypeAdapter(ShopId)
_CASE_ID: TypeAdapter[str] = TypeAdapter(CaseId)
_CATEGORY: TypeAdapter[str] = TypeAdapter(CategoryCode)
_ACTOR: TypeAdapter[str] = TypeAdapter(Actor)
_NOT_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Unicode categories no name may hold: controls, format characters (bidi overrides and isolates,
zero-width joiners and spaces, the byte-order mark), surrogates, line and paragraph separators."""
_Choice = TypeVar("_Choice", bound=StrEnum)


class InputsRule(MalformedInput):
    """Inputs each fine alone but wrong together, or one missing that another needs.

    ``rule`` names the rule for faces that word it in their own terms (the command
    line names its options: ``--category needs --site``); the message is the
    face-neutral wording the journal, the HTTP service and Python callers show.
    """

    def __init__(self, rule: str, message: str) -> None:
        """The broken ``rule`` (one of :data:`INPUTS_RULES`), in neutral words ``message``."""
        if rule not in INPUTS_RULES:
            raise InvariantBroken(f"unknown inputs rule {rule!r}")
        super().__init__(message)
        self.rule = rule


INPUTS_RULES = frozenset(
    {
        "categories_need_site",
        "required_or_site_and_categories",
        "currency_or_priced_site",
        "amount_or_order_value",
        "categories_to_change",
    }
)
"""The rules between a command's inputs that a face may word itself."""


def text(value: object, what: str) -> str:
    """``value`` if it is a ``str``; else ``MalformedInput`` naming ``what`` and the type given."""
    if not isinstance(value, str):
        raise MalformedInput(f"{what} must be text, not {type(value).__name__}")
    return value


def optional_text(value: object, what: str) -> str | None:
    """Like :func:`text`, with ``None`` for a value left out."""
    return None if value is None else text(value, what)


def texts(values: object, what: str) -> list[str]:
    """A list of texts from any iterable of ``str``; a lone string is not a list of them."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise MalformedInput(f"{what} must be a list of texts, not {type(values).__name__}")
    return [text(value, what) for value in values]


def flag(value: object, what: str) -> bool:
    """``value`` if it is a ``bool``: ``1`` or ``"yes"`` are not taken for ``True``."""
    if not isinstance(value, bool):
        raise MalformedInput(f"{what} must be true or false, not {type(value).__name__}")
    return value


def amount(value: object, what: str = "amount") -> str | Decimal:
    """A positive, finite amount as text or ``Decimal``: never a float, nor an int of unknown units."""
    if isinstance(value, bool) or not isinstance(value, str | Decimal):
        raise MalformedInput(f"{what} {value!r} must be a decimal text or a Decimal, not {type(value).__name__}")
    parse_decimal(value)
    return value


def optional_amount(value: object, what: str = "amount") -> str | Decimal | None:
    """Like :func:`amount`, with ``None`` for an amount left out."""
    return None if value is None else amount(value, what)


def parse_time(value: object) -> datetime:
    """An ISO-8601 time with a zone (or an aware ``datetime``), as an aware UTC ``datetime``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedInput(f"time {value!r} is not ISO-8601 (e.g. 2026-03-05T09:30:00+08:00)") from None
    else:
        raise MalformedInput(f"time must be ISO-8601 text or a datetime, not {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedInput(f"time {value!s} has no time zone: add Z or an offset such as +08:00")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00:00+01:00 is in the year 0 in UTC, which datetime cannot hold.
        raise MalformedInput(f"time {value!s} is out of range") from None


def parse_effective_time(value: object, now: datetime) -> datetime:
    """The time a command takes effect: within ``EARLIEST_EFFECTIVE_AT`` and ``now``, else ``MalformedInput``.

    The window keeps every stored time a four-digit year apart from typos, and the
    ledger's clock (``now``) is the only judge of the future.
    """
    moment = parse_time(value)
    if moment > now:
        raise MalformedInput(f"effective time {moment.isoformat()} lies in the future")
    if moment < EARLIEST_EFFECTIVE_AT:
        raise MalformedInput(
            f"effective time {moment.isoformat()} lies before {EARLIEST_EFFECTIVE_AT.isoformat()}, "
            "the earliest the ledger records"
        )
    return moment


def parse_version(value: object) -> int:
    """A deposit version: an integer from 1 to ``MAX_VERSION``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInput(f"version must be an integer, not {type(value).__name__}")
    if value < 1:
        raise MalformedInput(f"version {value} must be 1 or more")
    if value > MAX_VERSION:
        raise MalformedInput(f"version {value} is larger than any history can be ({MAX_VERSION})")
    return value


def parse_page_limit(value: object) -> int:
    """How many items a page holds: an integer from 1 to ``MAX_PAGE_ITEMS``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedInput(f"page limit must be an integer, not {type(value).__name__}")
    if not 1 <= value <= MAX_PAGE_ITEMS:
        raise MalformedInput(f"page limit {value} must be from 1 to {MAX_PAGE_ITEMS}")
    return value


def parse_audit_place(value: object) -> tuple[int, int]:
    """Where a page of an audit trail resumes: the ``(position, share)`` of the previous page's last row."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= MAX_VERSION for part in value)
    ):
        raise MalformedInput("an audit page resumes after a (position, share) pair of whole numbers")
    return value[0], value[1]


def parse_shop_id(shop_id: object) -> str:
    """A valid shop id in Unicode normal form C, or ``MalformedInput``.

    Normalised first, so that the same name typed as composed or decomposed
    characters (``café`` as ``e`` + U+0301) is the same shop.
    """
    given = text(shop_id, "shop id")
    return _valid(
        _SHOP_ID,
        unicodedata.normalize("NFC", given),
        f"shop id {{!r}} must be 1-{SHOP_ID_MAX_CHARS} letters of any script, digits or _ . : -, starting with "
        f"a letter or digit, at most {SHOP_ID_MAX_BYTES} bytes in UTF-8",
        shown=given,
    )


def parse_case_id(case: object) -> str:
    """A valid case id, or ``MalformedInput``."""
    return _valid(
        _CASE_ID,
        text(case, "case id"),
        "case id {!r} must be 1-64 letters, digits or _ . : / -, starting with a letter or digit",
    )


def parse_category(category: object) -> str:
    """A valid category name, in lower case, or ``MalformedInput``."""
    given = text(category, "category")
    return _valid(
        _CATEGORY,
        given.strip().lower(),
        "category {!r} must be 1-32 letters, digits, _ or -, starting with a letter or digit",
        shown=given,
    )


def parse_actor(actor: object) -> str:
    """A valid actor name, or ``MalformedInput``.

    Who asked is read by people in tables and exports: a bidi override
    (U+202E) or a zero-width character would make one name look like another,
    so format characters are refused with the control characters.
    """
    given = text(actor, "actor")
    if any(unicodedata.category(character) in _NOT_IN_NAMES for character in given):
        raise MalformedInput(
            f"actor {given!r} must be 1-64 characters without control, format (bidi, zero-width) "
            "or line-separator characters"
        )
    return _valid(_ACTOR, given, "actor {!r} must be 1-64 characters without control characters")


def parse_choice(choices: type[_Choice], value: object, what: str) -> _Choice:
    """One member of a closed set of choices, or ``MalformedInput`` listing them."""
    given = text(value, what)
    try:
        return choices(given.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in choices)
        raise MalformedInput(f"unknown {what} {given!r}: expected one of {allowed}") from None


def _valid(adapter: TypeAdapter[str], value: str, rule: str, *, shown: Any = None) -> str:
    # ``value`` as ``adapter`` admits it, or MalformedInput: ``rule`` with what was given
    # (``shown``, when it differs from the value checked), formatted only when raised.
    try:
        return adapter.validate_python(value, strict=True)
    except ValidationError:
        raise MalformedInput(rule.format(value if shown is None else shown)) from None
