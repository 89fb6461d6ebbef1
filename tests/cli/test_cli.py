"""The ``deposit-ledger`` contract, run in-process through ``ledger.faces.cli.main``.

Scripts depend on these outputs exactly: the JSON keys, amounts as decimal
strings in major units, the exit codes, one line on stderr, and nothing written
by a refused or malformed command.
"""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger import DepositLedger
from ledger.store.urls import resolve_store
from tests.cli.conftest import SHOW_KEYS, Outcome, Run, at
from tests.conftest import fetch_all

REFUSED = 1
MALFORMED = 2


def done(result: Outcome) -> Outcome:
    """A command that succeeded and said nothing on stderr (else the test fails with its stderr)."""
    assert result.code == 0, result.err
    assert result.err == ""
    return result


def ok(result: Outcome) -> Any:
    """The JSON a successful command printed."""
    return done(result).json()


def cny_state(
    shop_id: str,
    status: str,
    version: int,
    top_up_due: str | None = None,
    *,
    site: str | None = None,
    settlement_due: str | None = None,
    **amounts: str,
) -> dict[str, Any]:
    """The expected ``show --json`` object of a CNY deposit opened by hand: every amount "0.00" unless given."""
    figures = ("required", "paid", "frozen", "deducted", "refunded", "forfeited", "owed", "shortfall")
    return {
        "shop_id": shop_id,
        "status": status,
        "currency": "CNY",
        **{figure: amounts.get(figure, "0.00") for figure in figures},
        "version": version,
        **{figure: amounts.get(figure, "0.00") for figure in ("held", "reversed")},
        "top_up_due": top_up_due,
        "policy_version": None,
        "categories": [],
        "written_off": amounts.get("written_off", "0.00"),
        "site": site,
        "settlement_due": settlement_due,
    }


def stored_records(url: str | Path) -> list[tuple[Any, ...]]:
    """Every row of the store at ``url`` (a path or URL), events and snapshots, in a stable order."""
    store = resolve_store(str(url))
    events = fetch_all(store, f"SELECT * FROM {store.events_table} ORDER BY {store.position_column}")
    snapshots = fetch_all(store, f"SELECT * FROM {store.snapshots_table} ORDER BY 1, 2")
    return [*events, *snapshots]


def open_and_fund(cli: Run, shop: str) -> None:
    """A CNY deposit of 2,000 opened at ``at()`` and paid in full through Alipay a day later."""
    done(cli(f"open {shop} --currency CNY --required 2000 --site CN --at {at()}"))
    done(cli(f"pay {shop} 2000 --channel alipay --ref A1 --at {at(days=1)}"))


@pytest.fixture
def funded(cli: Run) -> str:
    """``tea-house``: 2,000 CNY required, paid and frozen (version 3)."""
    open_and_fund(cli, "tea-house")
    return "tea-house"


# ------------------------------------------------------------------ --json of each command


def test_open_prints_exactly_the_contract_keys_in_order(cli: Run) -> None:
    data = ok(cli("open tea-house --currency cny --required 1700 --site cn --json"))
    assert list(data) == SHOW_KEYS
    assert data == cny_state("tea-house", "awaiting_payment", 1, site="CN", required="1700.00", shortfall="1700.00")


def test_pay_freezes_the_payment_and_reports_major_units(cli: Run) -> None:
    done(cli(f"open tea-house --currency CNY --required 2000 --at {at()}"))
    partial = ok(cli(f"pay tea-house 1700 --channel alipay --ref A1 --at {at(days=1)} --json"))
    assert list(partial) == SHOW_KEYS
    assert partial == cny_state(
        "tea-house", "underfunded", 3, required="2000.00", paid="1700.00", frozen="1700.00", shortfall="300.00"
    )
    top_up = ok(cli("pay tea-house 300.00 --channel wechat_pay --ref W1 --json"))
    assert top_up == cny_state("tea-house", "active", 5, required="2000.00", paid="2000.00", frozen="2000.00")


