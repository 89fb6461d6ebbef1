"""The auditors' commands as scripts call them: ``replay``, ``checkpoint`` and ``export audit``."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.store.urls import resolve_store
from ledger.tools.audit import EXPORT_COLUMNS
from tests.conftest import fetch_all, fresh_schema
from tests.ledger.audited_store import DEMO_SHOPS, LONG_SHOP, build_store, copy_store, run_cli, template_store

COLUMNS = [
    "position",
    "shop_id",
    "type",
    "currency",
    "amount",
    "frozen_after",
    "actor",
    "effective_at",
    "recorded_at",
    "channel",
    "ref",
    "reason",
    "case",
    "note",
    "chain_hash",
    "share",
]
"""The columns of ``export audit``, in order, as the auditors' scripts read them."""


@pytest.fixture(scope="module")
def postgres_audited_store() -> Iterator[str]:
    """The audited history in a PostgreSQL schema, built once for the module: these tests only read it."""
    with fresh_schema() as url:
        build_store(url)
        yield url


@pytest.fixture
def store(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The audited history: a fresh copy of the file on SQLite, the module's schema on PostgreSQL."""
    if backend == "sqlite":
        return str(copy_store(template_store(tmp_path_factory), tmp_path / "deposits.db"))
    url: str = request.getfixturevalue("postgres_audited_store")
    return url


@pytest.fixture
def cli(store: str, capsys: pytest.CaptureFixture[str]) -> Any:
    return lambda *args: run_cli(capsys, "--db", store, *args)


def links(url: str) -> dict[int, str]:
    return {position: link.hex() for position, link in fetch_all(resolve_store(url), "SELECT * FROM event_chain")}


def head(url: str) -> int:
    store = resolve_store(url)
    return int(fetch_all(store, f"SELECT MAX({store.position_column}) FROM {store.events_table}")[0][0])


def export(cli: Any, *args: str) -> list[dict[str, Any]]:
    outcome = cli("export", "audit", "--format", "jsonl", *args)
    assert (outcome.code, outcome.err) == (0, "")
    return [json.loads(line) for line in outcome.out.splitlines()]


# ------------------------------------------------------------------ replay


@pytest.mark.parametrize("shop", [*DEMO_SHOPS, LONG_SHOP])
def test_replay_json_has_exactly_the_show_keys(cli: Any, shop: str) -> None:
    shown = cli("show", shop, "--json")
    replayed = cli("replay", shop, "--as-of", "2026-03-05T09:00:00Z", "--json")
    assert (replayed.code, replayed.err) == (0, "")
    assert list(json.loads(replayed.out)) == list(json.loads(shown.out))
    # Nothing happened after the demo ran: the replay is the current state.
    assert json.loads(replayed.out) == json.loads(shown.out)


def test_replay_json_as_of_an_earlier_day(cli: Any) -> None:
    # sneaker-lab owed $180 after its $600 penalty, before the next payment settled it.
    replayed = cli("replay", "sneaker-lab", "--as-of", "2026-02-25T00:00:00+08:00", "--json")
    assert replayed.code == 0
    data = json.loads(replayed.out)
    assert (data["status"], data["frozen"], data["owed"], data["shortfall"]) == (
        "underfunded",
        "0.00",
        "180.00",
        "680.00",
    )
    by_version = cli("replay", "sneaker-lab", "--version", str(data["version"]), "--json")
    assert json.loads(by_version.out) == data


# -------------------------------------------------------------- checkpoint


def test_checkpoint_json_names_the_head_and_its_link(cli: Any, store: str) -> None:
    outcome = cli("checkpoint", "--json")
    assert (outcome.code, outcome.err) == (0, "")
    data = json.loads(outcome.out)
    assert list(data) == ["position", "chain_hash", "key_id", "signature"]
    assert data["position"] == head(store)
    assert re.fullmatch("[0-9a-f]{64}", data["chain_hash"])
    assert data["chain_hash"] == links(store)[head(store)]


def test_checkpoint_prints_a_line_for_people(cli: Any, store: str) -> None:
    outcome = cli("checkpoint")
    assert outcome.code == 0
    assert str(head(store)) in outcome.out and links(store)[head(store)] in outcome.out


def test_checkpoint_of_a_missing_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outcome = run_cli(capsys, "--db", str(tmp_path / "nowhere.db"), "checkpoint", "--json")
    assert outcome.code == 2 and len(outcome.err_lines) == 1
    assert not (tmp_path / "nowhere.db").exists()


# ----------------------------------------------------------- export audit


def test_export_columns_are_the_contract() -> None:
    assert list(EXPORT_COLUMNS) == COLUMNS


def test_export_csv_lists_every_event_with_its_chain_hash(cli: Any, store: str) -> None:
    outcome = cli("export", "audit", "--format", "csv")
    assert (outcome.code, outcome.err) == (0, "")
    reader = csv.reader(io.StringIO(outcome.out))
    assert next(reader) == COLUMNS
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in reader]
    # Every event, a refund once per channel share.
    assert sorted({int(row["position"]) for row in rows}) == list(range(1, head(store) + 1))
    chain = links(store)
    assert all(row["chain_hash"] == chain[int(row["position"])] for row in rows)


