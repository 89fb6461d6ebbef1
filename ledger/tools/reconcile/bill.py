"""A channel's bill, whichever channel wrote it: its lines as the ledger compares them.

Bills count in yuan with two decimals and in Beijing time (UTC+8, no daylight
saving); the ledger counts in fen and in UTC. The readers convert each line
once, here, and refuse anything they cannot read exactly, naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum

from domain import MalformedInput
from domain.money import MAX_AMOUNT_MINOR

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
"""The zone the channels' bills are cut in: a bill's day runs from 00:00 to 24:00 Beijing time."""

MAX_FIELD_LENGTH = 256
"""The longest field a bill line may hold; the channels' own fields are 64 characters at most."""

MAX_LINE_FIELDS = 64
"""The most fields a bill line may hold (WeChat Pay's trade bill has 27, Alipay's 25)."""

_YUAN = re.compile(r"^(-)?(\d{1,15})(?:\.(\d{1,2}))?$")
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$")


class BillMalformed(MalformedInput):
    """The bill cannot be read: wrong encoding, unknown columns, a field out of form. Names the line."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"bill line {line}: {reason}")
        self.line = line
        self.reason = reason


class LineKind(StrEnum):
    """What a bill line records: money in (a payment) or money back (a refund)."""

    PAYMENT = "payment"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class BillLine:
    """One payment or refund as the channel reports it, in fen and UTC.

    ``trade_no`` is the channel's trade number of the payment (for a refund: of the
    payment it returns to), ``order_no`` the merchant's order number, ``refund_no``
    the channel's (or the merchant's) refund number. ``amount_minor`` is what moved,
    always positive; ``fee_minor`` is the channel's fee on it, positive when charged,
    negative when a refund returns it.
    """

    line: int
    kind: LineKind
    trade_no: str
    order_no: str
    refund_no: str
    currency: str
    amount_minor: int
    fee_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class BillTotals:
    """What a bill says about itself: its lines and money, when the channel prints them."""

    lines: int
    amount_minor: int | None = None
    refunds_minor: int | None = None
    fees_minor: int | None = None


def parse_yuan(text: str, line: int, column: str) -> int:
    """An amount in yuan (``"12.30"``, ``"-0.06"``) as integer fen; ``BillMalformed`` otherwise."""
    whole, dot, fraction = text.partition(".")
    if dot and len(fraction) == 2 and 0 < len(whole) <= 15 and (whole + fraction).isdecimal() and text.isascii():
        # The common form, read without the pattern (bills hold millions of amounts).
        fen = int(whole) * 100 + int(fraction)
        if fen > MAX_AMOUNT_MINOR:
            raise BillMalformed(line, f"{column} {text!r} is beyond the ledger's largest amount")
        return fen
    found = _YUAN.match(text.strip())
    if found is None:
        raise BillMalformed(line, f"{column} {text!r} is not an amount in yuan")
    sign, whole, fraction = found.groups()
    fen = int(whole) * 100 + int((fraction or "0").ljust(2, "0"))
    if fen > MAX_AMOUNT_MINOR:
        raise BillMalformed(line, f"{column} {text!r} is beyond the ledger's largest amount")
    return -fen if sign else fen


def parse_beijing_time(text: str, line: int, column: str) -> datetime:
    """A bill's ``YYYY-MM-DD HH:MM:SS`` in Beijing time, as an aware UTC time; ``BillMalformed`` otherwise."""
    found = _TIME.match(text.strip())
    if found is None:
        raise BillMalformed(line, f"{column} {text!r} is not a time YYYY-MM-DD HH:MM:SS")
    try:
        year, month, day, hour, minute, second = (int(part) for part in found.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=BEIJING)
    except ValueError:
        raise BillMalformed(line, f"{column} {text!r} is not a real time") from None
    return moment.astimezone(UTC)


def beijing_day(moment: datetime) -> date:
    """The bill day a moment falls on: its date in Beijing time."""
    return moment.astimezone(BEIJING).date()


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC start and end (exclusive) of a bill day."""
    start = datetime(day.year, day.month, day.day, tzinfo=BEIJING).astimezone(UTC)
    return start, start + timedelta(days=1)


def utc_second(moment: datetime) -> str:
    """A moment as both sides are matched on: UTC to the second with a Z (text order is time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_field(text: str, line: int) -> None:
    """Refuse a field longer than any channel writes (a file that is not a bill)."""
    if len(text) > MAX_FIELD_LENGTH:
        raise BillMalformed(line, f"a field of {len(text)} characters: not a bill (at most {MAX_FIELD_LENGTH})")
