"""Does a balance query cost the same for a shop with 10 events as for one with 10,000?

Builds a fresh SQLite store holding two shops, one with a 10-event history and
one with a 10,000-event history, then times, call by call:

- ``ledger.balance(shop)``: one row of the balances view;
- ``ledger.show(shop)``: the deposit rebuilt from its events (from the latest snapshot);
- a bare ``sqlite3`` primary-key SELECT of the same row, on the same file: the floor.

The shops take turns call by call, so both see the same machine.

Prints a table of the latencies (p50, p99, mean) and writes them as JSON to
``benchmarks/results/balance_query.json``. Run with ``python -m benchmarks.balance_query``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from domain import Channel, DeductionReason, ShopDeposit, Stamp, deposit_id
from ledger import DepositLedger
from projections.balances import BalancesView

SHORT_EVENTS = 10
LONG_EVENTS = 10_000
RESULTS = Path(__file__).parent / "results" / "balance_query.json"
START = datetime(2025, 1, 1, tzinfo=UTC)


def history(shop_id: str, events: int) -> ShopDeposit:
    """A deposit with exactly ``events`` events: opened, paid (two events each), deducted once."""
    assert events >= 4 and events % 2 == 0, "opening + payments + one deduction"
    at = START
    deposit = ShopDeposit.open(shop_id=shop_id, site="CN", currency="CNY", required_minor=200000, stamp=_stamp(at))
    for number in range((events - 2) // 2):
        at += timedelta(seconds=1)
        deposit.pay(
            amount_minor=100,
            channel=(Channel.ALIPAY, Channel.WECHAT_PAY)[number % 2],
            trade_no=f"{shop_id}-{number}",
            payer=None,
            stamp=_stamp(at),
        )
    deposit.deduct(amount_minor=50, reason=DeductionReason.LATE_SHIPMENT, case_id="LS-1", note="", stamp=_stamp(at))
    assert deposit.version == events
    return deposit


def latencies_us(calls: Sequence[Callable[[], Any]], rounds: int, warm_up: int) -> list[list[float]]:
    """Each call's wall time in microseconds, per call, after ``warm_up`` untimed rounds.

    The calls take turns round after round, so that a busy moment of the machine
    weighs on all of them alike rather than on whichever ran then.
    """
    for _ in range(warm_up):
        for call in calls:
            call()
    timings: list[list[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for call, timing in zip(calls, timings, strict=True):
            started = time.perf_counter_ns()
            call()
            timing.append((time.perf_counter_ns() - started) / 1000)
    return timings


def summary(timings: list[float]) -> dict[str, float]:
    """p50, p99 and mean of the timings, in microseconds."""
    ordered = sorted(timings)
    return {
        "p50_us": round(ordered[len(ordered) // 2], 1),
        "p99_us": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


def measure(folder: Path, calls: int) -> list[dict[str, Any]]:
    """Build the store in ``folder`` and time the three queries for both shops."""
    path = folder / "deposits.db"
    ledger = DepositLedger(str(path), actor="benchmark")
    floor = sqlite3.connect(path, isolation_level=None)
    try:
        shops = {SHORT_EVENTS: "short-history", LONG_EVENTS: "long-history"}
        for events, shop_id in shops.items():
            ledger.save(history(shop_id, events))
        assert all(status.lag == 0 for status in ledger.projection_status())
        select = f"SELECT * FROM {BalancesView.table} WHERE deposit_id = ?"
        for shop_id in shops.values():
            assert ledger.balance(shop_id) == ledger.show(shop_id)
        queries: dict[str, Callable[[str], Any]] = {
            "balance": ledger.balance,
            "show": ledger.show,
            "sqlite3 PK": lambda shop_id: floor.execute(select, (deposit_id(shop_id).hex,)).fetchone(),
        }
        results = []
        for query, run in queries.items():
            # Replays are slower: fewer calls keep the run short.
            rounds = calls if query != "show" else max(100, calls // 20)
            calls_by_shop = [partial(run, shop_id) for shop_id in shops.values()]
            timings = latencies_us(calls_by_shop, rounds, warm_up=max(10, rounds // 20))
            for events, timing in zip(shops, timings, strict=True):
                results.append({"query": query, "shop_events": events, "calls": rounds, **summary(timing)})
        return results
    finally:
        floor.close()
        ledger.close()


def report(results: list[dict[str, Any]], console: Console) -> None:
    """A Rich table of the results; the ratio is each p50 over the same query's p50 for the 10-event shop."""
    table = Table(title="Balance query latency (µs)", title_justify="left")
    for column in ("query", "events", "calls", "p50", "p99", "mean", "p50 ratio"):
        table.add_column(column, justify="left" if column == "query" else "right")
    short = {row["query"]: row for row in results if row["shop_events"] == SHORT_EVENTS}
    for row in results:
        ratio = row["p50_us"] / short[row["query"]]["p50_us"]
        table.add_row(
            row["query"],
            f"{row['shop_events']:,}",
            f"{row['calls']:,}",
            f"{row['p50_us']:,.1f}",
            f"{row['p99_us']:,.1f}",
            f"{row['mean_us']:,.1f}",
            f"{ratio:.2f}×",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print its table and write its JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.balance_query", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=3000, help="timed calls per query and shop; show gets a 20th (default 3000)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file to write (default {RESULTS.name})")
    options = parser.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        results = measure(Path(folder), options.calls)
        elapsed_s = time.perf_counter() - started
    report(results, console)
    document = {
        "benchmark": "balance_query",
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
        "elapsed_s": round(elapsed_s, 1),
        "results": results,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(document, indent=2) + "\n")
    console.print(f"written to {options.output}")


def _stamp(at: datetime) -> Stamp:
    return Stamp(effective_at=at, recorded_at=at, actor="benchmark")


if __name__ == "__main__":
    main()
