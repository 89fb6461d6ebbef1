"""The ledger's side of a reconciliation, read from the audit trail, and how its entries pair with bill lines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from domain import Channel, deposit_id
from ledger import DepositLedger
from ledger.tools.reconcile import reconcile_bill
from ledger.tools.reconcile.ledger_side import ledger_rows
from ledger.tools.reconcile.report import OUTCOMES
from tests.conftest import FakeClock
from tests.tools.reconcile.bills import Row, alipay_bill


def _rows(ledger: DepositLedger, channel: str) -> list[tuple[object, ...]]:
    return list(ledger_rows(ledger.store, ledger.mapper, channel))


def test_a_share_returning_to_several_payments_is_one_entry_per_payment(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    ledger.open("tea", currency="CNY", required="50")
    ledger.pay("tea", "50", channel="alipay", ref="A1")
    ledger.pay("tea", "5", channel="alipay", ref="A2")
    ledger.pay("tea", "3", channel="wechat_pay", ref="W1")
    ledger.pay("tea", "2", channel="alipay", ref="A3")
    clock.advance(hours=1)
    ledger.refund_excess("tea")  # 10.00 back, newest first: A3 2.00, W1 3.00, A2 5.00
    tea, paid_at, refunded_at = deposit_id("tea").hex, "2026-03-05T09:00:00Z", "2026-03-05T10:00:00Z"
    shares = [line for line in ledger.audit("tea") if line.type == "ExcessRefunded"]
    assert [(share.channel, share.ref) for share in shares] == [("alipay", "A3,A2"), ("wechat_pay", "W1")]

    assert _rows(ledger, "alipay") == [
        ("payment", "A1", tea, "tea", "CNY", 5000, paid_at),
        ("payment", "A2", tea, "tea", "CNY", 500, paid_at),
        ("payment", "A3", tea, "tea", "CNY", 200, paid_at),
        ("refund", "A3", tea, "tea", "CNY", 200, refunded_at),
        ("refund", "A2", tea, "tea", "CNY", 500, refunded_at),
    ]
    assert _rows(ledger, "wechat_pay") == [
        ("payment", "W1", tea, "tea", "CNY", 300, paid_at),
        ("refund", "W1", tea, "tea", "CNY", 300, refunded_at),
    ]


def test_events_the_audit_trail_has_not_applied_are_read_from_the_log(ledger: DepositLedger, clock: FakeClock) -> None:
    ledger.open("tea", currency="CNY", required="50")
    ledger.pay("tea", "20", channel="alipay", ref="A1")
    hook = ledger.recorder.after_insert
    ledger.recorder.after_insert = None  # the views fall behind from here
    try:
        clock.advance(minutes=5)
        ledger.pay("tea", "30", channel="alipay", ref="A2")  # a deposit the trail knows
        ledger.open("gym", currency="CNY", required="10")  # one it does not
        ledger.pay("gym", "10", channel="alipay", ref="A3")
        ledger.pay("gym", "1", channel="wechat_pay", ref="W1")
    finally:
        ledger.recorder.after_insert = hook
    assert {status.name: status.lag for status in ledger.projection_status()}["audit_trail"] == 7

    assert _rows(ledger, "alipay") == [
        ("payment", "A1", deposit_id("tea").hex, "tea", "CNY", 2000, "2026-03-05T09:00:00Z"),
        ("payment", "A2", deposit_id("tea").hex, "tea", "CNY", 3000, "2026-03-05T09:05:00Z"),
        ("payment", "A3", deposit_id("gym").hex, "gym", "CNY", 1000, "2026-03-05T09:05:00Z"),
    ]
    ledger.views.catch_up()
    assert _rows(ledger, "alipay")[1:] == [
        ("payment", "A2", deposit_id("tea").hex, "tea", "CNY", 3000, "2026-03-05T09:05:00Z"),
        ("payment", "A3", deposit_id("gym").hex, "gym", "CNY", 1000, "2026-03-05T09:05:00Z"),
    ]


def test_two_refunds_of_one_payment_pair_with_the_bills_lines_in_order_of_amount(
    ledger: DepositLedger, clock: FakeClock, tmp_path: Path
) -> None:
    ledger.open("tea", site="CN", categories=["jewelry"])  # 5,000.00 required
    ledger.pay("tea", "6500", channel="alipay", ref="A1")
    clock.advance(hours=1)
    ledger.refund_excess("tea")  # 1,500.00 back to A1
    ledger.change_categories("tea", add=["food"], remove=["jewelry"])  # 4,000.00 required
    clock.advance(hours=1)
    ledger.refund_excess("tea")  # 1,000.00 more back to A1
    day = date(2026, 3, 5)
    paid = Row("payment", "A1", 650000, datetime(2026, 3, 5, 9, 0, tzinfo=UTC))
    second = Row("refund", "A1", 100000, datetime(2026, 3, 5, 11, 0, tzinfo=UTC), refund_no="R2")
    first = Row("refund", "A1", 150000, datetime(2026, 3, 5, 10, 0, tzinfo=UTC), refund_no="R1")

    def outcomes(rows: list[Row]) -> dict[str, list[tuple[object, ...]]]:
        bill = tmp_path / "bill.csv"
        bill.write_bytes(alipay_bill(day, rows))
        with reconcile_bill(ledger.store, ledger.mapper, bill, Channel.ALIPAY) as report:
            return {
                outcome: [(e.kind, e.ledger_amount_minor, e.channel_amount_minor) for e in report.entries(outcome)]
                for outcome in OUTCOMES
            }

    assert outcomes([paid, second, first]) == {
        "matched": [("payment", 650000, 650000), ("refund", 150000, 150000), ("refund", 100000, 100000)],
        "missing_in_ledger": [],
        "missing_in_channel": [],
        "amount_mismatch": [],
    }
    # One refund of the wrong size is one mismatch; the other still matches.
    assert outcomes([paid, second, first.moved(amount_minor=140000)])["amount_mismatch"] == [("refund", 150000, 140000)]
    assert outcomes([paid, second])["missing_in_channel"] == [("refund", 150000, None)]
