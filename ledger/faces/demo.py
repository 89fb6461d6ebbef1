"""``deposit-ledger demo``: a realistic stretch of deposit life, recorded in the store.

Five shops on four sites: payments through both channels, a top-up, every
deduction reason, a penalty priced by the policy's catalogue, a penalty larger
than the deposit (owed, then settled by the next payment), a hold taken by its
case's deduction, an appeal upheld and one rejected, a category change that
raises the requirement and the top-up that meets it, a shop restricted for an
overdue top-up, a voluntary closure refunded after its settlement window and a
forced closure. Every run records a fresh set of shops (``-2``, ``-3``... on
later runs), so the demo never collides with an earlier one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Console
from rich.table import Table

from domain import ShopNotFound
from ledger.app.service import CommandResult, DepositLedger
from ledger.faces.reports import history_table, side_by_side_table, state_json


@dataclass(frozen=True)
class Step:
    """One command of the story, ``days_ago`` before the demo runs."""

    days_ago: float
    shop: str
    summary: str
    run: Callable[[DepositLedger, str, datetime], CommandResult]


def _story() -> list[Step]:
    # Deliberately written out in full: the demo doubles as a readable example of the API.
    # Requirements and penalties without an amount come from the shipped policy.
    return [
        Step(
            100,
            "tea-house",
            "opens: Douyin CN general, ¥2,000",
            lambda ledger, shop, at: ledger.open(shop, site="CN", categories=["general"], at=at),
        ),
        Step(
            99,
            "tea-house",
            "pays ¥2,000 by Alipay",
            lambda ledger, shop, at: ledger.pay(
                shop, "2000", channel="alipay", ref=f"{shop}-A1", payer="tea@alipay", at=at
            ),
        ),
        Step(
            96,
            "tea-house",
            "ships late: 10% of ¥500 deducted",
            lambda ledger, shop, at: ledger.deduct(
                shop, reason="late_shipment", case=f"{shop}-LS-1", order_value="500", note="3 orders > 48h", at=at
            ),
        ),
        Step(95, "tea-house", "closes the shop", lambda ledger, shop, at: ledger.close_shop(shop, at=at)),
        Step(
            58,
            "kimono-house",
            "opens: TikTok JP, ¥70,000",
            lambda ledger, shop, at: ledger.open(shop, site="JP", categories=["general"], at=at),
        ),
        Step(
            57,
            "kimono-house",
            "pays ¥70,000 by WeChat Pay",
            lambda ledger, shop, at: ledger.pay(shop, "70000", channel="wechat_pay", ref=f"{shop}-W1", at=at),
        ),
        Step(
            46,
            "kimono-house",
            "return dispute: ¥5,000 held",
            lambda ledger, shop, at: ledger.hold(shop, "5000", case=f"{shop}-AS-2", note="buyer complaint", at=at),
        ),
        Step(
            45,
            "kimono-house",
            "refused a return: hold deducted",
            lambda ledger, shop, at: ledger.deduct(
                shop, "5000", reason="after_sales_dispute", case=f"{shop}-AS-2", at=at
            ),
        ),
        Step(
            30,
            "sneaker-lab",
            "opens: TikTok US, $500 required",
            lambda ledger, shop, at: ledger.open(shop, currency="USD", required="500", site="US", at=at),
        ),
        Step(
            29,
            "sneaker-lab",
            "pays $300 of the $500 by Alipay",
            lambda ledger, shop, at: ledger.pay(shop, "300", channel="alipay", ref=f"{shop}-A1", at=at),
        ),
        Step(
            26,
            "flash-deals",
            "opens: Douyin CN food, ¥4,000",
            lambda ledger, shop, at: ledger.open(shop, site="CN", categories=["food"], at=at),
        ),
        Step(
            26,
            "flash-deals",
            "pays ¥4,000 by WeChat Pay",
            lambda ledger, shop, at: ledger.pay(shop, "4000", channel="wechat_pay", ref=f"{shop}-W1", at=at),
        ),
        Step(
            25,
            "sneaker-lab",
            "tops up $200 by WeChat Pay",
            lambda ledger, shop, at: ledger.pay(shop, "200", channel="wechat_pay", ref=f"{shop}-W1", at=at),
        ),
        Step(
            20,
            "sneaker-lab",
            "fake listing: $80 deducted",
            lambda ledger, shop, at: ledger.deduct(shop, "80", reason="fake_listing", case=f"{shop}-FL-7", at=at),
        ),
        Step(
            12,
            "flash-deals",
            "order brushing: ¥1,500 deducted",
            lambda ledger, shop, at: ledger.deduct(shop, "1500", reason="order_brushing", case=f"{shop}-OB-1", at=at),
        ),
        Step(
            11,
            "flash-deals",
            "appeals the brushing penalty",
            lambda ledger, shop, at: ledger.appeal(shop, case=f"{shop}-OB-1", note="orders were genuine", at=at),
        ),
        Step(
            10,
            "sneaker-lab",
            "$600 for brushing: $180 owed",
            lambda ledger, shop, at: ledger.deduct(shop, "600", reason="order_brushing", case=f"{shop}-OB-3", at=at),
        ),
        Step(
            9,
            "flash-deals",
            "appeal rejected: penalty stands",
            lambda ledger, shop, at: ledger.resolve_appeal(shop, case=f"{shop}-OB-1", upheld=False, at=at),
        ),
        Step(
            9,
            "uk-gadgets",
            "opens: UK electronics, £3,000",
            lambda ledger, shop, at: ledger.open(shop, site="UK", categories=["electronics"], at=at),
        ),
        Step(
            8,
            "kimono-house",
            "customs papers: ¥2,000 deducted",
            lambda ledger, shop, at: ledger.deduct(
                shop, "2000", reason="other", case=f"{shop}-OT-1", note="missing HS codes", at=at
            ),
        ),
        Step(
            8,
            "uk-gadgets",
            "pays £3,000 by Alipay",
            lambda ledger, shop, at: ledger.pay(shop, "3000", channel="alipay", ref=f"{shop}-A1", at=at),
        ),
        Step(
            7,
            "kimono-house",
            "appeals the customs penalty",
            lambda ledger, shop, at: ledger.appeal(shop, case=f"{shop}-OT-1", note="codes were filed", at=at),
        ),
        Step(
            6,
            "uk-gadgets",
            "adds jewelry: £4,000 required",
            lambda ledger, shop, at: ledger.change_categories(shop, add=["jewelry"], at=at),
        ),
        Step(
            5,
            "sneaker-lab",
            "pays $700: $180 debt + $520 frozen",
            lambda ledger, shop, at: ledger.pay(shop, "700", channel="alipay", ref=f"{shop}-A2", at=at),
        ),
        Step(
            4,
            "uk-gadgets",
            "tops up £1,000 by WeChat Pay",
            lambda ledger, shop, at: ledger.pay(shop, "1000", channel="wechat_pay", ref=f"{shop}-W1", at=at),
        ),
        Step(
            3,
            "kimono-house",
            "appeal upheld: ¥2,000 restored",
            lambda ledger, shop, at: ledger.resolve_appeal(shop, case=f"{shop}-OT-1", upheld=True, at=at),
        ),
        Step(
            2,
            "flash-deals",
            "force-closed: ¥2,500 forfeited",
            lambda ledger, shop, at: ledger.force_close(shop, reason="repeated order brushing", at=at),
        ),
        Step(
            1,
            "tea-house",
            "window over: ¥1,950 back to Alipay",
            lambda ledger, shop, at: ledger.refund(shop, at=at),
        ),
    ]


def _run_suffix(ledger: DepositLedger) -> str:
    # The first run uses the plain names; later runs add -2, -3... until the names are free.
    run = 1
    while True:
        suffix = "" if run == 1 else f"-{run}"
        try:
            ledger.show(f"tea-house{suffix}")
        except ShopNotFound:
            return suffix
        run += 1


def run_demo(ledger: DepositLedger, console: Console) -> None:
    """Record the demo story in ``ledger`` and print what it did, the balances and one history."""
    suffix = _run_suffix(ledger)
    # Whole minutes keep the printed times short; the story needs no finer grain.
    now = ledger.clock().replace(second=0, microsecond=0)
    console.print(f"[bold]Recording the demo in {ledger.store.describe()}[/]")
    steps = Table(box=None, pad_edge=False)
    steps.add_column("effective", no_wrap=True)
    steps.add_column("shop", no_wrap=True)
    steps.add_column("what happened")
    steps.add_column("status after", no_wrap=True)
    shops: list[str] = []
    for step in _story():
        shop = step.shop + suffix
        at = now - timedelta(days=step.days_ago)
        step.run(ledger, shop, at)
        if shop not in shops:
            shops.append(shop)
        # The status as it stood then: a top-up overdue today was not overdue on the day.
        steps.add_row(f"{at:%Y-%m-%d}", shop, step.summary, ledger.replay(shop, as_of=at).status.value)
    console.print(steps)
    console.print(side_by_side_table([ledger.show(shop) for shop in shops], title="Balances after the demo"))
    for state in ledger.shops(overdue=True):
        if state.shop_id in shops and state.top_up_due is not None:
            console.print(
                f"[bold]{state.shop_id} is restricted[/]: its top-up of {state_json(state)['shortfall']} "
                f"{state.currency} was due on {state.top_up_due:%Y-%m-%d}"
            )
    for featured in ("sneaker-lab" + suffix, "kimono-house" + suffix):
        currency = ledger.show(featured).currency
        console.print(history_table(ledger.history(featured), currency, title=f"History of {featured}"))
