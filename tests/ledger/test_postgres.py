"""What only PostgreSQL does: number events with gaps, notify, restart under a running ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger import DepositLedger
from ledger.store.urls import resolve_store
from tests.conftest import FakeClock, fetch_all


def test_after_a_gap_in_the_numbering_commands_still_update_the_views_inline(
    postgres_store_url: str, clock: FakeClock
) -> None:
    ledger = DepositLedger(postgres_store_url, actor="tester", clock=clock)
    try:
        ledger.open("tea", currency="CNY", required="2000")
        # An insert that lost a conflict and rolled back leaves its numbers unused, as this does.
        fetch_all(
            resolve_store(postgres_store_url),
            "SELECT nextval(pg_get_serial_sequence('depositledger_events', 'notification_id'))",
        )
        seen: list[tuple[int, list[int]]] = []
        apply_inline = ledger.views.apply_inline

        def watched(cursor: Any, previous_head: int, positions: Sequence[int], events: Sequence[Any]) -> None:
            seen.append((previous_head, list(positions)))
            apply_inline(cursor, previous_head, positions, events)

        ledger.recorder.after_insert = watched  # type: ignore[union-attr]

        ledger.pay("tea", "2000", channel="alipay", ref="A1")

        assert seen == [(1, [3, 4])], "the payment came after a gap"
        assert ledger.views.current_after_insert, "applied inside the insert, no catch-up needed"
        assert [(s.name, s.position, s.head) for s in ledger.projection_status()] == [
            ("balances", 4, 4),
            ("audit_trail", 4, 4),
        ]
        assert ledger.balance("tea") == ledger.show("tea")
    finally:
        ledger.close()
