"""The two bill readers on their own: encodings, preambles, summary rows, backticks, tabs; malformed bills."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ledger.tools.reconcile.alipay import AlipayBill
from ledger.tools.reconcile.bill import BillMalformed, LineKind
from ledger.tools.reconcile.wechat_pay import WeChatPayBill
from tests.cli.conftest import Run
from tests.tools.reconcile.bills import BEIJING, Row, alipay_bill, wechat_bill

DAY = date(2025, 1, 6)
PAYMENT = Row(
    "payment", "4200001234202501060000001", 200000, datetime(2025, 1, 6, 0, 0, 1, tzinfo=BEIJING), "O-1", "", 1200
)
REFUND = Row(
    "refund", "4200001234202501050000009", 30000, datetime(2025, 1, 6, 23, 59, 59, tzinfo=BEIJING), "", "5030", 180
)


def test_wechat_pay_lines_lose_their_backticks_and_count_in_fen_and_utc() -> None:
    bill = WeChatPayBill(io.BytesIO(wechat_bill([PAYMENT, REFUND], bom=True)))

    payment, refund = list(bill)

    assert bill.day == DAY
    assert (payment.kind, payment.trade_no, payment.order_no, payment.amount_minor, payment.fee_minor) == (
        LineKind.PAYMENT,
        PAYMENT.trade_no,
        "O-1",
        200000,
        1200,
    )
    assert payment.at == datetime(2025, 1, 5, 16, 0, 1, tzinfo=UTC)
    assert (refund.kind, refund.amount_minor, refund.fee_minor, refund.refund_no) == (
        LineKind.REFUND,
        30000,
        -180,
        "5030",
    )
    assert bill.totals is not None and bill.totals.lines == 2 and bill.totals.fees_minor == 1020


def test_alipay_lines_lose_their_tabs_and_refunds_their_sign() -> None:
    raw = alipay_bill(DAY, [PAYMENT, REFUND])
    assert "\t,".encode("gbk") in raw and raw.startswith("#支付宝业务明细查询".encode("gbk"))
    bill = AlipayBill(io.BytesIO(raw))

    payment, refund = list(bill)

    assert bill.day == DAY
    assert payment.trade_no == PAYMENT.trade_no and payment.order_no == "O-1"
    assert (payment.amount_minor, payment.fee_minor) == (200000, 1200)
    assert (refund.kind, refund.amount_minor, refund.fee_minor, refund.refund_no) == (
        LineKind.REFUND,
        30000,
        -180,
        "5030",
    )


def test_an_alipay_bill_for_another_day_than_asked_is_refused() -> None:
    with pytest.raises(BillMalformed, match=r"line 3: the bill is for 2025-01-06, not 2025-01-07"):
        list(AlipayBill(io.BytesIO(alipay_bill(DAY, [PAYMENT])), date(2025, 1, 7)))


def replace_line(raw: bytes, number: int, text: str, encoding: str) -> bytes:
    lines = raw.split(b"\r\n")
    lines[number - 1] = text.encode(encoding)
    return b"\r\n".join(lines)


WECHAT = wechat_bill([PAYMENT, REFUND])
ALIPAY = alipay_bill(DAY, [PAYMENT, REFUND])
MALFORMED = [
    pytest.param("wechat_pay", WECHAT.decode().encode("gbk"), 1, "not UTF-8", id="wechat-in-gbk"),
    pytest.param("alipay", ALIPAY.decode("gbk").encode("utf-8"), 1, "not GBK", id="alipay-in-utf8"),
    pytest.param(
        "wechat_pay",
        replace_line(WECHAT, 1, WECHAT.split(b"\r\n")[0].decode().replace("手续费", "服务费"), "utf-8"),
        1,
        "unknown columns for a WeChat Pay trade bill: 服务费",
        id="wechat-unknown-column",
    ),
    pytest.param(
        "alipay",
        replace_line(ALIPAY, 5, ALIPAY.split(b"\r\n")[4].decode("gbk").replace("商家实收", "实收"), "gbk"),
        5,
        "unknown columns for an Alipay business detail bill: 实收（元）",
        id="alipay-unknown-column",
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b"`2000.00", b"`2,000.00", 1),
        2,
        "fields where the header has",
        id="wechat-comma-in-amount",
    ),
    pytest.param(
        "wechat_pay", WECHAT.replace(b"`2000.00", b"`2000.001", 1), 2, "应结订单金额 '2000.001'", id="wechat-fraction"
    ),
    pytest.param(
        "wechat_pay", WECHAT.replace(b"`2025-01-06 00:00:01", b"2025-01-06 00:00:01"), 2, "backtick", id="no-backtick"
    ),
    pytest.param(
        "wechat_pay", b"\r\n".join(WECHAT.split(b"\r\n")[:3]) + b"\r\n", 4, "without its summary", id="truncated"
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b"`2,`", b"`3,`"),
        5,
        "the summary counts 3 rows, the bill holds 2",
        id="wechat-summary-count",
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b"`2,`2000.00,", b"`2,`2000.01,"),
        5,
        "the summary's 应结订单总金额 2000.01 is not the sum of 应结订单金额 over the rows, 2000.00",
        id="wechat-summary-settled",
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b",`300.00,`0.00,`10.20,", b",`301.00,`0.00,`10.20,"),
        5,
        "the summary's 退款总金额 301.00 is not the sum of 退款金额 over the rows, 300.00",
        id="wechat-summary-refunds",
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b"`10.20,", b"`10.21,"),
        5,
        "the summary's 手续费总金额 10.21 is not the sum of 手续费 over the rows, 10.20",
        id="wechat-summary-fees",
    ),
    pytest.param(
        "wechat_pay",
        WECHAT.replace(b"`2000.00,`300.00\r\n", b"`2000.00,`300.10\r\n"),
        5,
        "the summary's 申请退款总金额 300.10 is not the sum of 申请退款金额 over the rows, 300.00",
        id="wechat-summary-asked-refunds",
    ),
    pytest.param(
        "alipay",
        ALIPAY.replace("商家实收共：2000.00元".encode("gbk"), "商家实收共：1999.00元".encode("gbk")),
        9,
        "the footer's 交易合计 says 1 rows and 1999.00 yuan, the table holds 1 rows and 2000.00",
        id="alipay-footer-payments",
    ),
    pytest.param(
        "alipay",
        ALIPAY.replace("#退款合计：1笔".encode("gbk"), "#退款合计：2笔".encode("gbk")),
        10,
        "the footer's 退款合计 says 2 rows and -300.00 yuan, the table holds 1 rows and -300.00",
        id="alipay-footer-refunds",
    ),
    pytest.param(
        "alipay", ALIPAY.replace("业务明细列表结束".encode("gbk"), b"x"), 8, "a # line inside the table", id="no-end"
    ),
    pytest.param("alipay", ALIPAY.replace("完成时间".encode("gbk"), b"xx"), 5, "unknown columns", id="alipay-header"),
    pytest.param(
        "alipay",
        ALIPAY.replace(b"2025-01-06 23:59:59", b"2025-01-07 00:00:09"),
        7,
        "not on the bill's day",
        id="off-day",
    ),
    pytest.param("wechat_pay", b"", 1, "empty", id="empty"),
]


@pytest.mark.parametrize(("channel", "raw", "line", "reason"), MALFORMED)
def test_a_bill_that_cannot_be_read_exits_2_naming_the_line(
    run: Run, tmp_path: Path, channel: str, raw: bytes, line: int, reason: str
) -> None:
    bill = tmp_path / "bill.csv"
    bill.write_bytes(raw)
    assert run(f"--db {tmp_path / 'deposits.db'} migrate").code == 0

    outcome = run(f"--db {tmp_path / 'deposits.db'} reconcile {bill} --channel {channel}")

    assert outcome.code == 2, outcome
    assert len(outcome.err_lines) == 1
    assert outcome.err.startswith(f"deposit-ledger: bill line {line}: "), outcome.err
    assert reason in outcome.err
    assert outcome.out == ""


def test_a_missing_bill_file_or_an_unknown_channel_is_malformed(run: Run, tmp_path: Path) -> None:
    assert run(f"--db {tmp_path / 'deposits.db'} migrate").code == 0
    missing = run(f"--db {tmp_path / 'deposits.db'} reconcile {tmp_path / 'none.csv'} --channel alipay")
    unknown = run(f"--db {tmp_path / 'deposits.db'} reconcile {tmp_path / 'none.csv'} --channel paypal")
    bad_date = run(f"--db {tmp_path / 'deposits.db'} reconcile {tmp_path / 'none.csv'} --channel alipay --date 6/1")

    assert missing.code == unknown.code == bad_date.code == 2
    assert "cannot read bill" in missing.err
    assert "unknown channel 'paypal'" in unknown.err
    assert "is not YYYY-MM-DD" in bad_date.err
