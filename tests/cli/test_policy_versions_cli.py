"""Policy versions on the command line: a back-dated command is decided by the version in force at
its effective time (prices, daily caps, requirements, time limits), through ``deduct`` and ``import``
alike (the HTTP API's test is in tests/http); ``policy`` shows every version. On both backends;
``verify`` stays clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import at, stored_rows
from tests.cli.test_cli import MALFORMED, REFUSED, done, ok
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean
from tests.ledger.journals import line, write_journal

V2_FROM = "2025-02-01T00:00:00+08:00"
"""When version v2 takes effect: 2025-01-31T16:00Z, 25 days after the tests' ``at()``."""

TWO_VERSIONS = f"""
[[versions]]
version = "v1"
settlement_window_days = 60
top_up_deadline_days = 30
appeal_window_days = 30
[versions.sites.CN]
currency = "CNY"
time_zone = "Asia/Shanghai"
required = {{ general = 2000, food = 4000 }}
violations = {{ late_shipment = {{ share = 0.10, floor = 5, cap = 100, daily_cap = 150 }} }}

[[versions]]
version = "v2"
effective_from = {V2_FROM}
settlement_window_days = 90
top_up_deadline_days = 15
appeal_window_days = 10
[versions.sites.CN]
currency = "CNY"
time_zone = "Asia/Shanghai"
required = {{ general = 3000, food = 5000 }}
violations = {{ late_shipment = {{ share = 0.20, floor = 10, cap = 300, daily_cap = 400 }} }}
"""
"""v1 in force from the start; v2, dearer with shorter limits, from ``V2_FROM``."""


@pytest.fixture
def versions(cli: Any, tmp_path: Path) -> Any:
    """``cli`` under the policy of two versions."""
    path = tmp_path / "policy.toml"
    path.write_text(TWO_VERSIONS, encoding="utf-8")
    return lambda command: cli(f"--policy {path} {command}")


def funded(run: Any, shop: str = "tea-house", amount: str = "5000") -> None:
    done(run(f"open {shop} --site CN --category general --at {at()}"))
    done(run(f"pay {shop} {amount} --channel alipay --ref {shop}-A1 --at {at(hours=1)}"))


def deductions(run: Any, shop: str = "tea-house") -> list[tuple[str, str, str]]:
    """Each deduction's (case, amount, policy version), from the history."""
    history = ok(run(f"history {shop} --json"))
    return [
        (event["case_id"], event["amount_collected"], event["policy_version"])
        for event in history
        if event["type"] == "Deducted"
    ]


def test_a_back_dated_deduction_is_priced_and_capped_by_the_version_in_force_then(
    versions: Any, store_url: str
) -> None:
    funded(versions)
    # Day 10, under v1: 10% capped at 100.00, at most 150.00 a Beijing day.
    for case in ("LS-1", "LS-2"):
        done(versions(f"deduct tea-house --reason late_shipment --case {case} --order-value 1000 --at {at(days=10)}"))
    # Day 30, under v2: 20% capped at 300.00, at most 400.00 a day.
    for case in ("LS-3", "LS-4"):
        done(versions(f"deduct tea-house --reason late_shipment --case {case} --order-value 1000 --at {at(days=30)}"))
    done(versions("deduct tea-house --reason late_shipment --case LS-5 --order-value 100"))  # now: v2
    assert deductions(versions) == [
        ("LS-1", "100.00", "v1"),
        ("LS-2", "50.00", "v1"),
        ("LS-3", "200.00", "v2"),
        ("LS-4", "200.00", "v2"),
        ("LS-5", "20.00", "v2"),
    ]
    [rule] = [event["rule"] for event in ok(versions("history tea-house --json")) if event.get("case_id") == "LS-2"]
    assert rule == (
        "late_shipment: 10% of the order value, at least 5.00, at most 100.00 CNY; daily cap 150.00 CNY; "
        "cut to 50.00 by the daily cap (100.00 charged today)"
    )
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_requirements_and_time_limits_follow_the_version_in_force_at_each_command(
    versions: Any, store_url: str
) -> None:
    funded(versions, amount="2000")
    assert ok(versions("show tea-house --json"))["required"] == "2000.00"  # opened under v1
    changed = ok(versions(f"categories tea-house --add food --at {at(days=40)} --json"))  # under v2: 5000.00
    assert (changed["required"], changed["policy_version"], changed["top_up_due"]) == (
        "5000.00",
        "v2",
        "2025-03-02T01:00:00Z",  # v2's 15 days
    )
    done(versions(f"open noodle-bar --site CN --category general --at {at(days=5)}"))
    closed = ok(versions(f"close noodle-bar --at {at(days=6)} --json"))
    assert (ok(versions("show noodle-bar --json"))["required"], closed["settlement_due"]) == (
        "2000.00",
        "2025-03-13T01:00:00Z",  # v1's 60 days after day 6
    )
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_a_deduction_keeps_the_appeal_window_of_the_version_it_was_made_under(versions: Any, store_url: str) -> None:
    funded(versions)
    done(versions(f"deduct tea-house 10 --reason other --case OLD --at {at(days=20)}"))  # v1: 30 days
    done(versions(f"deduct tea-house 10 --reason other --case NEW --at {at(days=30)}"))  # v2: 10 days
    done(versions(f"appeal tea-house --case OLD --at {at(days=45)}"))
    before = stored_rows(store_url)
    refused = versions(f"appeal tea-house --case NEW --at {at(days=45)}")
    assert (refused.code, refused.err_lines) == (
        REFUSED,
        ["deposit-ledger: the appeal window for case NEW closed at 2025-02-15T01:00:00+00:00"],
    )
    assert stored_rows(store_url) == before
    filed = ok(versions("history tea-house --json"))[-1]
    assert (filed["type"], filed["policy_version"], filed["window_ends_at"]) == (
        "AppealFiled",
        "v1",
        "2025-02-25T01:00:00Z",
    )
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_before_the_first_version_takes_effect_a_command_needing_the_policy_is_refused(
    cli: Any, tmp_path: Path, store_url: str
) -> None:
    path = tmp_path / "late.toml"
    path.write_text(TWO_VERSIONS.replace('version = "v1"', f'version = "v1"\neffective_from = {at(days=1)}'))
    refused = cli(f"--policy {path} open tea-house --site CN --category general --at {at()}")
    assert (refused.code, refused.err_lines) == (
        REFUSED,
        [
            "deposit-ledger: no deposit policy was in force at 2025-01-06T01:00:00+00:00: "
            "the first, v1, takes effect at 2025-01-07T01:00:00+00:00"
        ],
    )
    assert stored_rows(store_url) == 0
    assert (
        ok(cli(f"--policy {path} open tea-house --site CN --category general --at {at(days=1)} --json"))[
            "policy_version"
        ]
        == "v1"
    )


