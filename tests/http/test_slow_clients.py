"""A client that sends its body too slowly is answered 408 and dropped: over a real socket, on uvicorn."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from ledger.faces.http import guard
from ledger.faces.http.app import create_app

TIMEOUT_S = 0.5


@pytest.fixture
def server(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int, str]]:
    """The app on uvicorn in a thread, with a short body timeout; its host, port and an admin key."""
    monkeypatch.setattr(guard, "BODY_TIMEOUT_S", TIMEOUT_S)
    app = create_app(store_url)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        _, secret = app.state.service.keys.create("ops", "admin")
        yield "127.0.0.1", port, secret
    finally:
        running.should_exit = True
        thread.join(30)


def _read_all(connection: socket.socket) -> bytes:
    # Everything the server sends until it closes the connection.
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_body_that_stops_half_way_is_answered_408_and_the_connection_closed(server: tuple[str, int, str]) -> None:
    host, port, secret = server
    body = json.dumps({"shop_id": "S1", "currency": "CNY", "required": "10.00"}).encode()
    head = (
        f"POST /v1/shops HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=TIMEOUT_S * 20) as connection:
        connection.sendall(head + body[:10])  # and then nothing more
        started = time.monotonic()
        answer = _read_all(connection)
        waited = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    assert b"application/problem+json" in rest
    assert b"request-timeout" in rest
    assert waited >= TIMEOUT_S * 0.9, "answered before the deadline"
    # Nothing was opened, and a prompt client is served as usual.
    with httpx.Client(base_url=f"http://{host}:{port}", headers={"Authorization": f"Bearer {secret}"}) as client:
        assert client.get("/v1/shops/S1").status_code == 404
        assert client.post("/v1/shops", content=body, headers={"Content-Type": "application/json"}).status_code == 201


def test_a_chunked_body_past_the_bound_is_answered_413(server: tuple[str, int, str]) -> None:
    # A chunked body declares no length: it is counted as it arrives.
    host, port, secret = server
    head = (
        f"POST /v1/shops HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"x" * 65536
    with socket.create_connection((host, port), timeout=TIMEOUT_S * 20) as connection:
        connection.sendall(head)
        # Exactly 1 MiB, then one byte more, and nothing after it: the server reads all that was
        # sent, so its close is orderly (unread bytes would reset the connection under the answer).
        for _ in range(16):
            connection.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        connection.sendall(b"1\r\nx\r\n")
        answer = _read_all(connection)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"content-too-large" in answer
