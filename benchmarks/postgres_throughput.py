"""Command throughput on PostgreSQL: one writer and eight, beside the bare INSERT floor.

Needs ``DEPOSIT_LEDGER_TEST_POSTGRES`` (``postgresql://USER@HOST:PORT/DBNAME``):
a database in which it creates a schema of its own, dropped at the end.

Every writer is a process of its own (as application servers are), released
at once; each records ``pay`` commands through the Python API with the views
kept current inside each command's transaction (the default). Measured in the
same run:

- **floor**: a bare psycopg ``INSERT`` of one row shaped like a stored ``Paid``
  event (same columns, same state size) per transaction, from 1 and from 8
  connections: what the server does for a commit and nothing else;
- **naive eventsourcing peer, 1 writer**: a plain ``eventsourcing`` application
  (:mod:`benchmarks.naive_peer`): get an aggregate, one event, save, on the
  library's own PostgreSQL recorder;
- **pay, 1 writer**, and **pay, 8 writers** on 8 shops: the ledger's throughput;
- **pay, 8 writers, one shop**: all eight on the same deposit, taking turns;
- **pay, 8 writers, views to workers**: ``inline_views=False``, the events are
  committed and the views left to projection workers (none run here).

A ``pay`` stores two events (``Paid`` and ``Frozen``) and the hash chain's
links, and updates two views. Prints a table and writes JSON to
``benchmarks/results/postgres_throughput.json``. Run with
``python -m benchmarks.postgres_throughput``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import psycopg
from eventsourcing.persistence import JSONTranscoder
from rich.console import Console
from rich.table import Table

from benchmarks.naive_peer import peer_writer
from domain import Channel, ShopDeposit, Stamp
from ledger import DepositLedger
from ledger.store.mapper import DepositMapper

ENV_VAR = "DEPOSIT_LEDGER_TEST_POSTGRES"
RESULTS = Path(__file__).parent / "results" / "postgres_throughput.json"
WRITERS = 8
START_TIMEOUT_S = 120
"""How long the writers may take to open their ledgers before the run gives up."""


@dataclass(frozen=True)
class Result:
    """One case: how many commands (or rows) in how long, and their latencies."""

    case: str
    processes: int
    commands: int
    seconds: float
    per_s: float
    p50_ms: float
    p99_ms: float


# ------------------------------------------------------------------ child processes


def _ledger_writer(url: str, shop: str, commands: int, inline_views: bool, barrier: Barrier, out: Any) -> None:
    ledger = DepositLedger(url, actor="benchmark", inline_views=inline_views)
    try:
        tag = uuid.uuid4().hex[:8]
        ledger.pay(shop, "1", channel="alipay", ref=f"warm-{tag}")  # connections and caches warm
        barrier.wait(timeout=START_TIMEOUT_S)
        latencies: list[float] = []
        started = time.monotonic()
        for number in range(commands):
            before = time.perf_counter()
            ledger.pay(shop, "1", channel="wechat_pay", ref=f"{tag}-{number}")
            latencies.append(time.perf_counter() - before)
        out.put((started, time.monotonic(), latencies))
    finally:
        ledger.close()


def _floor_writer(url: str, table: str, state: bytes, rows: int, barrier: Barrier, out: Any) -> None:
    with psycopg.connect(_server_url(url), autocommit=True) as connection:
        insert = (
            f"INSERT INTO {_schema_of(url)}.{table} (originator_id, originator_version, topic, state) "
            "VALUES (%s, %s, %s, %s)"
        )
        originator = uuid.uuid4()
        connection.execute(insert, (originator, 0, "ShopDeposit.Paid", state), prepare=True)
        barrier.wait(timeout=START_TIMEOUT_S)
        latencies: list[float] = []
        started = time.monotonic()
        for version in range(1, rows + 1):
            before = time.perf_counter()
            connection.execute(insert, (originator, version, "ShopDeposit.Paid", state), prepare=True)
            latencies.append(time.perf_counter() - before)
        out.put((started, time.monotonic(), latencies))


Target = tuple[Callable[..., None], tuple[Any, ...]]
"""A process to start: the function and its arguments (the barrier and the queue are appended)."""


def _run_processes(case: str, targets: list[Target], commands_each: int) -> Result:
    """Run one process per target, released together; the span is first start to last finish."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(targets))
    out = context.Queue()
    processes = [context.Process(target=target, args=(*args, barrier, out)) for target, args in targets]
    for process in processes:
        process.start()
    try:
        finished = [out.get(timeout=START_TIMEOUT_S + 600) for _ in processes]
        for process in processes:
            process.join(timeout=60)
            if process.exitcode != 0:
                raise RuntimeError(f"{case}: a process exited with {process.exitcode}")
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    span_s = max(end for _, end, _ in finished) - min(start for start, _, _ in finished)
    latencies = sorted(latency for _, _, timings in finished for latency in timings)
    total = len(targets) * commands_each
    assert len(latencies) == total
    return Result(
        case=case,
        processes=len(targets),
        commands=total,
        seconds=round(span_s, 2),
        per_s=round(total / span_s, 1),
        p50_ms=round(1000 * statistics.median(latencies), 2),
        p99_ms=round(1000 * latencies[min(total - 1, int(total * 0.99))], 2),
    )


