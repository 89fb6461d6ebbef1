"""Effective times stay in a sane window, and every stored time has one fixed-width form."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain import MalformedInput
from ledger import DepositLedger
from ledger.app.parse import EARLIEST_EFFECTIVE_AT, parse_time
from ledger.store.urls import Store
from projections.view import STORED_TIME_LENGTH, UnreadableRow, fixed_width_time, read_stored_time, stored_time
from tests.conftest import FakeClock, fetch_all, writes_nothing
from tests.ledger.stores import connect


@pytest.mark.parametrize(
    "moment",
    [
        "0025-01-06T00:00:00Z",
        "1999-12-31T23:59:59.999999Z",
        "2000-01-01T07:59:59+08:00",  # still 1999 in UTC
        "0001-01-01T00:00:00+01:00",  # the year 0 in UTC: beyond datetime
    ],
)
def test_an_effective_time_before_the_window_is_malformed_and_writes_nothing(
    ledger: DepositLedger, moment: str
) -> None:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    with writes_nothing(ledger), pytest.raises(MalformedInput, match=r"lies before 2000-01-01|out of range"):
        ledger.open("early", currency="CNY", required="100", at=moment)
    with writes_nothing(ledger), pytest.raises(MalformedInput, match=r"lies before 2000-01-01|out of range"):
        ledger.pay("tea", "10", channel="alipay", ref="A1", at=moment)


def test_the_window_starts_at_2000_and_ends_at_the_ledgers_clock(ledger: DepositLedger, clock: FakeClock) -> None:
    ledger.open("first", currency="CNY", required="100", at=EARLIEST_EFFECTIVE_AT)
    ledger.open("last", currency="CNY", required="100", at=clock())
    with pytest.raises(MalformedInput, match="lies in the future"):
        ledger.open("later", currency="CNY", required="100", at="2026-03-05T09:00:00.000001Z")
    assert ledger.show("first").last_effective_at == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_time_beyond_what_a_datetime_holds_is_malformed_not_an_overflow(moment: str) -> None:
    with pytest.raises(MalformedInput, match="is out of range"):
        parse_time(moment)


def test_queries_take_any_representable_time(ledger: DepositLedger) -> None:
    ledger.open("tea", currency="CNY", required="100", at="2025-01-01T00:00:00Z")
    with pytest.raises(MalformedInput, match="out of range"):
        ledger.history("tea", as_of="0001-01-01T00:00:00+01:00")
    with pytest.raises(MalformedInput, match="version 9223372036854775808 is larger than any history"):
        ledger.replay("tea", version=2**63)
    assert ledger.replay("tea", as_of="9999-12-31T00:00:00Z").version == 1


def test_an_event_of_a_year_below_1000_in_an_older_store_stops_no_view(
    store_url: str, store: Store, clock: FakeClock
) -> None:
    # A release before the window accepted --at 0025-01-06: its event is history now, and the
    # views must apply it and read it back, and go on with every shop.
    old = DepositLedger(store_url, actor="tester", clock=lambda: datetime(25, 1, 6, tzinfo=UTC))
    try:
        old.open("x", currency="CNY", required="100")
    finally:
        old.close()
    ledger = DepositLedger(store_url, actor="tester", clock=clock)
    try:
        ledger.open("y", currency="CNY", required="100")
        ledger.pay("x", "10", channel="alipay", ref="A1")
        ledger.pay("y", "100", channel="alipay", ref="B1")

        assert {status.name: (status.lag, status.error) for status in ledger.projection_status()} == {
            "balances": (0, None),
            "audit_trail": (0, None),
        }
        assert [(state.shop_id, state.status, state.frozen_minor) for state in ledger.shops()] == [
            ("x", "underfunded", 1000),
            ("y", "active", 10000),
        ]
        assert ledger.audit("x")[0].effective_at == datetime(25, 1, 6, tzinfo=UTC)
        assert ledger.auditor().verify().ok
    finally:
        ledger.close()
    stored = fetch_all(store, "SELECT effective_at, recorded_at FROM audit_trail ORDER BY position")
    assert stored[0] == ("0025-01-06T00:00:00.000000+00:00", "0025-01-06T00:00:00.000000+00:00")
    assert {len(text) for row in stored for text in row} == {STORED_TIME_LENGTH}
    assert {len(text) for (text,) in fetch_all(store, "SELECT last_effective_at FROM deposit_balances")} == {
        STORED_TIME_LENGTH
    }


def test_rows_an_older_release_stored_with_an_unpadded_year_are_still_read(ledger: DepositLedger, store: Store) -> None:
    ledger.open("x", currency="CNY", required="100", at="2025-01-06T00:00:00Z")
    with connect(store) as connection:
        connection.execute("UPDATE deposit_balances SET last_effective_at = '25-01-06T00:00:00.000000+00:00'")
        connection.execute("UPDATE audit_trail SET effective_at = '25-01-06T00:00:00.000000+00:00'")
        if store.kind == "sqlite":
            connection.commit()

    assert ledger.balance("x").last_effective_at == datetime(25, 1, 6, tzinfo=UTC)
    assert ledger.audit("x")[0].effective_at == datetime(25, 1, 6, tzinfo=UTC)
    assert fixed_width_time("25-01-06T00:00:00.000000+00:00") == "0025-01-06T00:00:00.000000+00:00"


def test_a_view_row_that_cannot_be_read_is_one_clear_error_not_a_crash(ledger: DepositLedger, store: Store) -> None:
    ledger.open("x", currency="CNY", required="100", at="2025-01-06T00:00:00Z")
    with connect(store) as connection:
        connection.execute("UPDATE deposit_balances SET last_effective_at = 'yesterday'")
        if store.kind == "sqlite":
            connection.commit()

    with pytest.raises(UnreadableRow, match=r"cannot read its row of shop .x.*rebuild the view"):
        ledger.shops()
    ledger.views.rebuild("balances")
    assert [state.shop_id for state in ledger.shops()] == ["x"]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 3, 5, 9, 30, tzinfo=UTC),
        datetime(2026, 3, 5, 9, 30, 0, 1, tzinfo=UTC),
        datetime(25, 1, 6, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_stored_times_have_one_width_and_read_back_exactly(moment: datetime) -> None:
    text = stored_time(moment)
    assert len(text) == STORED_TIME_LENGTH
    assert read_stored_time(text) == moment
