"""One channel trade number is one payment, ledger-wide: refused on every other shop, whoever writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from domain import DuplicateConflict, Paid, TradeNumberTaken
from ledger import DepositLedger
from ledger.store import trade_numbers
from ledger.store.urls import Store
from ledger.tools.journal import JournalReader, LineResult, import_journal
from tests.conftest import FakeClock, fetch_all, writes_nothing
from tests.ledger.journals import line, write_journal


def open_shops(ledger: DepositLedger, *shops: str, at: str | None = None) -> None:
    for shop in shops:
        ledger.open(shop, currency="CNY", required="2000", at=at)


def payments(ledger: DepositLedger, shop: str) -> list[tuple[str, str, int]]:
    return [
        (event.channel.value, event.trade_no, event.amount_minor)
        for event in ledger.history(shop)
        if isinstance(event, Paid)
    ]


def execute(store: Store, *statements: str) -> None:
    connection = store.connect()
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


def test_a_trade_number_paid_into_one_shop_is_refused_on_every_other(ledger: DepositLedger) -> None:
    open_shops(ledger, "s7", "s8")
    ledger.pay("s7", "2000", channel="alipay", ref="T777")

    with writes_nothing(ledger), pytest.raises(TradeNumberTaken, match=r"T777 was paid into shop s7"):
        ledger.pay("s8", "2000", channel="alipay", ref="T777")
    with writes_nothing(ledger), pytest.raises(TradeNumberTaken, match=r"shop s7"):
        ledger.pay("s8", "15", channel="alipay", ref="T777")  # whatever the amount

    assert payments(ledger, "s8") == []
    assert ledger.show("s8").paid_minor == 0
    assert ledger.auditor().verify().ok


def test_replaying_a_payment_on_its_own_shop_is_still_a_duplicate_or_a_conflict(ledger: DepositLedger) -> None:
    open_shops(ledger, "s7", "s8")
    ledger.pay("s7", "2000", channel="alipay", ref="T777")

    assert ledger.pay("s7", "2000", channel="alipay", ref="T777").duplicate
    with pytest.raises(DuplicateConflict):
        ledger.pay("s7", "1999", channel="alipay", ref="T777")
    # The pair is the key: the same number from the other channel is another payment.
    assert not ledger.pay("s8", "2000", channel="wechat_pay", ref="T777").duplicate
    assert payments(ledger, "s7") == [("alipay", "T777", 200000)]


def test_another_process_with_the_shop_cached_is_refused_by_the_stores_row(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger]
) -> None:
    open_shops(ledger, "s7", "s8")
    ledger.pay("s8", "1", channel="alipay", ref="WARM-UP")  # s8 is now cached in this process
    other = reopen()
    other.pay("s7", "2000", channel="alipay", ref="T777")

    with writes_nothing(ledger), pytest.raises(TradeNumberTaken, match="shop s7"):
        ledger.pay("s8", "2000", channel="alipay", ref="T777")
    assert payments(ledger, "s8") == [("alipay", "WARM-UP", 100)]


def test_which_shop_holds_a_trade_number_is_one_lookup(ledger: DepositLedger, clock: FakeClock) -> None:
    open_shops(ledger, "s7")
    ledger.pay("s7", "2000", channel="wechat_pay", ref="4200001")

    held = ledger.trade_number_holder("wechat_pay", "4200001")

    assert held is not None
    assert (held.shop_id, held.channel.value, held.trade_no, held.amount_minor, held.currency) == (
        "s7",
        "wechat_pay",
        "4200001",
        200000,
        "CNY",
    )
    assert held.effective_at == clock.now
    assert ledger.trade_number_holder("alipay", "4200001") is None
    assert ledger.trade_number_holder("wechat_pay", "unknown") is None


def test_threads_racing_two_shops_for_one_trade_number_leave_exactly_one_payment(
    store_url: str, clock: FakeClock
) -> None:
    racers = 6
    setup = DepositLedger(store_url, actor="tester", clock=clock)
    open_shops(setup, "s7", "s8")
    ledgers = [DepositLedger(store_url, actor=f"racer-{number}", clock=clock) for number in range(racers)]
    start = threading.Barrier(racers)
    outcomes: dict[int, str] = {}

    def race(number: int) -> None:
        shop = ("s7", "s8")[number % 2]
        start.wait()
        try:
            result = ledgers[number].pay(shop, "2000", channel="alipay", ref="RACE-1")
            outcomes[number] = f"{shop} duplicate" if result.duplicate else f"{shop} paid"
        except TradeNumberTaken as refused:
            outcomes[number] = f"{shop} refused: {refused}"

    threads = [threading.Thread(target=race, args=(number,)) for number in range(racers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        winners = [outcome for outcome in outcomes.values() if outcome.endswith(" paid")]
        assert len(outcomes) == racers and len(winners) == 1, outcomes
        winner = winners[0].split()[0]
        loser = "s8" if winner == "s7" else "s7"
        for outcome in outcomes.values():
            assert outcome in (f"{winner} paid", f"{winner} duplicate") or outcome.startswith(
                f"{loser} refused: alipay trade number RACE-1 was paid into shop {winner}"
            ), outcome
        assert payments(setup, winner) == [("alipay", "RACE-1", 200000)]
        assert payments(setup, loser) == []
        assert setup.auditor().verify().ok
    finally:
        for opened in (setup, *ledgers):
            opened.close()


def test_an_import_rejects_the_line_that_reuses_a_trade_number_and_applies_its_neighbours(
    ledger: DepositLedger, tmp_path: Path
) -> None:
    open_shops(ledger, "s7", "s8", "s9", at="2026-03-01T00:00:00Z")
    ledger.pay("s7", "2000", channel="alipay", ref="T777", at="2026-03-01T00:00:00Z")
    journal = [
        line("pay", "s8", "2026-03-02T00:00:00Z", amount="10", channel="alipay", ref="N-1"),
        line("pay", "s8", "2026-03-02T00:01:00Z", amount="2000", channel="alipay", ref="T777"),  # held by s7
        line("pay", "s9", "2026-03-02T00:02:00Z", amount="20", channel="alipay", ref="N-2"),
        line("pay", "s9", "2026-03-02T00:03:00Z", amount="30", channel="wechat_pay", ref="W-9"),
        line("pay", "s8", "2026-03-02T00:04:00Z", amount="30", channel="wechat_pay", ref="W-9"),  # held by s9 above
        line("pay", "s8", "2026-03-02T00:05:00Z", amount="40", channel="alipay", ref="N-3"),
    ]
    path = write_journal(tmp_path / "payments.jsonl", journal, "jsonl")
    rejected: list[LineResult] = []

    with path.open(encoding="utf-8") as source:
        summary = import_journal(ledger, JournalReader(source, "jsonl"), on_reject=rejected.append)

    assert (summary.applied, summary.rejected) == (4, 2)
    assert {result.line.number: result.reason for result in rejected} == {
        2: "alipay trade number T777 was paid into shop s7: one payment, one shop",
        5: "wechat_pay trade number W-9 was paid into shop s9: one payment, one shop",
    }
    assert payments(ledger, "s8") == [("alipay", "N-1", 1000), ("alipay", "N-3", 4000)]
    assert payments(ledger, "s9") == [("alipay", "N-2", 2000), ("wechat_pay", "W-9", 3000)]
    assert ledger.auditor().verify().ok


def test_an_older_store_gets_its_trade_numbers_filled_and_verify_names_a_pair_on_two_shops(
    store_url: str, store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a release before the rule wrote it: no table, and one payment credited to two shops.
    older = DepositLedger(store_url, actor="tester", clock=clock)
    with monkeypatch.context() as before_the_rule:
        before_the_rule.setattr(trade_numbers, "claim", lambda cursor, claims: None)
        open_shops(older, "s7", "s8")
        older.pay("s7", "2000", channel="alipay", ref="T777")
        clock.advance(minutes=1)
        older.pay("s8", "2000", channel="alipay", ref="T777")
        older.pay("s8", "5", channel="wechat_pay", ref="W-1")
    older.close()
    execute(store, f"DROP TABLE {trade_numbers.TABLE}")

    ledger = DepositLedger(store_url, actor="tester", clock=clock)
    try:
        held = fetch_all(store, f"SELECT channel, trade_no FROM {trade_numbers.TABLE} ORDER BY position")
        assert held == [("alipay", "T777"), ("wechat_pay", "W-1")]
        assert ledger.trade_number_holder("alipay", "T777").shop_id == "s7"  # type: ignore[union-attr]
        # Nothing is lost: both shops keep their payment, and replaying either stays a duplicate.
        assert payments(ledger, "s8") == [("alipay", "T777", 200000), ("wechat_pay", "W-1", 500)]
        assert ledger.pay("s8", "2000", channel="alipay", ref="T777").duplicate
        open_shops(ledger, "s9")
        with pytest.raises(TradeNumberTaken, match="shop s7"):
            ledger.pay("s9", "2000", channel="alipay", ref="T777")

        report = ledger.auditor().verify()
        s8_payment = next(row.position for row in ledger.audit("s8") if row.ref == "T777")
        assert [(p.position, p.shop_id, p.kind) for p in report.problems] == [(s8_payment, "s8", "trade_number")]
        assert "paid into shop s7 too" in report.problems[0].detail
    finally:
        ledger.close()


def test_verify_reports_a_missing_and_an_invented_trade_number_row(ledger: DepositLedger, store: Store) -> None:
    open_shops(ledger, "s7")
    ledger.pay("s7", "2000", channel="alipay", ref="T777")
    execute(
        store,
        f"DELETE FROM {trade_numbers.TABLE} WHERE trade_no = 'T777'",
        f"INSERT INTO {trade_numbers.TABLE} (channel, trade_no, deposit_id, position) "
        "VALUES ('alipay', 'NEVER-PAID', 'ffffffffffffffffffffffffffffffff', 999)",
    )

    report = ledger.auditor().verify()

    assert sorted((p.kind, p.detail) for p in report.problems) == [
        ("trade_number", "alipay trade number NEVER-PAID names no payment at its position: inserted"),
        ("trade_number", "alipay trade number T777 has no row: another shop could be paid it again"),
    ]
