"""A small policy and helpers shared by the domain tests of the policy rules.

Amounts are minor units of CNY (fen) unless a test says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain import (
    Channel,
    DeductionReason,
    DepositPolicy,
    FixedPenalty,
    SharePenalty,
    ShopDeposit,
    SitePolicy,
    Stamp,
    ViolationRule,
)

T0 = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def policy(version: str = "2026.1", **required: int) -> DepositPolicy:
    """CN in CNY: general ¥2,000, food ¥4,000, jewelry ¥5,000 (or ``required``); a small catalogue."""
    return DepositPolicy(
        version=version,
        settlement_window=timedelta(days=90),
        top_up_deadline=timedelta(days=30),
        appeal_window=timedelta(days=30),
        sites={
            "CN": SitePolicy(
                currency="CNY",
                required=required or {"general": 200_000, "food": 400_000, "jewelry": 500_000},
                violations={
                    DeductionReason.FAKE_LISTING: ViolationRule(
                        penalty=FixedPenalty(amount_minor=50_000), daily_cap_minor=120_000
                    ),
                    DeductionReason.LATE_SHIPMENT: ViolationRule(
                        penalty=SharePenalty(rate=Decimal("0.1"), floor_minor=500, cap_minor=10_000)
                    ),
                },
            ),
            "US": SitePolicy(currency="USD", required={"general": 150_000}),
        },
    )


def stamp(hours: float = 0) -> Stamp:
    """A stamp ``hours`` after ``T0``."""
    moment = T0 + timedelta(hours=hours)
    return Stamp(effective_at=moment, recorded_at=moment, actor="ops")


def funded(required_minor: int = 200_000, categories: tuple[str, ...] = ("general",)) -> ShopDeposit:
    """A CN deposit opened on ``categories`` and paid in full by Alipay ``A1``; its events handed over."""
    deposit = ShopDeposit.open(
        shop_id="shop-1",
        site="CN",
        currency="CNY",
        required_minor=required_minor,
        stamp=stamp(),
        categories=categories,
        policy_version="2026.1",
    )
    deposit.pay(amount_minor=required_minor, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp())
    deposit.collect_events()
    return deposit


def figures(deposit: ShopDeposit) -> dict[str, int]:
    """The money figures of a deposit, by name, in minor units."""
    state = deposit.state()
    names = ("paid", "frozen", "held", "deducted", "reversed", "refunded", "forfeited", "owed", "shortfall")
    return {name: getattr(state, f"{name}_minor") for name in names}


def conserved(deposit: ShopDeposit) -> bool:
    """``paid = frozen + held + deducted + refunded + forfeited``, between commands."""
    f = figures(deposit)
    return f["paid"] == f["frozen"] + f["held"] + f["deducted"] + f["refunded"] + f["forfeited"]
