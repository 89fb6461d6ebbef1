"""Pages of the views' queries: keyset pages whose cost does not grow with their depth.

The cost of a query is counted, never timed: on SQLite the virtual-machine steps
it takes (a progress handler called at every step), on PostgreSQL the rows its
plan's scans read (``EXPLAIN ANALYZE``). A page deep in the list must cost about
what the first page costs, and far less than reading the whole list.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from domain import Channel, DeductionReason, ShopDeposit
from ledger.store.urls import Store
from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView
from projections.view import Positioned, View
from tests.projections.stories import events_of, positioned, refunded_story, stamp, view_tables_in

SHOPS = 1500
PAGE = 50


@pytest.fixture
def balances(store: Store) -> Iterator[tuple[BalancesView, Any]]:
    """Many shops in two sites, each owing a little (so every filter keeps them all)."""
    with view_tables_in(store, BalancesView) as (view, cursor):
        assert isinstance(view, BalancesView)
        events = []
        for number in range(SHOPS):
            deposit = ShopDeposit.open(
                shop_id=f"shop-{number:05d}",
                site="CN" if number % 2 else "UK",
                currency="CNY",
                required_minor=100,
                stamp=stamp(0),
            )
            deposit.deduct(amount_minor=1, reason=DeductionReason.OTHER, case_id="X", note="", stamp=stamp(1))
            events.extend(deposit.collect_events())
        view.apply(cursor, view.table, positioned(events))
        _analyse(cursor, view.table)
        yield view, cursor


@pytest.fixture
def audit(store: Store) -> Iterator[tuple[AuditTrailView, Any]]:
    """One shop with a long trail, interleaved with another's."""
    with view_tables_in(store, AuditTrailView) as (view, cursor):
        assert isinstance(view, AuditTrailView)
        long = ShopDeposit.open(shop_id="long", site="CN", currency="CNY", required_minor=100, stamp=stamp(0))
        other = ShopDeposit.open(shop_id="other", site="CN", currency="CNY", required_minor=100, stamp=stamp(0))
        for number in range(SHOPS):
            for deposit in (long, other):
                deposit.pay(
                    amount_minor=1,
                    channel=Channel.ALIPAY,
                    trade_no=f"{deposit.shop_id}-{number}",
                    payer=None,
                    stamp=stamp(number),
                )
        events = [*long.collect_events(), *other.collect_events()]
        events.sort(key=lambda event: event.originator_version)
        view.apply(cursor, view.table, positioned(events))
        _analyse(cursor, view.table)
        yield view, cursor


def _analyse(cursor: Any, table: str) -> None:
    # Statistics, as a live store has them, so that the planner chooses as it would there.
    cursor.execute(f"ANALYZE {table}")


class _ExplainingCursor:
    """A PostgreSQL cursor that first runs each query under ``EXPLAIN ANALYZE`` and adds up the rows it read."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.rows_read = 0

    def execute(self, statement: str, params: Any = ()) -> Any:
        self._cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
        (plan,) = self._cursor.fetchone()
        self.rows_read += _scanned(plan if isinstance(plan, list) else json.loads(plan))
        return self._cursor.execute(statement, params)

    def fetchall(self) -> Any:
        return self._cursor.fetchall()

    def fetchone(self) -> Any:
        return self._cursor.fetchone()


def _scanned(plans: list[dict[str, Any]]) -> int:
    # Rows every scan node produced or filtered away: what the query read from tables and indexes.
    total = 0
    pending = [entry["Plan"] for entry in plans]
    while pending:
        node = pending.pop()
        # A bitmap heap scan reports the rows its bitmap index scan found: count them once.
        if "Scan" in node["Node Type"] and node["Node Type"] != "Bitmap Index Scan":
            loops = node.get("Actual Loops", 1)
            total += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * loops
        pending.extend(node.get("Plans", []))
    return total


def _cost(cursor: Any, query: Callable[[Any], list[Any]]) -> tuple[int, list[Any]]:
    """What ``query`` cost on ``cursor``'s engine, and what it answered."""
    if isinstance(cursor, sqlite3.Cursor):
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        cursor.connection.set_progress_handler(step, 1)
        try:
            answer = query(cursor)
        finally:
            cursor.connection.set_progress_handler(None, 1)
        return steps, answer
    explaining = _ExplainingCursor(cursor)
    answer = query(explaining)
    return explaining.rows_read, answer


