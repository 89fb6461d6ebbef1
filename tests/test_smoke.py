"""A first walk through the lifecycle, through the Python API."""

from __future__ import annotations

from ledger import DepositLedger
from tests.conftest import FakeClock


def test_a_deposit_is_paid_deducted_closed_and_refunded(ledger: DepositLedger, clock: FakeClock) -> None:
    ledger.open("shop-1", currency="CNY", required="2000", site="CN")
    clock.advance(hours=1)
    paid = ledger.pay("shop-1", "2000", channel="alipay", ref="A1")
    assert paid.state.frozen_minor == 200000
    clock.advance(days=1)
    ledger.deduct("shop-1", "50", reason="late_shipment", case="C1")
    ledger.close_shop("shop-1")
    clock.advance(days=90)
    refunded = ledger.refund("shop-1")
    state = refunded.state
    assert (state.status, state.refunded_minor, state.deducted_minor) == ("closed", 195000, 5000)
    assert state.paid_minor == state.frozen_minor + state.deducted_minor + state.refunded_minor + state.forfeited_minor