def test_a_currency_without_minor_unit_prints_whole_numbers(cli: Run) -> None:
    done(cli(f"open kimono-house --currency JPY --required 70000 --at {at()}"))
    data = ok(cli("pay kimono-house 70000 --channel wechat_pay --ref W1 --json"))
    assert data == {
        "shop_id": "kimono-house",
        "status": "active",
        "currency": "JPY",
        "required": "70000",
        "paid": "70000",
        "frozen": "70000",
        "deducted": "0",
        "refunded": "0",
        "forfeited": "0",
        "owed": "0",
        "shortfall": "0",
        "version": 3,
        "held": "0",
        "reversed": "0",
        "top_up_due": None,
        "policy_version": None,
        "categories": [],
        "written_off": "0",
        "site": None,
        "settlement_due": None,
    }


def test_a_deduction_beyond_the_frozen_balance_is_owed_and_the_next_payment_settles_it(cli: Run, funded: str) -> None:
    deducted = ok(cli(f"deduct {funded} 2500 --reason order_brushing --case OB-1 --json"))
    assert list(deducted) == SHOW_KEYS
    assert deducted["top_up_due"] is not None  # the deduction left a funded deposit short: 30 days from now
    assert deducted == cny_state(
        funded,
        "underfunded",
        4,
        top_up_due=deducted["top_up_due"],
        site="CN",
        required="2000.00",
        paid="2000.00",
        deducted="2000.00",
        owed="500.00",
        shortfall="2500.00",
    )
    settled = ok(cli(f"pay {funded} 3000 --channel wechat_pay --ref W1 --json"))
    assert settled == cny_state(
        funded, "active", 7, site="CN", required="2000.00", paid="5000.00", frozen="2500.00", deducted="2500.00"
    )


def test_close_then_refund_after_the_settlement_window(cli: Run, funded: str) -> None:
    closing_state = ok(cli(f"close {funded} --at {at(days=2)} --json"))
    assert list(closing_state) == SHOW_KEYS
    due = "2025-04-08T01:00:00Z"  # the settlement window, 90 days after the closure
    assert closing_state == cny_state(
        funded, "closing", 4, site="CN", settlement_due=due, required="2000.00", paid="2000.00", frozen="2000.00"
    )
    refunded = ok(cli(f"refund {funded} --at {at(days=92)} --json"))
    assert list(refunded) == SHOW_KEYS
    # Nothing is required of a closed shop: its shortfall is its debt alone.
    assert refunded == cny_state(
        funded, "closed", 5, site="CN", settlement_due=due, required="2000.00", paid="2000.00", refunded="2000.00"
    )


def test_force_close_forfeits_the_frozen_balance(cli: Run, funded: str) -> None:
    data = ok(cli(f"force-close {funded} --reason 'repeated order brushing' --json"))
    assert list(data) == SHOW_KEYS
    assert data == cny_state(funded, "forfeited", 4, site="CN", required="2000.00", paid="2000.00", forfeited="2000.00")


def test_show_prints_the_state_the_last_command_left(cli: Run, funded: str) -> None:
    last = ok(cli(f"deduct {funded} 50 --reason late_shipment --case LS-1 --json"))
    shown = ok(cli(f"show {funded} --json"))
    assert list(shown) == SHOW_KEYS
    assert shown == last


def test_a_replayed_payment_is_a_duplicate_that_changes_nothing(cli: Run, funded: str, store_url: str) -> None:
    before = stored_records(store_url)
    again = ok(cli(f"pay {funded} 2000.00 --channel alipay --ref A1 --json"))
    assert list(again) == [*SHOW_KEYS, "duplicate"]
    assert again == {**ok(cli(f"show {funded} --json")), "duplicate": True}
    assert again["version"] == 3
    assert stored_records(store_url) == before


def test_a_replayed_deduction_is_a_duplicate_that_changes_nothing(cli: Run, funded: str, store_url: str) -> None:
    first = ok(cli(f"deduct {funded} 50 --reason late_shipment --case LS-1 --json"))
    before = stored_records(store_url)
    again = ok(cli(f"deduct {funded} 50 --reason late_shipment --case LS-1 --json"))
    assert again == {**first, "duplicate": True}
    assert stored_records(store_url) == before


def test_without_json_a_duplicate_is_said_in_words(cli: Run, funded: str) -> None:
    result = done(cli(f"pay {funded} 2000 --channel alipay --ref A1"))
    assert "duplicate" in result.out
    assert "2000.00" in result.out


# ------------------------------------------------------------------------- history --json


