"""Shared steps of the feed tests: subscribing, a deterministic relay, a little history."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.app.service import DepositLedger
from ledger.faces.feeds.outbox import FeedBook
from ledger.faces.feeds.relay import Relay
from ledger.faces.feeds.subscriptions import Subscription, parse_types, subscription_id
from tests.faces.feeds.receiver import SECRET


def subscribe(ledger: DepositLedger, url: str, types: str = "*", secret: str = SECRET) -> Subscription:
    """Subscribe ``url`` from the store's head on, as ``webhooks add`` does."""
    book = FeedBook(ledger.store)
    try:
        book.ensure_tables()
        wanted = Subscription(subscription_id(url), url, parse_types(types), secret, datetime.now(tz=UTC))
        stored, _ = book.add_subscription(wanted, ledger.views.head())
        return stored
    finally:
        book.close()


def relay_for(ledger: DepositLedger) -> Relay:
    """A relay on the ledger's clock with a fixed jitter (the middle of each backoff range)."""
    return Relay(ledger, draw=lambda: 0.5)


def trade(ledger: DepositLedger, shops: list[str], rounds: int) -> None:
    """Open each shop, then pay into each ``rounds`` times, shops interleaved in the log."""
    for shop in shops:
        ledger.open(shop, currency="CNY", required="1000", site="CN")
    for number in range(rounds):
        for shop in shops:
            ledger.pay(shop, "10", channel="alipay", ref=f"{shop}-{number}")
