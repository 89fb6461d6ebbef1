"""The WeChat Pay trade bill (交易账单, bill type ALL) as the channel publishes it.

UTF-8 (a byte-order mark at the start is tolerated), comma-separated, unquoted:
a header row of column names, one row per payment or refund with every field
prefixed by a backtick (so that spreadsheets keep long numbers as text), then a
summary header (总交易单数, 应结订单总金额, ...) and one summary row, also
backticked. Amounts in yuan, times in Beijing time. The reader checks the
summary against the rows it read: its count, and each money total against the
sum of its column (:data:`SUMMED_COLUMNS`), so a truncated or altered download
is refused, not reconciled.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime
from itertools import repeat
from typing import IO

from domain.money import format_minor
from ledger.tools.reconcile.bill import (
    MAX_FIELD_LENGTH,
    MAX_LINE_FIELDS,
    BillLine,
    BillMalformed,
    BillTotals,
    LineKind,
    beijing_day,
    check_field,
    parse_beijing_time,
    parse_yuan,
)

COLUMNS = (
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
)
"""The columns of a type ALL trade bill, in the order WeChat Pay writes them."""

KNOWN_COLUMNS = frozenset((*COLUMNS, "子商户号"))
"""Columns the reader knows; older bills call 特约商户号 子商户号. Any other column is refused."""

REQUIRED_COLUMNS = (
    "交易时间",
    "微信订单号",
    "商户订单号",
    "交易状态",
    "货币种类",
    "应结订单金额",
    "退款金额",
    "手续费",
)

SUMMARY_COLUMNS = (
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
)
"""The summary header that follows the detail rows."""

PAYMENT_STATUS = "SUCCESS"
REFUND_STATUS = "REFUND"
REVOKED_STATUS = "REVOKED"


SUMMED_COLUMNS = {
    "应结订单总金额": "应结订单金额",
    "退款总金额": "退款金额",
    "充值券退款总金额": "充值券退款金额",
    "手续费总金额": "手续费",
    "订单总金额": "订单金额",
    "申请退款总金额": "申请退款金额",
}
"""Each money total of the summary row and the detail column it sums, over every detail row it counts."""


AMOUNTS_REMEMBERED = 4096
"""Distinct amount texts a reader remembers having read (a few hundred KiB at most)."""


class WeChatPayBill:
    """Reads one trade bill: iterate for its lines; ``day``, ``totals`` and ``ignored`` once read."""

    channel = "wechat_pay"

    def __init__(self, source: IO[bytes], day: date | None = None) -> None:
        """Read ``source`` (the bill's bytes); ``day`` is the bill's date if known, else its rows' Beijing day."""
        self._source = source
        self.day = day
        self.totals: BillTotals | None = None
        self.ignored = 0
        self._number = 0
        self._sums: dict[str, int] = {}
        self._amounts: dict[str, int] = {}
        self._last_time: tuple[str, datetime] = ("", datetime.min)

    def __iter__(self) -> Iterator[BillLine]:
        """The payments and refunds, in file order; ``BillMalformed`` names the first line that is not."""
        rows = csv.reader(self._decoded())
        header = next(rows, None)
        if header is None:
            raise BillMalformed(1, "the file is empty: not a WeChat Pay trade bill")
        index = _header_index(header, self._number)
        summed = [(column, index[column]) for column in SUMMED_COLUMNS.values() if column in index]
        self._sums = dict.fromkeys((column for column, _ in summed), 0)
        count = 0
        for row in rows:
            if row and row[0] == SUMMARY_COLUMNS[0]:
                self._read_summary(rows, tuple(row), count)
                return
            line = self._line(row, index, summed)
            if line is None:
                continue
            count += 1
            yield line
        raise BillMalformed(self._number + 1, "the bill ends without its summary rows: truncated")

    def _decoded(self) -> Iterator[str]:
        for raw in self._source:
            self._number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise BillMalformed(self._number, "not UTF-8: a WeChat Pay bill is UTF-8") from None
            if self._number == 1:
                text = text.removeprefix("\ufeff")
            yield text

    def _line(self, row: list[str], index: dict[str, int], summed: list[tuple[str, int]]) -> BillLine | None:
        number = self._number
        if len(row) != len(index) or len(row) > MAX_LINE_FIELDS:
            raise BillMalformed(number, f"{len(row)} fields where the header has {len(index)}")
        # Whole-row checks first (a million lines a bill), field by field only when they fail:
        # a row no longer than a field holds no field too long; a row without commas inside
        # its fields whose every comma is followed by a backtick has every field backticked.
        joined = ",".join(row)
        if len(joined) > MAX_FIELD_LENGTH:
            for value in row:
                check_field(value, number)
        if not (joined.startswith("`") and joined.count(",`") == len(row) - 1 == joined.count(",")) and not all(
            map(str.startswith, row, repeat("`"))
        ):
            name, value = next((name, row[i]) for name, i in index.items() if not row[i].startswith("`"))
            raise BillMalformed(number, f"{name} {value!r} lacks the backtick every field of a bill row has")
        sums = self._sums
        for column, position in summed:
            sums[column] += self._yuan(row[position], number, column)
        status = row[index["交易状态"]][1:].strip()
        if status == REVOKED_STATUS:
            self.ignored += 1  # a payment cancelled the same day: no money moved
            return None
        if status not in (PAYMENT_STATUS, REFUND_STATUS):
            raise BillMalformed(number, f"交易状态 {status!r}: expected SUCCESS, REFUND or REVOKED")
        at = self._time(row[index["交易时间"]][1:].strip(), number)
        trade_no = row[index["微信订单号"]][1:].strip()
        if not trade_no:
            raise BillMalformed(number, "微信订单号 is empty")
        fee = self._yuan(row[index["手续费"]], number, "手续费")
        payment = status == PAYMENT_STATUS
        if payment:
            kind, amount = LineKind.PAYMENT, self._yuan(row[index["应结订单金额"]], number, "应结订单金额")
            refund_no = ""
        else:
            kind, amount = LineKind.REFUND, self._yuan(row[index["退款金额"]], number, "退款金额")
            refund_no = _field(row, index, "微信退款单号") or _field(row, index, "商户退款单号")
        if amount <= 0:
            raise BillMalformed(number, f"{kind} amount {amount / 100:.2f} is not above zero")
        return BillLine(
            line=number,
            kind=kind,
            trade_no=trade_no,
            order_no=row[index["商户订单号"]][1:].strip(),
            refund_no=refund_no,
            currency=_field(row, index, "货币种类") or "CNY",
            amount_minor=amount,
            fee_minor=abs(fee) if payment else -abs(fee),
            at=at,
        )

    def _yuan(self, field: str, number: int, column: str) -> int:
        # A bill repeats few amounts (0.00 in most columns, the deposit's standard sums):
        # each text is read once, up to a bound on what is remembered.
        fen = self._amounts.get(field)
        if fen is None:
            fen = parse_yuan(field[1:], number, column)
            if len(self._amounts) < AMOUNTS_REMEMBERED:
                self._amounts[field] = fen
        return fen

    def _time(self, text: str, number: int) -> datetime:
        # A bill is in time order, a dozen lines a second: the previous line's time is read once.
        last_text, last = self._last_time
        if text == last_text:
            return last
        at = parse_beijing_time(text, number, "交易时间")
        day = beijing_day(at)
        if self.day is None:
            self.day = day
        elif day != self.day:
            raise BillMalformed(number, f"交易时间 {text} is not on the bill's day {self.day}")
        self._last_time = (text, at)
        return at

    def _read_summary(self, rows: Iterator[list[str]], header: tuple[str, ...], count: int) -> None:
        if header != SUMMARY_COLUMNS:
            raise BillMalformed(self._number, f"unknown summary columns: {', '.join(header)}")
        values = next(rows, None)
        if values is None or len(values) != len(SUMMARY_COLUMNS) or not all(v.startswith("`") for v in values):
            raise BillMalformed(self._number + 1, "the summary row is missing or not backticked")
        number = self._number
        figures = dict(zip(SUMMARY_COLUMNS, (value[1:].strip() for value in values), strict=True))
        if not figures["总交易单数"].isdigit() or int(figures["总交易单数"]) != count + self.ignored:
            raise BillMalformed(number, f"the summary counts {figures['总交易单数']} rows, the bill holds {count}")
        stated = {total: parse_yuan(figures[total], number, total) for total in SUMMED_COLUMNS}
        # Each money total is its column's sum over the rows it counts: a total that
        # disagrees is a bill altered or cut and completed, never reconciled.
        for total, column in SUMMED_COLUMNS.items():
            if column in self._sums and stated[total] != self._sums[column]:
                said, summed = format_minor(stated[total], "CNY"), format_minor(self._sums[column], "CNY")
                raise BillMalformed(
                    number, f"the summary's {total} {said} is not the sum of {column} over the rows, {summed}"
                )
        for extra in rows:
            if any(field.strip() for field in extra):
                raise BillMalformed(self._number, "text after the summary row")
        self.totals = BillTotals(
            lines=count,
            amount_minor=stated["应结订单总金额"],
            refunds_minor=stated["退款总金额"],
            fees_minor=stated["手续费总金额"],
        )


def _field(row: list[str], index: dict[str, int], name: str) -> str:
    # An optional column's value without its backtick, empty where the bill has no such column.
    position = index.get(name)
    return "" if position is None else row[position][1:].strip()


def _header_index(header: list[str], number: int) -> dict[str, int]:
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in KNOWN_COLUMNS]
    if unknown:
        raise BillMalformed(number, f"unknown columns for a WeChat Pay trade bill: {', '.join(unknown[:5])}")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise BillMalformed(number, f"missing columns of a WeChat Pay trade bill: {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise BillMalformed(number, "a column appears twice")
    return {name: position for position, name in enumerate(names)}