def test_history_lists_every_event_oldest_first_with_envelope_and_decimal_amounts(cli: Run) -> None:
    done(cli(f"--actor risk-ops open tea-house --currency CNY --required 2000 --site CN --at {at()}"))
    done(cli(f"pay tea-house 1500 --channel alipay --ref A1 --payer tea@alipay --at {at(days=1)}"))
    done(cli(f"pay tea-house 500 --channel wechat_pay --ref W1 --at {at(days=2)}"))
    done(cli(f"deduct tea-house 50 --reason late_shipment --case LS-1 --note '3 orders > 48h' --at {at(days=3)}"))
    done(cli(f"close tea-house --at {at(days=4)}"))
    done(cli(f"refund tea-house --at {at(days=95)}"))

    history = ok(cli("history tea-house --json"))

    for entry in history:
        assert entry["recorded_at"].endswith("Z")
        del entry["recorded_at"]  # the real clock: checked for form only
    cny = {"currency": "CNY"}
    # fmt: off
    assert history == [
        {"type": "Opened", "version": 1, "effective_at": "2025-01-06T01:00:00Z", "actor": "risk-ops",
         "shop_id": "tea-house", "site": "CN", **cny, "required": "2000.00", "categories": [], "policy_version": None},
        {"type": "Paid", "version": 2, "effective_at": "2025-01-07T01:00:00Z", "actor": "tester",
         **cny, "amount": "1500.00", "channel": "alipay", "trade_no": "A1", "payer": "tea@alipay",
         "channel_time": None},
        {"type": "Frozen", "version": 3, "effective_at": "2025-01-07T01:00:00Z", "actor": "tester",
         **cny, "amount": "1500.00"},
        {"type": "Paid", "version": 4, "effective_at": "2025-01-08T01:00:00Z", "actor": "tester",
         **cny, "amount": "500.00", "channel": "wechat_pay", "trade_no": "W1", "payer": None, "channel_time": None},
        {"type": "Frozen", "version": 5, "effective_at": "2025-01-08T01:00:00Z", "actor": "tester",
         **cny, "amount": "500.00"},
        {"type": "Deducted", "version": 6, "effective_at": "2025-01-09T01:00:00Z", "actor": "tester",
         **cny, "amount_collected": "50.00", "amount_owed": "0.00", "reason": "late_shipment", "case_id": "LS-1",
         "note": "3 orders > 48h", "settles_debt": False, "collected_from_hold": "0.00", "order_value": None,
         "rule": None, "policy_version": "2026.1", "top_up_due": "2025-02-08T01:00:00Z"},
        {"type": "ClosureRequested", "version": 7, "effective_at": "2025-01-10T01:00:00Z", "actor": "tester",
         "settlement_due": "2025-04-10T01:00:00Z", "policy_version": "2026.1"},
        {"type": "Refunded", "version": 8, "effective_at": "2025-04-11T01:00:00Z", "actor": "tester",
         **cny, "amount": "1950.00",
         "lines": [{"channel": "wechat_pay", "trade_no": "W1", "amount": "500.00"},
                   {"channel": "alipay", "trade_no": "A1", "amount": "1450.00"}]},
    ]
    # fmt: on


def test_history_of_a_forced_closure_ends_with_the_forfeit(cli: Run, funded: str) -> None:
    done(cli(f"force-close {funded} --reason 'repeated order brushing' --at {at(days=3)}"))
    last = ok(cli(f"history {funded} --json"))[-1]
    assert {key: value for key, value in last.items() if key != "recorded_at"} == {
        "type": "Forfeited",
        "version": 4,
        "effective_at": "2025-01-09T01:00:00Z",
        "actor": "tester",
        "currency": "CNY",
        "amount": "2000.00",
        "reason": "repeated order brushing",
    }


def test_history_shows_a_debt_settled_inside_the_next_payment(cli: Run, funded: str) -> None:
    done(cli(f"deduct {funded} 2500 --reason order_brushing --case OB-1"))
    done(cli(f"pay {funded} 700 --channel wechat_pay --ref W1"))
    history = ok(cli(f"history {funded} --json"))
    assert [entry["type"] for entry in history] == [
        "Opened",
        "Paid",
        "Frozen",
        "Deducted",
        "Paid",
        "Deducted",
        "Frozen",
    ]
    settling, frozen = history[5], history[6]
    assert (settling["case_id"], settling["amount_collected"], settling["amount_owed"], settling["settles_debt"]) == (
        "OB-1",
        "500.00",
        "0.00",
        True,
    )
    assert frozen["amount"] == "200.00"


