"""What every benchmark shares: percentiles, child processes with their peak memory, the machine.

Figures are taken side by side in one run: a measurement and its floor run on the
same machine within seconds of each other, and where they can, in alternating
rounds, so that a busy moment weighs on both alike.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(stderr=True)
"""Progress notes go to stderr; the results table goes to stdout."""


def note(message: str) -> None:
    """Say what the suite is doing now (stderr)."""
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {message}")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def alternate(contenders: Sequence[Callable[[], Any]], rounds: int) -> list[list[float]]:
    """Each contender's call latencies in seconds, the contenders taking turns call after call."""
    timings: list[list[float]] = [[] for _ in contenders]
    for _ in range(rounds):
        for call, timing in zip(contenders, timings, strict=True):
            started = time.perf_counter()
            call()
            timing.append(time.perf_counter() - started)
    return timings


def peak_rss_mib() -> float:
    """This process's own peak resident memory in MiB.

    ``VmHWM`` belongs to the process's current memory map, so a child started
    from a large parent does not inherit the parent's peak (``ru_maxrss`` would).
    """
    try:
        for text in Path("/proc/self/status").read_text().splitlines():
            if text.startswith("VmHWM:"):
                return int(text.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def run_child(module: str, *arguments: str) -> dict[str, Any]:
    """Run ``python -m module arguments`` and return the JSON object it printed last."""
    result: dict[str, Any] = run_python("-m", module, *arguments)
    return result


def run_python(*arguments: str) -> Any:
    """Run ``python arguments`` on this tree's code and return the JSON value it printed last."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    root = str(Path(__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (root, environment.get("PYTHONPATH"))))
    done = subprocess.run([sys.executable, *arguments], capture_output=True, text=True, env=environment, check=False)
    if done.returncode:
        raise RuntimeError(f"python {' '.join(arguments)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


@dataclass(frozen=True)
class Figure:
    """One line of the results: a measured value beside its floor and, where one is set, its target."""

    name: str
    value: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    target: str = ""
    met: bool | None = None
    detail: dict[str, Any] | None = None

    @property
    def ratio(self) -> float | None:
        """The value as a share of the floor (for rates) or a multiple of it (for times)."""
        if self.floor is None or self.floor == 0:
            return None
        return self.value / self.floor

    def as_json(self) -> dict[str, Any]:
        """The figure as the JSON report holds it."""
        return {
            "name": self.name,
            "value": round(self.value, 3),
            "unit": self.unit,
            "floor": round(self.floor, 3) if self.floor is not None else None,
            "floor_name": self.floor_name or None,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
            "target": self.target or None,
            "met": self.met,
            **({"detail": self.detail} if self.detail else {}),
        }
