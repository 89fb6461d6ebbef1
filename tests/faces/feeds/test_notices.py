"""Derived notices: what brings each one, and that deriving again never invents or drops one."""

from __future__ import annotations

from datetime import datetime

from ledger.app.service import DepositLedger
from ledger.faces.feeds.messages import iso, notice_message_id
from tests.conftest import FakeClock
from tests.faces.feeds.helpers import relay_for, subscribe
from tests.faces.feeds.receiver import Receiver, running_receiver

NOTICES = "DepositShort,ShopRestricted,RefundDue,AppealOpened,AppealResolved"


def funded_then_short(ledger: DepositLedger, shop: str = "tea-house") -> datetime:
    """A funded shop that a deduction leaves short; the top-up deadline it starts."""
    ledger.open(shop, currency="CNY", required="1000", site="CN")
    ledger.pay(shop, "1000", channel="alipay", ref=f"{shop}-1")
    ledger.deduct(shop, "100", reason="late_shipment", case=f"{shop}-case")
    due = ledger.show(shop).top_up_due
    assert due is not None
    return due


def notices(receiver: Receiver) -> list[tuple[str, str]]:
    return [(seen.body["type"], seen.webhook_id) for seen in receiver.successes()]


def test_a_shortfall_and_the_restriction_its_deadline_brings_are_told_once(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, NOTICES)
        due = funded_then_short(ledger)
        relay = relay_for(ledger)
        relay.run_once()
        [(kind, _)] = notices(receiver)
        short = receiver.successes()[0].body
        assert kind == "DepositShort"
        assert short["data"]["shortfall"] == "100.00" and short["data"]["top_up_due"] == iso(due)

        clock.now = due
        relay.run_once()  # due, not yet past: still nothing
        clock.advance(seconds=1)
        relay.run_once()
        relay.run_once()
        relay.close()
        restricted_id = notice_message_id("ShopRestricted", "tea-house", iso(due))
        assert notices(receiver)[1:] == [("ShopRestricted", restricted_id)]
        assert receiver.successes()[1].body["timestamp"] == iso(due)


def test_a_deadline_settled_by_a_later_event_gives_the_same_notice_placed_before_it(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, "Paid," + NOTICES)
        due = funded_then_short(ledger)
        clock.now = due
        clock.advance(hours=1)
        ledger.pay("tea-house", "100", channel="alipay", ref="late-top-up")
        relay = relay_for(ledger)
        relay.run_once()
        relay.close()
        kinds = [kind for kind, _ in notices(receiver)]
        assert kinds == ["Paid", "DepositShort", "ShopRestricted", "Paid"]
        assert notices(receiver)[2][1] == notice_message_id("ShopRestricted", "tea-house", iso(due))


def test_a_shop_that_topped_up_in_time_is_not_restricted(ledger: DepositLedger, clock: FakeClock) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, NOTICES)
        due = funded_then_short(ledger)
        clock.advance(hours=1)
        ledger.pay("tea-house", "100", channel="alipay", ref="top-up")
        clock.now = due
        clock.advance(days=1)
        relay = relay_for(ledger)
        relay.run_once()
        relay.close()
        assert [kind for kind, _ in notices(receiver)] == ["DepositShort"]


def test_two_subscriptions_and_two_relays_derive_the_same_ids(ledger: DepositLedger, clock: FakeClock) -> None:
    with running_receiver() as first, running_receiver() as second:
        subscribe(ledger, first.url, NOTICES)
        subscribe(ledger, second.url, NOTICES)
        due = funded_then_short(ledger)
        relay_for(ledger).run_once()
        clock.now = due
        clock.advance(minutes=5)
        relay = relay_for(ledger)  # a fresh relay: nothing remembered but the store
        relay.run_once()
        relay.close()
        assert notices(first) == notices(second)
        assert [kind for kind, _ in notices(first)] == ["DepositShort", "ShopRestricted"]


def test_appeals_are_told_when_opened_and_resolved(ledger: DepositLedger, clock: FakeClock) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, "AppealOpened,AppealResolved")
        ledger.open("tea-house", currency="CNY", required="1000", site="CN")
        ledger.pay("tea-house", "1000", channel="alipay", ref="t-1")
        ledger.deduct("tea-house", "100", reason="late_shipment", case="case-1")
        clock.advance(hours=1)
        ledger.appeal("tea-house", case="case-1")
        clock.advance(hours=1)
        ledger.resolve_appeal("tea-house", case="case-1", upheld=True)
        relay = relay_for(ledger)
        relay.run_once()
        relay.close()
        bodies = [seen.body for seen in receiver.successes()]
        assert [body["type"] for body in bodies] == ["AppealOpened", "AppealResolved"]
        assert bodies[0]["data"]["case_id"] == "case-1"
        assert bodies[1]["data"]["outcome"] == "upheld"


def test_a_refund_falls_due_when_settlement_is_over(ledger: DepositLedger, clock: FakeClock) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, "RefundDue")
        ledger.open("tea-house", currency="CNY", required="1000", site="CN")
        ledger.pay("tea-house", "1000", channel="alipay", ref="t-1")
        ledger.close_shop("tea-house")
        due = ledger.show("tea-house").settlement_due
        assert due is not None
        relay = relay_for(ledger)
        relay.run_once()
        assert notices(receiver) == []
        clock.now = due
        clock.advance(seconds=1)
        relay.run_once()
        relay.close()
        [refund_due] = receiver.successes()
        assert refund_due.body["type"] == "RefundDue"
        assert refund_due.body["data"]["refundable"] == "1000.00"
        assert refund_due.body["data"]["settlement_due"] == iso(due)


def test_a_refund_held_back_by_an_appeal_window_falls_due_when_the_window_ends(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url, "RefundDue")
        ledger.open("tea-house", currency="CNY", required="1000", site="CN")
        ledger.pay("tea-house", "1000", channel="alipay", ref="t-1")
        ledger.close_shop("tea-house")
        settlement_due = ledger.show("tea-house").settlement_due
        assert settlement_due is not None
        # An after-sales dispute decided just before settlement: appealable well past it.
        clock.now = settlement_due
        clock.advance(seconds=-1)
        ledger.deduct("tea-house", "100", reason="after_sales_dispute", case="AS-1")
        window_ends_at = clock.now + ledger.policy.terms.appeal_window
        assert window_ends_at > settlement_due
        relay = relay_for(ledger)
        clock.now = settlement_due
        clock.advance(seconds=1)
        relay.run_once()
        assert notices(receiver) == []  # settlement is due, but the deduction can still be appealed

        clock.now = window_ends_at
        clock.advance(seconds=1)
        relay.run_once()
        relay.run_once()
        relay.close()
        [refund_due] = receiver.successes()
        assert refund_due.body["type"] == "RefundDue"
        assert refund_due.body["data"]["refundable"] == "900.00"
        assert refund_due.body["data"]["settlement_due"] == iso(settlement_due)
        # The notice is the refund's first possible moment: the refund itself then passes.
        ledger.refund("tea-house", at=clock.now)
