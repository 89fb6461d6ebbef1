"""Saving many deposits in one transaction: every deposit that crossed a snapshot boundary gets one."""

from __future__ import annotations

from datetime import UTC, datetime

from domain import Channel, ShopDeposit, Stamp, deposit_id
from ledger import DepositLedger
from ledger.app.service import SNAPSHOT_INTERVAL
from ledger.store.snapshots import DepositSnapshot

STAMP = Stamp(effective_at=datetime(2026, 1, 5, tzinfo=UTC), recorded_at=datetime(2026, 1, 5, tzinfo=UTC), actor="t")


def _deposit(shop_id: str, payments: int) -> ShopDeposit:
    deposit = ShopDeposit.open(shop_id=shop_id, site="CN", currency="CNY", required_minor=100, stamp=STAMP)
    for number in range(payments):
        deposit.pay(amount_minor=1, channel=Channel.ALIPAY, trade_no=f"{shop_id}-{number}", payer=None, stamp=STAMP)
    return deposit


def test_one_save_of_many_deposits_snapshots_those_that_crossed_an_interval(ledger: DepositLedger) -> None:
    # A payment records Paid and Frozen: 1 + 2 * 100 = 201 events crosses the first interval.
    crossing = [_deposit(f"big-{n}", payments=SNAPSHOT_INTERVAL // 2) for n in range(3)]
    short = [_deposit(f"small-{n}", payments=2) for n in range(3)]

    ledger.save(*crossing, *short)

    assert ledger.snapshots is not None
    for deposit in crossing:
        stored = list(ledger.snapshots.get(deposit_id(deposit.shop_id)))
        assert [type(s) for s in stored] == [DepositSnapshot]
        assert stored[0].originator_version == deposit.version
    for deposit in short:
        assert list(ledger.snapshots.get(deposit_id(deposit.shop_id))) == []
    assert ledger.show("big-0") == crossing[0].state()
