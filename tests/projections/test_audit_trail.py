"""The audit-trail view's ``apply``: one row per event, the running frozen balance, batches cut anywhere."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from domain import deposit_id
from ledger.store.urls import Store
from projections.audit_trail import AuditRow, AuditTrailView
from tests.projections.stories import (
    INTEGRITY_ERRORS,
    events_of,
    forfeited_story,
    policy_story,
    positioned,
    refunded_story,
    table_rows,
    view_tables,
    view_tables_in,
)

TABLE = AuditTrailView.table

# (type, amount, frozen_after, channel, ref, reason, case, note), in minor units.
REFUNDED_TRAIL = [
    ("Opened", 200000, 0, None, None, None, None, None),
    ("Paid", 150000, 0, "alipay", "A1", None, None, None),
    ("Frozen", 150000, 150000, None, None, None, None, None),
    ("Paid", 50000, 150000, "wechat_pay", "W1", None, None, None),
    ("Frozen", 50000, 200000, None, None, None, None, None),
    ("Deducted", 5000, 195000, None, None, "late_shipment", "LS-1", "3 orders shipped after 48h"),
    ("ClosureRequested", None, 195000, None, None, None, None, None),
    # One row per channel share, newest payment first: the running balance goes down share by share.
    ("Refunded", 50000, 145000, "wechat_pay", "W1", None, None, None),
    ("Refunded", 145000, 0, "alipay", "A1", None, None, None),
]
FORFEITED_TRAIL = [
    ("Opened", 100000, 0, None, None, None, None, None),
    ("Paid", 10000, 0, "alipay", "A9", None, None, None),
    ("Frozen", 10000, 10000, None, None, None, None, None),
    # 300 asked, 100 collected: the frozen balance cannot go below zero.
    ("Deducted", 10000, 0, None, None, "fake_listing", "FL-7", None),
    ("Paid", 25000, 0, "wechat_pay", "W9", None, None, None),
    # Settled from the payment in hand, never from the frozen balance.
    ("Deducted", 20000, 0, None, None, "fake_listing", "FL-7", "settles 200.00 USD owed, from payment wechat_pay W9"),
    ("Frozen", 5000, 5000, None, None, None, None, None),
    ("Forfeited", 5000, 0, None, None, "repeated fake listings", None, None),
]

# Amounts: the new requirement for RequirementChanged, what moved for holds, reversals and refunds.
POLICY_TRAIL = [
    ("Opened", 400000, 0, None, None, None, None, "categories: food"),
    ("Paid", 400000, 0, "alipay", "A1", None, None, None),
    ("Frozen", 400000, 400000, None, None, None, None, None),
    ("RequirementChanged", 500000, 400000, None, None, "categories added jewelry", None, "categories: food, jewelry"),
    ("HoldPlaced", 30000, 370000, None, None, None, "AS-1", "complaint"),
    # The deduction takes its case's hold: the frozen balance does not move...
    ("Deducted", 12000, 370000, None, None, "after_sales_dispute", "AS-1", None),
    # ...and what it did not take comes back, to be frozen again.
    ("HoldReleased", 18000, 370000, None, None, None, "AS-1", "what the deduction did not take"),
    ("Frozen", 18000, 388000, None, None, None, None, None),
    ("Deducted", 3200, 384800, None, None, "late_shipment", "LS-1", None),
    ("AppealFiled", None, 384800, None, None, None, "LS-1", None),
    ("DeductionReversed", 3200, 384800, None, None, "late_shipment", "LS-1", None),
    ("Frozen", 3200, 388000, None, None, None, None, None),
    ("AppealFiled", None, 388000, None, None, None, "AS-1", None),
    ("AppealRejected", None, 388000, None, None, None, "AS-1", None),
    ("RequirementChanged", 400000, 388000, None, None, "categories removed jewelry", None, "categories: food"),
    ("Paid", 20000, 388000, "wechat_pay", "W1", None, None, None),
    ("Frozen", 20000, 408000, None, None, None, None, None),
    ("ExcessRefunded", 8000, 400000, "wechat_pay", "W1", None, None, None),
    ("Deducted", 50000, 350000, None, None, "fake_listing", "FL-1", None),
    ("ClosureRequested", None, 350000, None, None, None, None, None),
    ("Refunded", 12000, 338000, "wechat_pay", "W1", None, None, None),
    ("Refunded", 338000, 0, "alipay", "A1", None, None, None),
    ("AppealFiled", None, 0, None, None, None, "FL-1", None),
    # Upheld after the refund: the money comes back and is refunded again.
    ("DeductionReversed", 50000, 0, None, None, "fake_listing", "FL-1", None),
    ("Frozen", 50000, 50000, None, None, None, None, None),
    ("Refunded", 50000, 0, "alipay", "A1", None, None, None),
]


@pytest.fixture
def audit(store: Store) -> Iterator[tuple[AuditTrailView, sqlite3.Cursor]]:
    """The view's tables in the test's store: each test using it runs on both engines."""
    with view_tables_in(store, AuditTrailView) as (view, cursor):
        assert isinstance(view, AuditTrailView)
        yield view, cursor


def _trail(view: AuditTrailView, cursor: sqlite3.Cursor, shop_id: str) -> list[tuple[object, ...]]:
    return [
        (row.type, row.amount_minor, row.frozen_after_minor, row.channel, row.ref, row.reason, row.case, row.note)
        for row in view.rows(cursor, deposit_id(shop_id))
    ]


def test_every_event_type_gives_its_row(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    view.apply(cursor, TABLE, positioned(events_of(refunded_story()) + events_of(forfeited_story())))
    assert _trail(view, cursor, "tea-house") == REFUNDED_TRAIL
    assert _trail(view, cursor, "gadget-hub") == FORFEITED_TRAIL


def test_every_event_of_the_deposit_policy_gives_its_row(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    view.apply(cursor, TABLE, positioned(events_of(policy_story())))
    assert _trail(view, cursor, "noodle-bar") == POLICY_TRAIL


@pytest.mark.parametrize("cut", range(1, len(POLICY_TRAIL)))
def test_a_policy_story_cut_anywhere_continues_the_frozen_balance(cut: int) -> None:
    batch = positioned(events_of(policy_story()))
    view, cursor = view_tables(AuditTrailView)
    whole_view, whole_cursor = view_tables(AuditTrailView)
    view.apply(cursor, TABLE, batch[:cut])
    view.apply(cursor, TABLE, batch[cut:])
    whole_view.apply(whole_cursor, TABLE, batch)
    assert table_rows(cursor, TABLE) == table_rows(whole_cursor, TABLE)


def test_a_row_carries_position_shop_currency_actor_and_both_times(
    audit: tuple[AuditTrailView, sqlite3.Cursor],
) -> None:
    view, cursor = audit
    events = events_of(refunded_story())
    view.apply(cursor, TABLE, positioned(events, first=101))
    rows = view.rows(cursor, deposit_id("tea-house"))
    # The refund, last, has a row per channel share: positions repeat, shares tell them apart.
    assert [(row.position, row.share) for row in rows] == [
        *((position, 0) for position in range(101, 100 + len(events))),
        (100 + len(events), 1),
        (100 + len(events), 2),
    ]
    for row, event in zip(rows, [*events, events[-1]], strict=True):
        assert (row.shop_id, row.currency, row.actor) == ("tea-house", "CNY", "risk-ops")
        assert (row.effective_at, row.recorded_at) == (event.effective_at, event.recorded_at)
        assert row.type == event.type_name


def test_only_the_deposits_own_rows_are_its_trail(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    refunded, forfeited = events_of(refunded_story()), events_of(forfeited_story())
    interleaved = [event for pair in zip(refunded, forfeited, strict=True) for event in pair]
    view.apply(cursor, TABLE, positioned(interleaved))
    assert _trail(view, cursor, "tea-house") == REFUNDED_TRAIL
    assert _trail(view, cursor, "gadget-hub") == FORFEITED_TRAIL
    assert [row.position for row in view.rows(cursor, deposit_id("gadget-hub"))] == list(range(2, 17, 2))
    assert view.rows(cursor, deposit_id("nobody")) == []


@pytest.mark.parametrize("cut", range(1, 16))
def test_a_batch_cut_anywhere_continues_the_frozen_balance(cut: int) -> None:
    batch = positioned(events_of(refunded_story()) + events_of(forfeited_story()))
    view, cursor = view_tables(AuditTrailView)
    whole_view, whole_cursor = view_tables(AuditTrailView)
    view.apply(cursor, TABLE, batch[:cut])
    view.apply(cursor, TABLE, batch[cut:])
    whole_view.apply(whole_cursor, TABLE, batch)
    assert table_rows(cursor, TABLE) == table_rows(whole_cursor, TABLE)


def test_event_by_event_equals_one_batch_with_the_opening() -> None:
    batch = positioned(events_of(refunded_story()) + events_of(forfeited_story()))
    view, cursor = view_tables(AuditTrailView)
    single_view, single_cursor = view_tables(AuditTrailView)
    view.apply(cursor, TABLE, batch)
    for one in batch:
        single_view.apply(single_cursor, TABLE, [one])
    assert table_rows(cursor, TABLE) == table_rows(single_cursor, TABLE)
    assert len(table_rows(cursor, TABLE)) == len(batch) + 1  # the refund's two channel shares


def test_a_payment_split_between_paid_and_frozen(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    events = events_of(refunded_story())
    view.apply(cursor, TABLE, positioned(events[:2]))
    view.apply(cursor, TABLE, positioned(events[2:3], first=3))
    assert _trail(view, cursor, "tea-house") == REFUNDED_TRAIL[:3]


def test_an_event_of_a_deposit_without_rows_is_refused_and_writes_nothing(
    audit: tuple[AuditTrailView, sqlite3.Cursor],
) -> None:
    view, cursor = audit
    view.apply(cursor, TABLE, positioned(events_of(refunded_story())[:1]))
    before = table_rows(cursor, TABLE)
    with pytest.raises(LookupError, match="no audit rows"):
        view.apply(cursor, TABLE, positioned(events_of(forfeited_story())[1:], first=2))
    assert table_rows(cursor, TABLE) == before


def test_a_position_applied_twice_is_refused(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    batch = positioned(events_of(refunded_story()))
    view.apply(cursor, TABLE, batch)
    with pytest.raises(INTEGRITY_ERRORS):
        view.apply(cursor, TABLE, batch[-1:])


def test_rows_are_audit_rows(audit: tuple[AuditTrailView, sqlite3.Cursor]) -> None:
    view, cursor = audit
    view.apply(cursor, TABLE, positioned(events_of(refunded_story())[:1]))
    (row,) = view.rows(cursor, deposit_id("tea-house"))
    assert isinstance(row, AuditRow)
    assert row.model_dump(exclude={"effective_at", "recorded_at"}) == {
        "position": 1,
        "share": 0,
        "shop_id": "tea-house",
        "type": "Opened",
        "currency": "CNY",
        "amount_minor": 200000,
        "frozen_after_minor": 0,
        "actor": "risk-ops",
        "channel": None,
        "ref": None,
        "reason": None,
        "case": None,
        "note": None,
    }
