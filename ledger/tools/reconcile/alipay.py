"""The Alipay business detail bill (业务明细, bill type trade) as the channel publishes it.

GBK-encoded, comma-separated, unquoted. ``#`` lines before the table name the
account and the period (``#起始日期：[2026年03月05日 00:00:00]``); a header row
names the columns (the money columns end in ``（元）`` in the files Alipay
writes); every id is followed by a tab, so that spreadsheets keep it as text;
``#`` lines after the table end it (``#-----业务明细列表结束-----``) and sum it
up. 业务类型 says 交易 (a payment) or 退款 (a refund); a refund's amounts are
negative. Times are Beijing time; 完成时间 is when the money moved.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date
from typing import IO

from domain.money import format_minor
from ledger.tools.reconcile.bill import (
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
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)
"""The columns of a business detail bill, in the order and spelling Alipay writes them."""

_KNOWN = frozenset(name.removesuffix("（元）") for name in COLUMNS)
REQUIRED_COLUMNS = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "商家实收", "服务费")

PAYMENT_TYPE = "交易"
REFUND_TYPE = "退款"
TABLE_END = "业务明细列表结束"
_START_DATE = re.compile(r"起始日期：\[(\d{4})年(\d{2})月(\d{2})日")
_FOOTER_TOTALS = re.compile(r"^#(交易|退款)合计：(\d+)笔，商家实收(?:退款)?共：([^元]*)元")
"""``#交易合计：2笔，商家实收共：2999.99元，...`` and ``#退款合计：1笔，商家实收退款共：-1000.00元，...``."""


class AlipayBill:
    """Reads one business detail bill: iterate for its lines; ``day``, ``totals`` and ``ignored`` once read."""

    channel = "alipay"

    def __init__(self, source: IO[bytes], day: date | None = None) -> None:
        """Read ``source`` (the bill's bytes); ``day`` is the bill's date if known, else its preamble's."""
        self._source = source
        self.day = day
        self._asked_day = day
        self.totals: BillTotals | None = None
        self.ignored = 0
        self._number = 0
        # Per business type (交易, 退款): the rows read and the sum of 商家实收 as signed in the file.
        self._sums = {PAYMENT_TYPE: [0, 0], REFUND_TYPE: [0, 0]}

    def __iter__(self) -> Iterator[BillLine]:
        """The payments and refunds, in file order; ``BillMalformed`` names the first line that is not."""
        rows = csv.reader(self._decoded())
        index: dict[str, int] | None = None
        count = 0
        for row in rows:
            first = row[0].strip() if row else ""
            if first.startswith("#"):
                if index is None:
                    self._read_preamble(",".join(row))
                    continue
                if TABLE_END in first:
                    self.totals = BillTotals(lines=count)
                    self._read_footer(rows)
                    return
                raise BillMalformed(self._number, "a # line inside the table")
            if not any(field.strip() for field in row):
                continue
            if index is None:
                index = _header_index(row, self._number)
                continue
            line = self._line(row, index)
            if line is not None:
                count += 1
                yield line
        if index is None:
            raise BillMalformed(self._number + 1, "no header row: not an Alipay business detail bill")
        raise BillMalformed(self._number + 1, f"the bill ends without its #{TABLE_END} line: truncated")

    def _decoded(self) -> Iterator[str]:
        for raw in self._source:
            self._number += 1
            try:
                yield raw.decode("gbk")
            except UnicodeDecodeError:
                raise BillMalformed(self._number, "not GBK: an Alipay bill is GBK-encoded") from None

    def _read_preamble(self, text: str) -> None:
        found = _START_DATE.search(text)
        if found is None:
            return
        stated = date(*(int(part) for part in found.groups()))
        if self._asked_day is not None and stated != self._asked_day:
            raise BillMalformed(self._number, f"the bill is for {stated}, not {self._asked_day}")
        self.day = stated

    def _read_footer(self, rows: Iterator[list[str]]) -> None:
        # The footer's totals, where it has them, must be the table's: else the file was altered.
        for row in rows:
            if row and not row[0].strip().startswith("#") and any(field.strip() for field in row):
                raise BillMalformed(self._number, "a table row after the end of the table")
            found = _FOOTER_TOTALS.match(",".join(row).strip())
            if found is None:
                continue
            business, count, amount = found.group(1), int(found.group(2)), found.group(3)
            stated = parse_yuan(amount, self._number, f"{business}合计")
            read, summed = self._sums[business]
            if (count, stated) != (read, summed):
                raise BillMalformed(
                    self._number,
                    f"the footer's {business}合计 says {count} rows and {amount} yuan, "
                    f"the table holds {read} rows and {format_minor(summed, 'CNY')}",
                )

    def _line(self, row: list[str], index: dict[str, int]) -> BillLine | None:
        number = self._number
        if len(row) != len(index) or len(row) > MAX_LINE_FIELDS:
            raise BillMalformed(number, f"{len(row)} fields where the header has {len(index)}")
        fields = {}
        for name, position in index.items():
            value = row[position]
            check_field(value, number)
            fields[name] = value.strip()  # ids end in a tab; amounts may be padded
        business = fields["业务类型"]
        if business not in (PAYMENT_TYPE, REFUND_TYPE):
            self.ignored += 1  # not money in or out of a trade
            return None
        at = parse_beijing_time(fields["完成时间"], number, "完成时间")
        day = beijing_day(at)
        if self.day is None:
            self.day = day
        elif day != self.day:
            raise BillMalformed(number, f"完成时间 {fields['完成时间']} is not on the bill's day {self.day}")
        trade_no = fields["支付宝交易号"]
        if not trade_no:
            raise BillMalformed(number, "支付宝交易号 is empty")
        signed = parse_yuan(fields["商家实收"], number, "商家实收（元）")
        totals = self._sums[business]
        totals[0] += 1
        totals[1] += signed
        amount = abs(signed)
        if amount == 0:
            raise BillMalformed(number, "商家实收（元） is zero")
        fee = abs(parse_yuan(fields["服务费"] or "0", number, "服务费（元）"))
        payment = business == PAYMENT_TYPE
        return BillLine(
            line=number,
            kind=LineKind.PAYMENT if payment else LineKind.REFUND,
            trade_no=trade_no,
            order_no=fields["商户订单号"],
            refund_no="" if payment else fields.get("退款批次号/请求号", ""),
            currency="CNY",
            amount_minor=amount,
            fee_minor=fee if payment else -fee,
            at=at,
        )


def _header_index(header: list[str], number: int) -> dict[str, int]:
    names = [name.strip().removesuffix("（元）").removesuffix("(元)") for name in header]
    unknown = [header[position].strip() for position, name in enumerate(names) if name not in _KNOWN]
    if unknown:
        raise BillMalformed(number, f"unknown columns for an Alipay business detail bill: {', '.join(unknown[:5])}")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise BillMalformed(number, f"missing columns of an Alipay business detail bill: {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise BillMalformed(number, "a column appears twice")
    return {name: position for position, name in enumerate(names)}