def test_the_policy_command_shows_every_version_and_which_is_in_force(versions: Any) -> None:
    shown = ok(versions("policy --json"))
    assert (shown["version"], shown["effective_from"], shown["appeal_window_days"]) == (
        "v2",
        "2025-01-31T16:00:00Z",
        10,
    )
    assert [(entry["version"], entry["effective_from"], entry["in_force"]) for entry in shown["versions"]] == [
        ("v1", None, False),
        ("v2", "2025-01-31T16:00:00Z", True),
    ]
    assert shown["versions"][0]["sites"]["CN"]["required"]["general"] == "2000.00"
    table = done(versions("policy")).out
    assert "Deposit policy v1: settlement 60 days" in table
    assert "Deposit policy v2, from 2025-01-31 16:00:00Z (in force): settlement 90 days" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda text: text.replace(f"effective_from = {V2_FROM}", ""),
            "policy {path}: version v2 needs an effective_from: only the first may go without",
            id="undated",
        ),
        pytest.param(
            lambda text: text.replace(f"effective_from = {V2_FROM}", "effective_from = 2025-02-01T00:00:00"),
            "policy {path}: versions[2].effective_from: give the time with its UTC offset, "
            "e.g. 2026-06-01T00:00:00+08:00",
            id="no-offset",
        ),
        pytest.param(
            lambda text: text.replace(
                'currency = "CNY"\ntime_zone = "Asia/Shanghai"\nrequired = { general = 3000',
                'currency = "RMB"\ntime_zone = "Asia/Shanghai"\nrequired = { general = 3000',
            ),
            "policy {path}: versions[2].sites.CN.currency: unknown currency 'RMB': "
            "expected an ISO 4217 code such as CNY, USD or JPY",
            id="second-version-s-key",
        ),
        pytest.param(
            lambda text: 'version = "v0"\n' + text,
            "policy {path}: version: unknown key beside [[versions]]: each version holds its own",
            id="top-level-key",
        ),
    ],
)
def test_a_mistake_in_a_file_of_versions_names_the_version_and_exits_2(
    run: Any, tmp_path: Path, change: Any, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(change(TWO_VERSIONS), encoding="utf-8")
    bad = run(f"--policy {path} policy")
    assert (bad.code, bad.err_lines) == (MALFORMED, [f"deposit-ledger: {message.format(path=path)}"])


def test_a_journal_s_back_dated_deductions_are_priced_by_the_version_in_force_then(
    versions: Any, tmp_path: Path, store_url: str
) -> None:
    journal = write_journal(
        tmp_path / "journal.jsonl",
        [
            line("open", "tea-house", "2025-01-06T01:00:00Z", site="CN", category="general"),
            line("pay", "tea-house", "2025-01-06T02:00:00Z", amount="5000", channel="alipay", ref="J-A1"),
            line("deduct", "tea-house", "2025-01-20T01:00:00Z", reason="late_shipment", case="J-1", order_value="500"),
            line("deduct", "tea-house", "2025-02-20T01:00:00Z", reason="late_shipment", case="J-2", order_value="500"),
        ],
        "jsonl",
    )
    assert ok(versions(f"import {journal} --json"))["rejected"] == 0
    assert deductions(versions) == [("J-1", "50.00", "v1"), ("J-2", "100.00", "v2")]
    assert_views_are_a_rebuild_and_verify_clean(store_url)
