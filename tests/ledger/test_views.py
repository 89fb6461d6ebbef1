"""Keeping the views exactly once: inline with each save, by catch-up, by rebuild; poison events."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from eventsourcing.persistence import IntegrityError

from domain import DepositState, DuplicateConflict, ShopNotFound, WrongStatus
from ledger import DepositLedger
from ledger.faces.cli import main
from ledger.store.urls import resolve_store
from ledger.views.runner import ViewFailed
from projections.view import Cursor, Positioned, View
from tests.conftest import FakeClock
from tests.ledger.stores import (
    AUDIT,
    BALANCES,
    connect,
    drop_views,
    fill,
    fill_behind,
    table_and_index_names,
    tracking,
    view_rows,
)


def _lags(ledger: DepositLedger) -> dict[str, int]:
    return {status.name: status.lag for status in ledger.projection_status()}


def _assert_views_agree(ledger: DepositLedger, shops: Sequence[str]) -> None:
    for shop in shops:
        assert ledger.balance(shop) == ledger.show(shop), shop
        audit = ledger.audit(shop)
        assert [row.type for row in audit] == [event.type_name for event in ledger.history(shop)], shop


def _fail_at(view: View, position: int, error: Exception) -> Callable[[Cursor, str, Sequence[Positioned]], None]:
    """``view.apply``, except that it raises ``error`` for a batch holding ``position``."""
    apply = view.apply

    def failing(cursor: Cursor, table: str, batch: Sequence[Positioned]) -> None:
        if any(positioned.position == position for positioned in batch):
            raise error
        apply(cursor, table, batch)

    return failing


# ------------------------------------------------------------------ read-your-writes


def test_every_command_is_in_the_views_when_it_returns(ledger: DepositLedger, clock: FakeClock) -> None:
    commands: list[tuple[str, Callable[[], object]]] = [
        ("tea", lambda: ledger.open("tea", currency="CNY", required="2000", site="CN")),
        ("tea", lambda: ledger.pay("tea", "1500", channel="alipay", ref="A1")),
        ("gym", lambda: ledger.open("gym", currency="JPY", required="70000", site="JP")),
        ("tea", lambda: ledger.deduct("tea", "1600", reason="fake_listing", case="F1", note="fake brand")),
        ("gym", lambda: ledger.pay("gym", "70000", channel="wechat_pay", ref="W1")),
        ("tea", lambda: ledger.pay("tea", "2500", channel="wechat_pay", ref="W2")),
        ("tea", lambda: ledger.close_shop("tea")),
        ("tea", lambda: ledger.deduct("tea", "10", reason="after_sales_dispute", case="D1")),
        ("gym", lambda: ledger.force_close("gym", reason="counterfeit goods")),
        ("tea", lambda: (clock.advance(days=91), ledger.refund("tea"))),
    ]
    for shop, command in commands:
        clock.advance(hours=1)
        command()
        assert _lags(ledger) == {"balances": 0, "audit_trail": 0}
        _assert_views_agree(ledger, [shop])
    assert ledger.balance("tea").status == "closed"
    assert ledger.balance("gym").status == "forfeited"


def test_duplicates_and_refusals_leave_the_views_current(ledger: DepositLedger, clock: FakeClock) -> None:
    ledger.open("tea", currency="CNY", required="100")
    ledger.pay("tea", "100", channel="alipay", ref="A1")
    head = ledger.views.head()
    assert ledger.pay("tea", "100", channel="alipay", ref="A1").duplicate
    with pytest.raises(DuplicateConflict, match="was recorded with"):
        ledger.pay("tea", "99", channel="alipay", ref="A1")
    with pytest.raises(WrongStatus, match="cannot be refunded"):
        ledger.refund("tea")
    assert ledger.views.head() == head
    assert _lags(ledger) == {"balances": 0, "audit_trail": 0}
    _assert_views_agree(ledger, ["tea"])


def test_many_deposits_saved_in_one_transaction_are_applied_inline(ledger: DepositLedger) -> None:
    head = fill(ledger, 30, 3)
    assert head == 30 * 8 + 6  # and three closures, three forced closures
    assert _lags(ledger) == {"balances": 0, "audit_trail": 0}
    assert tracking(ledger.store)[BALANCES] == head
    _assert_views_agree(ledger, ["bulk-00000", "bulk-00001", "bulk-00002", "bulk-00029"])


# ------------------------------------------------------------------------- catch-up


def test_views_that_fell_behind_catch_up(ledger: DepositLedger) -> None:
    head = fill_behind(ledger, 20, 2)
    assert [(s.name, s.position, s.head, s.lag) for s in ledger.projection_status()] == [
        ("balances", 0, head, head),
        ("audit_trail", 0, head, head),
    ]
    with pytest.raises(ShopNotFound, match="has no deposit"):
        ledger.balance("bulk-00000")
    progress: list[tuple[int, int]] = []
    assert ledger.views.catch_up(progress=lambda done, total: progress.append((done, total))) == 2 * head
    assert progress == [(head, head), (head, head)]
    assert _lags(ledger) == {"balances": 0, "audit_trail": 0}
    _assert_views_agree(ledger, ["bulk-00000", "bulk-00019"])
    assert ledger.views.catch_up() == 0


def test_the_next_command_brings_lagging_views_up_to_date(ledger: DepositLedger) -> None:
    fill_behind(ledger, 5, 1)
    ledger.open("tea", currency="CNY", required="100")
    assert _lags(ledger) == {"balances": 0, "audit_trail": 0}
    _assert_views_agree(ledger, ["tea", "bulk-00000", "bulk-00004"])


def test_views_behind_by_a_few_events_catch_up_when_the_ledger_opens(store_url: str, clock: FakeClock) -> None:
    first = DepositLedger(store_url, actor="tester", clock=clock)
    head = fill_behind(first, 10, 2)
    first.close()
    again = DepositLedger(store_url, actor="tester", clock=clock)
    try:
        assert tracking(store_url)[BALANCES] == tracking(store_url)[AUDIT] == head
        _assert_views_agree(again, ["bulk-00000", "bulk-00009"])
    finally:
        again.close()


def test_views_behind_by_more_than_the_limit_wait_for_catch_up(
    store_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.app.service.AUTO_CATCH_UP_LIMIT", 10)
    first = DepositLedger(store_url, actor="tester", clock=clock)
    head = fill_behind(first, 3, 2)
    first.close()
    again = DepositLedger(store_url, actor="tester", clock=clock)
    try:
        assert _lags(again) == {"balances": head, "audit_trail": head}
        assert again.views.catch_up() == 2 * head
        _assert_views_agree(again, ["bulk-00000", "bulk-00002"])
    finally:
        again.close()


def test_a_vanished_view_table_is_recreated_and_refilled_on_open(store_url: str, clock: FakeClock) -> None:
    first = DepositLedger(store_url, actor="tester", clock=clock)
    fill(first, 10, 2)
    before = view_rows(store_url)
    first.close()
    with connect(store_url) as connection:
        connection.execute("DROP TABLE audit_trail")
    again = DepositLedger(store_url, actor="tester", clock=clock)
    again.close()
    assert view_rows(store_url) == before


def test_catch_up_commits_batch_by_batch(ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 7)
    head = fill_behind(ledger, 5, 2)
    positions: list[int] = []
    ledger.views.catch_up(["balances"], progress=lambda done, total: positions.append(tracking(ledger.store)[BALANCES]))
    assert positions == [*range(7, head, 7), head]
    assert _lags(ledger) == {"balances": 0, "audit_trail": head}


# -------------------------------------------------------------------------- rebuild


@pytest.mark.parametrize("name", ["balances", "audit_trail"])
def test_a_rebuild_equals_the_live_view_row_for_row(ledger: DepositLedger, clock: FakeClock, name: str) -> None:
    fill(ledger, 25, 3)
    clock.advance(days=1)
    ledger.pay("bulk-00003", "5", channel="alipay", ref="late")
    path = ledger.store
    before, positions = view_rows(path), tracking(path)
    assert ledger.views.rebuild(name) == ledger.views.head()
    assert view_rows(path) == before
    assert tracking(path) == positions
    tables, indexes = table_and_index_names(path)
    assert not any(table.endswith("__rebuild") for table in tables)
    assert {"deposit_balances_shop", "deposit_balances_must_pay", "audit_trail_deposit"} <= indexes


@pytest.mark.sqlite_only("reads SQLite's query plans and catalogue")
def test_the_copy_is_indexed_while_it_is_built_and_the_swapped_view_keeps_the_live_index_names(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The audit trail reads each deposit's last row as it applies a batch: unindexed, every
    # lookup scans the copy and a rebuild of a store with many interleaved shops goes quadratic.
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 10)
    fill(ledger, 10, 2)
    path = ledger.store
    with connect(path) as connection:
        live_indexes = _indexes(connection)
    plans: list[str] = []

    def look_up_last_row(done: int, total: int) -> None:
        with connect(path) as connection:
            plan = connection.execute(
                "EXPLAIN QUERY PLAN SELECT shop_id, currency, frozen_after_minor FROM audit_trail__rebuild "
                "WHERE deposit_id = ? ORDER BY position DESC LIMIT 1",
                ("0" * 32,),
            ).fetchall()
        plans.append(" ".join(str(step[-1]) for step in plan))

    for _ in range(2):  # The second time proves the first swap left no index names in the way.
        ledger.views.rebuild("audit_trail", progress=look_up_last_row)
        with connect(path) as connection:
            assert _indexes(connection) == live_indexes
    assert plans and all("USING" in plan and "INDEX" in plan for plan in plans), plans


def _indexes(connection: sqlite3.Connection) -> set[tuple[str, str]]:
    rows = connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return set(rows.fetchall())


def test_dropping_the_view_tables_and_running_projections_rebuild_restores_identical_rows(
    store_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = DepositLedger(store_url, actor="tester", clock=clock)
    head = fill(first, 40, 3)
    first.close()
    before = view_rows(store_url)
    drop_views(store_url)
    # Nothing is caught up on opening: the rebuild itself restores every row.
    monkeypatch.setattr("ledger.app.service.AUTO_CATCH_UP_LIMIT", 0)
    main(["--db", store_url, "projections", "rebuild", "--json"])
    assert '"lag": 0' in capsys.readouterr().out
    assert view_rows(store_url) == before
    assert tracking(store_url)[BALANCES] == tracking(store_url)[AUDIT] == head


def test_queries_keep_answering_from_the_live_view_during_a_rebuild(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 10)
    head = fill(ledger, 10, 2)
    expected = ledger.show("bulk-00009")
    answers: list[DepositState] = []
    built: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        answers.append(ledger.balance("bulk-00009"))
        with connect(ledger.store) as connection:
            built.append(connection.execute("SELECT MAX(position) FROM deposit_balances__rebuild").fetchone()[0])

    ledger.views.rebuild("balances", progress=meanwhile)
    assert built == [*range(10, head, 10), head]
    assert set(answers) == {expected}


def test_events_saved_during_a_rebuild_are_in_the_view_it_switches_to(
    store_url: str, ledger: DepositLedger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 10)
    fill(ledger, 10, 2)
    other = DepositLedger(store_url, actor="other", clock=clock)
    saved: list[int] = []

    def meanwhile(done: int, total: int) -> None:
        if not saved:
            other.open("late-comer", currency="USD", required="10")
            other.pay("late-comer", "10", channel="alipay", ref="L1")
            saved.append(other.views.head())

    try:
        ledger.views.rebuild("audit_trail", progress=meanwhile)
    finally:
        other.close()
    assert tracking(store_url)[AUDIT] == saved[0]
    _assert_views_agree(ledger, ["late-comer", "bulk-00009"])


def test_unknown_view_names_are_refused(ledger: DepositLedger) -> None:
    with pytest.raises(LookupError, match="unknown view 'journal': expected one of balances, audit_trail"):
        ledger.views.rebuild("journal")
    with pytest.raises(LookupError, match="unknown view"):
        ledger.views.catch_up(["journal"])


# -------------------------------------------------------------------- poison events


def test_a_poison_event_stops_only_its_view_and_nothing_is_skipped(
    ledger: DepositLedger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("tea", currency="CNY", required="100")
    ledger.pay("tea", "60", channel="alipay", ref="A1")  # positions 2 and 3
    balances = ledger.views.view("balances")
    monkeypatch.setattr(balances, "apply", _fail_at(balances, 5, ValueError("cannot apply this\nsecond line")))

    clock.advance(hours=1)
    result = ledger.pay("tea", "40", channel="wechat_pay", ref="W1")  # positions 4 and 5
    assert result.state.frozen_minor == 10000, "the command succeeds whatever the view does"
    ledger.open("gym", currency="CNY", required="50")  # position 6: after the poison one
    ledger.pay("gym", "50", channel="alipay", ref="G1")

    statuses = {status.name: status for status in ledger.projection_status()}
    assert (statuses["balances"].position, statuses["balances"].error) == (
        4,
        "position 5: ValueError: cannot apply this",
    )
    assert (statuses["audit_trail"].position, statuses["audit_trail"].lag, statuses["audit_trail"].error) == (
        ledger.views.head(),
        0,
        None,
    )
    with pytest.raises(ViewFailed) as failed:
        ledger.views.catch_up()
    assert (failed.value.view, failed.value.position) == ("balances", 5)
    assert str(failed.value) == "view balances stopped at position 5: ValueError: cannot apply this"
    assert ledger.views.catch_up(["audit_trail"]) == 0
    # The balances row stands where the view stopped: after the Paid of position 4, before its Frozen.
    assert ledger.balance("tea").paid_minor == 10000
    assert ledger.balance("tea").frozen_minor == 6000
    with pytest.raises(ShopNotFound, match="has no deposit"):
        ledger.balance("gym")

    monkeypatch.undo()
    assert ledger.views.catch_up() == ledger.views.head() - 4
    assert {status.name: (status.lag, status.error) for status in ledger.projection_status()} == {
        "balances": (0, None),
        "audit_trail": (0, None),
    }
    _assert_views_agree(ledger, ["tea", "gym"])
    live = view_rows(ledger.store)
    ledger.views.rebuild("balances")
    assert view_rows(ledger.store) == live


def test_a_corrupt_stored_event_stops_both_views_at_its_position_until_repaired(
    store_url: str, clock: FakeClock
) -> None:
    first = DepositLedger(store_url, actor="tester", clock=clock)
    head = fill(first, 5, 2)
    first.close()
    before = view_rows(store_url)
    drop_views(store_url)
    store = resolve_store(store_url)
    select = f"SELECT state FROM {store.events_table} WHERE {store.position_column} = 17"
    update = f"UPDATE {store.events_table} SET state = ? WHERE {store.position_column} = 17"
    with connect(store) as connection:
        (state,) = connection.execute(select).fetchone()
        connection.execute(update, (b"{not json",))

    ledger = DepositLedger(store_url, actor="tester", clock=clock)
    try:
        statuses = ledger.projection_status()
        assert [(s.name, s.position, s.head) for s in statuses] == [("balances", 16, head), ("audit_trail", 16, head)]
        assert all(s.error and s.error.startswith("position 17: MapperDeserialisationError") for s in statuses)
        with pytest.raises(ViewFailed, match="view balances stopped at position 17"):
            ledger.views.catch_up()
        with connect(store) as connection:
            connection.execute(update, (state,))
        assert ledger.views.catch_up() == 2 * (head - 16)
    finally:
        ledger.close()
    assert view_rows(store_url) == before


def test_a_rebuild_stopped_by_a_poison_event_leaves_the_live_view_alone(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(ledger, 5, 2)
    before = view_rows(ledger.store)
    audit = ledger.views.view("audit_trail")
    monkeypatch.setattr(audit, "apply", _fail_at(audit, 9, RuntimeError("poison")))
    with pytest.raises(ViewFailed, match="view audit_trail stopped at position 9: RuntimeError: poison"):
        ledger.views.rebuild("audit_trail")
    assert view_rows(ledger.store) == before
    assert _lags(ledger) == {"balances": 0, "audit_trail": 0}


# ------------------------------------------------------------------- racing keepers


def test_a_stale_batch_cannot_be_applied_twice(ledger: DepositLedger) -> None:
    head = fill(ledger, 3, 1)
    path = ledger.store
    before = view_rows(path)
    # A second keeper that read position 0 long ago now offers the first deposit's events (positions 1-4) again.
    stale = [Positioned(position, event) for position, event in enumerate(ledger.history("bulk-00000"), start=1)]
    with pytest.raises(IntegrityError, match="already past position 4"):
        ledger.views.record_batch(ledger.views.view("balances"), stale)
    with pytest.raises(IntegrityError):
        ledger.views.track(AUDIT, head - 1)
    assert view_rows(path) == before
    assert tracking(path)[BALANCES] == tracking(path)[AUDIT] == head


def test_two_racing_catch_ups_apply_every_event_once(
    store_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    monkeypatch.setattr("ledger.app.service.AUTO_CATCH_UP_LIMIT", 0)
    first = DepositLedger(store_url, actor="tester", clock=clock)
    head = fill_behind(first, 30, 2)
    keepers = [first, DepositLedger(store_url, actor="tester", clock=clock)]
    applied: list[int] = []
    start = threading.Barrier(len(keepers))

    def catch_up(keeper: DepositLedger) -> None:
        start.wait()
        # A pause between batches lets the other keeper take the write lock: they interleave.
        applied.append(keeper.views.catch_up(progress=lambda done, total: time.sleep(0.01)))

    threads = [threading.Thread(target=catch_up, args=(keeper,)) for keeper in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert min(applied) > 0, "the keepers took turns"
        assert sum(applied) == 2 * head
        live = view_rows(store_url)
        for name in ("balances", "audit_trail"):
            first.views.rebuild(name)
        assert view_rows(store_url) == live
    finally:
        for keeper in keepers:
            keeper.close()
