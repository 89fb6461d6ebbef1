"""The benchmark suite still runs end to end (at its smoke size; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_benchmark_suite_runs_and_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    environment["PYTHONPATH"] = str(ROOT)

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--output", str(output), "--folder", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["suite"] == "smoke"
    names = [figure["name"] for figure in report["figures"]]
    for expected in ("single pay per transaction", "bulk import", "rebuild", "balance query", "replay"):
        assert any(name.startswith(expected) for name in names), (expected, names)
    assert all(figure["value"] > 0 for figure in report["figures"])
    assert "bulk import" in done.stdout, "the table is printed"


@pytest.mark.slow
def test_the_console_pages_benchmark_runs(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    environment["PYTHONPATH"] = str(ROOT)

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.console_pages", "--shops", "300", "--rounds", "2"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shops"] == 300
    pages = {page["page"]: page for page in report["pages"]}
    assert {"shops, first page", "one deposit", "work queue", "audit"} <= set(pages)
    assert all(page["calls"] == 2 and page["p50_ms"] > 0 for page in pages.values())
