"""Late channel notifications: the channel's own payment time is kept beside the effective time."""

from __future__ import annotations

import io
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eventsourcing.persistence import JSONTranscoder, StoredEvent

from domain import MalformedInput, OutOfOrder, Paid, TradeNumberTaken, deposit_id
from ledger import DepositLedger
from ledger.store import trade_numbers
from ledger.store.mapper import DepositMapper
from ledger.store.urls import Store
from ledger.tools.journal import JournalReader, export_journal, import_journal
from tests.conftest import FakeClock, writes_nothing

V1_OPENED = (
    '{"effective_at":"2026-03-05T01:00:00Z","recorded_at":"2026-11-27T08:32:06.919323Z","actor":"risk-ops",'
    '"shop_id":"tea-house","site":"CN","currency":"CNY","required_minor":200000}'
)
V1_PAID = (
    '{"effective_at":"2026-03-05T01:30:00Z","recorded_at":"2026-11-27T08:32:07.100000Z","actor":"risk-ops",'
    '"currency":"CNY","amount_minor":200000,"channel":"alipay","trade_no":"2026030522001","payer":null}'
)
"""A payment exactly as releases before channel times stored it (class version 1)."""


def paid_events(ledger: DepositLedger, shop: str) -> list[Paid]:
    return [event for event in ledger.history(shop) if isinstance(event, Paid)]


def test_a_late_notification_keeps_the_channels_time_beside_a_later_effective_time(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    ledger.open("tea-house", currency="CNY", required="2000")
    paid_by_the_channel = clock.now + timedelta(minutes=5)
    clock.advance(hours=1)
    ledger.deduct("tea-house", "50", reason="late_shipment", case="LS-1")
    clock.advance(hours=1)
    # Dating the payment back to when the channel took it is refused: a deduction came between.
    with pytest.raises(OutOfOrder):
        ledger.pay("tea-house", "2000", channel="alipay", ref="T1", at=paid_by_the_channel)

    ledger.pay("tea-house", "2000", channel="alipay", ref="T1", channel_time=paid_by_the_channel.isoformat())

    (paid,) = paid_events(ledger, "tea-house")
    assert (paid.effective_at, paid.channel_time) == (clock.now, paid_by_the_channel)
    assert ledger.pay("tea-house", "2000", channel="alipay", ref="T1").duplicate, "not part of the key"
    assert ledger.auditor().verify().ok


def test_a_channel_time_after_the_effective_time_or_in_the_future_is_malformed(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    ledger.open("tea-house", currency="CNY", required="2000", at=clock.now - timedelta(days=1))
    at = clock.now - timedelta(hours=1)
    with writes_nothing(ledger):
        with pytest.raises(MalformedInput, match="after the payment's effective time"):
            ledger.pay("tea-house", "1", channel="alipay", ref="T1", at=at, channel_time=at + timedelta(seconds=1))
        with pytest.raises(MalformedInput, match="after the payment's present"):
            ledger.pay("tea-house", "1", channel="alipay", ref="T1", channel_time=clock.now + timedelta(seconds=1))
        with pytest.raises(MalformedInput, match="no time zone"):
            ledger.pay("tea-house", "1", channel="alipay", ref="T1", channel_time="2026-03-05T08:00:00")
    ledger.pay("tea-house", "1", channel="alipay", ref="T1", at=at, channel_time=at)
    assert paid_events(ledger, "tea-house")[0].channel_time == at


def test_an_exported_journal_imports_back_with_the_channel_time(
    ledger: DepositLedger, tmp_path: Path, clock: FakeClock
) -> None:
    ledger.open("tea-house", currency="CNY", required="2000", at=clock.now - timedelta(days=1))
    channel_time = datetime(2026, 3, 4, 23, 59, 58, 250000, tzinfo=UTC)
    ledger.pay("tea-house", "2000", channel="wechat_pay", ref="42000", channel_time=channel_time)
    ledger.pay("tea-house", "1", channel="alipay", ref="A2")
    for file_format in ("jsonl", "csv"):
        journal = io.StringIO()
        export_journal(ledger, journal, file_format=file_format)
        assert "2026-03-04T23:59:58.250000+00:00" in journal.getvalue()
        target = DepositLedger(str(tmp_path / f"copy-{file_format}.db"), actor="tester", clock=clock)
        try:
            journal.seek(0)
            summary = import_journal(target, JournalReader(journal, file_format))
            assert (summary.applied, summary.rejected) == (3, 0)
            assert [event.channel_time for event in paid_events(target, "tea-house")] == [channel_time, None]
        finally:
            target.close()


def test_a_payment_stored_before_channel_times_loads_and_holds_its_trade_number(
    store_url: str, store: Store, clock: FakeClock
) -> None:
    old = StoredEvent(deposit_id("tea-house"), 2, Paid.TOPIC, V1_PAID.encode())
    loaded = DepositMapper(transcoder=JSONTranscoder()).to_domain_event(old)
    assert isinstance(loaded, Paid)
    assert (loaded.trade_no, loaded.amount_minor, loaded.channel_time) == ("2026030522001", 200_000, None)

    # A store written by such a release: its events, and no trade-number table yet.
    with DepositLedger(store_url, actor="tester", clock=clock):
        pass  # creates the tables
    with closing(store.connect()) as connection:
        connection.execute(f"DROP TABLE {trade_numbers.TABLE}")
        for version, topic, state in ((1, "ShopDeposit.Opened", V1_OPENED), (2, Paid.TOPIC, V1_PAID)):
            connection.execute(
                f"INSERT INTO {store.events_table} (originator_id, originator_version, topic, state) "
                "VALUES (?, ?, ?, ?)",
                (store.deposit_param(deposit_id("tea-house").hex), version, topic, state.encode()),
            )
    with DepositLedger(store_url, actor="tester", clock=clock) as ledger:
        assert [event.channel_time for event in paid_events(ledger, "tea-house")] == [None]
        held = ledger.trade_number_holder("alipay", "2026030522001")
        assert held is not None and held.shop_id == "tea-house"
        ledger.open("other", currency="CNY", required="2000")
        with pytest.raises(TradeNumberTaken, match="tea-house"):
            ledger.pay("other", "2000", channel="alipay", ref="2026030522001")