def _assert_flat(first: int, deep: int, whole: int) -> None:
    assert deep <= first * 1.5 + 50, f"a deep page cost {deep}, the first {first}"
    assert deep * 5 < whole, f"a page cost {deep}, the whole list {whole}"


@pytest.mark.parametrize(
    "filters",
    [{}, {"status": "awaiting_payment"}, {"site": "CN"}, {"must_pay": True}, {"owing": True}],
    ids=["all", "status", "site", "must-pay", "owing"],
)
def test_a_deep_page_of_shops_costs_what_the_first_does(
    balances: tuple[BalancesView, Any], filters: dict[str, Any]
) -> None:
    view, cursor = balances
    every = [state.shop_id for state in view.select(cursor, **filters)]
    deep_after = every[len(every) * 3 // 4]
    whole, _ = _cost(cursor, lambda c: view.select(c, **filters))
    first, first_page = _cost(cursor, lambda c: view.select(c, limit=PAGE, **filters))
    deep, deep_page = _cost(cursor, lambda c: view.select(c, after=deep_after, limit=PAGE, **filters))
    assert [state.shop_id for state in first_page] == every[:PAGE]
    assert [state.shop_id for state in deep_page] == every[len(every) * 3 // 4 + 1 :][:PAGE]
    _assert_flat(first, deep, whole)


def test_a_deep_page_of_an_audit_trail_costs_what_the_first_does(audit: tuple[AuditTrailView, Any]) -> None:
    view, cursor = audit
    deposit = ShopDeposit.open(shop_id="long", site="CN", currency="CNY", required_minor=1, stamp=stamp(0)).id
    every = view.rows(cursor, deposit)
    last = every[len(every) * 3 // 4]
    whole, _ = _cost(cursor, lambda c: view.rows(c, deposit))
    first, first_page = _cost(cursor, lambda c: view.rows(c, deposit, limit=PAGE))
    deep, deep_page = _cost(cursor, lambda c: view.rows(c, deposit, after=(last.position, last.share), limit=PAGE))
    assert first_page == every[:PAGE]
    assert deep_page == every[len(every) * 3 // 4 + 1 :][:PAGE]
    _assert_flat(first, deep, whole)


def _walk(view: View, cursor: Any, page: Callable[[Any, Any], list[Any]], key: Callable[[Any], Any]) -> list[Any]:
    # Every page in turn, each resuming after the previous page's last item.
    found: list[Any] = []
    after = None
    while items := page(cursor, after):
        found.extend(items)
        after = key(items[-1])
    return found


@pytest.mark.parametrize("size", [1, 2, 3])
def test_pages_of_an_audit_trail_cut_between_a_refund_s_shares_lose_nothing(store: Store, size: int) -> None:
    with view_tables_in(store, AuditTrailView) as (view, cursor):
        assert isinstance(view, AuditTrailView)
        events = events_of(refunded_story())
        batch: list[Positioned] = positioned(events)
        view.apply(cursor, view.table, batch)
        deposit = events[0].originator_id
        every = view.rows(cursor, deposit)
        assert any(row.share == 2 for row in every), "the story refunds through two channels"
        walked = _walk(
            view,
            cursor,
            lambda c, after: view.rows(c, deposit, after=after, limit=size),
            lambda row: (row.position, row.share),
        )
        assert walked == every


@pytest.mark.parametrize("size", [1, 7, SHOPS])
def test_pages_of_shops_lose_nothing(balances: tuple[BalancesView, Any], size: int) -> None:
    view, cursor = balances
    walked = _walk(
        view, cursor, lambda c, after: view.select(c, site="UK", after=after, limit=size), lambda state: state.shop_id
    )
    assert walked == view.select(cursor, site="UK")
