"""``deposit-ledger serve`` as a real process: over HTTP, SIGTERM, and killed in the middle of a write load."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger import DepositLedger
from tests.ledger.processes import PROJECT_ROOT, Child, Children, eventually

pytestmark = pytest.mark.slow

WRITERS = 8


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _create_key(store_url: str, name: str, role: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "--db", store_url, "keys", "create", name, "--role", role, "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT_ROOT,
    )
    return str(json.loads(done.stdout)["key"])


def _serve(children: Children, store_url: str, name: str) -> tuple[Child, str]:
    port = _free_port()
    child = children.ledger("--db", store_url, "serve", "--port", str(port), name=name)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert child.process.poll() is None, child.stderr()
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(up, "the server to answer /healthz")
    return child, base


def test_serve_answers_over_http_and_stops_on_sigterm(children: Children, store_url: str) -> None:
    secret = _create_key(store_url, "order-service", "finance")
    child, base = _serve(children, store_url, "server")
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=base, headers=headers) as client:
        opened = client.post("/v1/shops", json={"shop_id": "S1", "currency": "CNY", "required": "100.00"})
        assert opened.status_code == 201, opened.text
        paid = client.post("/v1/shops/S1/payments", json={"amount": "100.00", "channel": "alipay", "ref": "T1"})
        assert paid.json()["status"] == "active"
        assert client.get("/readyz").json()["status"] == "ok"
        assert client.get("/v1/shops/S1", headers={"Authorization": "Bearer dlk_nope"}).status_code == 401
    assert child.stop(signal.SIGTERM) == 0
    assert "serving" in child.stderr()
    ledger = DepositLedger(store_url)
    try:
        assert [event.actor for event in ledger.history("S1")] == ["order-service"] * 3
    finally:
        ledger.close()


def test_a_killed_server_loses_no_acknowledged_payment_and_applies_none_twice(
    children: Children, store_url: str
) -> None:
    secret = _create_key(store_url, "order-service", "finance")
    headers = {"Authorization": f"Bearer {secret}"}
    child, base = _serve(children, store_url, "first")
    with httpx.Client(base_url=base, headers=headers) as client:
        assert (
            client.post("/v1/shops", json={"shop_id": "S1", "currency": "CNY", "required": "1.00"}).status_code == 201
        )
    acknowledged: set[str] = set()
    sent: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for payment in range(100_000):
                if stop.is_set():
                    return
                ref = f"W{number}-{payment}"
                with lock:
                    sent.add(ref)
                try:
                    response = client.post(
                        "/v1/shops/S1/payments",
                        json={"amount": "1.00", "channel": "alipay", "ref": ref},
                        headers={"Idempotency-Key": ref},
                    )
                except httpx.TransportError:
                    return  # the server died under this request: not acknowledged
                assert response.status_code == 201, response.text
                with lock:
                    acknowledged.add(ref)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    eventually(lambda: len(acknowledged) >= 200, "200 acknowledged payments")
    child.process.kill()
    child.wait()
    stop.set()
    for thread in threads:
        thread.join()

    ledger = DepositLedger(store_url)
    try:
        stored = [event.trade_no for event in ledger.history("S1") if event.type_name == "Paid"]
    finally:
        ledger.close()
    assert acknowledged <= set(stored)
    assert len(stored) == len(set(stored))

    # Every request again, with the same Idempotency-Key: each payment ends up applied exactly once.
    child, base = _serve(children, store_url, "second")
    with httpx.Client(base_url=base, headers=headers) as client:
        for ref in sorted(sent):
            response = client.post(
                "/v1/shops/S1/payments",
                json={"amount": "1.00", "channel": "alipay", "ref": ref},
                headers={"Idempotency-Key": ref},
            )
            assert response.status_code in (200, 201), response.text
        shown = client.get("/v1/shops/S1").json()
    assert shown["paid"] == f"{len(sent)}.00"
    assert child.stop(signal.SIGTERM) == 0
    ledger = DepositLedger(store_url)
    try:
        assert ledger.auditor().verify().ok
    finally:
        ledger.close()


def test_two_servers_on_one_postgresql_store_lose_nothing(children: Children, postgres_store_url: str) -> None:
    # Two processes, each with its own group writer, paying the same shop: the deposit's
    # optimistic versions make a losing batch decide again; every acknowledged payment is in.
    secret = _create_key(postgres_store_url, "order-service", "finance")
    headers = {"Authorization": f"Bearer {secret}"}
    servers = [_serve(children, postgres_store_url, f"server-{number}") for number in range(2)]
    with httpx.Client(base_url=servers[0][1], headers=headers) as client:
        assert (
            client.post("/v1/shops", json={"shop_id": "S1", "currency": "CNY", "required": "1.00"}).status_code == 201
        )
    acknowledged: list[str] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        with httpx.Client(base_url=servers[number % 2][1], headers=headers, timeout=60) as client:
            for payment in range(25):
                ref = f"W{number}-{payment}"
                body = {"amount": "1.00", "channel": "alipay", "ref": ref}
                response = client.post("/v1/shops/S1/payments", json=body)
                assert response.status_code == 201, response.text
                with lock:
                    acknowledged.append(ref)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for child, _ in servers:
        assert child.stop(signal.SIGTERM) == 0
    assert len(acknowledged) == WRITERS * 25
    ledger = DepositLedger(postgres_store_url)
    try:
        stored = [event.trade_no for event in ledger.history("S1") if event.type_name == "Paid"]
        assert sorted(stored) == sorted(acknowledged)
        assert ledger.show("S1").paid_minor == 100 * len(acknowledged)
        assert ledger.auditor().verify().ok
    finally:
        ledger.close()
