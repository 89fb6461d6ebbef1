"""``import`` and ``export journal`` on the command line: summary, rejects, exit codes, a kill half way."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from ledger.tools.journal import IMPORT_BATCH_LINES, JournalFormat
from tests.cli.conftest import Run, stored_rows
from tests.ledger.journals import SHOPS, STORY, line, write_journal

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {"lines", "applied", "duplicates", "rejected", "events", "seconds"}


def test_import_prints_the_summary_and_exits_0_when_nothing_was_rejected(cli: Run, tmp_path: Path) -> None:
    journal = write_journal(tmp_path / "story.jsonl", STORY, "jsonl")

    first = cli(f"import {journal} --json")
    again = cli(f"import {journal} --json")

    assert (first.code, first.err) == (0, "")
    assert set(first.json()) == SUMMARY_KEYS
    assert {key: first.json()[key] for key in ("lines", "applied", "duplicates", "rejected")} == {
        "lines": 12,
        "applied": 12,
        "duplicates": 0,
        "rejected": 0,
    }
    assert (again.code, again.json()["applied"], again.json()["duplicates"], again.json()["events"]) == (0, 0, 12, 0)
    assert cli("show tea-house --json").json()["status"] == "closed"


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_rejected_lines_go_to_the_rejects_file_and_the_import_exits_1(
    cli: Run, tmp_path: Path, file_format: JournalFormat
) -> None:
    records = [
        line("open", "tea", "2025-01-01T00:00:00Z", currency="CNY", required="100"),
        line("pay", "tea", "2025-01-02T00:00:00Z", amount="1.001", channel="alipay", ref="A1"),
        line("pay", "tea", "2025-01-02T00:00:00Z", amount="100", channel="alipay", ref="A1"),
        line("refund", "tea", "2025-01-03T00:00:00Z"),
    ]
    journal = write_journal(tmp_path / f"journal.{file_format}", records, file_format)
    rejects = tmp_path / f"rejects.{file_format}"

    result = cli(f"import {journal} --rejects {rejects} --json")

    assert result.code == 1
    assert (result.json()["applied"], result.json()["rejected"]) == (2, 2)
    assert result.err_lines == [f"deposit-ledger: 2 of 4 lines rejected, written to {rejects}"]
    written = rejects.read_text(encoding="utf-8").splitlines()
    if file_format == "jsonl":
        assert [json.loads(text)["line"] for text in written] == [2, 4]
        assert json.loads(written[0])["reason"] == "amount 1.001 has more decimals than CNY allows (2)"
        assert json.loads(json.loads(written[1])["input"]) == records[3]
    else:
        assert written[0].startswith("line,reason,op,shop,at,")
        assert written[1].startswith("3,amount 1.001 has more decimals than CNY allows (2),pay,tea,")
        assert written[2].startswith("5,shop tea is active and cannot be refunded,refund,tea,")


def test_without_a_rejects_file_each_rejected_line_is_one_line_on_stderr(cli: Run, tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    journal.write_text('{"op":"close","shop":"ghost","at":"2025-01-01T00:00:00Z"}\nnot json\n', encoding="utf-8")

    result = cli(f"import {journal}")

    assert result.code == 1
    assert result.err_lines == [
        "deposit-ledger: line 1: shop ghost has no deposit",
        "deposit-ledger: line 2: not JSON: Expecting value: line 1 column 1 (char 0)",
        "deposit-ledger: 2 of 2 lines rejected",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param("missing.jsonl", "no journal file at missing.jsonl", id="no-file"),
        pytest.param("journal.csv --format xml", "unknown format 'xml': expected jsonl or csv", id="format"),
        pytest.param("journal.csv", "CSV journal header has unknown column(s) amout", id="header"),
    ],
)
def test_a_journal_that_cannot_be_read_exits_2_and_writes_nothing(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arguments: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "journal.csv").write_text("op,shop,at,amout\nopen,tea,2025-01-01T00:00:00Z,1\n")

    result = cli(f"import {arguments}")

    assert result.code == 2
    assert len(result.err_lines) == 1
    assert result.err.startswith(f"deposit-ledger: {message}")


def test_export_journal_round_trips_through_the_command_line(
    cli: Run, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(f"import {write_journal(tmp_path / 'story.csv', STORY, 'csv')}")
    exported = tmp_path / "export.csv"
    written = cli(f"export journal --output {exported}")
    assert (written.code, written.err) == (0, f"deposit-ledger: wrote 12 lines to {exported}\n")
    assert cli("export journal --format jsonl").out.count("\n") == 12

    copy = f"--db {tmp_path / 'copy.db'}"
    assert run(f"{copy} import {exported}").code == 0
    for shop in SHOPS:
        assert run(f"{copy} show {shop} --json").json() == cli(f"show {shop} --json").json()
        assert _without_recording_times(run(f"{copy} history {shop} --json").json()) == _without_recording_times(
            cli(f"history {shop} --json").json()
        )
    assert run(f"{copy} shops --json").json() == cli("shops --json").json()


def test_export_journal_of_a_store_that_does_not_exist_exits_2(run: Run, tmp_path: Path) -> None:
    result = run(f"--db {tmp_path / 'none.db'} export journal")
    assert (result.code, result.err_lines) == (2, [f"deposit-ledger: no ledger store at {tmp_path / 'none.db'}"])
    assert not (tmp_path / "none.db").exists()


def _without_recording_times(history: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{key: value for key, value in entry.items() if key != "recorded_at"} for entry in history]


# ------------------------------------------------------------------- killed half way


def _big_journal(path: Path, shops: int, payments: int) -> Path:
    # Shop after shop interleaved, as a back office would export them by time.
    records = [line("open", f"shop-{n}", "2025-01-01T00:00:00Z", currency="CNY", required="1000") for n in range(shops)]
    for number in range(payments):
        at = f"2025-01-02T00:00:{number:02d}Z"
        records += [
            line("pay", f"shop-{n}", at, amount="10", channel="alipay", ref=f"T{n}-{number}") for n in range(shops)
        ]
    return write_journal(path, records, "jsonl")


def _stored_events(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(db, timeout=5)) as connection:
            return int(connection.execute("SELECT count(*) FROM stored_events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # the importer has not created its tables yet


@pytest.mark.slow
def test_an_import_killed_half_way_and_run_again_applies_nothing_twice(run: Run, tmp_path: Path) -> None:
    journal = _big_journal(tmp_path / "big.jsonl", shops=700, payments=30)  # 21,700 lines (3 batches), 42,700 events
    killed, clean = tmp_path / "killed.db", tmp_path / "clean.db"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DEPOSIT_LEDGER_")}
    env["PYTHONPATH"] = str(ROOT)
    importer = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--db", str(killed), "import", str(journal)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while _stored_events(killed) == 0 and importer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    importer.send_signal(signal.SIGKILL)
    importer.wait()
    at_kill = _stored_events(killed)
    assert 0 < at_kill < 42_700, "the kill must land between two batches"

    rerun = run(f"--db {killed} import {journal} --json")
    assert run(f"--db {clean} import {journal} --json").json()["events"] == 42_700

    assert rerun.code == 0
    summary = rerun.json()
    assert summary["events"] == 42_700 - at_kill
    assert summary["applied"] + summary["duplicates"] == 21_700
    assert _stored_events(killed) == _stored_events(clean)
    assert run(f"--db {killed} export journal").out == run(f"--db {clean} export journal").out
    assert run(f"--db {killed} shops --json").json() == run(f"--db {clean} shops --json").json()
    assert run(f"--db {killed} verify --json").json()["ok"] is True


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
@pytest.mark.parametrize("bad_line", [1, IMPORT_BATCH_LINES, IMPORT_BATCH_LINES + 1])
def test_a_journal_with_a_byte_that_is_not_utf8_applies_nothing_and_names_its_line(
    cli: Run, store_url: str, tmp_path: Path, file_format: JournalFormat, bad_line: int
) -> None:
    # A batch of good lines around one note in Latin-1: the batch's first or last line, or the next batch's first.
    journal = tmp_path / f"journal.{file_format}"
    data = b"op,shop,at,currency,required,note\n" if file_format == "csv" else b""
    bad_offset = -1
    for number in range(1, IMPORT_BATCH_LINES + 3):
        note = "café".encode("latin-1" if number == bad_line else "utf-8")
        if file_format == "csv":
            text = f"open,s{number},2025-01-01T00:00:00Z,CNY,100,".encode() + note + b"\n"
        else:
            record = json.dumps(line("open", f"s{number}", "2025-01-01T00:00:00Z", currency="CNY", required="100"))
            text = record[:-1].encode() + b', "note": "' + note + b'"}\n'
        if number == bad_line:
            bad_offset = len(data) + text.index(b"\xe9")
        data += text
    journal.write_bytes(data)
    physical_line = bad_line + (1 if file_format == "csv" else 0)
    assert cli("open seed --currency CNY --required 1 --at 2025-01-01T00:00:00Z").code == 0
    rows = stored_rows(store_url)

    result = cli(f"import {journal}")

    assert result.code == 2
    assert result.err_lines == [
        f"deposit-ledger: journal {journal} is not UTF-8: line {physical_line} (byte offset {bad_offset}), "
        "nothing was applied"
    ]
    assert stored_rows(store_url) == rows
