"""The naive peer: a plain ``eventsourcing`` application doing what ``pay`` does, the simplest way.

One aggregate per shop; a payment is one event. Each command gets the aggregate
from the repository (no cache, no snapshots: its events read back), triggers one
event and saves it through the library's own PostgreSQL recorder, one
transaction per command. No hash chain, no views, no trade-number table, no
checks beyond the event's version: what an application written straight from the
library's tutorial does. :mod:`benchmarks.postgres_throughput` runs it beside the
ledger's ``pay`` in the same run, on the same database.
"""

from __future__ import annotations

import time
import uuid
from multiprocessing.synchronize import Barrier
from typing import Any
from urllib.parse import parse_qs, urlsplit

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

START_TIMEOUT_S = 120


class PeerDeposit(Aggregate):
    """A shop's deposit reduced to its paid total."""

    @event("Opened")
    def __init__(self, shop_id: str) -> None:
        self.shop_id = shop_id
        self.paid_minor = 0

    @event("Paid")
    def pay(self, amount_minor: int, trade_no: str) -> None:
        """One payment: one event."""
        self.paid_minor += amount_minor


class PeerLedger(Application[uuid.UUID]):
    """Opens deposits and records payments, as the library's examples do."""

    def open(self, shop_id: str) -> uuid.UUID:
        """A new deposit; its id."""
        deposit = PeerDeposit(shop_id)
        self.save(deposit)
        return deposit.id

    def pay(self, deposit_id: uuid.UUID, amount_minor: int, trade_no: str) -> None:
        """Get the deposit, record the payment, save it."""
        deposit: PeerDeposit = self.repository.get(deposit_id)
        deposit.pay(amount_minor, trade_no)
        self.save(deposit)


def peer_environment(url: str) -> dict[str, str]:
    """The library's settings for its PostgreSQL recorder on the database (and ``?schema=``) of ``url``."""
    parts = urlsplit(url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_SCHEMA": parse_qs(parts.query).get("schema", ["public"])[-1],
    }


def peer_writer(url: str, commands: int, barrier: Barrier, out: Any) -> None:
    """A process: open one deposit, then ``commands`` payments, timed; (start, end, latencies) to ``out``."""
    ledger = PeerLedger(env=peer_environment(url))
    try:
        deposit = ledger.open(f"peer-{uuid.uuid4().hex[:8]}")
        ledger.pay(deposit, 1, "warm")  # connections warm
        barrier.wait(timeout=START_TIMEOUT_S)
        latencies: list[float] = []
        started = time.monotonic()
        for number in range(commands):
            before = time.perf_counter()
            ledger.pay(deposit, 1, f"T{number}")
            latencies.append(time.perf_counter() - before)
        out.put((started, time.monotonic(), latencies))
    finally:
        ledger.close()
