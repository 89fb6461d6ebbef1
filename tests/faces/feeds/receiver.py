"""A real webhook receiver on 127.0.0.1 for the tests: it verifies signatures and can fail on purpose."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
"""A Standard Webhooks test secret (24 bytes)."""


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    webhook_id: str
    body: dict[str, Any]
    status: int
    verified: bool

    @property
    def shop_id(self) -> str:
        return str(self.body["data"]["shop_id"])

    @property
    def position(self) -> int:
        return int(self.body["data"]["position"])


class Receiver:
    """Records every request; ``answer`` decides each status (default 204)."""

    def __init__(self, secret: str = SECRET) -> None:
        self.webhook = Webhook(secret)
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.answer: Callable[[str, dict[str, Any], int], int] = lambda _id, _body, _attempt: 204
        self.url = ""

    def handle(self, headers: dict[str, str], raw: bytes) -> int:
        try:
            body = self.webhook.verify(raw, headers)
            verified = True
        except Exception:
            body, verified = json.loads(raw), False
        webhook_id = headers.get("webhook-id", "")
        with self.lock:
            attempt = 1 + sum(1 for seen in self.received if seen.webhook_id == webhook_id)
            status = self.answer(webhook_id, body, attempt) if verified else 401
            self.received.append(Received(webhook_id, body, status, verified))
        return status

    def successes(self) -> list[Received]:
        with self.lock:
            return [seen for seen in self.received if 200 <= seen.status < 300]

    def count(self) -> int:
        with self.lock:
            return len(self.received)


@contextmanager
def running_receiver(secret: str = SECRET) -> Iterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1 until the block ends."""
    receiver = Receiver(secret)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = receiver.handle({key.lower(): value for key, value in self.headers.items()}, raw)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
