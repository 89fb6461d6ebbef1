"""What the process tests conclude with: the views hold every event once, as a rebuild would."""

from __future__ import annotations

from ledger import DepositLedger
from ledger.store.urls import resolve_store
from tests.conftest import fetch_all
from tests.ledger.stores import AUDIT, BALANCES, view_rows

CURRENT = {BALANCES: 0, AUDIT: 0}


def lags(url: str) -> dict[str, int]:
    """Each view's lag behind the head of the log, read without opening the application."""
    store = resolve_store(url)
    head = fetch_all(store, f"SELECT COALESCE(MAX({store.position_column}), 0) FROM {store.events_table}")[0][0]
    positions = dict(fetch_all(store, "SELECT name, position FROM view_tracking"))
    return {name: head - positions.get(name, 0) for name in (BALANCES, AUDIT)}


def assert_views_are_a_rebuild_and_verify_clean(url: str) -> None:
    """The views equal a rebuild from the first event, row for row, and ``verify`` finds nothing."""
    store = resolve_store(url)
    ledger = DepositLedger(url, actor="checker", inline_views=False)
    try:
        report = ledger.auditor().verify()
        assert report.ok, report.problems[:5]
        assert report.events_checked == fetch_all(store, f"SELECT COUNT(*) FROM {store.events_table}")[0][0]
        live = view_rows(store)
        for name in (BALANCES, AUDIT):
            ledger.views.rebuild(name)
        assert view_rows(store) == live
    finally:
        ledger.close()