# -------------------------------------------------------------- refusals and malformed input


def record_three_shops(url: str) -> None:
    """``tea-house`` (underfunded, case LS-1 deducted), ``closing-shop`` (closing) and
    ``gone-shop`` (forfeited) in the store at ``url``; each one's last event is ``at(days=2)``.
    """
    ledger = DepositLedger(url, actor="tester")
    for shop in ("tea-house", "closing-shop", "gone-shop"):
        ledger.open(shop, currency="CNY", required="2000", site="CN", at=at())
        ledger.pay(shop, "2000", channel="alipay", ref=f"A1-{shop}", at=at(days=1))
    ledger.deduct("tea-house", "50", reason="late_shipment", case="LS-1", at=at(days=2))
    ledger.close_shop("closing-shop", at=at(days=2))
    ledger.force_close("gone-shop", reason="fraud", at=at(days=2))
    ledger.close()


@pytest.fixture(scope="module")
def three_shops_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store of :func:`record_three_shops`, built once for the module."""
    path = tmp_path_factory.mktemp("three-shops") / "deposits.db"
    record_three_shops(str(path))
    return path


@pytest.fixture
def three_shops(request: pytest.FixtureRequest, backend: str, store_url: str, db_path: Path) -> None:
    """The test's own store holding :func:`record_three_shops`: a copy of the file on SQLite."""
    if backend == "sqlite":
        built: Path = request.getfixturevalue("three_shops_file")
        with closing(sqlite3.connect(built)) as source, closing(sqlite3.connect(db_path)) as copy:
            source.backup(copy)
    else:
        record_three_shops(store_url)


