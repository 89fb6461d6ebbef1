"""Killing the relay process at any moment: everything arrives at least once, nothing out of order per shop."""

from __future__ import annotations

import signal
from collections import defaultdict

from ledger.app.service import DepositLedger
from tests.faces.feeds.helpers import subscribe, trade
from tests.faces.feeds.receiver import running_receiver
from tests.ledger.processes import Children, eventually

SHOPS = ["a-shop", "b-shop", "c-shop", "d-shop"]
ROUNDS = 10
EVENTS = len(SHOPS) * (1 + 2 * ROUNDS)


def test_a_relay_killed_anywhere_and_restarted_delivers_everything_in_shop_order(
    ledger: DepositLedger, store_url: str, children: Children
) -> None:
    with running_receiver() as receiver:
        subscribe(ledger, receiver.url)
        trade(ledger, SHOPS, ROUNDS)
        # Killed (SIGKILL: no chance to finish anything) after a few, some, many deliveries.
        for number, seen in enumerate((3, 25, 60)):
            relay = children.ledger(
                "--db", store_url, "relay", "--follow", "--poll-interval", "0.05", name=f"r{number}"
            )
            eventually(lambda seen=seen: receiver.count() >= seen, f"{seen} deliveries")  # type: ignore[misc]
            relay.send_signal(signal.SIGKILL)
            relay.wait()
        last = children.ledger("--db", store_url, "relay", name="last")
        assert last.wait() == 0, last.stderr()

        received = receiver.received
        ids = {seen.webhook_id for seen in received}
        assert len(ids) == EVENTS
        assert all(seen.verified for seen in received)
        by_shop: dict[str, list[int]] = defaultdict(list)
        for seen in received:
            by_shop[seen.shop_id].append(seen.position)
        for shop, positions in by_shop.items():
            # A repeat is only ever the message last sent before a kill: never an older one after a newer.
            assert positions == sorted(positions), shop
            assert len(set(positions)) == 1 + 2 * ROUNDS, shop
