"""A refund's channel shares in the audit trail: one row per channel, in the view, the export and verify."""

from __future__ import annotations

import io
import json
from contextlib import closing

import pytest

from domain import Refunded
from ledger import DepositLedger
from ledger.store.urls import Store
from projections.audit_trail import AuditTrailView
from tests.conftest import FakeClock, fetch_all

# (share, type, amount, frozen_after, channel, ref): newest payment first, grouped by channel.
REFUND_ROWS = [
    (1, "Refunded", 170000, 30000, "alipay", "A2,A1"),
    (2, "Refunded", 30000, 0, "wechat_pay", "W1"),
]


@pytest.fixture
def refunded(ledger: DepositLedger, clock: FakeClock) -> int:
    """tea-house paid through both channels, closed and refunded; the position of its ``Refunded``."""
    ledger.open("tea-house", currency="CNY", required="2000")
    ledger.pay("tea-house", "1500", channel="alipay", ref="A1")
    ledger.pay("tea-house", "300", channel="wechat_pay", ref="W1")
    ledger.pay("tea-house", "200", channel="alipay", ref="A2")
    ledger.close_shop("tea-house")
    clock.now = ledger.show("tea-house").settlement_due or clock.now
    clock.advance(minutes=1)
    ledger.refund("tea-house")
    assert isinstance(ledger.history("tea-house")[-1], Refunded)
    return ledger.audit("tea-house")[-1].position


def share_rows(ledger: DepositLedger, position: int) -> list[tuple[object, ...]]:
    return [
        (row.share, row.type, row.amount_minor, row.frozen_after_minor, row.channel, row.ref)
        for row in ledger.audit("tea-house")
        if row.position == position
    ]


def test_the_audit_trail_has_one_row_per_channel_share_of_a_refund(ledger: DepositLedger, refunded: int) -> None:
    assert share_rows(ledger, refunded) == REFUND_ROWS
    others = [row for row in ledger.audit("tea-house") if row.position != refunded]
    assert {row.share for row in others} == {0}
    assert ledger.auditor().verify().ok


def test_export_audit_writes_each_share_with_its_refunds_chain_hash(ledger: DepositLedger, refunded: int) -> None:
    out = io.StringIO()
    ledger.auditor().export_audit(out, file_format="jsonl")
    records = [json.loads(text) for text in out.getvalue().splitlines()]
    shares = [record for record in records if record["position"] == refunded]

    assert [(r["share"], r["amount"], r["frozen_after"], r["channel"], r["ref"]) for r in shares] == [
        (1, "1700.00", "300.00", "alipay", "A2,A1"),
        (2, "300.00", "0.00", "wechat_pay", "W1"),
    ]
    assert shares[0]["chain_hash"] == shares[1]["chain_hash"] == ledger.auditor().checkpoint().chain_hash
    csv_out = io.StringIO()
    ledger.auditor().export_audit(csv_out, file_format="csv")
    header, *lines = csv_out.getvalue().splitlines()
    assert header.endswith(",chain_hash,share")
    assert len(lines) == len(records)


def test_a_rebuild_of_the_views_gives_the_same_share_rows(ledger: DepositLedger, refunded: int, store: Store) -> None:
    before = fetch_all(store, f"SELECT * FROM {AuditTrailView.table} ORDER BY position, share")

    ledger.views.rebuild()

    assert fetch_all(store, f"SELECT * FROM {AuditTrailView.table} ORDER BY position, share") == before
    assert share_rows(ledger, refunded) == REFUND_ROWS


@pytest.mark.parametrize(
    ("tampering", "detail"),
    [
        ("UPDATE {table} SET amount_minor = 160000 WHERE position = {position} AND share = 1", "share 1: amount_minor"),
        ("UPDATE {table} SET ref = 'A1' WHERE position = {position} AND share = 1", "share 1: ref"),
        ("DELETE FROM {table} WHERE position = {position} AND share = 2", "has 1 audit-trail rows"),
    ],
)
def test_verify_checks_every_share_row_against_the_refund(
    ledger: DepositLedger, refunded: int, store: Store, tampering: str, detail: str
) -> None:
    with closing(store.connect()) as connection:
        connection.execute(tampering.format(table=AuditTrailView.table, position=refunded))

    report = ledger.auditor().verify()

    assert [(p.position, p.kind) for p in report.problems] == [(refunded, "audit_trail")]
    assert detail in report.problems[0].detail
