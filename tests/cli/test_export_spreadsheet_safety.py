"""``export audit --format csv`` is opened in spreadsheets: text that would run as a formula is neutralised."""

from __future__ import annotations

import csv
import io
import json
import shlex

import pytest

from ledger.tools.audit import _csv_cell
from tests.cli.conftest import Run, at

FORMULAS = {
    "actor": '=HYPERLINK("http://evil.example","click")',
    "note": "+SUM(A1:A9)",
    "reason": "@import the rest",
}


@pytest.fixture
def hostile(cli: Run) -> Run:
    """A shop whose actor, note and forced-closure reason all begin like formulas (case ids cannot)."""
    actor = shlex.quote(FORMULAS["actor"])
    for line in [
        f"open tea-house --currency CNY --required 100 --at {at()}",
        f"pay tea-house 100 --channel alipay --ref A1 --at {at(days=1)}",
        f"deduct tea-house 10 --reason other --case OT-1 --note {shlex.quote(FORMULAS['note'])} --at {at(days=2)}",
        f"force-close tea-house --reason {shlex.quote(FORMULAS['reason'])} --at {at(days=3)}",
    ]:
        outcome = cli(f"--actor {actor} {line}")
        assert outcome.code == 0, outcome.err
    return cli


def test_text_that_would_run_as_a_formula_gets_a_leading_apostrophe_in_csv(hostile: Run) -> None:
    rows = list(csv.DictReader(io.StringIO(hostile("export audit --format csv").out)))
    exact = [json.loads(line) for line in hostile("export audit --format jsonl").out.splitlines()]

    assert len(rows) == len(exact) > 0
    for row, record in zip(rows, exact, strict=True):
        for column, value in row.items():
            original = "" if record[column] is None else str(record[column])
            if column in ("actor", "case", "reason", "note") and original[:1] in ("=", "+", "-", "@"):
                assert value == f"'{original}", column
            else:
                assert value == original, column
        assert not any(value.startswith(("=", "+", "@")) for value in row.values())
    assert {row["actor"] for row in rows} == {"'" + FORMULAS["actor"]}
    assert "'" + FORMULAS["note"] in {row["note"] for row in rows}
    assert "'" + FORMULAS["reason"] in {row["reason"] for row in rows}


def test_json_lines_keep_every_value_exactly(hostile: Run) -> None:
    exact = [json.loads(line) for line in hostile("export audit --format jsonl").out.splitlines()]
    assert {record["actor"] for record in exact} == {FORMULAS["actor"]}
    assert FORMULAS["note"] in {record["note"] for record in exact}


@pytest.mark.parametrize(
    ("column", "value", "written"),
    [
        ("note", "\tcmd", "'\tcmd"),
        ("note", "\rcmd", "'\rcmd"),
        ("actor", "@SUM(1)", "'@SUM(1)"),
        ("ref", "=1", "'=1"),
        ("note", "a = b", "a = b"),
        ("note", "", ""),
        ("note", None, ""),
        ("amount", "-12.50", "-12.50"),
        ("frozen_after", "-0.01", "-0.01"),
        ("chain_hash", "-abc", "-abc"),
        ("position", 7, 7),
    ],
)
def test_only_text_columns_are_neutralised(column: str, value: object, written: object) -> None:
    assert _csv_cell(column, value) == written