FAILURES = [
    # refused by a deposit rule: exit 1
    pytest.param("pay ghost 10 --channel alipay --ref X1", REFUSED, "shop ghost has no deposit", id="unknown-shop-pay"),
    pytest.param("show ghost --json", REFUSED, "shop ghost has no deposit", id="unknown-shop-show"),
    pytest.param("history ghost --json", REFUSED, "shop ghost has no deposit", id="unknown-shop-history"),
    pytest.param("open tea-house --currency CNY --required 2000", REFUSED, "already has a deposit", id="second-open"),
    pytest.param("refund tea-house", REFUSED, "is underfunded and cannot be refunded", id="refund-while-open"),
    pytest.param(
        "pay gone-shop 10 --channel alipay --ref X2",
        REFUSED,
        "is forfeited, owes nothing and cannot accept payments",
        id="pay-after-forced-closure",
    ),
    pytest.param("close closing-shop", REFUSED, "is closing and cannot be closed", id="close-twice"),
    pytest.param(
        f"refund closing-shop --at {at(days=3)}", REFUSED, "before its settlement is due", id="refund-too-early"
    ),
    pytest.param(
        "deduct gone-shop 10 --reason other --case X3",
        REFUSED,
        "is forfeited and cannot accept deductions",
        id="deduct-after-forced-closure",
    ),
    pytest.param("force-close gone-shop --reason again", REFUSED, "cannot be force-closed", id="force-close-twice"),
    pytest.param(
        "pay tea-house 1999 --channel alipay --ref A1-tea-house",
        REFUSED,
        "payment alipay A1-tea-house was recorded with 2000.00 CNY, not 1999.00 CNY",
        id="payment-conflict",
    ),
    pytest.param(
        "deduct tea-house 60 --reason late_shipment --case LS-1",
        REFUSED,
        "case LS-1 was deducted as late_shipment 50.00 CNY, not late_shipment 60.00 CNY",
        id="deduction-amount-conflict",
    ),
    pytest.param(
        "deduct tea-house 50 --reason other --case LS-1",
        REFUSED,
        "case LS-1 was deducted as late_shipment 50.00 CNY, not other 50.00 CNY",
        id="deduction-reason-conflict",
    ),
    pytest.param(
        f"pay tea-house 10 --channel alipay --ref X4 --at {at(days=1)}",
        REFUSED,
        "is before shop tea-house's last event",
        id="time-before-last-event",
    ),
    # malformed input: exit 2
    pytest.param(
        "pay tea-house abc --channel alipay --ref X5",
        MALFORMED,
        "amount 'abc' is not a decimal number",
        id="amount-text",
    ),
    pytest.param("pay tea-house 0 --channel alipay --ref X5", MALFORMED, "greater than zero", id="amount-zero"),
    pytest.param("pay tea-house --channel alipay --ref X5 -- -5", MALFORMED, "greater than zero", id="amount-negative"),
    pytest.param(
        "pay tea-house 1.001 --channel alipay --ref X5",
        MALFORMED,
        "amount 1.001 has more decimals than CNY allows (2)",
        id="amount-too-precise",
    ),
    pytest.param(
        "open new-shop --currency JPY --required 1.5",
        MALFORMED,
        "amount 1.5 has more decimals than JPY allows (0)",
        id="amount-too-precise-for-jpy",
    ),
    pytest.param("pay tea-house NaN --channel alipay --ref X5", MALFORMED, "not a finite number", id="amount-nan"),
    pytest.param(
        "deduct tea-house Infinity --reason other --case X5", MALFORMED, "not a finite number", id="amount-infinite"
    ),
    pytest.param(
        "pay tea-house 100000000000000000000 --channel alipay --ref X5",
        MALFORMED,
        "exceeds the limit",
        id="amount-absurd",
    ),
    pytest.param(
        "pay tea-house 1E2 --channel alipay --ref X5", MALFORMED, "amount '1E2' is not a decimal", id="amount-exponent"
    ),
    pytest.param(
        "deduct tea-house 2e-1 --reason other --case X5",
        MALFORMED,
        "amount '2e-1' is not a decimal",
        id="amount-negative-exponent",
    ),
    pytest.param(
        "open new-shop --currency CNY --required 1e3",
        MALFORMED,
        "amount '1e3' is not a decimal",
        id="required-exponent",
    ),
    pytest.param(
        "pay tea-house 10 --channel paypal --ref X5",
        MALFORMED,
        "unknown channel 'paypal': expected one of alipay, wechat_pay",
        id="unknown-channel",
    ),
    pytest.param(
        "deduct tea-house 10 --reason spam --case X5", MALFORMED, "unknown reason 'spam'", id="unknown-reason"
    ),
    pytest.param(
        "pay tea-house 10 --channel alipay --ref X5 --at yesterday",
        MALFORMED,
        "time 'yesterday' is not ISO-8601",
        id="time-not-iso",
    ),
    pytest.param("close tea-house --at 2025-02-01T09:00:00", MALFORMED, "has no time zone", id="time-without-zone"),
    pytest.param("close tea-house --at 2999-01-01T00:00:00Z", MALFORMED, "lies in the future", id="time-in-future"),
    pytest.param(
        "open early --currency CNY --required 10 --at 0025-01-06T00:00:00Z",
        MALFORMED,
        "effective time 0025-01-06T00:00:00+00:00 lies before 2000-01-01T00:00:00+00:00",
        id="time-before-window",
    ),
    pytest.param(
        "close tea-house --at 0001-01-01T00:00:00+01:00",
        MALFORMED,
        "time 0001-01-01T00:00:00+01:00 is out of range",
        id="time-out-of-range",
    ),
    pytest.param(
        "history tea-house --as-of 9999-12-31T23:00:00-05:00", MALFORMED, "is out of range", id="as-of-out-of-range"
    ),
    pytest.param(
        "replay tea-house --version 9223372036854775808",
        MALFORMED,
        "version 9223372036854775808 is larger than any history can be",
        id="version-beyond-64-bits",
    ),
    pytest.param(
        "open new-shop --currency ZZZ --required 10", MALFORMED, "unknown currency 'ZZZ'", id="unknown-currency"
    ),
    pytest.param(
        "open new-shop --currency yuan --required 10", MALFORMED, "unknown currency 'yuan'", id="currency-not-a-code"
    ),
    pytest.param(
        "open 'bad shop!' --currency CNY --required 10", MALFORMED, "shop id 'bad shop!'", id="malformed-shop-id"
    ),
    pytest.param("pay tea-house 10 --ref X5", MALFORMED, "Missing option '--channel'.", id="missing-option"),
    pytest.param("pay tea-house", MALFORMED, "Missing argument 'amount'.", id="missing-argument"),
    pytest.param("show tea-house --bogus", MALFORMED, "No such option: --bogus", id="unknown-option"),
    pytest.param("frobnicate tea-house", MALFORMED, "No such command 'frobnicate'.", id="unknown-command"),
    pytest.param("--db", MALFORMED, "Option '--db' requires an argument.", id="option-without-value"),
]


