"""Webhooks to a real receiver on 127.0.0.1: signatures, retries, parking, per-shop order, ids."""

from __future__ import annotations

from collections import defaultdict

import pytest
from standardwebhooks.webhooks import Webhook

from domain import MalformedInput
from ledger.app.service import DepositLedger
from ledger.faces.feeds.outbox import PARKED
from ledger.faces.feeds.relay import UnknownDelivery
from ledger.faces.feeds.sender import MAX_ATTEMPTS, retry_delay, retry_schedule
from ledger.faces.feeds.subscriptions import parse_secret, parse_types, parse_url
from ledger.faces.reports import event_json
from tests.conftest import FakeClock
from tests.faces.feeds.helpers import relay_for, subscribe, trade
from tests.faces.feeds.receiver import SECRET, Received, running_receiver


def in_shop_order(received: list[Received]) -> dict[str, list[int]]:
    by_shop: dict[str, list[int]] = defaultdict(list)
    for seen in received:
        by_shop[seen.shop_id].append(seen.position)
    return by_shop


def test_every_event_arrives_signed_with_its_history_entry(ledger: DepositLedger) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url)
        trade(ledger, ["tea-house", "noodle-bar"], rounds=2)
        relay = relay_for(ledger)
        relay.run_once()
        relay.close()

        assert all(seen.verified for seen in receiver.received)
        assert len(receiver.successes()) == len(receiver.received) == 2 * (1 + 2 * 2)
        first = next(seen for seen in receiver.received if seen.position == 1)
        opened = ledger.history("tea-house")[0]
        assert first.body["type"] == "Opened"
        assert first.body["data"] == {"shop_id": "tea-house", "position": 1, **event_json(opened, "CNY")}
        assert first.webhook_id == f"evt_{opened.originator_id.hex}_1"


def test_a_signature_verifies_by_hand_as_the_docs_show(ledger: DepositLedger) -> None:
    import base64
    import hashlib
    import hmac

    from ledger.faces.feeds.signing import signed_headers

    body = b'{"type":"Paid"}'
    headers = signed_headers(SECRET, "evt_1", __import__("datetime").datetime.now(tz=__import__("datetime").UTC), body)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == expected
    Webhook(SECRET).verify(body, headers)


def test_a_receiver_failing_the_first_attempts_gets_everything_once_and_in_order(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    with running_receiver() as receiver:
        receiver.answer = lambda _id, _body, attempt: 503 if attempt <= 3 else 200
        subscribe(ledger, receiver.url)
        trade(ledger, ["a-shop", "b-shop", "c-shop"], rounds=3)
        relay = relay_for(ledger)
        # Each message needs four attempts, and a shop's next one starts only after: 7 x 4 passes.
        for _ in range(7 * 4):
            relay.run_once()
            clock.advance(hours=1)
        relay.close()

        successes = receiver.successes()
        ids = [seen.webhook_id for seen in successes]
        assert len(ids) == len(set(ids)) == 3 * (1 + 3 * 2)
        # Every failed attempt carried an id that later succeeded: the id is stable across retries.
        assert {seen.webhook_id for seen in receiver.received} == set(ids)
        assert all(seen.verified for seen in receiver.received)
        for shop, positions in in_shop_order(successes).items():
            assert positions == sorted(positions), shop


def test_a_parked_delivery_holds_its_shop_back_and_the_others_go_on(ledger: DepositLedger, clock: FakeClock) -> None:
    with running_receiver() as receiver:
        receiver.answer = lambda _id, body, _attempt: 500 if body["data"]["shop_id"] == "down-shop" else 200
        subscribe(ledger, receiver.url)
        trade(ledger, ["down-shop", "up-shop"], rounds=2)
        relay = relay_for(ledger)
        for _ in range(MAX_ATTEMPTS + 2):
            relay.run_once()
            clock.advance(hours=2)

        delivered_up = [seen for seen in receiver.successes() if seen.shop_id == "up-shop"]
        assert len(delivered_up) == 5
        down_attempts = [seen for seen in receiver.received if seen.shop_id == "down-shop"]
        # Only the shop's first message was tried, MAX_ATTEMPTS times; its later ones waited.
        assert len(down_attempts) == MAX_ATTEMPTS and len({seen.webhook_id for seen in down_attempts}) == 1
        failing = relay.book.deliveries(failed_only=True)
        assert [(delivery.shop_id, delivery.status) for delivery in failing] == [("down-shop", PARKED)]
        assert failing[0].last_error == "HTTP 500 Internal Server Error"

        receiver.answer = lambda _id, _body, _attempt: 200
        after = relay.retry(failing[0].id)
        assert after.status == "delivered"
        down = [seen for seen in receiver.successes() if seen.shop_id == "down-shop"]
        assert [seen.position for seen in down] == sorted(seen.position for seen in down) and len(down) == 5
        with pytest.raises(UnknownDelivery):
            relay.retry("dlv_nothing")
        relay.close()


def test_a_subscription_gets_only_its_types_from_the_moment_it_was_added(ledger: DepositLedger) -> None:
    with running_receiver() as receiver:
        trade(ledger, ["early-shop"], rounds=1)
        subscribe(ledger, receiver.url, "Paid")
        trade(ledger, ["late-shop"], rounds=2)
        relay = relay_for(ledger)
        relay.run_once()
        relay.close()
        assert [(seen.body["type"], seen.shop_id) for seen in receiver.received] == [("Paid", "late-shop")] * 2


def test_the_retry_schedule_doubles_with_jitter_up_to_an_hour() -> None:
    schedule = retry_schedule()
    assert schedule[0] == (2.5, 5.0)
    assert schedule[1] == (5.0, 10.0)
    assert schedule[-1] == (1800.0, 3600.0)
    assert len(schedule) == MAX_ATTEMPTS - 1
    assert retry_delay(MAX_ATTEMPTS, lambda: 0.5) is None
    assert sum(low for low, _ in schedule) > 3600  # a receiver down for an hour is still being retried


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_url, "ftp://example.com/hook"),
        (parse_url, "http:///nohost"),
        (parse_types, "Paid,Nonsense"),
        (parse_types, " , "),
        (parse_secret, "secret"),
        (parse_secret, "whsec_not base64!"),
        (parse_secret, "whsec_c2hvcnQ="),
    ],
)
def test_malformed_subscriptions_are_refused(parse: object, value: str) -> None:
    with pytest.raises(MalformedInput):
        parse(value)  # type: ignore[operator]


def test_types_keep_their_order_and_star_means_all() -> None:
    assert parse_types("Paid, Deducted,Paid,DepositShort") == ("Paid", "Deducted", "DepositShort")
    assert parse_types("Paid,*") == ("*",)
