"""The bookkeeping totals the invariants check after every command, kept as the events happen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain import Channel, DeductionReason, ShopDeposit, Stamp, project_deposit
from ledger.store.snapshots import DepositSnapshot

START = datetime(2025, 1, 1, tzinfo=UTC)


def _stamp(hours: int) -> Stamp:
    at = START + timedelta(hours=hours)
    return Stamp(effective_at=at, recorded_at=at, actor="tester")


def _story() -> ShopDeposit:
    deposit = ShopDeposit.open(shop_id="tea", site="CN", currency="CNY", required_minor=10_000, stamp=_stamp(0))
    deposit.pay(amount_minor=10_000, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=_stamp(1))
    deposit.hold(case_id="H1", amount_minor=3_000, note="", stamp=_stamp(2))
    deposit.deduct(amount_minor=1_000, reason=DeductionReason.OTHER, case_id="H1", note="", stamp=_stamp(3))
    deposit.deduct(amount_minor=20_000, reason=DeductionReason.OTHER, case_id="C2", note="", stamp=_stamp(4))
    deposit.pay(amount_minor=5_000, channel=Channel.WECHAT_PAY, trade_no="W1", payer=None, stamp=_stamp(5))
    return deposit


def test_the_running_totals_are_the_sums_of_the_bookkeeping_after_every_command() -> None:
    deposit = _story()
    deposit.recount()
    assert (deposit.totals.owed_minor, deposit.totals.held_minor) == (6_000, 0)
    replayed = project_deposit(None, deposit.collect_events())
    assert replayed is not None
    assert replayed.totals == deposit.totals
    assert DepositSnapshot.take(deposit).restore().totals == deposit.totals


def test_a_total_that_drifts_from_the_bookkeeping_is_caught() -> None:
    deposit = _story()
    deposit.cases["C2"].owed_minor += 1
    with pytest.raises(AssertionError, match="running totals and bookkeeping disagree"):
        deposit.recount()
    with pytest.raises(AssertionError, match="running totals and bookkeeping disagree"):
        DepositSnapshot.take(deposit)
    deposit.totals.owed_minor += 1
    with pytest.raises(AssertionError, match="owed figure and open cases disagree"):
        deposit.check_invariants()
