"""What the process tests conclude with: the views hold every event once, as a rebuild would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain import Channel, DeductionReason, ShopDeposit, Stamp
from ledger import DepositLedger
from ledger.store import Store, resolve_store
from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView
from tests.conftest import fetch_all

VIEW_TABLES = (BalancesView.table, AuditTrailView.table)


def view_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both view tables, in key order."""
    return {table: fetch_all(store, f"SELECT * FROM {table} ORDER BY 1") for table in VIEW_TABLES}


def lags(url: str) -> dict[str, int]:
    """Each view's lag behind the head of the log, read without opening the application."""
    store = resolve_store(url)
    head = fetch_all(store, f"SELECT COALESCE(MAX({store.position_column}), 0) FROM {store.events_table}")[0][0]
    positions = dict(fetch_all(store, "SELECT name, position FROM view_tracking"))
    return {name: head - positions.get(name, 0) for name in ("balances", "audit_trail")}


def assert_views_are_a_rebuild_and_verify_clean(url: str) -> None:
    """The views equal a rebuild from the first event, row for row, and ``verify`` finds nothing."""
    store = resolve_store(url)
    ledger = DepositLedger(url, actor="checker", inline_views=False)
    try:
        report = ledger.auditor().verify()
        assert report.ok, report.problems[:5]
        assert report.events_checked == fetch_all(store, f"SELECT COUNT(*) FROM {store.events_table}")[0][0]
        live = view_rows(store)
        for name in ("balances", "audit_trail"):
            ledger.views.rebuild(name)
        assert view_rows(store) == live
    finally:
        ledger.close()


def save_backlog(ledger: DepositLedger, shops: int, payments: int, *, prefix: str) -> int:
    """Save ``shops`` paid deposits, a hundred per transaction; return how many events that was.

    Built in memory and saved in bulk, so a test gets thousands of events in a second or two.
    """
    start = datetime(2025, 6, 1, tzinfo=UTC)
    events = 0
    pending: list[ShopDeposit] = []
    for number in range(shops):
        at = start + timedelta(minutes=number)
        stamp = Stamp(effective_at=at, recorded_at=at, actor="backlog")
        deposit = ShopDeposit.open(
            shop_id=f"{prefix}-{number:05d}", site="CN", currency="CNY", required_minor=100_000, stamp=stamp
        )
        for payment in range(payments):
            deposit.pay(
                amount_minor=5000 + payment,
                channel=(Channel.ALIPAY, Channel.WECHAT_PAY)[payment % 2],
                trade_no=f"{prefix}-{number}-{payment}",
                payer=None,
                stamp=stamp,
            )
        deposit.deduct(
            amount_minor=100, reason=DeductionReason.LATE_SHIPMENT, case_id=f"{prefix}-{number}", note="", stamp=stamp
        )
        events += deposit.version
        pending.append(deposit)
        if len(pending) == 100:
            ledger.save(*pending)
            pending = []
    if pending:
        ledger.save(*pending)
    return events
