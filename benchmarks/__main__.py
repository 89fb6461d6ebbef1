"""``python -m benchmarks [--quick] [--output FILE]``: the whole suite, one table, one JSON file.

Every figure is measured in this run beside its floor (the bare storage doing
the same work) and, where the project sets one, checked against its target.
The full size is what ``docs/performance.md`` reports; ``--quick`` runs in under
a minute for CI; ``--smoke`` only checks that every benchmark still runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import balance_query, bulk, commands, http_service, postgres_throughput, replay
from benchmarks.common import Figure, machine, note, run_python

DEFAULT_OUTPUT = Path(__file__).parent / "results" / "suite.json"


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    bulk_events: int
    balance_queries: int
    command_shops: int
    command_rounds: int
    replay_events: int
    replay_rounds: int
    long_history_calls: int
    verify_events: int
    postgres_commands: int
    http_requests: int


SIZES = {
    "full": Sizes(1_000_000, 20_000, 1_000, 600, 100_000, 100, 3_000, 100_000, 200, 150),
    "quick": Sizes(20_000, 2_000, 100, 60, 10_000, 20, 300, 20_000, 20, 20),
    "smoke": Sizes(600, 50, 5, 5, 400, 3, 20, 500, 3, 2),
}


def run(sizes: Sizes, folder: Path) -> list[Figure]:
    """Every benchmark at ``sizes``, its stores in ``folder``."""
    figures = commands.measure(folder, sizes.command_shops, sizes.command_rounds)
    figures += bulk.measure(folder, sizes.bulk_events, sizes.balance_queries)
    figures += replay.measure(folder, sizes.replay_events, sizes.replay_rounds)
    figures += _long_history(folder, sizes.long_history_calls)
    figures += _verify(folder, sizes.verify_events)
    figures += _http(folder, sizes.http_requests)
    postgres = os.environ.get(postgres_throughput.ENV_VAR)
    if postgres:
        figures += _postgres(postgres, sizes.postgres_commands)
    else:
        note(f"PostgreSQL throughput skipped: set {postgres_throughput.ENV_VAR} to a database URL to measure it")
    return figures


def _postgres(url: str, commands: int) -> list[Figure]:
    # benchmarks.postgres_throughput: writer processes on a schema of their own, beside bare INSERTs.
    note(f"PostgreSQL: {commands} commands per writer, 1 and {postgres_throughput.WRITERS} writers")
    results = {result.case: result for result in postgres_throughput.measure(url, commands)}
    floors = {result.processes: result for case, result in results.items() if case.startswith("floor")}
    peer, solo = results["naive eventsourcing peer, 1 writer"], results["pay, 1 writer"]
    beside_peer = Figure(
        "PostgreSQL pay, 1 writer, beside the naive eventsourcing peer",
        solo.per_s,
        "commands/s",
        peer.per_s,
        "naive eventsourcing peer (get, one event, save)",
        target="≥ 1.5× the naive peer",
        met=solo.per_s >= 1.5 * peer.per_s,
        detail={"p50_ms": solo.p50_ms, "peer_p50_ms": peer.p50_ms},
    )
    return [beside_peer] + [
        Figure(
            f"PostgreSQL {result.case}",
            result.per_s,
            "commands/s",
            floors[result.processes].per_s,
            f"bare INSERT, {result.processes} connection(s)",
            detail={"p50_ms": result.p50_ms, "p99_ms": result.p99_ms, "commands": result.commands},
        )
        for case, result in results.items()
        if not case.startswith("floor")
    ]


def _http(folder: Path, requests_each: int) -> list[Figure]:
    # benchmarks.http_service: pay over HTTP beside an empty handler on the same server stack.
    results = http_service.measure(folder, requests_each)
    floors = {(result.store, result.clients): result for result in results if result.case.startswith("HTTP floor")}
    figures = []
    for result in results:
        if result.case.startswith("HTTP floor"):
            continue
        floor = floors[result.store, result.clients]
        ratio = result.per_s / floor.per_s
        figures.append(
            Figure(
                f"{result.store} HTTP pay, {result.clients} clients",
                result.per_s,
                "requests/s",
                floor.per_s,
                "empty handler, same stack",
                target="≥ 50% of the floor; p99 < 50 ms",
                met=ratio >= 0.5 and result.p99_ms < 50,
                detail={
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "mean_batch": result.mean_batch,
                    "errors": result.errors,
                    "floor_p50_ms": floor.p50_ms,
                    "floor_p99_ms": floor.p99_ms,
                },
            )
        )
    return figures


def _long_history(folder: Path, calls: int) -> list[Figure]:
    # benchmarks.balance_query: one shop of 10 events beside one of 10,000.
    note("balance queries for a 10-event and a 10,000-event shop")
    rows = {(row["query"], row["shop_events"]): row for row in balance_query.measure(folder, calls)}
    short, long = balance_query.SHORT_EVENTS, balance_query.LONG_EVENTS
    return [
        Figure(
            f"balance query p50, {events:,}-event shop",
            rows["balance", events]["p50_us"],
            "µs",
            rows["sqlite3 PK", events]["p50_us"],
            "bare SELECT by key",
            detail={
                "p99_us": rows["balance", events]["p99_us"],
                "show_p50_us": rows["show", events]["p50_us"],
                "calls": rows["balance", events]["calls"],
            },
        )
        for events in (short, long)
    ]


def _verify(folder: Path, events: int) -> list[Figure]:
    # benchmarks.verify_memory, driven from a small process of its own: a child's peak RSS
    # starts from its parent's, and this process holds the whole suite.
    note(f"verify and export over {events:,} events, and over an empty store")
    driver = (
        "import dataclasses, json, sys; from pathlib import Path; from benchmarks import verify_memory; "
        "print(json.dumps([dataclasses.asdict(verify_memory.measure(Path(sys.argv[1]), int(size))) "
        "for size in sys.argv[2:]]))"
    )
    empty, measured = run_python("-c", driver, str(folder), "0", str(events))
    return [
        Figure(
            f"verify, {events:,} events",
            measured["events_per_s"],
            "events/s",
            detail={"seconds": measured["verify_s"], "cpu_s": measured["verify_cpu_s"]},
        ),
        Figure(
            f"verify peak RSS, {events:,} events",
            measured["peak_rss_mib"],
            "MiB",
            empty["peak_rss_mib"],
            "verify of an empty store",
        ),
        Figure(
            f"export journal peak RSS, {events:,} events",
            measured["journal_export_peak_rss_mib"],
            "MiB",
            empty["journal_export_peak_rss_mib"],
            "export of an empty store",
            detail={"seconds": measured["journal_export_s"]},
        ),
        Figure(
            f"export audit peak RSS, {events:,} events",
            measured["audit_export_peak_rss_mib"],
            "MiB",
            empty["audit_export_peak_rss_mib"],
            "export of an empty store",
            detail={"seconds": measured["audit_export_s"]},
        ),
    ]


def table(figures: list[Figure], title: str) -> Table:
    """The results: each figure, its floor, the ratio between them, and the target."""
    results = Table(title=title, title_justify="left")
    for column in ("measure", "value", "floor", "ratio", "target"):
        results.add_column(column, justify="left" if column in ("measure", "target") else "right")
    for figure in figures:
        floor = f"{_number(figure.floor)} ({figure.floor_name})" if figure.floor is not None else ""
        ratio = f"{figure.ratio:.0%}" if figure.ratio is not None and figure.unit.endswith("/s") else ""
        if figure.ratio is not None and not figure.unit.endswith("/s"):
            ratio = f"{figure.ratio:.2f}×"
        verdict = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[figure.met]
        results.add_row(
            figure.name,
            f"{_number(figure.value)} {figure.unit}",
            floor,
            ratio,
            f"{figure.target} {verdict}".strip(),
        )
    return results


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def main(argv: list[str] | None = None) -> None:
    """Run the suite at the chosen size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: only check that everything runs")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file (default benchmarks/results/suite.json)"
    )
    parser.add_argument("--folder", type=Path, help="where to build the stores (default: a temporary folder)")
    options = parser.parse_args(argv)
    name = "quick" if options.quick else "smoke" if options.smoke else "full"
    started = time.perf_counter()
    note(f"running the {name} benchmark suite")
    with tempfile.TemporaryDirectory(dir=options.folder) as folder:
        figures = run(SIZES[name], Path(folder))
    elapsed_s = time.perf_counter() - started
    # A log or a file gets the whole table, not one cut to 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=140)
    console.print(table(figures, f"deposit-ledger benchmarks ({name}, {elapsed_s:,.0f} s)"))
    report = {
        "suite": name,
        "date": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "elapsed_s": round(elapsed_s, 1),
        "sizes": SIZES[name].__dict__,
        "figures": [figure.as_json() for figure in figures],
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    note(f"written to {options.output}")


if __name__ == "__main__":
    main()
