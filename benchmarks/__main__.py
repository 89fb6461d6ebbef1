"""``python -m benchmarks [--quick] [--output FILE]``: the whole suite, one table, one JSON file.

Every figure is measured in this run beside its floor (the bare storage doing
the same work) and, where the project sets one, checked against its target.
The full size is what ``docs/performance.md`` reports; ``--quick`` runs in under
a minute for CI; ``--smoke`` only checks that every benchmark still runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import bulk, commands, replay
from benchmarks.common import Figure, machine, note

DEFAULT_OUTPUT = Path("benchmark-results.json")


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    bulk_events: int
    balance_queries: int
    command_shops: int
    command_rounds: int
    replay_events: int
    replay_rounds: int


SIZES = {
    "full": Sizes(1_000_000, 20_000, 1_000, 600, 100_000, 100),
    "quick": Sizes(20_000, 2_000, 100, 60, 10_000, 20),
    "smoke": Sizes(600, 50, 5, 5, 400, 3),
}


def run(sizes: Sizes, folder: Path) -> list[Figure]:
    """Every benchmark at ``sizes``, its stores in ``folder``."""
    figures = commands.measure(folder, sizes.command_shops, sizes.command_rounds)
    figures += bulk.measure(folder, sizes.bulk_events, sizes.balance_queries)
    figures += replay.measure(folder, sizes.replay_events, sizes.replay_rounds)
    return figures


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
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default {DEFAULT_OUTPUT})")
    parser.add_argument("--folder", type=Path, help="where to build the stores (default: a temporary folder)")
    options = parser.parse_args(argv)
    name = "quick" if options.quick else "smoke" if options.smoke else "full"
    started = time.perf_counter()
    note(f"running the {name} benchmark suite")
    with tempfile.TemporaryDirectory(dir=options.folder) as folder:
        figures = run(SIZES[name], Path(folder))
    elapsed_s = time.perf_counter() - started
    Console().print(table(figures, f"deposit-ledger benchmarks ({name}, {elapsed_s:,.0f} s)"))
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
