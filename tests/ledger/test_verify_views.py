"""``verify`` over views that have not applied every event: a stopped view is named, never its stale figures."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from ledger import DepositLedger
from ledger.store.urls import Store
from ledger.tools.audit import Auditor, ViewPosition
from projections.view import Cursor, Positioned
from tests.conftest import FakeClock
from tests.ledger.stores import fill_behind


def _stop_balances_at(ledger: DepositLedger, position: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the balances view fail on the batch holding ``position``, as a poison event would."""
    balances = ledger.views.view("balances")
    apply = balances.apply

    def failing(cursor: Cursor, table: str, batch: Sequence[Positioned]) -> None:
        if any(positioned.position == position for positioned in batch):
            raise ValueError("cannot apply this")
        apply(cursor, table, batch)

    monkeypatch.setattr(balances, "apply", failing)


def test_verify_names_a_stopped_view_and_its_position_not_its_stale_figures(
    ledger: DepositLedger, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("tea", currency="CNY", required="100")
    ledger.pay("tea", "60", channel="alipay", ref="A1")  # positions 2 and 3
    _stop_balances_at(ledger, 5, monkeypatch)
    clock.advance(hours=1)
    ledger.pay("tea", "40", channel="wechat_pay", ref="W1")  # positions 4 and 5: the view stops at 4
    ledger.open("gym", currency="CNY", required="50")  # 6: a deposit the stopped view never saw
    ledger.pay("gym", "50", channel="alipay", ref="G1")  # 7 and 8
    head = ledger.views.head()

    report = Auditor(store).verify()

    assert [(problem.position, problem.kind) for problem in report.problems] == [(5, "view_stopped")]
    assert report.problems[0].detail == (
        "the balances view stopped at position 5 (ValueError: cannot apply this): "
        f"it applied events up to 4 of {head}; its rows were checked up to there"
    )
    assert report.views_behind == [
        ViewPosition(name="balances", position=4, head=head, stopped="position 5: ValueError: cannot apply this")
    ]
    assert report.as_json()["views_behind"] == [
        {"name": "balances", "position": 4, "head": head, "stopped": "position 5: ValueError: cannot apply this"}
    ]

    monkeypatch.delattr(ledger.views.view("balances"), "apply")  # the class's own again
    ledger.views.catch_up()
    healed = Auditor(store).verify()
    assert healed.ok, healed.problems
    assert healed.views_behind == []


def test_verify_still_finds_a_forged_figure_below_a_stopped_views_position(
    ledger: DepositLedger, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("tea", currency="CNY", required="100")
    ledger.pay("tea", "60", channel="alipay", ref="A1")
    _stop_balances_at(ledger, 5, monkeypatch)
    clock.advance(hours=1)
    ledger.pay("tea", "40", channel="wechat_pay", ref="W1")
    connection = store.connect()
    try:
        connection.cursor().execute("UPDATE deposit_balances SET paid_minor = paid_minor + 1")
    finally:
        connection.close()

    report = Auditor(store).verify()

    assert {problem.kind for problem in report.problems} == {"view_stopped", "balances"}
    forged = next(problem for problem in report.problems if problem.kind == "balances")
    assert forged.shop_id == "tea"
    assert "paid_minor" in forged.detail


def test_a_view_only_behind_is_one_problem_and_is_checked_up_to_its_position(
    ledger: DepositLedger, store: Store
) -> None:
    ledger.open("tea", currency="CNY", required="100")
    ledger.pay("tea", "60", channel="alipay", ref="A1")  # positions 1 to 3, in the views
    head = fill_behind(ledger, 20, 2)

    report = Auditor(store).verify()

    assert [(problem.position, problem.kind) for problem in report.problems] == [
        (4, "view_behind"),
        (4, "view_behind"),
    ]
    assert report.problems[0].detail == (
        "the balances view is behind the log (deposit-ledger projections catch-up): "
        f"it applied events up to 3 of {head}; its rows were checked up to there"
    )
    assert [(view.name, view.position, view.head, view.stopped) for view in report.views_behind] == [
        ("balances", 3, head, None),
        ("audit_trail", 3, head, None),
    ]
    ledger.views.catch_up()
    assert Auditor(store).verify().ok