@pytest.mark.usefixtures("three_shops")
@pytest.mark.parametrize(("line", "code", "reason"), FAILURES)
def test_a_failed_command_exits_with_its_code_says_why_in_one_line_and_writes_nothing(
    cli: Run, store_url: str, line: str, code: int, reason: str
) -> None:
    before = stored_records(store_url)
    result = cli(line)
    assert result.code == code
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("deposit-ledger: ")
    assert reason in result.err_lines[0]
    assert "Traceback" not in result.err
    assert result.out == ""
    assert stored_records(store_url) == before


def test_an_unsupported_store_url_is_malformed_input(run: Run) -> None:
    result = run("--db mysql://localhost/deposits show tea-house")
    assert (result.code, result.err_lines) == (
        MALFORMED,
        [
            "deposit-ledger: unsupported store URL 'mysql://localhost/deposits': expected a file path, sqlite:/// or postgresql://"
        ],
    )


# --------------------------------------------------------------------------------- --actor


@pytest.mark.parametrize(
    ("option", "env", "recorded"),
    [
        pytest.param("--actor alice", "env-bob", "alice", id="option-beats-env"),
        pytest.param("", "env-bob", "env-bob", id="env-beats-os-user"),
        pytest.param("", None, "tester", id="os-user-last"),
        pytest.param("", "", "tester", id="empty-env-counts-as-unset"),
    ],
)
def test_the_actor_is_the_option_else_the_environment_else_the_os_user(
    cli: Run, monkeypatch: pytest.MonkeyPatch, option: str, env: str | None, recorded: str
) -> None:
    if env is not None:
        monkeypatch.setenv("DEPOSIT_LEDGER_ACTOR", env)
    done(cli(f"{option} open tea-house --currency CNY --required 2000 --at {at()}"))
    done(cli(f"{option} pay tea-house 2000 --channel alipay --ref A1"))
    assert [entry["actor"] for entry in ok(cli("history tea-house --json"))] == [recorded] * 3


@pytest.mark.parametrize(
    "actor",
    ["eve\u202elanimda", "\u2066admin\u2069", "ad\u200bmin", "admin\x85", "admin\u2028", "\ufeffadmin", "a\x1bb"],
)
def test_an_actor_with_control_or_bidi_characters_is_refused_in_one_line(
    cli: Run, monkeypatch: pytest.MonkeyPatch, actor: str
) -> None:
    outcome = cli(f"--actor {shlex.quote(actor)} open tea-house --currency CNY --required 2000 --at {at()}")
    assert (outcome.code, len(outcome.err_lines)) == (2, 1), outcome
    assert "control, format (bidi, zero-width) or line-separator characters" in outcome.err
    monkeypatch.setenv("DEPOSIT_LEDGER_ACTOR", actor)
    from_env = cli(f"open tea-house --currency CNY --required 2000 --at {at()}")
    assert from_env.code == 2
    assert len(from_env.err_lines) == 1 and "actor" in from_env.err and "bidi" in from_env.err
    monkeypatch.setenv("DEPOSIT_LEDGER_ACTOR", "风控 张三")
    done(cli(f"open tea-house --currency CNY --required 2000 --at {at()}"))
    assert ok(cli("history tea-house --json"))[0]["actor"] == "风控 张三"


# ---------------------------------------------------------------------------------- store

OPEN_SHOP = f"open tea-house --currency CNY --required 2000 --at {at()}"


