"""Writers of channel bills for the tests: byte-exact files in each channel's own format and encoding.

``bill_rows`` reads what a store recorded for one channel and day (through the
ledger's public queries, not the reconciliation's own reader), and the writers
turn rows into the file the channel would publish. Tests plant discrepancies
by editing the rows before writing them. No real bill is kept anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone

from domain import ExcessRefunded, Paid, Refunded
from ledger import DepositLedger
from ledger.tools.reconcile.alipay import COLUMNS as ALIPAY_COLUMNS
from ledger.tools.reconcile.wechat_pay import COLUMNS as WECHAT_COLUMNS
from ledger.tools.reconcile.wechat_pay import SUMMARY_COLUMNS

BEIJING = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Row:
    """One payment or refund line of a bill, before it is written in a channel's format."""

    kind: str  # "payment" or "refund"
    trade_no: str
    amount_minor: int
    at: datetime
    order_no: str = ""
    refund_no: str = ""
    fee_minor: int = 0

    def moved(self, **changes: object) -> Row:
        """The same row with some fields changed (a planted discrepancy)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def bill_rows(ledger: DepositLedger, channel: str, day: date, *, fee_per_mille: int = 6) -> list[Row]:
    """The rows a channel's bill of ``day`` (Beijing time) would hold for what the ledger recorded."""
    rows: list[Row] = []
    for state in ledger.shops():
        for event in ledger.history(state.shop_id):
            if event.effective_at.astimezone(BEIJING).date() != day:
                continue
            if isinstance(event, Paid) and event.channel == channel:
                fee = event.amount_minor * fee_per_mille // 1000
                rows.append(Row("payment", event.trade_no, event.amount_minor, event.effective_at, fee_minor=fee))
            elif isinstance(event, Refunded | ExcessRefunded):
                for number, share in enumerate(event.lines):
                    if share.channel == channel:
                        refund_no = f"R{event.originator_version}{number}{share.trade_no}"
                        fee = share.amount_minor * fee_per_mille // 1000
                        rows.append(
                            Row("refund", share.trade_no, share.amount_minor, event.effective_at, "", refund_no, fee)
                        )
    return sorted(rows, key=lambda row: row.at)


def _yuan(amount_minor: int) -> str:
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 100)
    return f"{sign}{whole}.{fraction:02d}"


def _beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def wechat_bill(rows: list[Row], *, bom: bool = False, summary: bool = True) -> bytes:
    """A WeChat Pay trade bill (type ALL): UTF-8, backticked fields, the summary rows at the end."""
    lines = [",".join(WECHAT_COLUMNS)]
    settled = refunded = fees = 0
    for row in rows:
        payment = row.kind == "payment"
        fields = {
            "交易时间": _beijing(row.at),
            "公众账号ID": "wx2421b1c4370ec43b",
            "商户号": "10000100",
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": row.trade_no,
            "商户订单号": row.order_no,
            "用户标识": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "交易类型": "JSAPI",
            "交易状态": "SUCCESS" if payment else "REFUND",
            "付款银行": "CMB_CREDIT",
            "货币种类": "CNY",
            "应结订单金额": _yuan(row.amount_minor if payment else 0),
            "代金券金额": "0.00",
            "微信退款单号": "0" if payment else row.refund_no,
            "商户退款单号": "0" if payment else row.refund_no,
            "退款金额": _yuan(0 if payment else row.amount_minor),
            "充值券退款金额": "0.00",
            "退款类型": "" if payment else "ORIGINAL",
            "退款状态": "" if payment else "SUCCESS",
            "商品名称": "店铺保证金",
            "商户数据包": "",
            "手续费": _yuan(row.fee_minor if payment else -row.fee_minor),
            "费率": "0.60%",
            "订单金额": _yuan(row.amount_minor if payment else 0),
            "申请退款金额": _yuan(0 if payment else row.amount_minor),
            "费率备注": "",
        }
        lines.append(",".join("`" + fields[name] for name in WECHAT_COLUMNS))
        settled += row.amount_minor if payment else 0
        refunded += 0 if payment else row.amount_minor
        fees += row.fee_minor if payment else -row.fee_minor
    if summary:
        lines.append(",".join(SUMMARY_COLUMNS))
        figures = (
            str(len(rows)),
            _yuan(settled),
            _yuan(refunded),
            "0.00",
            _yuan(fees),
            _yuan(settled),
            _yuan(refunded),
        )
        lines.append(",".join("`" + figure for figure in figures))
    text = "\r\n".join(lines) + "\r\n"
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


def alipay_bill(day: date, rows: list[Row], *, account: str = "20881234567890120156", footer: bool = True) -> bytes:
    """An Alipay business detail bill: GBK, # preamble and footer, ids followed by a tab, refunds negative."""
    following = day + timedelta(days=1)
    lines = [
        "#支付宝业务明细查询",
        f"#账号：[{account}]",
        f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{following:%Y年%m月%d日} 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ",".join(ALIPAY_COLUMNS),
    ]
    paid = refunded = 0
    payments = refunds = 0
    for row in rows:
        payment = row.kind == "payment"
        sign = 1 if payment else -1
        fields = {
            "支付宝交易号": row.trade_no + "\t",
            "商户订单号": row.order_no + "\t",
            "业务类型": "交易" if payment else "退款",
            "商品名称": "店铺保证金",
            "创建时间": _beijing(row.at - timedelta(seconds=20)),
            "完成时间": _beijing(row.at),
            "门店编号": "",
            "门店名称": "",
            "操作员": "",
            "终端号": "",
            "对方账户": "buyer@example.com",
            "订单金额（元）": _yuan(sign * row.amount_minor),
            "商家实收（元）": _yuan(sign * row.amount_minor),
            "支付宝红包（元）": "0.00",
            "集分宝（元）": "0.00",
            "支付宝优惠（元）": "0.00",
            "商家优惠（元）": "0.00",
            "券核销金额（元）": "0.00",
            "券名称": "",
            "商家红包消费金额（元）": "0.00",
            "卡消费金额（元）": "0.00",
            "退款批次号/请求号": "" if payment else row.refund_no + "\t",
            "服务费（元）": _yuan(-sign * row.fee_minor),
            "分润（元）": "0.00",
            "备注": "",
        }
        lines.append(",".join(fields[name] for name in ALIPAY_COLUMNS))
        if payment:
            paid, payments = paid + row.amount_minor, payments + 1
        else:
            refunded, refunds = refunded + row.amount_minor, refunds + 1
    if footer:
        lines += [
            "#-----------------------------------------业务明细列表结束------------------------------------",
            f"#交易合计：{payments}笔，商家实收共：{_yuan(paid)}元，商家优惠共：0.00元",
            f"#退款合计：{refunds}笔，商家实收退款共：{_yuan(-refunded)}元，商家优惠退款共：0.00元",
            f"#导出时间：[{following:%Y年%m月%d日} 09:12:13]",
        ]
    return ("\r\n".join(lines) + "\r\n").encode("gbk")


def channel_bill(channel: str, day: date, rows: list[Row]) -> bytes:
    """The bill of ``channel`` holding ``rows``."""
    return alipay_bill(day, rows) if channel == "alipay" else wechat_bill(rows)
