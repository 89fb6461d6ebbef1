"""The balances view's ``apply``: every event type, and batches cut anywhere."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from domain import Channel, DeductionReason, ShopDeposit, Status
from ledger.store.urls import Store
from projections.balances import BalancesView
from projections.view import Positioned, View, stored_time
from tests.projections.stories import (
    SETTLEMENT_WINDOW,
    Step,
    events_of,
    forfeited_story,
    policy_story,
    positioned,
    refunded_story,
    stamp,
    table_rows,
    view_tables,
    view_tables_in,
)

TABLE = BalancesView.table


@pytest.fixture
def balances(store: Store) -> Iterator[tuple[View, sqlite3.Cursor]]:
    """The view's tables in the test's store: each test using it runs on both engines."""
    with view_tables_in(store, BalancesView) as tables:
        yield tables


def _get(view: View, cursor: sqlite3.Cursor, shop_id: str) -> tuple[object, int]:
    assert isinstance(view, BalancesView)
    found = view.get(cursor, shop_id)
    assert found is not None, f"no row for {shop_id}"
    return found


@pytest.mark.parametrize(
    "steps", [refunded_story(), forfeited_story(), policy_story()], ids=["refunded", "forfeited", "policy"]
)
def test_after_each_command_the_row_reports_what_the_deposit_reports(
    balances: tuple[View, sqlite3.Cursor], steps: list[Step]
) -> None:
    view, cursor = balances
    position = 0
    for step in steps:
        batch = positioned(step.events, first=position + 1)
        view.apply(cursor, TABLE, batch)
        position = batch[-1].position
        assert _get(view, cursor, step.state.shop_id) == (step.state, position), step.command


def test_opened_creates_a_row_awaiting_payment(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    deposit = ShopDeposit.open(shop_id="tea-house", site="CN", currency="CNY", required_minor=200000, stamp=stamp(0))
    view.apply(cursor, TABLE, positioned(deposit.collect_events(), first=41))
    row = cursor.execute(
        f"SELECT shop_id, site, currency, status, phase, required_minor, paid_minor, frozen_minor, "
        f"shortfall_minor, version, last_effective_at, position FROM {TABLE}"
    ).fetchall()
    assert row == [
        (
            "tea-house",
            "CN",
            "CNY",
            "awaiting_payment",
            "open",
            200000,
            0,
            0,
            200000,
            1,
            stored_time(stamp(0).effective_at),
            41,
        )
    ]


def test_each_event_type_moves_the_figures_it_names(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    refunded = refunded_story()
    forfeited = forfeited_story()
    view.apply(cursor, TABLE, positioned(events_of(refunded) + events_of(forfeited)))

    state, _ = _get(view, cursor, "tea-house")
    assert (state.status, state.paid_minor, state.deducted_minor, state.refunded_minor, state.frozen_minor) == (
        Status.CLOSED,
        200000,
        5000,
        195000,
        0,
    )
    assert state.settlement_due == stamp(4).effective_at + SETTLEMENT_WINDOW
    state, _ = _get(view, cursor, "gadget-hub")
    # 100 paid, 300 deducted of which 100 collected and 200 owed; the next 250 settles 200 and freezes 50.
    assert (state.status, state.paid_minor, state.deducted_minor, state.owed_minor, state.forfeited_minor) == (
        Status.FORFEITED,
        35000,
        30000,
        0,
        5000,
    )


def test_an_underfunded_deposit_owes_what_its_deduction_could_not_collect(
    balances: tuple[View, sqlite3.Cursor],
) -> None:
    view, cursor = balances
    steps = forfeited_story()
    view.apply(cursor, TABLE, positioned(events_of(steps[:3])))
    state, _ = _get(view, cursor, "gadget-hub")
    assert (state.status, state.frozen_minor, state.owed_minor, state.shortfall_minor) == (
        Status.UNDERFUNDED,
        0,
        20000,
        120000,
    )


def test_a_closing_deposit_shows_its_settlement_due(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    steps = refunded_story()
    view.apply(cursor, TABLE, positioned(events_of(steps[:5])))
    state, _ = _get(view, cursor, "tea-house")
    assert state.status is Status.CLOSING
    assert state.settlement_due == steps[4].state.settlement_due is not None


def test_a_batch_holding_the_opening_and_later_events_equals_event_by_event() -> None:
    events = events_of(refunded_story()) + events_of(forfeited_story())
    whole = positioned(events)
    view, cursor = view_tables(BalancesView)
    single_view, single_cursor = view_tables(BalancesView)
    view.apply(cursor, TABLE, whole)
    for one in whole:
        single_view.apply(single_cursor, TABLE, [one])
    assert table_rows(cursor, TABLE) == table_rows(single_cursor, TABLE)
    assert len(table_rows(cursor, TABLE)) == 2


def test_interleaved_deposits_in_one_batch_keep_apart() -> None:
    refunded, forfeited = events_of(refunded_story()), events_of(forfeited_story())
    interleaved = [event for pair in zip(refunded, forfeited, strict=False) for event in pair]
    interleaved += refunded[len(forfeited) :]
    view, cursor = view_tables(BalancesView)
    view.apply(cursor, TABLE, positioned(interleaved))
    assert _get(view, cursor, "tea-house")[0] == refunded_story()[-1].state
    assert _get(view, cursor, "gadget-hub")[0] == forfeited_story()[-1].state


@pytest.mark.parametrize("cut", range(1, 13))
def test_a_batch_cut_anywhere_gives_the_same_rows(cut: int) -> None:
    events = events_of(refunded_story()) + events_of(forfeited_story())
    batch = positioned(events)
    view, cursor = view_tables(BalancesView)
    whole_view, whole_cursor = view_tables(BalancesView)
    view.apply(cursor, TABLE, batch[:cut])
    view.apply(cursor, TABLE, batch[cut:])
    whole_view.apply(whole_cursor, TABLE, batch)
    assert table_rows(cursor, TABLE) == table_rows(whole_cursor, TABLE)


@pytest.mark.parametrize("cut", range(1, 25))
def test_a_policy_story_cut_anywhere_gives_the_same_rows(cut: int) -> None:
    batch = positioned(events_of(policy_story()))
    view, cursor = view_tables(BalancesView)
    whole_view, whole_cursor = view_tables(BalancesView)
    view.apply(cursor, TABLE, batch[:cut])
    view.apply(cursor, TABLE, batch[cut:])
    whole_view.apply(whole_cursor, TABLE, batch)
    assert table_rows(cursor, TABLE) == table_rows(whole_cursor, TABLE)


def test_a_payment_split_between_paid_and_frozen_holds_the_money_unfrozen(
    balances: tuple[View, sqlite3.Cursor],
) -> None:
    view, cursor = balances
    deposit = ShopDeposit.open(shop_id="tea-house", site=None, currency="CNY", required_minor=1000, stamp=stamp(0))
    deposit.pay(amount_minor=600, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp(1))
    opened, paid, frozen = positioned(deposit.collect_events())
    view.apply(cursor, TABLE, [opened, paid])
    assert cursor.execute(
        f"SELECT paid_minor, unfrozen_minor, frozen_minor, version, position FROM {TABLE}"
    ).fetchall() == [(600, 600, 0, 2, 2)]
    view.apply(cursor, TABLE, [frozen])
    assert cursor.execute(
        f"SELECT paid_minor, unfrozen_minor, frozen_minor, version, position FROM {TABLE}"
    ).fetchall() == [(600, 0, 600, 3, 3)]
    assert _get(view, cursor, "tea-house")[0] == deposit.state()


def test_a_debt_settlement_split_across_batches_gives_the_same_row(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    steps = forfeited_story()
    # The settling payment records Paid, Deducted (settles the debt) and Frozen: cut after each.
    before = events_of(steps[:3])
    paid, settled, frozen = steps[3].events
    view.apply(cursor, TABLE, positioned([*before, paid]))
    view.apply(cursor, TABLE, positioned([settled], first=len(before) + 2))
    view.apply(cursor, TABLE, positioned([frozen], first=len(before) + 3))
    assert _get(view, cursor, "gadget-hub") == (steps[3].state, len(before) + 3)


def test_an_event_of_a_deposit_without_a_row_is_refused_and_writes_nothing(
    balances: tuple[View, sqlite3.Cursor],
) -> None:
    view, cursor = balances
    events = events_of(refunded_story())
    view.apply(cursor, TABLE, positioned(events[:1]))
    before = table_rows(cursor, TABLE)
    with pytest.raises(LookupError, match="no balances row"):
        view.apply(cursor, TABLE, positioned(events_of(forfeited_story())[1:], first=2))
    assert table_rows(cursor, TABLE) == before


def test_an_event_applied_twice_is_refused(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    batch = positioned(events_of(refunded_story())[:3])
    view.apply(cursor, TABLE, batch)
    before = table_rows(cursor, TABLE)
    with pytest.raises(AssertionError, match="version gap"):
        view.apply(cursor, TABLE, batch[1:])
    assert table_rows(cursor, TABLE) == before


def test_select_filters_by_status_site_and_shortfall(balances: tuple[View, sqlite3.Cursor]) -> None:
    view, cursor = balances
    assert isinstance(view, BalancesView)
    events = events_of(refunded_story("b-closed")) + events_of(forfeited_story("d-forfeited")[:3])
    active = ShopDeposit.open(shop_id="a-active", site="CN", currency="CNY", required_minor=100, stamp=stamp(0))
    active.pay(amount_minor=100, channel=Channel.ALIPAY, trade_no="A", payer=None, stamp=stamp(1))
    waiting = ShopDeposit.open(shop_id="c-waiting", site="UK", currency="GBP", required_minor=100, stamp=stamp(0))
    waiting.deduct(amount_minor=1, reason=DeductionReason.OTHER, case_id="X", note="", stamp=stamp(1))
    events += active.collect_events() + waiting.collect_events()
    view.apply(cursor, TABLE, positioned(events))

    def shops(status: str | None = None, site: str | None = None, must_pay: bool = False) -> list[str]:
        return [state.shop_id for state in view.select(cursor, status=status, site=site, must_pay=must_pay)]

    assert shops() == ["a-active", "b-closed", "c-waiting", "d-forfeited"]
    assert shops(status="active") == ["a-active"]
    assert shops(status="underfunded") == ["d-forfeited"]
    assert shops(status="awaiting_payment") == ["c-waiting"]
    assert shops(site="CN") == ["a-active", "b-closed"]
    assert shops(must_pay=True) == ["c-waiting", "d-forfeited"]
    assert shops(site="US", must_pay=True) == ["d-forfeited"]
    assert shops(site="CN", must_pay=True) == []


def _update_set(cursor: sqlite3.Cursor, view: View, batch: list[Positioned]) -> list[str]:
    # The columns the write of one existing row names in its SET clause.
    statements: list[str] = []
    cursor.connection.set_trace_callback(statements.append)
    try:
        view.apply(cursor, TABLE, batch)
    finally:
        cursor.connection.set_trace_callback(None)
    (upsert,) = [statement for statement in statements if statement.startswith("INSERT")]
    return [part.split(" = ")[0].strip() for part in upsert.split("DO UPDATE SET ")[1].split(",")]


def test_a_row_s_write_names_the_indexed_columns_only_when_they_change() -> None:
    # SQLite rewrites an index entry for every column a SET names, changed or not.
    view, cursor = view_tables(BalancesView)
    deposit = ShopDeposit.open(shop_id="tea-house", site="CN", currency="CNY", required_minor=100000, stamp=stamp(0))
    view.apply(cursor, TABLE, positioned(deposit.collect_events(), first=1))
    deposit.pay(amount_minor=150000, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp(1))
    funded = _update_set(cursor, view, positioned(deposit.collect_events(), first=2))
    assert {"status", "shortfall_minor"} <= set(funded), "awaiting payment, then funded: both changed"
    deposit.deduct(amount_minor=1000, reason=DeductionReason.LATE_SHIPMENT, case_id="LS-1", note="", stamp=stamp(2))
    still_funded = _update_set(cursor, view, positioned(deposit.collect_events(), first=4))
    assert {"paid_minor", "frozen_minor", "deducted_minor", "version", "position"} <= set(still_funded)
    assert not {"deposit_id", "shop_id", "site", "currency", "status", "phase", "shortfall_minor", "top_up_due"} & set(
        still_funded
    )
    assert _get(view, cursor, "tea-house") == (deposit.state(), 4)
