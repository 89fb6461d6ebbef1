"""``pay`` over HTTP: 16 and 64 keep-alive clients against ``deposit-ledger serve``, beside an HTTP floor.

Measured in one run, on each store (SQLite, and PostgreSQL when
``DEPOSIT_LEDGER_TEST_POSTGRES`` names a database):

- **HTTP floor**: a FastAPI handler on the same uvicorn stack that does nothing
  but answer a deposit-sized JSON body: the most this server stack can answer;
- **HTTP pay**: ``POST /v1/shops/{id}/payments`` on a ``serve`` process, each
  client paying a shop of its own, one request after another on one keep-alive
  connection; with the group writer's batch sizes (from ``/metrics``).

The load generator is a bare asyncio HTTP/1.1 client in this process (a fixed
request, a ``Content-Length`` answer): it costs the server's two cores less than
a full client library would. Run alone with ``python -m benchmarks.http_service``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from benchmarks.common import note, percentile

ENV_VAR = "DEPOSIT_LEDGER_TEST_POSTGRES"
CLIENTS = (16, 64)
START_TIMEOUT_S = 60
FLOOR_ANSWER = {
    "shop_id": "S0",
    "status": "active",
    "currency": "CNY",
    "required": "1.00",
    "paid": "100.00",
    "frozen": "100.00",
    "deducted": "0.00",
    "refunded": "0.00",
    "forfeited": "0.00",
    "owed": "0.00",
    "shortfall": "0.00",
    "version": 3,
    "held": "0.00",
    "reversed": "0.00",
    "top_up_due": None,
    "policy_version": None,
    "categories": [],
    "duplicate": False,
}


@dataclass(frozen=True)
class Result:
    """One case: requests answered per second, their latencies, and the writer's batches."""

    store: str
    case: str
    clients: int
    requests: int
    per_s: float
    p50_ms: float
    p99_ms: float
    mean_batch: float | None = None
    errors: int = 0


# ------------------------------------------------------------------ the servers


def floor_app() -> Any:
    """The HTTP floor: an empty handler on the same stack, answering a deposit's JSON."""
    app = FastAPI()
    body = json.dumps(FLOOR_ANSWER, separators=(",", ":")).encode()

    @app.post("/v1/shops/{shop_id}/payments")
    async def pay(shop_id: str, request: Request) -> Response:
        await request.body()
        return Response(body, status_code=201, media_type="application/json")

    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment() -> dict[str, str]:
    # The chain's key passes (a PostgreSQL store's writers need it); no other setting of the ledger's does.
    kept = ("DEPOSIT_LEDGER_CHAIN_KEY", "DEPOSIT_LEDGER_CHAIN_KEY_FILE")
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_") or key in kept
    }
    root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (root, environment.get("PYTHONPATH"))))
    return environment


@contextmanager
def _server(argv: list[str], port: int) -> Iterator[None]:
    process = subprocess.Popen(argv, env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


def _ledger(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ledger", *arguments], env=_environment(), capture_output=True, text=True, check=True
    )
    return done.stdout


# ------------------------------------------------------------------ the load


async def _client(port: int, key: str, shop: str, requests: int, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tag = uuid.uuid4().hex[:8]
    try:
        for number in range(requests):
            body = json.dumps({"amount": "1.00", "channel": "alipay", "ref": f"{tag}-{number}"}).encode()
            request = (
                f"POST /v1/shops/{shop}/payments HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status_line.startswith(b"HTTP/1.1 201"):
                errors.append(1)
    finally:
        writer.close()


async def _open_shops(port: int, key: str, shops: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for number in range(shops):
        body = json.dumps({"shop_id": f"S{number}", "currency": "CNY", "required": "1.00"}).encode()
        writer.write(
            (
                f"POST /v1/shops HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        assert (await reader.readline()).startswith(b"HTTP/1.1 201")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    writer.close()


async def _load(port: int, key: str, clients: int, requests_each: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(port, key, f"S{number}", requests_each, latencies, errors) for number in range(clients))
    )
    return time.perf_counter() - started, latencies, len(errors)


def _batches(port: int) -> tuple[float, float]:
    """The group writer's histogram so far: commands committed and batches."""

    async def scrape() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        return text

    text = asyncio.run(scrape())
    found = {
        name: float(value)
        for name, value in re.findall(r"^deposit_ledger_write_batch_commands_(sum|count) (\S+)$", text, re.MULTILINE)
    }
    return found.get("sum", 0.0), found.get("count", 0.0)


def _result(store: str, case: str, clients: int, elapsed: float, latencies: list[float], errors: int) -> Result:
    return Result(
        store,
        case,
        clients,
        len(latencies),
        round(len(latencies) / elapsed, 1),
        round(percentile(latencies, 0.5) * 1000, 2),
        round(percentile(latencies, 0.99) * 1000, 2),
        errors=errors,
    )


def measure_store(store: str, url: str, requests_each: int) -> list[Result]:
    """The floor and ``pay`` over HTTP at each client count, on the store at ``url``."""
    results: list[Result] = []
    port = _free_port()
    floor = [sys.executable, "-m", "uvicorn", "benchmarks.http_service:floor_app", "--factory", "--port", str(port)]
    with _server([*floor, "--log-level", "warning", "--no-access-log"], port):
        for clients in CLIENTS:
            asyncio.run(_load(port, "none", clients, 5))  # connections and code warm
            elapsed, latencies, errors = asyncio.run(_load(port, "none", clients, requests_each))
            results.append(_result(store, "HTTP floor (empty handler)", clients, elapsed, latencies, errors))
    key = json.loads(
        _ledger("--db", url, "keys", "create", f"bench-{uuid.uuid4().hex[:6]}", "--role", "admin", "--json")
    )
    port = _free_port()
    with _server([sys.executable, "-m", "ledger", "--db", url, "serve", "--port", str(port)], port):
        asyncio.run(_open_shops(port, key["key"], max(CLIENTS)))
        for clients in CLIENTS:
            asyncio.run(_load(port, key["key"], clients, 5))
            commands_before, batches_before = _batches(port)
            elapsed, latencies, errors = asyncio.run(_load(port, key["key"], clients, requests_each))
            commands, batches = _batches(port)
            mean = (commands - commands_before) / max(1.0, batches - batches_before)
            result = _result(store, "HTTP pay", clients, elapsed, latencies, errors)
            results.append(Result(**{**asdict(result), "mean_batch": round(mean, 1)}))
    return results


def measure(folder: Path, requests_each: int) -> list[Result]:
    """Every case on SQLite, and on PostgreSQL when the environment names a database."""
    note(f"HTTP pay: {', '.join(map(str, CLIENTS))} clients, {requests_each} requests each, SQLite")
    results = measure_store("SQLite", str(folder / "http.db"), requests_each)
    postgres = os.environ.get(ENV_VAR)
    if postgres:
        from benchmarks.postgres_throughput import _schema

        note("HTTP pay on PostgreSQL")
        with _schema(postgres) as url:
            results += measure_store("PostgreSQL", url, requests_each)
    return results


def main(argv: list[str] | None = None) -> None:
    """Run alone: print the results as JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_service")
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    options = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        results = measure(Path(folder), options.requests)
    print(json.dumps([asdict(result) for result in results], indent=2))


if __name__ == "__main__":
    main()
