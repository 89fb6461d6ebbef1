"""The read-model commands of ``deposit-ledger``: balance, shops, audit, projections (a fixed contract)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger import DepositLedger
from ledger.faces.cli import main
from ledger.store.urls import Store
from tests.cli.conftest import SHOW_KEYS
from tests.ledger.stores import connect, copy_store, fill_behind, view_rows

AUDIT_KEYS = ["position", "type", "amount", "frozen_after", "actor", "effective_at", "recorded_at"]

Result = tuple[int, str, str]
Cli = Callable[..., Result]


@pytest.fixture
def cli(store_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``deposit-ledger --db <the test's store> --actor ops ARGS``: (exit code, stdout, stderr).

    The store is migrated first: an empty store, not one without tables (which says so, see test_migrate).
    """
    DepositLedger(store_url).close()

    def run(*args: str) -> Result:
        try:
            main(["--db", store_url, "--actor", "ops", *args])
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _json(cli: Cli, *args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert (code, err) == (0, ""), err
    return json.loads(out)


def _at(day: int, hour: int = 9) -> str:
    return f"2025-{1 + day // 28:02d}-{1 + day % 28:02d}T{hour:02d}:00:00+08:00"


def record_six_shops(url: str) -> None:
    """Six shops in the store at ``url``, one in each status, on three sites and three currencies."""
    ledger = DepositLedger(url, actor="ops")
    try:
        ledger.open("a-active", currency="CNY", required="2000", site="CN", at=_at(0))
        ledger.pay("a-active", "2000", channel="alipay", ref="A1", at=_at(1))
        ledger.open("b-waiting", currency="JPY", required="70000", site="JP", at=_at(0))
        ledger.open("c-short", currency="CNY", required="1000", site="cn", at=_at(0))
        ledger.pay("c-short", "500", channel="wechat_pay", ref="W1", at=_at(1))
        ledger.deduct("c-short", "800", reason="fake_listing", case="F1", note="brand", at=_at(2))
        ledger.open("d-closed", currency="USD", required="100", site="US", at=_at(0))
        ledger.pay("d-closed", "60", channel="alipay", ref="A2", at=_at(1))
        ledger.pay("d-closed", "40", channel="wechat_pay", ref="W2", at=_at(2))
        ledger.deduct("d-closed", "5", reason="late_shipment", case="L1", at=_at(3))
        ledger.close_shop("d-closed", at=_at(4))
        ledger.refund("d-closed", at=_at(100))
        ledger.open("e-gone", currency="CNY", required="100", site="CN", at=_at(0))
        ledger.pay("e-gone", "100", channel="alipay", ref="A3", at=_at(1))
        ledger.force_close("e-gone", reason="counterfeit goods", at=_at(2))
        ledger.open("f-closing", currency="USD", required="100", at=_at(0))
        ledger.close_shop("f-closing", at=_at(1))
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def six_shops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store of :func:`record_six_shops`, built once for the module."""
    path = tmp_path_factory.mktemp("six-shops") / "deposits.db"
    record_six_shops(str(path))
    return path


@pytest.fixture
def shops(request: pytest.FixtureRequest, cli: Cli, backend: str, store_url: str, db_path: Path) -> Cli:
    """The CLI on a store of the six shops: a fresh copy of the file on SQLite."""
    if backend == "sqlite":
        copy_store(request.getfixturevalue("six_shops"), db_path)
    else:
        record_six_shops(store_url)
    return cli


ALL_SHOPS = ["a-active", "b-waiting", "c-short", "d-closed", "e-gone", "f-closing"]


# -------------------------------------------------------------------------- balance


@pytest.mark.parametrize("shop", ALL_SHOPS)
def test_balance_json_has_the_keys_and_values_of_show_json(shops: Cli, shop: str) -> None:
    balance = _json(shops, "balance", shop)
    assert list(balance) == SHOW_KEYS
    assert balance == _json(shops, "show", shop)


def test_balance_figures_are_decimal_strings_in_major_units(shops: Cli) -> None:
    assert _json(shops, "balance", "c-short") == {
        "shop_id": "c-short",
        "status": "underfunded",
        "currency": "CNY",
        "required": "1000.00",
        "paid": "500.00",
        "frozen": "0.00",
        "deducted": "500.00",
        "refunded": "0.00",
        "forfeited": "0.00",
        "owed": "300.00",
        "shortfall": "1300.00",
        "version": 4,
        "held": "0.00",
        "reversed": "0.00",
        "top_up_due": None,
        "policy_version": None,
        "categories": [],
        "written_off": "0.00",
        "site": "CN",
        "settlement_due": None,
    }
    assert _json(shops, "balance", "b-waiting")["required"] == "70000"


def test_balance_prints_a_table_without_json(shops: Cli) -> None:
    code, out, err = shops("balance", "a-active")
    assert (code, err) == (0, "")
    assert "Balance of a-active" in out
    assert "2000.00" in out


@pytest.mark.parametrize("command", ["balance", "audit"])
def test_an_unknown_shop_exits_1_with_one_line(cli: Cli, command: str) -> None:
    assert cli(command, "nobody", "--json") == (1, "", "deposit-ledger: shop nobody has no deposit\n")


def test_a_malformed_shop_id_exits_2(cli: Cli) -> None:
    code, out, err = cli("balance", "no shop", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("deposit-ledger: shop id 'no shop' must be") and err.count("\n") == 1


# ---------------------------------------------------------------------------- shops


def test_shops_lists_every_deposit_by_shop_id_with_the_show_keys(shops: Cli) -> None:
    listed = _json(shops, "shops")
    assert [entry["shop_id"] for entry in listed] == ALL_SHOPS
    assert listed == [_json(shops, "show", shop) for shop in ALL_SHOPS]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (("--status", "active"), ["a-active"]),
        (("--status", "awaiting_payment"), ["b-waiting"]),
        (("--status", "underfunded"), ["c-short"]),
        (("--status", "closed"), ["d-closed"]),
        (("--status", "forfeited"), ["e-gone"]),
        (("--status", "CLOSING"), ["f-closing"]),
        (("--site", "CN"), ["a-active", "c-short", "e-gone"]),
        (("--site", "us"), ["d-closed"]),
        (("--site", "XX"), []),
        (("--underfunded",), ["b-waiting", "c-short"]),
        (("--underfunded", "--site", "JP"), ["b-waiting"]),
        (("--status", "active", "--site", "US"), []),
    ],
)
def test_shops_filters_by_status_site_and_shortfall(shops: Cli, filters: tuple[str, ...], expected: list[str]) -> None:
    assert [entry["shop_id"] for entry in _json(shops, "shops", *filters)] == expected


def test_shops_refuses_an_unknown_status_with_exit_2(shops: Cli) -> None:
    code, out, err = shops("shops", "--status", "sleeping", "--json")
    assert (code, out) == (2, "")
    assert err.startswith("deposit-ledger: unknown status 'sleeping': expected one of") and err.count("\n") == 1


def test_shops_on_an_empty_store_is_an_empty_array(cli: Cli) -> None:
    assert _json(cli, "shops") == []


# ---------------------------------------------------------------------------- audit


def test_audit_lists_every_event_oldest_first_with_details_only_where_the_event_has_them(shops: Cli) -> None:
    trail = _json(shops, "audit", "d-closed")
    history = _json(shops, "history", "d-closed")
    # Every event once, the refund once per channel share (newest payment first).
    assert [entry["type"] for entry in trail] == [event["type"] for event in history] + ["Refunded"]
    keys = [(entry["position"], entry.get("share", 0)) for entry in trail]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    details = [{key: value for key, value in entry.items() if key not in AUDIT_KEYS} for entry in trail]
    assert details == [
        {},
        {"channel": "alipay", "ref": "A2"},
        {},
        {"channel": "wechat_pay", "ref": "W2"},
        {},
        {"reason": "late_shipment", "case": "L1"},
        {},
        {"channel": "wechat_pay", "ref": "W2", "share": 1},
        {"channel": "alipay", "ref": "A2", "share": 2},
    ]
    for entry in trail:
        assert list(entry)[: len(AUDIT_KEYS)] == AUDIT_KEYS
        assert entry["actor"] == "ops"
    assert [(entry["amount"], entry["frozen_after"]) for entry in trail] == [
        ("100.00", "0.00"),
        ("60.00", "0.00"),
        ("60.00", "60.00"),
        ("40.00", "60.00"),
        ("40.00", "100.00"),
        ("5.00", "95.00"),
        (None, "95.00"),
        ("40.00", "55.00"),
        ("55.00", "0.00"),
    ]
    assert trail[0]["effective_at"] == "2025-01-01T01:00:00Z"
    assert trail[0]["recorded_at"].endswith("Z")


def test_audit_shows_the_case_note_and_the_forfeiture_reason(shops: Cli) -> None:
    deduction = _json(shops, "audit", "c-short")[-1]
    assert {key: deduction[key] for key in ("type", "amount", "reason", "case", "note")} == {
        "type": "Deducted",
        "amount": "500.00",
        "reason": "fake_listing",
        "case": "F1",
        "note": "brand",
    }
    forfeiture = _json(shops, "audit", "e-gone")[-1]
    assert forfeiture == {**{key: forfeiture[key] for key in AUDIT_KEYS}, "reason": "counterfeit goods"}
    assert (forfeiture["type"], forfeiture["amount"], forfeiture["frozen_after"]) == ("Forfeited", "100.00", "0.00")


def test_audit_positions_are_the_event_log_positions(shops: Cli, store: Store) -> None:
    trails = [entry for shop in ALL_SHOPS for entry in _json(shops, "audit", shop)]
    position = store.position_column
    with connect(store) as connection:
        stored = connection.execute(f"SELECT {position}, topic FROM {store.events_table} ORDER BY 1").fetchall()
    # A refund's channel shares share its position.
    assert sorted({(entry["position"], f"ShopDeposit.{entry['type']}") for entry in trails}) == stored


# ---------------------------------------------------------------------- projections


def test_projections_status_json_is_an_array_of_name_position_head_lag(shops: Cli, store: Store) -> None:
    with connect(store) as connection:
        (head,) = connection.execute(f"SELECT MAX({store.position_column}) FROM {store.events_table}").fetchone()
    assert _json(shops, "projections", "status") == [
        {"name": "balances", "position": head, "head": head, "lag": 0},
        {"name": "audit_trail", "position": head, "head": head, "lag": 0},
    ]
    assert _json(shops, "projections", "status", "audit_trail") == [
        {"name": "audit_trail", "position": head, "head": head, "lag": 0}
    ]


def test_projections_status_prints_a_table_without_json(shops: Cli) -> None:
    code, out, err = shops("projections", "status")
    assert (code, err) == (0, "")
    assert "balances" in out and "audit_trail" in out and "current" in out


@pytest.fixture
def lagging(cli: Cli, store_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A store whose views have seen nothing of its events, and which no open catches up."""
    monkeypatch.setattr("ledger.app.service.AUTO_CATCH_UP_LIMIT", 0)
    ledger = DepositLedger(store_url, actor="ops")
    try:
        return fill_behind(ledger, 4, 2)
    finally:
        ledger.close()


def test_projections_catch_up_applies_what_is_pending(cli: Cli, lagging: int) -> None:
    head = lagging
    assert [entry["lag"] for entry in _json(cli, "projections", "status")] == [head, head]
    assert _json(cli, "projections", "catch-up", "balances") == [
        {"name": "balances", "position": head, "head": head, "lag": 0},
        {"name": "audit_trail", "position": 0, "head": head, "lag": head},
    ]
    assert [entry["lag"] for entry in _json(cli, "projections", "catch-up")] == [0, 0]
    assert _json(cli, "balance", "bulk-00003") == _json(cli, "show", "bulk-00003")


def test_a_query_on_a_lagging_view_warns_on_stderr(cli: Cli, lagging: int) -> None:
    cli("projections", "catch-up", "balances")
    code, out, err = cli("balance", "bulk-00000", "--json")
    assert code == 0
    assert json.loads(out)["shop_id"] == "bulk-00000"
    assert err == f"deposit-ledger: warning: view audit_trail lags {lagging} events\n"


def test_projections_rebuild_rebuilds_the_named_view_or_all(shops: Cli, store: Store) -> None:
    before = view_rows(store)
    assert [entry["lag"] for entry in _json(shops, "projections", "rebuild", "audit_trail")] == [0, 0]
    assert [entry["lag"] for entry in _json(shops, "projections", "rebuild")] == [0, 0]
    assert view_rows(store) == before
    code, out, err = shops("projections", "rebuild")
    assert (code, err) == (0, "")
    assert "Read models" in out


def test_a_poison_event_makes_catch_up_exit_1_naming_its_position(cli: Cli, lagging: int, store: Store) -> None:
    with connect(store) as connection:
        connection.execute(
            f"UPDATE {store.events_table} SET state = ? WHERE {store.position_column} = 5", (b"{broken",)
        )
    code, out, err = cli("projections", "catch-up")
    assert (code, out) == (1, "")
    assert err.startswith("deposit-ledger: view balances stopped at position 5: MapperDeserialisationError: ")
    assert err.count("\n") == 1
    status = _json(cli, "projections", "status")
    assert [(entry["position"], entry["lag"]) for entry in status] == [(4, lagging - 4), (4, lagging - 4)]
    assert all(entry["error"].startswith("position 5: MapperDeserialisationError") for entry in status)


@pytest.mark.parametrize("command", ["status", "catch-up", "rebuild"])
def test_an_unknown_view_name_exits_2_with_one_line(cli: Cli, command: str) -> None:
    code, out, err = cli("projections", command, "journal", "--json")
    assert (code, out) == (2, "")
    assert err == "deposit-ledger: unknown view 'journal': expected one of balances, audit_trail\n"
