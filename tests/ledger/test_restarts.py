"""Killing a worker, or restarting PostgreSQL, in the middle of a stream: nothing lost, nothing applied twice.

A writer process streams payments while a backlog waits for the views; the
worker is killed (SIGKILL) or the database server restarted half way. In the
end the views equal a rebuild from scratch, ``verify`` is clean, and every
payment is in the balances once.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from domain import Paid
from domain.money import to_minor
from ledger import DepositLedger
from ledger.store.urls import resolve_store
from tests.conftest import postgres_url
from tests.ledger.checks import CURRENT, assert_views_are_a_rebuild_and_verify_clean, lags
from tests.ledger.processes import Child, Children, eventually
from tests.ledger.stores import BALANCES, fill, tracking

STREAM_SHOPS = ("stream-a", "stream-b", "stream-c")
STREAMED_PAYMENTS = 60
RESTART_TIMEOUT_S = 120


def open_stream_shops(url: str) -> None:
    ledger = DepositLedger(url, actor="tester")
    try:
        for shop in STREAM_SHOPS:
            ledger.open(shop, currency="CNY", required="100000")
    finally:
        ledger.close()


def start_stream(children: Children, url: str, folder: Path, *, inline_views: bool) -> Child:
    """A writer process paying ``STREAMED_PAYMENTS`` times across the stream shops, started at once."""
    plan = [
        {
            "command": "pay",
            "shop": STREAM_SHOPS[number % len(STREAM_SHOPS)],
            "amount": f"{10 + number}",
            "channel": "alipay",
            "ref": f"S-{number}",
        }
        for number in range(STREAMED_PAYMENTS)
    ]
    (folder / "stream.json").write_text(json.dumps(plan))
    argv = [sys.executable, "-m", "tests.ledger.writer", "--db", url, "stream.json", "stream.jsonl"]
    writer = children.start(argv, name="stream", env={"DEPOSIT_LEDGER_INLINE_VIEWS": "1" if inline_views else "0"})
    eventually(lambda: writer.stdout().startswith("ready"), "the writer to start")
    writer.send("go")
    return writer


def streamed(folder: Path) -> list[dict[str, Any]]:
    """The writer's outcomes so far."""
    path = folder / "stream.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def follow(children: Children, url: str, name: str) -> Child:
    worker = children.ledger("--db", url, "projections", "run", "--follow", "--poll-interval", "0.2", name=name)
    eventually(lambda: "following" in worker.stderr(), f"{name} to start following")
    return worker


def assert_every_payment_once(url: str) -> None:
    """Each streamed payment is in its shop's history once, and the balances hold their sum."""
    ledger = DepositLedger(url, actor="checker", inline_views=False)
    try:
        for index, shop in enumerate(STREAM_SHOPS):
            refs = Counter(event.trade_no for event in ledger.history(shop) if isinstance(event, Paid))
            expected = {f"S-{number}" for number in range(index, STREAMED_PAYMENTS, len(STREAM_SHOPS))}
            assert refs == Counter(expected), shop
            total = sum(Decimal(10 + number) for number in range(index, STREAMED_PAYMENTS, len(STREAM_SHOPS)))
            assert ledger.balance(shop).paid_minor == to_minor(total, "CNY") == ledger.show(shop).paid_minor
    finally:
        ledger.close()


def test_a_worker_killed_in_the_middle_of_a_stream_loses_nothing_and_applies_nothing_twice(
    children: Children, store_url: str, tmp_path: Path
) -> None:
    open_stream_shops(store_url)
    backlog = DepositLedger(store_url, actor="tester", inline_views=False)
    try:
        fill(backlog, 400, 4)  # some 4,000 events behind the views: the worker's batches take a while
    finally:
        backlog.close()
    first = follow(children, store_url, "first-worker")
    writer = start_stream(children, store_url, tmp_path, inline_views=False)

    # Killed as soon as it has committed a batch of the backlog: most likely inside the next one's
    # transaction, and with the stream still coming.
    position = eventually(lambda: tracking(store_url).get(BALANCES, 0), "the first worker to commit a batch")
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert len(streamed(tmp_path)) < STREAMED_PAYMENTS, "killed in the middle of the stream"
    assert tracking(store_url)[BALANCES] >= position, "what was committed stays committed"

    second = follow(children, store_url, "second-worker")
    assert writer.wait(timeout_s=120) == 0, writer.stderr()
    eventually(lambda: lags(store_url) == CURRENT, "the second worker to catch up", timeout_s=120)
    assert second.stop() == 0

    assert_every_payment_once(store_url)
    assert_views_are_a_rebuild_and_verify_clean(store_url)


# ------------------------------------------------------------------------- PostgreSQL


def _cluster_version() -> str | None:
    """The version of the local PostgreSQL cluster serving the test database, if it can be restarted here."""
    url = postgres_url()
    if url is None or shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        return None
    port = urlsplit(url).port or 5432
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        version, name, cluster_port, *_ = line.split()
        if name == "main" and int(cluster_port) == port:
            return version
    return None


def _accepting_connections(url: str) -> bool:
    try:
        resolve_store(url).connect().close()
    except Exception:
        return False
    return True


@pytest.mark.skipif(
    postgres_url() is not None and _cluster_version() is None,
    reason="restarting PostgreSQL needs pg_ctlcluster and a local cluster 'main' on the test database's port",
)
def test_restarting_postgresql_in_the_middle_of_a_stream_loses_nothing_and_applies_nothing_twice(
    children: Children, postgres_store_url: str, tmp_path: Path
) -> None:
    version = _cluster_version()
    assert version is not None
    url = postgres_store_url
    open_stream_shops(url)
    worker = follow(children, url, "worker")
    writer = start_stream(children, url, tmp_path, inline_views=False)
    eventually(lambda: len(streamed(tmp_path)) >= STREAMED_PAYMENTS // 3, "a third of the stream")

    # The whole server goes down and comes back: every connection of the worker and the writer breaks.
    restart = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    subprocess.run(restart, check=True, capture_output=True, timeout=RESTART_TIMEOUT_S)
    eventually(lambda: _accepting_connections(url), "PostgreSQL to accept connections", timeout_s=RESTART_TIMEOUT_S)

    assert writer.wait(timeout_s=120) == 0, writer.stderr()
    assert len(streamed(tmp_path)) == STREAMED_PAYMENTS
    eventually(lambda: lags(url) == CURRENT, "the worker to catch up after the restart", timeout_s=60)
    assert worker.process.poll() is None, "the worker survived the restart"
    assert "store unavailable" in worker.stderr() and "reconnecting" in worker.stderr()
    assert worker.stop() == 0

    assert_every_payment_once(url)
    assert_views_are_a_rebuild_and_verify_clean(url)