# --------------------------------------------------------------------------- cases


def paid_state() -> bytes:
    """The stored bytes of a typical ``Paid`` event: what the floor inserts."""
    stamp = Stamp(effective_at=datetime(2026, 3, 5, tzinfo=UTC), recorded_at=datetime.now(tz=UTC), actor="benchmark")
    deposit = ShopDeposit.open(shop_id="shape-of-a-row", site="CN", currency="CNY", required_minor=200000, stamp=stamp)
    deposit.pay(
        amount_minor=100, channel=Channel.WECHAT_PAY, trade_no="4200001234202603051234567890", payer=None, stamp=stamp
    )
    paid = deposit.collect_events()[1]
    return DepositMapper(transcoder=JSONTranscoder()).to_stored_event(paid).state


def measure(base_url: str, commands: int) -> list[Result]:
    """Every case, each in a fresh schema of the database at ``base_url``; ``commands`` per process."""
    results = []
    state = paid_state()
    with _schema(base_url) as url:
        with psycopg.connect(_server_url(url), autocommit=True) as connection:
            connection.execute(
                f"CREATE TABLE {_schema_of(url)}.floor_events (originator_id uuid NOT NULL, "
                "originator_version bigint NOT NULL, topic text, state bytea, notification_id bigserial, "
                "PRIMARY KEY (originator_id, originator_version))"
            )
        for writers in (1, WRITERS):
            floors: list[Target] = [(_floor_writer, (url, "floor_events", state, commands)) for _ in range(writers)]
            results.append(_run_processes(f"floor: bare INSERT, {writers} connection(s)", floors, commands))
    with _schema(base_url) as url:
        results.append(_run_processes("naive eventsourcing peer, 1 writer", [(peer_writer, (url, commands))], commands))
    cases = [
        ("pay, 1 writer", [f"solo-{n}" for n in range(1)], True),
        (f"pay, {WRITERS} writers, {WRITERS} shops", [f"shop-{n}" for n in range(WRITERS)], True),
        (f"pay, {WRITERS} writers, one shop", ["busy-shop"] * WRITERS, True),
        (f"pay, {WRITERS} writers, views to workers", [f"quiet-{n}" for n in range(WRITERS)], False),
    ]
    for case, shops, inline_views in cases:
        with _schema(base_url) as url:
            opener = DepositLedger(url, actor="benchmark")
            try:
                for shop in sorted(set(shops)):
                    opener.open(shop, currency="CNY", required="1000000")
            finally:
                opener.close()
            targets: list[Target] = [(_ledger_writer, (url, shop, commands, inline_views)) for shop in shops]
            results.append(_run_processes(case, targets, commands))
    return results


@contextmanager
def _schema(base_url: str) -> Iterator[str]:
    """A fresh schema of the benchmark database, as a store URL; dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_server_url(base_url), autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {name}")
    try:
        yield urlunsplit(urlsplit(base_url)._replace(query=urlencode({"schema": name})))
    finally:
        with psycopg.connect(_server_url(base_url), autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {name} CASCADE")


def _server_url(url: str) -> str:
    """The URL without ``?schema=``: what psycopg connects to."""
    return urlunsplit(urlsplit(url)._replace(query=""))


def _schema_of(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("schema", ["public"])[-1]


# -------------------------------------------------------------------------- report


def report(results: list[Result], console: Console) -> None:
    """A Rich table: each case, its rate, and that rate beside the floor of as many connections."""
    table = Table(title="PostgreSQL command throughput", title_justify="left")
    for column in ("case", "procs", "commands", "s", "per s", "p50 ms", "p99 ms", "of floor"):
        table.add_column(column, justify="left" if column == "case" else "right")
    floors = {result.processes: result.per_s for result in results if result.case.startswith("floor")}
    for result in results:
        floor = floors.get(result.processes)
        share = "" if result.case.startswith("floor") or not floor else f"{result.per_s / floor:.0%}"
        table.add_row(
            result.case,
            str(result.processes),
            f"{result.commands:,}",
            f"{result.seconds:,.1f}",
            f"{result.per_s:,.0f}",
            f"{result.p50_ms:,.1f}",
            f"{result.p99_ms:,.1f}",
            share,
        )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print its table and write its JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.postgres_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--commands", type=int, default=200, help="commands (or rows) per process (default 200)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS.name})")
    options = parser.parse_args(argv)
    base_url = os.environ.get(ENV_VAR)
    if not base_url:
        sys.stderr.write(f"postgres_throughput: set {ENV_VAR}=postgresql://USER@HOST:PORT/DBNAME to run it\n")
        raise SystemExit(2)
    console = Console()
    started = time.perf_counter()
    results = measure(base_url, options.commands)
    elapsed_s = time.perf_counter() - started
    report(results, console)
    with psycopg.connect(_server_url(base_url), autocommit=True) as connection:
        server = connection.execute("SHOW server_version").fetchone()
    document = {
        "benchmark": "postgres_throughput",
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgresql": server[0] if server else None,
            "psycopg": psycopg.__version__,
            "psycopg_impl": psycopg.pq.__impl__,
        },
        "commands_per_process": options.commands,
        "elapsed_s": round(elapsed_s, 1),
        "results": [asdict(result) for result in results],
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"written to {options.output}")


if __name__ == "__main__":
    main()