@pytest.mark.sqlite_only("store file paths")
def test_the_store_defaults_to_deposits_db_in_the_working_directory(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    done(run(OPEN_SHOP))
    assert len(stored_records(tmp_path / "deposits.db")) == 1


@pytest.mark.sqlite_only("store file paths")
@pytest.mark.parametrize(
    "env_value",
    [
        pytest.param("{dir}/env.db", id="absolute-path"),
        pytest.param("env.db", id="relative-path"),
        pytest.param("sqlite:///{dir}/env.db", id="sqlite-url-absolute"),
        pytest.param("sqlite:///env.db", id="sqlite-url-relative"),
    ],
)
def test_the_store_env_var_names_the_store_as_path_or_url(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPOSIT_LEDGER_DB", env_value.format(dir=tmp_path))
    done(run(OPEN_SHOP))
    assert len(stored_records(tmp_path / "env.db")) == 1
    assert not (tmp_path / "deposits.db").exists()
    assert ok(run("show tea-house --json"))["version"] == 1


@pytest.mark.sqlite_only("store file paths")
def test_the_db_option_beats_the_store_env_var(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPOSIT_LEDGER_DB", str(tmp_path / "env.db"))
    done(run(f"--db sqlite:///{tmp_path}/option.db {OPEN_SHOP}"))
    assert len(stored_records(tmp_path / "option.db")) == 1
    assert not (tmp_path / "env.db").exists()


# ----------------------------------------------------------------------------------- demo


def opened_shops(url: str) -> list[str]:
    """The shop ids the store holds a deposit for, in the order they were opened."""
    store = resolve_store(url)
    rows = fetch_all(
        store,
        f"SELECT state FROM {store.events_table} WHERE topic = 'ShopDeposit.Opened' ORDER BY {store.position_column}",
    )
    return [json.loads(state)["shop_id"] for (state,) in rows]


@pytest.fixture
def demo_store(run: Run, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's store (named by ``DEPOSIT_LEDGER_DB``) after one run of ``deposit-ledger demo``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEPOSIT_LEDGER_DB", store_url)
    done(run("demo"))
    return store_url


def test_demo_tells_the_whole_story_on_an_empty_store(run: Run, demo_store: str) -> None:
    shops = opened_shops(demo_store)
    assert len(shops) >= 3
    states = [ok(run(f"show {shop} --json")) for shop in shops]
    histories = [ok(run(f"history {shop} --json")) for shop in shops]
    events = [event for history in histories for event in history]

    for state in states:
        paid, *parts = (Decimal(state[key]) for key in ("paid", "frozen", "deducted", "refunded", "forfeited"))
        assert paid == sum(parts), state
    assert any(state["status"] == "closed" and Decimal(state["refunded"]) > 0 for state in states)
    assert any(state["status"] == "forfeited" and Decimal(state["forfeited"]) > 0 for state in states)
    assert {event["channel"] for event in events if event["type"] == "Paid"} == {"alipay", "wechat_pay"}
    assert {event["reason"] for event in events if event["type"] == "Deducted"} == {
        "fake_listing",
        "order_brushing",
        "late_shipment",
        "after_sales_dispute",
        "other",
    }
    assert any(sum(event["type"] == "Paid" for event in history) >= 2 for history in histories), "no top-up"


def test_demo_owes_a_debt_that_the_next_payment_settles(run: Run, demo_store: str) -> None:
    settled_shops = []
    for shop in opened_shops(demo_store):
        history = ok(run(f"history {shop} --json"))
        deductions = [(index, event) for index, event in enumerate(history) if event["type"] == "Deducted"]
        owed_cases = {e["case_id"] for _, e in deductions if not e["settles_debt"] and Decimal(e["amount_owed"]) > 0}
        for index, event in deductions:
            if event["settles_debt"] and event["case_id"] in owed_cases:
                assert history[index - 1]["type"] == "Paid", "a debt is settled inside the payment that pays it"
                assert Decimal(event["amount_owed"]) == 0
                settled_shops.append(shop)
    assert settled_shops
    assert all(Decimal(ok(run(f"show {shop} --json"))["owed"]) == 0 for shop in settled_shops)


def test_demo_runs_again_on_its_own_store_without_touching_the_first_run(run: Run, demo_store: str) -> None:
    first_shops = opened_shops(demo_store)
    first_states = [ok(run(f"show {shop} --json")) for shop in first_shops]

    done(run("demo"))

    all_shops = opened_shops(demo_store)
    assert all_shops[: len(first_shops)] == first_shops
    assert [ok(run(f"show {shop} --json")) for shop in first_shops] == first_states
    second_states = [ok(run(f"show {shop} --json")) for shop in all_shops[len(first_shops) :]]
    assert [state["status"] for state in second_states] == [state["status"] for state in first_states]


def test_demo_output_fits_80_columns_whole_and_without_microseconds(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    for _ in range(2):  # the second run's shop names are longer
        output = done(run("demo")).out
        assert max(len(line) for line in output.splitlines()) <= 80
        assert "…" not in output, "a figure or name was cut short"
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", output), "demo times are whole minutes"
