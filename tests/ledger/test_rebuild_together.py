"""Rebuilding several views in one pass: each event is read and decoded once, every copy equals the live view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger import DepositLedger
from ledger.views.runner import ViewKeeper, _Copy
from tests.ledger.stores import fill, tracking, view_rows


def test_both_views_are_rebuilt_from_one_reading_of_the_events(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 25)
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 25)
    head = fill(ledger, 30, 3)
    before, positions = view_rows(ledger.store), tracking(ledger.store)
    decoded: list[int] = []
    positioned = ViewKeeper._positioned

    def counting(self: ViewKeeper, row: Any) -> Any:
        decoded.append(int(row[0]))
        return positioned(self, row)

    monkeypatch.setattr(ViewKeeper, "_positioned", counting)
    progress: list[tuple[int, int]] = []

    assert ledger.views.rebuild(progress=lambda done, total: progress.append((done, total))) == head

    assert sorted(decoded) == list(range(1, head + 1)), "every event decoded once for both copies"
    assert view_rows(ledger.store) == before
    assert tracking(ledger.store) == positions
    assert progress[-1] == (head, head)


def test_a_copy_left_behind_by_an_interrupted_rebuild_is_started_afresh(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.views.runner.CATCH_UP_BATCH", 10)
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 10)
    head = fill(ledger, 10, 2)
    before = view_rows(ledger.store)
    stop = RuntimeError("killed")

    def interrupt(done: int, total: int) -> None:
        if done >= 20:
            raise stop

    with pytest.raises(RuntimeError):
        ledger.views.rebuild("audit_trail", progress=interrupt)
    assert tracking(ledger.store)["audit_trail.rebuild"] == 20

    assert ledger.views.rebuild() == head
    assert view_rows(ledger.store) == before


@pytest.mark.parametrize("carried", [0, 3, 1000], ids=["nothing carried", "a few carried", "all carried"])
def test_a_rebuild_equals_the_live_views_whatever_the_copies_carry_between_batches(
    ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch, carried: int
) -> None:
    # Carrying nothing reads every deposit's rows back each batch; a few, most of them.
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 7)
    monkeypatch.setattr("projections.view.CARRY_LIMIT", carried)
    head = fill(ledger, 12, 3)
    before, positions = view_rows(ledger.store), tracking(ledger.store)
    assert ledger.views.rebuild() == head
    assert view_rows(ledger.store) == before
    assert tracking(ledger.store) == positions


def test_a_rebuild_whose_copy_another_rebuild_restarted_does_not_trust_what_it_carried(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two `projections rebuild` of one view at once: the second drops the first's copy and
    # starts it again; the first must read the copy back rather than use its carry.
    monkeypatch.setattr("ledger.views.runner.REBUILD_BATCH", 10)
    head = fill(ledger, 3, 5)
    before = view_rows(ledger.store)
    rival = reopen().views
    audit = rival.view("audit_trail")
    batches: list[int] = []

    def rival_restarts_the_copy(done: int, total: int) -> None:
        batches.append(done)
        if len(batches) == 2:
            copy = _Copy(audit, f"{audit.table}__rebuild", f"{audit.name}.rebuild")
            with rival.store.write_transaction(rival.connection) as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {copy.table}")
                for statement in audit.create_statements(copy.table, rival.store.position_key):
                    cursor.execute(statement)
                for statement in audit.lookup_index_statements(copy.table):
                    cursor.execute(statement)
                cursor.execute("DELETE FROM view_tracking WHERE name = ?", (copy.tracking_name,))
            rival._build_batch([copy])  # one batch of the rival's own rebuild

    assert head > 30
    ledger.views.rebuild("audit_trail", progress=rival_restarts_the_copy)
    assert view_rows(ledger.store) == before
    assert ledger.auditor().verify().ok
