"""The policy commands of ``deposit-ledger``: exit codes, JSON, one-line errors, nothing written on failure.

Every command here runs against the policy shipped with the package unless a
test writes its own file; figures come from ``ledger/app/default_policy.toml``
(CN: general ¥2,000, food ¥4,000, jewelry ¥5,000; fake_listing ¥500 a violation,
¥5,000 a day; late_shipment 10% of the order, ¥5 to ¥100).
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger.app.parse import INPUTS_RULES
from ledger.faces.cli import CLI_WORDING
from tests.cli.conftest import SHOW_KEYS, Outcome, Run, at, stored_rows

REFUSED = 1
MALFORMED = 2


def ok(result: Outcome) -> Any:
    """The JSON a successful command printed (else the test fails with its stderr)."""
    assert result.code == 0, result.err
    assert result.err == ""
    return result.json()


def failed(result: Outcome, code: int, reason: str) -> None:
    """A failure: its exit code, one line on stderr naming ``reason``, nothing on stdout."""
    assert result.code == code, result.err
    assert len(result.err_lines) == 1, result.err
    assert result.err_lines[0].startswith("deposit-ledger: ")
    assert reason in result.err_lines[0], result.err
    assert result.out == ""


@pytest.fixture
def food_shop(cli: Run) -> str:
    """``noodle-bar``: CN, category food (¥4,000 by policy), paid in full by Alipay A1 (version 3)."""
    ok(cli(f"open noodle-bar --site CN --category food --at {at()} --json"))
    ok(cli(f"pay noodle-bar 4000 --channel alipay --ref A1 --at {at(days=1)} --json"))
    return "noodle-bar"


# ------------------------------------------------------------------------ open by policy


def test_open_derives_the_requirement_and_the_currency_from_site_and_categories(cli: Run) -> None:
    data = ok(cli(f"open noodle-bar --site cn --category food --category GENERAL --at {at()} --json"))
    assert list(data) == SHOW_KEYS
    assert (data["currency"], data["required"], data["status"]) == ("CNY", "4000.00", "awaiting_payment")
    assert (data["policy_version"], data["categories"]) == ("2026.1", ["food", "general"])


def test_open_takes_the_highest_category_not_the_sum(cli: Run) -> None:
    data = ok(cli("open gadget-hub --site UK --category apparel --category jewelry --category beauty --json"))
    assert (data["currency"], data["required"]) == ("GBP", "4000.00")


def test_an_explicit_required_amount_works_as_before_and_needs_no_policy_site(cli: Run) -> None:
    data = ok(cli("open market-stall --currency CNY --required 1700 --site XX --json"))
    assert (data["required"], data["policy_version"], data["categories"]) == ("1700.00", None, [])


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("open s1 --site CN", "give --required, or --site and --category", id="no-category"),
        pytest.param("open s1 --category food", "--category needs --site", id="no-site"),
        pytest.param("open s1 --site CN --category weapons", "has no category weapons on site CN", id="unknown"),
        pytest.param("open s1 --site MARS --category food", "has no site 'MARS'", id="unknown-site"),
        pytest.param(
            "open s1 --site CN --category food --currency USD", "keeps site CN deposits in CNY, not USD", id="currency"
        ),
        pytest.param("open s1 --site CN --category 'f d'", "category 'f d' must be", id="bad-category"),
        pytest.param("open s1 --required 10", "give --currency", id="no-currency"),
    ],
)
def test_open_by_policy_refuses_what_the_policy_cannot_derive(cli: Run, store_url: str, line: str, reason: str) -> None:
    ok(cli(f"open other --currency CNY --required 1 --at {at()} --json"))
    before = stored_rows(store_url)
    failed(cli(line), MALFORMED, reason)
    assert stored_rows(store_url) == before


# ----------------------------------------------------------- categories and requirement


def test_adding_a_dearer_category_records_the_change_and_a_top_up_due_time(cli: Run, food_shop: str) -> None:
    data = ok(cli(f"categories {food_shop} --add jewelry --at {at(days=2)} --json"))
    assert (data["required"], data["shortfall"], data["categories"]) == ("5000.00", "1000.00", ["food", "jewelry"])
    assert data["top_up_due"] == "2025-02-07T01:00:00Z"  # 30 days after the change
    assert data["status"] == "restricted", "the due time lies long before the test runs"
    event = ok(cli(f"history {food_shop} --json"))[-1]
    assert {key: event[key] for key in ("type", "old_required", "new_required", "why", "categories")} == {
        "type": "RequirementChanged",
        "old_required": "4000.00",
        "new_required": "5000.00",
        "why": "categories added jewelry",
        "categories": ["food", "jewelry"],
    }
    overdue = ok(cli("shops --overdue --json"))
    assert [state["shop_id"] for state in overdue] == [food_shop]
    assert ok(cli("shops --status restricted --json")) == overdue
    assert ok(cli("shops --status underfunded --json")) == []
    topped_up = ok(cli(f"pay {food_shop} 1000 --channel wechat_pay --ref W1 --json"))
    assert (topped_up["status"], topped_up["top_up_due"]) == ("active", None)
    assert ok(cli("shops --overdue --json")) == []


def test_a_lowered_requirement_makes_the_excess_refundable_newest_payment_first(cli: Run, food_shop: str) -> None:
    ok(cli(f"pay {food_shop} 500 --channel wechat_pay --ref W1 --at {at(days=2)} --json"))
    lowered = ok(cli(f"categories {food_shop} --add general --remove food --json"))
    assert (lowered["required"], lowered["frozen"]) == ("2000.00", "4500.00")
    refunded = ok(cli(f"refund-excess {food_shop} --json"))
    assert (refunded["status"], refunded["frozen"], refunded["refunded"]) == ("active", "2000.00", "2500.00")
    event = ok(cli(f"history {food_shop} --json"))[-1]
    assert event["type"] == "ExcessRefunded"
    assert event["lines"] == [
        {"channel": "wechat_pay", "trade_no": "W1", "amount": "500.00"},
        {"channel": "alipay", "trade_no": "A1", "amount": "2000.00"},
    ]
    failed(cli(f"refund-excess {food_shop}"), REFUSED, "has no excess: 2000.00 CNY frozen, 2000.00 CNY required")


def test_categories_that_change_nothing_are_a_duplicate(cli: Run, food_shop: str, store_url: str) -> None:
    before = stored_rows(store_url)
    data = ok(cli(f"categories {food_shop} --add food --json"))
    assert data["duplicate"] is True
    assert stored_rows(store_url) == before


def test_apply_policy_follows_a_new_policy_version(cli: Run, food_shop: str, tmp_path: Path) -> None:
    raised = tmp_path / "raised.toml"
    raised.write_text(
        textwrap.dedent(
            """
            version = "2026.2"
            settlement_window_days = 90
            top_up_deadline_days = 15
            appeal_window_days = 30
            [sites.CN]
            currency = "CNY"
            required = { food = 4500, general = 2000 }
            """
        )
    )
    data = ok(cli(f"--policy {raised} apply-policy {food_shop} --json"))
    assert (data["required"], data["policy_version"], data["shortfall"]) == ("4500.00", "2026.2", "500.00")
    due = datetime.fromisoformat(data["top_up_due"])
    assert timedelta(days=14, hours=23) < due - datetime.now(tz=UTC) <= timedelta(days=15)
    again = ok(cli(f"--policy {raised} apply-policy {food_shop} --json"))
    assert again["duplicate"] is True


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        pytest.param("categories noodle-bar", MALFORMED, "give --add CATEGORY or --remove CATEGORY", id="nothing"),
        pytest.param("categories noodle-bar --add weapons", MALFORMED, "no category weapons", id="unknown"),
        pytest.param("categories noodle-bar --remove food", REFUSED, "must keep at least one category", id="none-left"),
        pytest.param(
            "categories by-hand --add food", REFUSED, "prices site CN in CNY, but shop by-hand", id="currency"
        ),
        pytest.param("apply-policy by-hand", REFUSED, "prices site CN in CNY", id="apply-by-hand"),
        pytest.param("apply-policy ghost", REFUSED, "shop ghost has no deposit", id="unknown-shop"),
        pytest.param("refund-excess noodle-bar", REFUSED, "has no excess", id="no-excess"),
    ],
)
def test_requirement_commands_refuse_in_one_line_and_write_nothing(
    cli: Run, food_shop: str, store_url: str, line: str, code: int, reason: str
) -> None:
    ok(cli(f"open by-hand --currency USD --required 100 --site CN --at {at()} --json"))
    before = stored_rows(store_url)
    failed(cli(line), code, reason)
    assert stored_rows(store_url) == before


# ------------------------------------------------------------------ deductions by policy


def test_deduct_without_an_amount_is_priced_by_the_catalogue(cli: Run, food_shop: str) -> None:
    data = ok(cli(f"deduct {food_shop} --reason late_shipment --case LS-1 --order-value 250 --json"))
    assert (data["deducted"], data["frozen"]) == ("25.00", "3975.00")
    event = ok(cli(f"history {food_shop} --json"))[-1]
    assert (event["order_value"], event["policy_version"]) == ("250.00", "2026.1")
    assert (
        event["rule"]
        == "late_shipment: 10% of the order value, at least 5.00, at most 100.00 CNY; daily cap 5000.00 CNY"
    )
    again = ok(cli(f"deduct {food_shop} --reason late_shipment --case LS-1 --order-value 250 --json"))
    assert again["duplicate"] is True


def test_the_daily_cap_limits_what_the_catalogue_charges_a_shop_in_one_utc_day(cli: Run, food_shop: str) -> None:
    day = at(days=2)
    for number in range(10):
        ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-{number} --at {day} --json"))
    failed(cli(f"deduct {food_shop} --reason fake_listing --case FL-10 --at {day}"), REFUSED, "daily cap")
    next_day = ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-10 --at {at(days=3)} --json"))
    assert (next_day["deducted"], next_day["owed"]) == ("4000.00", "1500.00")  # 11 × ¥500 against ¥4,000 frozen


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        pytest.param(
            "deduct noodle-bar --reason late_shipment --case X1", MALFORMED, "give the order value", id="no-order"
        ),
        pytest.param("deduct noodle-bar --reason other --case X1", MALFORMED, "has no rule for other", id="no-rule"),
        pytest.param(
            "deduct noodle-bar 10 --reason other --case X1 --order-value 5",
            MALFORMED,
            "give AMOUNT or --order-value, not both",
            id="amount-and-order",
        ),
        pytest.param("deduct noodle-bar --reason fake_listing", MALFORMED, "Missing option '--case'", id="no-case"),
        pytest.param(
            "deduct noodle-bar --reason late_shipment --case X1 --order-value 1.001",
            MALFORMED,
            "more decimals than CNY allows",
            id="order-value-precision",
        ),
        pytest.param("deduct by-hand --reason fake_listing --case X1", REFUSED, "has no site", id="no-site"),
    ],
)
def test_priced_deductions_refuse_in_one_line_and_write_nothing(
    cli: Run, food_shop: str, store_url: str, line: str, code: int, reason: str
) -> None:
    ok(cli(f"open by-hand --currency CNY --required 100 --at {at()} --json"))
    before = stored_rows(store_url)
    failed(cli(line), code, reason)
    assert stored_rows(store_url) == before


# ------------------------------------------------------------------------------- holds


def test_hold_release_and_a_deduction_that_consumes_its_hold(cli: Run, food_shop: str) -> None:
    held = ok(cli(f"hold {food_shop} 300 --case AS-1 --note 'buyer complaint' --json"))
    assert (held["frozen"], held["held"], held["status"]) == ("3700.00", "300.00", "active")
    assert ok(cli(f"hold {food_shop} 300 --case AS-1 --json"))["duplicate"] is True
    deducted = ok(cli(f"deduct {food_shop} 120 --reason after_sales_dispute --case AS-1 --json"))
    assert (deducted["held"], deducted["frozen"], deducted["deducted"]) == ("0.00", "3880.00", "120.00")
    assert [event["type"] for event in ok(cli(f"history {food_shop} --json"))[-4:]] == [
        "HoldPlaced",
        "Deducted",
        "HoldReleased",
        "Frozen",
    ]
    assert ok(cli(f"release {food_shop} --case AS-1 --json"))["duplicate"] is True
    ok(cli(f"hold {food_shop} 100 --case AS-2 --json"))
    released = ok(cli(f"release {food_shop} --case AS-2 --json"))
    assert (released["held"], released["frozen"]) == ("0.00", "3880.00")


def test_the_audit_trail_and_balance_carry_holds(cli: Run, food_shop: str) -> None:
    ok(cli(f"hold {food_shop} 300 --case AS-1 --note 'buyer complaint' --json"))
    row = ok(cli(f"audit {food_shop} --json"))[-1]
    assert {key: row[key] for key in ("type", "amount", "frozen_after", "case", "note")} == {
        "type": "HoldPlaced",
        "amount": "300.00",
        "frozen_after": "3700.00",
        "case": "AS-1",
        "note": "buyer complaint",
    }
    assert ok(cli(f"balance {food_shop} --json")) == ok(cli(f"show {food_shop} --json"))


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        pytest.param(
            "hold noodle-bar 5000 --case H2", REFUSED, "exceeds shop noodle-bar's frozen balance", id="too-big"
        ),
        pytest.param(
            "hold noodle-bar 200 --case H1", REFUSED, "was held with 100.00 CNY, not 200.00 CNY", id="conflict"
        ),
        pytest.param("hold noodle-bar 0 --case H2", MALFORMED, "greater than zero", id="zero"),
        pytest.param("hold noodle-bar 10", MALFORMED, "Missing option '--case'", id="no-case"),
        pytest.param("hold noodle-bar 10 --case 'bad case'", MALFORMED, "case id 'bad case' must be", id="bad-case"),
        pytest.param("release noodle-bar --case H9", REFUSED, "has no hold on case H9", id="release-unknown"),
        pytest.param("refund-excess noodle-bar", REFUSED, "excess refunded while case H1 holds", id="refund-excess"),
    ],
)
def test_hold_commands_refuse_in_one_line_and_write_nothing(
    cli: Run, food_shop: str, store_url: str, line: str, code: int, reason: str
) -> None:
    ok(cli(f"hold {food_shop} 100 --case H1 --json"))
    before = stored_rows(store_url)
    failed(cli(line), code, reason)
    assert stored_rows(store_url) == before


def test_a_hold_blocks_the_refund_after_closure(cli: Run, food_shop: str) -> None:
    ok(cli(f"close {food_shop} --at {at(days=2)} --json"))
    ok(cli(f"hold {food_shop} 100 --case AS-9 --at {at(days=3)} --json"))
    failed(cli(f"refund {food_shop} --at {at(days=93)}"), REFUSED, "while case AS-9 holds 100.00 CNY")
    ok(cli(f"release {food_shop} --case AS-9 --at {at(days=93)} --json"))
    assert ok(cli(f"refund {food_shop} --at {at(days=93)} --json"))["refunded"] == "4000.00"


# ----------------------------------------------------------------------------- appeals


def test_an_upheld_appeal_reverses_the_deduction(cli: Run, food_shop: str) -> None:
    ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    filed = ok(cli(f"appeal {food_shop} --case FL-1 --note 'listing was accurate' --at {at(days=3)} --json"))
    assert filed["version"] == 5
    assert ok(cli(f"appeal {food_shop} --case FL-1 --json"))["duplicate"] is True
    upheld = ok(cli(f"resolve-appeal {food_shop} --case FL-1 --upheld --at {at(days=4)} --json"))
    assert (upheld["deducted"], upheld["reversed"], upheld["frozen"]) == ("0.00", "500.00", "4000.00")
    assert (upheld["status"], upheld["top_up_due"]) == ("active", None)
    assert ok(cli(f"resolve-appeal {food_shop} --case FL-1 --upheld --json"))["duplicate"] is True
    rows = ok(cli(f"audit {food_shop} --json"))
    assert [(row["type"], row.get("case"), row["amount"]) for row in rows[-3:]] == [
        ("AppealFiled", "FL-1", None),
        ("DeductionReversed", "FL-1", "500.00"),
        ("Frozen", None, "500.00"),
    ]


def test_a_rejected_appeal_lets_the_deduction_stand(cli: Run, food_shop: str) -> None:
    ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    ok(cli(f"appeal {food_shop} --case FL-1 --at {at(days=3)} --json"))
    rejected = ok(cli(f"resolve-appeal {food_shop} --case FL-1 --rejected --at {at(days=4)} --json"))
    assert (rejected["deducted"], rejected["reversed"]) == ("500.00", "0.00")
    failed(cli(f"resolve-appeal {food_shop} --case FL-1 --upheld"), REFUSED, "was rejected, not upheld")


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        pytest.param("appeal noodle-bar --case NOPE", REFUSED, "has no deduction on case NOPE", id="no-deduction"),
        pytest.param(f"appeal noodle-bar --case FL-1 --at {at(days=33)}", REFUSED, "appeal window", id="too-late"),
        pytest.param(
            "resolve-appeal noodle-bar --case FL-1 --upheld", REFUSED, "has no appeal on case FL-1", id="none"
        ),
        pytest.param(
            "resolve-appeal noodle-bar --case FL-1", MALFORMED, "exactly one of --upheld or --rejected", id="neither"
        ),
        pytest.param(
            "resolve-appeal noodle-bar --case FL-1 --upheld --rejected", MALFORMED, "exactly one of", id="both"
        ),
    ],
)
def test_appeal_commands_refuse_in_one_line_and_write_nothing(
    cli: Run, food_shop: str, store_url: str, line: str, code: int, reason: str
) -> None:
    ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    before = stored_rows(store_url)
    failed(cli(line), code, reason)
    assert stored_rows(store_url) == before


def test_an_appeal_filed_while_closing_blocks_the_refund_and_restarts_settlement(cli: Run, food_shop: str) -> None:
    ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    ok(cli(f"close {food_shop} --at {at(days=3)} --json"))
    ok(cli(f"appeal {food_shop} --case FL-1 --at {at(days=4)} --json"))
    failed(cli(f"refund {food_shop} --at {at(days=94)}"), REFUSED, "while the appeal on case FL-1 is open")
    ok(cli(f"resolve-appeal {food_shop} --case FL-1 --rejected --at {at(days=20)} --json"))
    failed(cli(f"refund {food_shop} --at {at(days=94)}"), REFUSED, "before its settlement is due at 2025-04-26")
    assert ok(cli(f"refund {food_shop} --at {at(days=110)} --json"))["refunded"] == "3500.00"


def test_an_appeal_upheld_after_the_refund_is_refunded_by_a_correcting_event(
    cli: Run, food_shop: str, tmp_path: Path
) -> None:
    quick = tmp_path / "quick-settlement.toml"
    default = (Path(__file__).parents[2] / "ledger" / "app" / "default_policy.toml").read_text(encoding="utf-8")
    quick.write_text(
        default.replace("settlement_window_days = 90", "settlement_window_days = 1").replace(
            "appeal_window_days = 30", "appeal_window_days = 1"
        ),
        encoding="utf-8",
    )
    policy = f"--policy {quick}"
    ok(cli(f"{policy} deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    ok(cli(f"{policy} close {food_shop} --at {at(days=2)} --json"))
    # Refunded once the quick policy's appeal window had passed; the shipped policy's longer
    # window lets the merchant appeal after the refund all the same.
    ok(cli(f"{policy} refund {food_shop} --at {at(days=3, hours=1)} --json"))
    ok(cli(f"appeal {food_shop} --case FL-1 --at {at(days=4)} --json"))
    corrected = ok(cli(f"resolve-appeal {food_shop} --case FL-1 --upheld --at {at(days=5)} --json"))
    assert (corrected["status"], corrected["refunded"], corrected["deducted"]) == ("closed", "4000.00", "0.00")
    history = ok(cli(f"history {food_shop} --json"))
    assert [event["type"] for event in history[-3:]] == ["DeductionReversed", "Frozen", "Refunded"]
    assert history[-1]["lines"] == [{"channel": "alipay", "trade_no": "A1", "amount": "500.00"}]


def test_an_appeal_upheld_after_a_forced_closure_is_forfeited_with_the_rest(cli: Run, food_shop: str) -> None:
    ok(cli(f"deduct {food_shop} --reason fake_listing --case FL-1 --at {at(days=2)} --json"))
    ok(cli(f"appeal {food_shop} --case FL-1 --at {at(days=3)} --json"))
    ok(cli(f"force-close {food_shop} --reason 'counterfeit goods' --at {at(days=4)} --json"))
    corrected = ok(cli(f"resolve-appeal {food_shop} --case FL-1 --upheld --at {at(days=5)} --json"))
    assert (corrected["status"], corrected["forfeited"], corrected["deducted"]) == ("forfeited", "4000.00", "0.00")
    assert ok(cli(f"history {food_shop} --json"))[-1]["type"] == "Forfeited"


# ------------------------------------------------------------------------ the policy file


GOOD_POLICY = """
version = "2026.9"
settlement_window_days = 60
top_up_deadline_days = 15
appeal_window_days = 14
[sites.CN]
currency = "CNY"
required = { general = 3000 }
violations = { late_shipment = { share_bp = 500, floor = 0, cap = 50 } }
"""


def test_the_policy_command_prints_the_policy_in_force(run: Run) -> None:
    data = ok(run("policy --json"))
    assert (data["version"], data["settlement_window_days"], data["top_up_deadline_days"]) == ("2026.1", 90, 30)
    assert data["sites"]["CN"]["required"]["jewelry"] == "5000.00"
    assert data["sites"]["JP"]["required"]["general"] == "70000"
    assert data["sites"]["CN"]["violations"]["late_shipment"] == {
        "penalty": "10% of the order value, at least 5.00, at most 100.00 CNY",
        "daily_cap": "5000.00",
    }


def test_policy_option_beats_the_environment_which_beats_the_shipped_policy(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    option, env = tmp_path / "option.toml", tmp_path / "env.toml"
    option.write_text(GOOD_POLICY)
    env.write_text(GOOD_POLICY.replace("2026.9", "2026.8"))
    monkeypatch.setenv("DEPOSIT_LEDGER_POLICY", str(env))
    assert ok(run("policy --json"))["version"] == "2026.8"
    assert ok(run(f"--policy {option} policy --json"))["version"] == "2026.9"


def test_the_settlement_window_and_version_come_from_the_policy(cli: Run, food_shop: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD_POLICY)
    ok(cli(f"--policy {path} close {food_shop} --at {at(days=2)} --json"))
    event = ok(cli(f"history {food_shop} --json"))[-1]
    assert (event["settlement_due"], event["policy_version"]) == ("2025-03-09T01:00:00Z", "2026.9")


def test_the_new_policy_prices_by_its_own_catalogue(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(GOOD_POLICY)
    ok(cli(f"--policy {path} open tea-house --site CN --category general --at {at()} --json"))
    ok(cli(f"pay tea-house 3000 --channel alipay --ref A1 --at {at(days=1)} --json"))
    data = ok(cli(f"--policy {path} deduct tea-house --reason late_shipment --case LS-1 --order-value 99 --json"))
    assert data["deducted"] == "4.95"


BAD_POLICIES = [
    pytest.param("version = ", "not valid TOML", id="toml-syntax"),
    pytest.param(GOOD_POLICY.replace('version = "2026.9"', ""), "version: missing", id="no-version"),
    pytest.param(GOOD_POLICY.replace('"2026.9"', '"v 1"'), "version: a version is 1-32 letters", id="bad-version"),
    pytest.param(GOOD_POLICY + "colour = 1\n", "colour: unknown key", id="unknown-key"),
    pytest.param(
        GOOD_POLICY.replace("appeal_window_days = 14", "appeal_window_days = 0"),
        "appeal_window_days: input should be greater than or equal to 1",
        id="zero-days",
    ),
    pytest.param(
        GOOD_POLICY.replace('currency = "CNY"', 'currency = "RMB"'),
        "sites.CN.currency: unknown currency 'RMB'",
        id="currency",
    ),
    pytest.param(
        GOOD_POLICY.replace("general = 3000", "general = 30.001"),
        "sites.CN.required.general: amount 30.001 has more decimals than CNY allows (2)",
        id="precision",
    ),
    pytest.param(
        GOOD_POLICY.replace("general = 3000", "General = 3000"),
        "sites.CN.required.General: a category is 1-32 lower-case letters",
        id="category-name",
    ),
    pytest.param(GOOD_POLICY.replace("[sites.CN]", "[sites.cn]"), "sites.cn: a site code is", id="site-code"),
    pytest.param(
        GOOD_POLICY.replace("late_shipment =", "late_delivery ="),
        "sites.CN.violations.late_delivery: unknown reason: expected one of fake_listing",
        id="reason",
    ),
    pytest.param(
        GOOD_POLICY.replace("share_bp = 500", "share_bp = 500, fixed = 5"),
        "give exactly one of fixed, share (a decimal rate) or share_bp",
        id="two-kinds",
    ),
    pytest.param(
        GOOD_POLICY.replace("share_bp = 500", "share = 1.5"),
        "sites.CN.violations.late_shipment.share: input should be less than or equal to 1",
        id="rate",
    ),
    pytest.param(
        GOOD_POLICY.replace("floor = 0, cap = 50", "floor = 60, cap = 50"),
        "sites.CN.violations.late_shipment: the floor is above the cap",
        id="floor-cap",
    ),
    pytest.param(
        GOOD_POLICY.replace("general = 3000", 'general = "lots"'),
        "sites.CN.required.general: amount 'lots' is not a decimal number",
        id="amount-text",
    ),
    pytest.param(
        GOOD_POLICY.replace("general = 3000", "general = true"),
        "sites.CN.required.general: expected an amount such as 2000",
        id="amount-bool",
    ),
]


@pytest.mark.parametrize(("text", "reason"), BAD_POLICIES)
def test_a_mistake_in_the_policy_file_is_one_line_and_exit_2(
    cli: Run, store_url: str, tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    failed(cli(f"--policy {path} policy"), MALFORMED, reason)
    ok(cli(f"open tea-house --currency CNY --required 10 --at {at()} --json"))
    before = stored_rows(store_url)
    failed(cli(f"--policy {path} open shop-2 --site CN --category general"), MALFORMED, f"policy {path}: ")
    assert stored_rows(store_url) == before


def test_several_mistakes_are_named_on_one_line(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD_POLICY.replace("general = 3000", "general = 0, food = -1, toys = 1.001, a = 1, b = 2, c = 3"))
    path.write_text(path.read_text().replace('"2026.9"', '"2026.9"\nextra = 1'))
    result = run(f"--policy {path} policy")
    assert result.code == MALFORMED
    assert len(result.err_lines) == 1
    assert result.err_lines[0] == f"deposit-ledger: policy {path}: extra: unknown key"
    path.write_text(GOOD_POLICY.replace("general = 3000", "general = 0, food = -1, toys = 1.001"))
    line = run(f"--policy {path} policy").err_lines[0]
    assert "sites.CN.required.general: amount '0' must be greater than zero" in line
    assert "sites.CN.required.food: amount '-1' must be greater than zero" in line
    assert "sites.CN.required.toys: amount 1.001 has more decimals" in line


def test_a_missing_policy_file_is_malformed_input(run: Run, tmp_path: Path) -> None:
    failed(run(f"--policy {tmp_path / 'nope.toml'} policy"), MALFORMED, "nope.toml does not exist")


def test_a_broken_policy_does_not_stop_commands_that_need_none(cli: Run, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("version = ")
    ok(cli(f"--policy {path} open tea-house --currency CNY --required 10 --at {at()} --json"))
    ok(cli(f"--policy {path} pay tea-house 10 --channel alipay --ref A1 --json"))
    assert ok(cli(f"--policy {path} show tea-house --json"))["status"] == "active"


# ----------------------------------------------------------------------------------- demo


def test_demo_shows_a_category_change_with_its_top_up_a_hold_and_appeals_both_ways(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output = ok_text(run("demo"))
    shops = [state["shop_id"] for state in ok(run("shops --json"))]
    events = [event for shop in shops for event in ok(run(f"history {shop} --json"))]
    types = [event["type"] for event in events]
    assert {"RequirementChanged", "HoldPlaced", "AppealFiled", "AppealRejected", "DeductionReversed"} <= set(types)
    raised = next(event for event in events if event["type"] == "RequirementChanged")
    assert Decimal(raised["new_required"]) > Decimal(raised["old_required"]) and raised["top_up_due"] is not None
    assert any(event["type"] == "Deducted" and Decimal(event["collected_from_hold"]) > 0 for event in events)
    assert any(event["type"] == "Deducted" and event["rule"] for event in events), "a penalty priced by the policy"
    overdue = ok(run("shops --overdue --json"))
    assert [state["status"] for state in overdue] == ["restricted"]
    assert f"{overdue[0]['shop_id']} is restricted" in output


def ok_text(result: Outcome) -> str:
    """What a successful command printed."""
    assert result.code == 0, result.err
    return result.out


def test_every_rule_between_inputs_is_worded_with_the_command_line_s_options() -> None:
    # The Python API, the journal and the HTTP service show the neutral wording; the command line its options.
    assert set(CLI_WORDING) == INPUTS_RULES
    assert all("--" in wording for wording in CLI_WORDING.values())
