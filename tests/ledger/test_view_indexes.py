"""A view's index added by a newer release is created when the ledger opens a store made before it."""

from __future__ import annotations

from ledger import DepositLedger
from ledger.store.urls import resolve_store
from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView
from tests.conftest import FakeClock


def test_indexes_missing_from_an_older_store_are_created_on_open(store_url: str, clock: FakeClock) -> None:
    ledger = DepositLedger(store_url, clock=clock)
    ledger.open("S1", currency="CNY", required="100")
    ledger.close()
    store = resolve_store(store_url)
    dropped = {"deposit_balances": "deposit_balances_shortfall", "audit_trail": "audit_trail_holdplaced"}
    connection = store.connect()
    try:
        with store.write_transaction(connection) as cursor:
            for index in dropped.values():
                cursor.execute(f"DROP INDEX {index}")
            assert not set(dropped.values()) & store.index_names(cursor, "deposit_balances")
    finally:
        connection.close()

    reopened = DepositLedger(store_url, clock=clock)
    try:
        assert reopened.shops_page(order="shortfall")[0][0].shop_id == "S1"
    finally:
        reopened.close()
    connection = store.connect()
    try:
        cursor = connection.cursor()
        for view in (BalancesView, AuditTrailView):
            expected = view().index_names(view.table)
            assert dropped[view.table] in expected
            assert expected <= store.index_names(cursor, view.table)
    finally:
        connection.close()
