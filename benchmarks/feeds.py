"""``python -m benchmarks.feeds [--events N] [--shops S]``: events relayed per second, beside the store's own rate.

On a fresh SQLite store it records ``N`` events (``S`` shops, payments in batches of
1,000 commands, the import path) and times that: the store's own event rate. Then it
times ``relay`` catching up all of them to one webhook subscription (``*``) whose
receiver answers 204 from another process on 127.0.0.1, and ``relay --nats`` to a
fresh JetStream stream on the local server (skipped, and said, where none answers;
the stream is deleted afterwards). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.common import machine, note
from ledger.app.service import DepositLedger
from ledger.faces.feeds.outbox import FeedBook
from ledger.faces.feeds.relay import Relay
from ledger.faces.feeds.subscriptions import Subscription, subscription_id

NATS_URL = "nats://127.0.0.1:4222"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BATCH_COMMANDS = 1_000


def record(ledger: DepositLedger, events: int, shops: int) -> int:
    """Open ``shops`` shops and pay into them until about ``events`` events are stored; return how many."""
    names = [f"shop-{number:05d}" for number in range(shops)]
    with ledger.batch():
        for name in names:
            ledger.open(name, currency="CNY", required="1000000", site="CN")
    payment = 0
    while ledger.views.head() < events:
        with ledger.batch():
            for _ in range(BATCH_COMMANDS // 2):
                ledger.pay(names[payment % shops], "10", channel="alipay", ref=f"t-{payment}")
                payment += 1
    return ledger.views.head()


def subscribe(ledger: DepositLedger, url: str) -> None:
    """Subscribe ``url`` to everything from position 0 (a benchmark wants the whole store)."""
    book = FeedBook(ledger.store)
    book.ensure_tables()
    book.add_subscription(Subscription(subscription_id(url), url, ("*",), SECRET, datetime.now(tz=UTC)), 0)
    book.close()


def serve(port_file: str) -> None:
    """The receiver: answers 204 to every POST until killed (run in a child process)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def nats_answers() -> bool:
    """Whether a NATS server listens at 127.0.0.1:4222."""
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


async def _delete_stream(name: str) -> None:
    import nats

    connection = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        await connection.jetstream().delete_stream(name)
    finally:
        await connection.close()


def measure(folder: Path, events: int, shops: int) -> dict[str, Any]:
    """The three rates, in events per second."""
    ledger = DepositLedger(str(folder / "feeds.db"), actor="bench")
    try:
        note(f"recording {events} events for {shops} shops")
        started = time.perf_counter()
        stored = record(ledger, events, shops)
        store_rate = stored / (time.perf_counter() - started)

        port_file = folder / "receiver.port"
        receiver = subprocess.Popen([sys.executable, "-m", "benchmarks.feeds", "--serve", str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                time.sleep(0.05)
            subscribe(ledger, f"http://127.0.0.1:{port_file.read_text()}/hooks")
            note("relaying to the webhook receiver")
            relay = Relay(ledger)
            started = time.perf_counter()
            report = relay.run_once()
            webhook_s = time.perf_counter() - started
            relay.close()
        finally:
            receiver.kill()
            receiver.wait()
        assert report.delivered == report.queued, report

        result: dict[str, Any] = {
            "events": stored,
            "shops": shops,
            "store_events_per_s": round(store_rate),
            "webhook_messages": report.delivered,
            "webhook_messages_per_s": round(report.delivered / webhook_s),
        }
        if nats_answers():
            from ledger.faces.feeds.nats_bus import NatsJetStreamBus

            stream = f"BENCH_{uuid.uuid4().hex[:12]}"
            prefix = f"bench_{stream.lower()}"
            note(f"relaying to NATS JetStream stream {stream}")
            bus = NatsJetStreamBus(NATS_URL, stream, subject_prefix=prefix)
            relay = Relay(ledger, bus=bus, subject_prefix=prefix)
            try:
                started = time.perf_counter()
                report = relay.run_once()
                result["nats_events_per_s"] = round(report.published / (time.perf_counter() - started))
            finally:
                relay.close()
                bus.close()
                with contextlib.suppress(Exception):
                    asyncio.run(_delete_stream(stream))
        else:
            result["nats_events_per_s"] = None
            result["nats_skipped"] = "no NATS server answers at 127.0.0.1:4222"
        return result
    finally:
        ledger.close()


def main() -> None:
    """Parse the arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--shops", type=int, default=1_000)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve)
        return
    with tempfile.TemporaryDirectory() as folder:
        result = measure(Path(folder), arguments.events, arguments.shops)
    print(json.dumps({"machine": machine(), **result}))


if __name__ == "__main__":
    main()
