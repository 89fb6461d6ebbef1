"""``DepositLedger`` under a deposit policy: where the policy comes from, "now" for the status,
and the views and audit over every new event (rebuild equals replay, verify stays clean).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from domain import HISTORY_EVENTS, DepositState, Status
from ledger import DepositLedger
from ledger.app.policy_file import load_policy
from ledger.store.urls import Store
from ledger.tools.audit import Auditor
from tests.conftest import FakeClock
from tests.domain.policy_fixtures import policy
from tests.ledger.stores import view_rows


@pytest.fixture
def story(ledger: DepositLedger, clock: FakeClock) -> DepositLedger:
    """Four shops that between them record every event type, under the shipped policy.

    ``noodle-bar`` adds a dearer category, is deducted by the catalogue, holds and
    deducts a case, wins one appeal and loses another; ``tea-house`` lowers its
    requirement and takes the excess back, then closes, wins an appeal after the
    refund; ``gadgets`` is force-closed with a hold open; ``kimono`` owes money
    that a reversed deduction settles; ``lantern`` is force-closed owing money, written off.
    """
    ledger.open("noodle-bar", site="CN", categories=["food"])
    ledger.pay("noodle-bar", "4000", channel="alipay", ref="A1")
    clock.advance(hours=1)
    ledger.change_categories("noodle-bar", add=["jewelry"])
    ledger.deduct("noodle-bar", reason="late_shipment", case="LS-1", order_value="320")
    ledger.hold("noodle-bar", "300", case="AS-1", note="buyer complaint")
    ledger.deduct("noodle-bar", "120", reason="after_sales_dispute", case="AS-1")
    ledger.appeal("noodle-bar", case="LS-1")
    ledger.appeal("noodle-bar", case="AS-1")
    ledger.resolve_appeal("noodle-bar", case="LS-1", upheld=True)
    ledger.resolve_appeal("noodle-bar", case="AS-1", upheld=False)

    ledger.open("tea-house", site="CN", categories=["general", "jewelry"])
    ledger.pay("tea-house", "3000", channel="alipay", ref="TEA-A1")
    ledger.pay("tea-house", "2000", channel="wechat_pay", ref="TEA-W1")
    ledger.change_categories("tea-house", remove=["jewelry"])
    ledger.refund_excess("tea-house")
    ledger.deduct("tea-house", reason="fake_listing", case="FL-1")

    ledger.open("gadgets", site="UK", categories=["electronics"])
    ledger.pay("gadgets", "3000", channel="wechat_pay", ref="GAD-W1")
    ledger.hold("gadgets", "500", case="AS-7")
    ledger.force_close("gadgets", reason="counterfeit goods")

    ledger.open("kimono", currency="JPY", required="70000", site="JP")
    ledger.pay("kimono", "70000", channel="wechat_pay", ref="KIM-W1")
    ledger.deduct("kimono", "50000", reason="order_brushing", case="OB-1")
    ledger.deduct("kimono", "30000", reason="fake_listing", case="FL-2")  # 20 000 collected, 10 000 owed
    ledger.appeal("kimono", case="OB-1")
    ledger.resolve_appeal("kimono", case="OB-1", upheld=True)  # 50 000 back: settles FL-2 first

    ledger.open("lantern", currency="CNY", required="1000")
    ledger.deduct("lantern", "1500", reason="other", case="X-9")
    ledger.force_close("lantern", reason="fraud")

    ledger.close_shop("tea-house")
    clock.advance(days=91)
    ledger.refund("tea-house")
    ledger.write_off("lantern", case="X-9", reason="merchant unreachable")
    return ledger


SHOPS = ("noodle-bar", "tea-house", "gadgets", "kimono", "lantern")


def test_the_story_records_every_event_type(story: DepositLedger) -> None:
    recorded = {event.type_name for shop in SHOPS for event in story.history(shop)}
    assert recorded == {cls.__name__ for cls in HISTORY_EVENTS}


def test_balance_equals_show_for_every_shop_and_conservation_holds(story: DepositLedger) -> None:
    for shop in SHOPS:
        state = story.show(shop)
        assert story.balance(shop) == state
        parts = (
            state.frozen_minor,
            state.held_minor,
            state.deducted_minor,
            state.refunded_minor,
            state.forfeited_minor,
        )
        assert state.paid_minor == sum(parts), shop


def test_the_story_s_figures(story: DepositLedger) -> None:
    kimono = story.show("kimono")
    assert (kimono.frozen_minor, kimono.deducted_minor, kimono.reversed_minor, kimono.owed_minor) == (
        40_000,
        30_000,
        50_000,
        0,
    )
    gadgets = story.show("gadgets")
    assert (gadgets.status, gadgets.held_minor, gadgets.forfeited_minor) == (Status.FORFEITED, 0, 300_000)
    tea = story.show("tea-house")
    assert (tea.status, tea.refunded_minor, tea.deducted_minor) == (Status.CLOSED, 450_000, 50_000)
    noodle = story.show("noodle-bar")
    assert (noodle.required_minor, noodle.deducted_minor, noodle.reversed_minor) == (500_000, 12_000, 3_200)


def test_rebuilding_the_views_gives_the_rows_the_commands_left(story: DepositLedger, store: Store) -> None:
    live = view_rows(store)
    for name in ("balances", "audit_trail"):
        story.views.rebuild(name)
    assert view_rows(store) == live
    audit = story.audit("noodle-bar")
    assert len(audit) == len(story.history("noodle-bar"))
    assert [row.position for row in audit] == sorted(row.position for row in audit)


def test_verify_finds_the_views_and_snapshots_explained_by_the_events(story: DepositLedger) -> None:
    report = story.auditor().verify()
    assert report.ok, report.problems[:3]


def test_replay_answers_as_of_a_moment_restricted_then_though_topped_up_since(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    ledger.open("noodle-bar", site="CN", categories=["food"])
    ledger.pay("noodle-bar", "4000", channel="alipay", ref="A1")
    clock.advance(hours=1)
    due = ledger.deduct("noodle-bar", "100", reason="other", case="OT-1").state.top_up_due
    assert due is not None
    clock.advance(days=31)
    overdue_moment = clock.now
    assert ledger.show("noodle-bar").status is Status.RESTRICTED
    assert [state.shop_id for state in ledger.shops(overdue=True)] == ["noodle-bar"]
    assert ledger.balance("noodle-bar").status is Status.RESTRICTED
    clock.advance(hours=1)
    assert ledger.pay("noodle-bar", "100", channel="alipay", ref="A2").state.status is Status.ACTIVE
    assert ledger.replay("noodle-bar", as_of=overdue_moment).status is Status.RESTRICTED
    assert ledger.shops(overdue=True) == []


def test_the_policy_can_be_given_as_an_object_and_the_settlement_window_overridden(
    store_url: str, clock: FakeClock
) -> None:
    custom = policy("2026.7")
    with DepositLedger(store_url, actor="tester", clock=clock, policy=custom) as ledger:
        assert ledger.open("s1", site="CN", categories=["food"]).state.required_minor == 400_000
        assert ledger.policy is custom
    with DepositLedger(store_url, clock=clock, policy=custom, settlement_window=timedelta(days=2)) as ledger:
        assert (ledger.settlement_window, ledger.policy.version) == (timedelta(days=2), "2026.7")
        assert ledger.close_shop("s1").state.settlement_due == clock.now + timedelta(days=2)


def test_the_settlement_window_defaults_to_the_shipped_policy_s(ledger: DepositLedger) -> None:
    assert ledger.settlement_window == load_policy().latest.settlement_window == timedelta(days=90)


@pytest.fixture
def old_balances_table(ledger: DepositLedger, store: Store) -> Iterator[list[DepositState]]:
    """A store whose balances table has the columns of the first release (no held, top_up_due...)."""
    ledger.open("tea-house", currency="CNY", required="2000", site="CN")
    ledger.pay("tea-house", "2000", channel="alipay", ref="A1")
    before = [ledger.show("tea-house")]
    ledger.close()
    old_columns = (
        "deposit_id, shop_id, site, currency, status, phase, required_minor, paid_minor, unfrozen_minor, "
        "frozen_minor, deducted_minor, refunded_minor, forfeited_minor, owed_minor, shortfall_minor, "
        "settlement_due, version, last_effective_at, position"
    )
    with closing(store.connect()) as connection:
        connection.execute(f"CREATE TABLE old_balances AS SELECT {old_columns} FROM deposit_balances")
        connection.execute("DROP TABLE deposit_balances")
        connection.execute("ALTER TABLE old_balances RENAME TO deposit_balances")
    yield before


def test_verify_on_a_balances_table_of_an_older_release_says_so_instead_of_failing(
    old_balances_table: list[DepositState], store: Store
) -> None:
    # The auditor never writes: the table stays as the older release left it until a command runs.
    report = Auditor(store).verify()
    assert [(problem.kind, problem.detail) for problem in report.problems] == [
        ("balances", "the balances view has another release's columns: run deposit-ledger projections rebuild")
    ]
    assert report.events_checked == 3


def test_a_balances_table_of_an_older_release_is_rebuilt_from_the_events(
    old_balances_table: list[DepositState], store_url: str, clock: FakeClock
) -> None:
    with DepositLedger(store_url, actor="tester", clock=clock) as reopened:
        assert [reopened.balance("tea-house")] == old_balances_table
        assert reopened.auditor().verify().ok


def test_the_sites_zones_are_known_on_a_machine_without_zone_data(tmp_path: Path) -> None:
    # Windows and slim containers have no /usr/share/zoneinfo: zoneinfo then reads the zones
    # from the tzdata package, a dependency. An empty search path stands for such a machine.
    check = (
        "from datetime import datetime, UTC; from ledger.app.policy_file import load_policy; "
        "zone = load_policy().latest.sites['CN'].zone(); "
        "print(datetime(2025, 1, 6, 23, 30, tzinfo=UTC).astimezone(zone).isoformat())"
    )
    environment = {**os.environ, "PYTHONTZPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", check], env=environment, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "2025-01-07T07:30:00+08:00"), done.stderr