def test_export_jsonl_has_the_same_records_as_csv(cli: Any) -> None:
    records = export(cli)
    assert all(list(record) == COLUMNS for record in records)
    as_csv = cli("export", "audit", "--format", "CSV").out
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        assert row == {key: "" if value is None else str(value) for key, value in record.items()}


def test_export_shows_what_each_event_did(cli: Any) -> None:
    records = {(r["shop_id"], r["type"], r["amount"]): r for r in export(cli, "--shop", "sneaker-lab")}
    paid = records[("sneaker-lab", "Paid", "300.00")]
    assert (paid["channel"], paid["ref"], paid["currency"], paid["frozen_after"]) == (
        "alipay",
        "sneaker-lab-A1",
        "USD",
        "0.00",
    )
    penalty = records[("sneaker-lab", "Deducted", "420.00")]
    assert (penalty["reason"], penalty["case"], penalty["frozen_after"]) == (
        "order_brushing",
        "sneaker-lab-OB-3",
        "0.00",
    )
    opened = records[("sneaker-lab", "Opened", "500.00")]
    assert (opened["channel"], opened["ref"], opened["reason"], opened["case"], opened["note"]) == (None,) * 5
    assert all(record["actor"] == "risk-ops" for record in records.values())
    yen = export(cli, "--shop", "kimono-house")
    assert [record["amount"] for record in yen][:2] == ["70000", "70000"]


def test_export_of_one_shop(cli: Any) -> None:
    everything = export(cli)
    for shop in (*DEMO_SHOPS, LONG_SHOP):
        records = export(cli, "--shop", shop)
        assert records == [record for record in everything if record["shop_id"] == shop]
    assert export(cli, "--shop", "nobody") == []


def when(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["effective_at"])


def test_export_between_two_times(cli: Any) -> None:
    everything = export(cli)
    start, end = datetime.fromisoformat("2026-02-10T09:00:00Z"), datetime.fromisoformat("2026-03-01T17:00:00+08:00")
    wanted = [record for record in everything if start <= when(record) <= end]
    assert 0 < len(wanted) < len(everything)
    assert export(cli, "--from", start.isoformat(), "--to", end.isoformat()) == wanted
    assert export(cli, "--from", start.isoformat()) == [r for r in everything if when(r) >= start]
    assert export(cli, "--shop", "kimono-house", "--to", end.isoformat()) == [
        r for r in everything if r["shop_id"] == "kimono-house" and when(r) <= end
    ]
    # Both ends are inclusive, to the microsecond.
    first, last = min(map(when, wanted)), max(map(when, wanted))
    assert export(cli, "--from", first.isoformat(), "--to", last.isoformat()) == wanted
    assert export(cli, "--from", last.isoformat(), "--to", last.isoformat()) == [r for r in wanted if when(r) == last]


def test_export_to_a_file(cli: Any, tmp_path: Path, store: str) -> None:
    target = tmp_path / "audit.csv"
    outcome = cli("export", "audit", "--format", "csv", "--shop", "tea-house", "--output", str(target))
    assert outcome.code == 0
    assert outcome.out == ""
    assert outcome.err_lines == [f"deposit-ledger: wrote 6 rows to {target}"]
    rows = list(csv.DictReader(target.open(newline="", encoding="utf-8")))
    assert [row["type"] for row in rows] == ["Opened", "Paid", "Frozen", "Deducted", "ClosureRequested", "Refunded"]
    assert rows[3]["note"] == "3 orders > 48h"

    lines = tmp_path / "audit.jsonl"
    assert cli("export", "audit", "--format", "jsonl", "--output", str(lines)).code == 0
    assert len(lines.read_text(encoding="utf-8").splitlines()) == head(store)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--format", "xml"], id="unknown-format"),
        pytest.param(["--format", ""], id="empty-format"),
        pytest.param([], id="no-format"),
        pytest.param(["--format", "csv", "--from", "last tuesday"], id="bad-from"),
        pytest.param(["--format", "csv", "--to", "2026-03-01T00:00:00"], id="to-without-zone"),
        pytest.param(["--format", "jsonl", "--shop", "no spaces allowed"], id="bad-shop"),
    ],
)
def test_export_refuses_malformed_options(cli: Any, tmp_path: Path, args: list[str]) -> None:
    target = tmp_path / "out.txt"
    outcome = cli("export", "audit", *args, "--output", str(target))
    assert outcome.code == 2
    assert outcome.out == ""
    assert len(outcome.err_lines) == 1
    assert not target.exists()
