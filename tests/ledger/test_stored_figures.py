"""A deposit's figures as stored and reported: written in this release's formats, read back unchanged.

The figures are declared once (``DepositFigures``); the snapshot, the balances
view's row and ``show --json`` derive from that list. These records were written
by the release before that change: reading them must give the same deposit, and
writing the same deposit must give the same row and JSON.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta

from eventsourcing.persistence import JSONTranscoder, StoredEvent

from domain import (
    Balance,
    Channel,
    DeductionReason,
    DepositFigures,
    DepositState,
    ShopDeposit,
    Stamp,
    deposit_id,
    listed_figures,
)
from ledger.faces.reports import state_json
from ledger.store.mapper import DepositMapper
from ledger.store.snapshots import DepositSnapshot
from projections.balances import BalancesView

START = datetime(2026, 3, 5, 1, 0, tzinfo=UTC)

SNAPSHOT_STATE = (
    b'{"shop_id":"tea-house","site":"US","currency":"USD","required_minor":150000,"phase":"open",'
    b'"paid_minor":150000,"frozen_minor":0,"held_minor":10000,"deducted_minor":140000,"reversed_minor":30000,'
    b'"refunded_minor":0,"forfeited_minor":0,"owed_minor":60000,"settlement_due":null,'
    b'"top_up_due":"2026-04-04T07:00:00Z","policy_version":"2026-01","categories":["beauty","toys"],'
    b'"last_effective_at":"2026-03-05T07:00:00Z","written_off_minor":0,"payments":"alipay T1 150000 0",'
    b'"cases":"C1 late_shipment 30000 0 0 2026-03-05T04:00:00+00:00 - 0 upheld 0 0;'
    b'C2 order_brushing 200000 60000 140000 2026-03-05T07:00:00+00:00 - 0 - 0 0",'
    b'"holds":"C0 10000 10000","class_version":4}'
)
"""The snapshot at version 9 of :func:`tea_house`, as the mapper stored it before the figures were one list."""

ROW = (
    "008f551ea53e537abf76f5f1e2eda6a5",
    "tea-house",
    "US",
    "USD",
    "underfunded",
    "open",
    150000,
    150000,
    0,
    0,
    140000,
    0,
    0,
    60000,
    200000,
    None,
    9,
    "2026-03-05T07:00:00.000000+00:00",
    10000,
    30000,
    "2026-04-04T07:00:00.000000+00:00",
    "2026-01",
    '["beauty", "toys"]',
    0,
    42,
)
"""Its balances row at position 42, as the view stored it then."""

SHOW_JSON = {
    "shop_id": "tea-house",
    "status": "restricted",
    "currency": "USD",
    "required": "1500.00",
    "paid": "1500.00",
    "frozen": "0.00",
    "deducted": "1400.00",
    "refunded": "0.00",
    "forfeited": "0.00",
    "owed": "600.00",
    "shortfall": "2000.00",
    "version": 9,
    "held": "100.00",
    "reversed": "300.00",
    "top_up_due": "2026-04-04T07:00:00Z",
    "policy_version": "2026-01",
    "categories": ["beauty", "toys"],
    "written_off": "0.00",
    "site": "US",
    "settlement_due": None,
}
"""Its ``show --json`` sixty days on (the top-up overdue), keys in the contract's order."""


def stamp(hours: float) -> Stamp:
    moment = START + timedelta(hours=hours)
    return Stamp(effective_at=moment, recorded_at=moment, actor="tester")


def tea_house() -> ShopDeposit:
    """A deposit whose figures are mostly set: a policy, a hold, an upheld appeal, a debt, a top-up clock."""
    deposit = ShopDeposit.open(
        shop_id="tea-house",
        site="US",
        currency="USD",
        required_minor=150_000,
        stamp=stamp(0),
        categories=("toys", "beauty"),
        policy_version="2026-01",
    )
    deposit.pay(amount_minor=150_000, channel=Channel.ALIPAY, trade_no="T1", payer=None, stamp=stamp(1))
    deposit.hold(case_id="C0", amount_minor=10_000, note="looking", stamp=stamp(2))
    deposit.deduct(amount_minor=30_000, reason=DeductionReason.LATE_SHIPMENT, case_id="C1", note="late", stamp=stamp(3))
    deposit.appeal(case_id="C1", note="was on time", stamp=stamp(4))
    deposit.resolve_appeal(case_id="C1", upheld=True, note="right", stamp=stamp(5))
    deposit.deduct(
        amount_minor=200_000, reason=DeductionReason.ORDER_BRUSHING, case_id="C2", note="brushing", stamp=stamp(6)
    )
    deposit.collect_events()
    return deposit


def test_a_snapshot_stored_before_reads_as_the_deposit_it_was_taken_of() -> None:
    mapper = DepositMapper(transcoder=JSONTranscoder())
    stored = StoredEvent(deposit_id("tea-house"), 9, DepositSnapshot.TOPIC, SNAPSHOT_STATE)
    snapshot = mapper.to_domain_event(stored)
    deposit = tea_house()
    assert snapshot == DepositSnapshot.take(deposit)
    assert isinstance(snapshot, DepositSnapshot)
    assert snapshot.restore().balance == deposit.balance
    written = mapper.to_domain_event(mapper.to_stored_event(snapshot))
    assert written == snapshot, "written again, it reads back the same"


def test_a_balances_row_stored_before_reads_as_the_deposit_and_is_written_the_same() -> None:
    view = BalancesView()
    connection = sqlite3.connect(":memory:")
    cursor = connection.cursor()
    for statement in view.create_statements(view.table):
        cursor.execute(statement)
    cursor.execute(f"INSERT INTO {view.table} VALUES ({', '.join('?' * len(ROW))})", ROW)
    found = view.get(cursor, "tea-house", START + timedelta(days=60))
    deposit = tea_house()
    assert found == (deposit.state(START + timedelta(days=60)), 42)
    assert view.expected_row(deposit.balance, 42) == ROW
    assert view.stored_row(cursor, deposit.id) == ROW


def test_show_json_keeps_its_keys_values_and_order() -> None:
    state = tea_house().state(START + timedelta(days=60))
    assert list(state_json(state).items()) == list(SHOW_JSON.items())


def test_every_figure_is_in_the_balance_the_state_the_snapshot_the_row_and_the_listing() -> None:
    figures = [field.name for field in dataclasses.fields(DepositFigures)]
    balance_fields = {field.name for field in dataclasses.fields(Balance)}
    columns = set(BalancesView.column_names())
    listed = listed_figures()
    for name in figures:
        assert name in balance_fields and name in DepositState.model_fields and name in DepositSnapshot.model_fields
        assert name in columns and name in listed
    places = [
        figure.place
        for field in DepositState.model_fields.values()
        for figure in field.metadata
        if getattr(figure, "place", None) is not None
    ]
    assert sorted(places) == list(range(len(places))), "each listed figure has its own place, none skipped"
