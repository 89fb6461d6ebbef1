"""Snapshots keep the rules' bookkeeping as compact text: queries never parse it, commands once per load."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eventsourcing.persistence import JSONTranscoder, StoredEvent

from domain import Channel, ShopDeposit, Stamp, deposit_id
from domain.deposit import AppealStage
from ledger import DepositLedger
from ledger.app.service import SNAPSHOT_INTERVAL
from ledger.store.mapper import DepositMapper
from ledger.store.snapshots import DepositSnapshot

START = datetime(2025, 1, 1, tzinfo=UTC)


def _long_deposit(ledger: DepositLedger, payments: int) -> None:
    stamp = Stamp(effective_at=START, recorded_at=START, actor="tester")
    deposit = ShopDeposit.open(shop_id="long", site="CN", currency="CNY", required_minor=100, stamp=stamp)
    for number in range(payments):
        at = START + timedelta(minutes=number)
        deposit.pay(
            amount_minor=100,
            channel=Channel.ALIPAY,
            trade_no=f"T{number}",
            payer=None,
            stamp=Stamp(effective_at=at, recorded_at=at, actor="tester"),
        )
    ledger.save(deposit)


def test_queries_use_the_snapshot_figures_and_commands_read_its_bookkeeping_once(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _long_deposit(ledger, SNAPSHOT_INTERVAL // 2 + 10)  # a snapshot at 221, then no more events
    reads: list[int] = []
    bookkeeping = DepositSnapshot.bookkeeping

    def counting(snapshot: DepositSnapshot) -> Any:
        reads.append(snapshot.originator_version)
        return bookkeeping(snapshot)

    monkeypatch.setattr(DepositSnapshot, "bookkeeping", counting)
    fresh = DepositLedger(ledger.store, actor="tester", clock=ledger.clock)
    try:
        assert fresh.show("long").paid_minor == 11_000
        assert fresh.replay("long", version=221).version == 221
        assert reads == [], "figures alone answer queries"
        assert fresh.pay("long", "1", channel="alipay", ref="T3", at=START + timedelta(days=1)).duplicate
        assert fresh.pay("long", "1", channel="alipay", ref="T9999", at=START + timedelta(days=1)).state.version == 223
        assert reads == [221], "read once, by the first command, which loaded the deposit"
    finally:
        fresh.close()


def test_a_version_2_snapshot_is_read_as_version_3() -> None:
    mapper = DepositMapper(transcoder=JSONTranscoder())
    v2 = {
        "shop_id": "tea-house",
        "site": "CN",
        "currency": "CNY",
        "required_minor": 200000,
        "phase": "open",
        "paid_minor": 200000,
        "frozen_minor": 194900,
        "held_minor": 100,
        "deducted_minor": 5000,
        "reversed_minor": 0,
        "refunded_minor": 0,
        "forfeited_minor": 0,
        "owed_minor": 0,
        "settlement_due": None,
        "top_up_due": None,
        "policy_version": "2026.1",
        "categories": ["general"],
        "last_effective_at": "2026-03-05T09:00:00Z",
        "payments": [{"channel": "alipay", "trade_no": "A1", "amount_minor": 200000, "refunded_minor": 0}],
        "cases": [
            {
                "case_id": "LS-1",
                "reason": "late_shipment",
                "amount_minor": 5000,
                "owed_minor": 0,
                "collected_minor": 5000,
                "deducted_at": "2026-03-04T09:00:00Z",
                "order_value_minor": None,
                "priced": False,
                "appeal": "pending",
                "appealed_while_closing": False,
            }
        ],
        "holds": [{"case_id": "H-1", "amount_minor": 100, "held_minor": 100}],
        "class_version": 2,
    }
    stored = StoredEvent(deposit_id("tea-house"), 5, DepositSnapshot.TOPIC, json.dumps(v2).encode())

    snapshot = mapper.to_domain_event(stored)

    assert isinstance(snapshot, DepositSnapshot)
    deposit = snapshot.restore()
    assert list(deposit.payments) == [(Channel.ALIPAY, "A1")]
    case = deposit.cases["LS-1"]
    assert (case.collected_minor, case.deducted_at, case.appeal) == (
        5000,
        datetime(2026, 3, 4, 9, tzinfo=UTC),
        AppealStage.PENDING,
    )
    assert deposit.holds["H-1"].held_minor == 100
    assert DepositSnapshot.take(deposit) == snapshot, "taken again, the same text"


@pytest.mark.sqlite_only("edits the SQLite file behind the ledger")
def test_a_snapshot_whose_bookkeeping_cannot_be_read_is_passed_over_for_the_events(ledger: DepositLedger) -> None:
    _long_deposit(ledger, SNAPSHOT_INTERVAL // 2 + 10)
    path = ledger.store.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as connection:
        (state,) = connection.execute("SELECT state FROM stored_snapshots").fetchone()
        connection.execute("UPDATE stored_snapshots SET state = ?", (bytes(state).replace(b" T7 ", b" T7 x "),))
    fresh = DepositLedger(str(path), actor="tester", clock=ledger.clock)
    try:
        assert fresh.pay("long", "1", channel="alipay", ref="T7", at=START + timedelta(days=1)).duplicate
        assert fresh.deposit("long").payments[(Channel.ALIPAY, "T7")].amount_minor == 100
    finally:
        fresh.close()
