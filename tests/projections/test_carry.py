"""What a view carries between the batches of a rebuild: the same rows as reading them back, fewer reads."""

from __future__ import annotations

import sqlite3
from typing import Any
from uuid import uuid4

import pytest

from projections.audit_trail import AuditTrailView
from projections.balances import BalancesView
from projections.view import Carry, Positioned, View
from tests.projections.stories import events_of, forfeited_story, policy_story, positioned, refunded_story, table_rows

VIEWS = [BalancesView, AuditTrailView]


def interleaved() -> list[Positioned]:
    """Three deposits' stories, their events taking turns, at consecutive positions."""
    stories = [events_of(refunded_story()), events_of(forfeited_story()), events_of(policy_story())]
    merged = [story[index] for index in range(max(map(len, stories))) for story in stories if index < len(story)]
    return positioned(merged)


def fresh(view_class: type[View]) -> tuple[View, sqlite3.Cursor]:
    """The view and a cursor on a new in-memory database holding its tables."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    view = view_class()
    cursor = connection.cursor()
    for statement in view.create_statements(view.table) + view.index_statements(view.table):
        cursor.execute(statement)
    return view, cursor


class Reads:
    """Counts the SELECTs run through a cursor."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor
        self.selects = 0

    def execute(self, statement: str, params: Any = ()) -> Any:
        self.selects += statement.lstrip().upper().startswith("SELECT")
        return self.cursor.execute(statement, params)

    def executemany(self, statement: str, params: Any) -> Any:
        return self.cursor.executemany(statement, params)

    def fetchall(self) -> Any:
        return self.cursor.fetchall()

    def fetchone(self) -> Any:
        return self.cursor.fetchone()


@pytest.mark.parametrize("view_class", VIEWS, ids=lambda view: view.name)
@pytest.mark.parametrize("size", [1, 2, 5, 7])
@pytest.mark.parametrize("limit", [1, 2, 100])
def test_batches_applied_with_a_carry_write_the_rows_of_one_whole_batch(
    view_class: type[View], size: int, limit: int
) -> None:
    # A limit below the deposits in play forgets some between batches: those are read back.
    batch = interleaved()
    view, cursor = fresh(view_class)
    whole_view, whole_cursor = fresh(view_class)
    carry = Carry(limit)
    for start in range(0, len(batch), size):
        view.apply(cursor, view.table, batch[start : start + size], carry)
        assert len(carry) <= limit
    whole_view.apply(whole_cursor, view.table, batch)
    assert table_rows(cursor, view.table) == table_rows(whole_cursor, view.table)


@pytest.mark.parametrize("view_class", VIEWS, ids=lambda view: view.name)
def test_deposits_the_carry_remembers_are_not_read_back(view_class: type[View]) -> None:
    batch = interleaved()
    view, cursor = fresh(view_class)
    reads = Reads(cursor)
    carry = Carry()
    view.apply(reads, view.table, batch[:3], carry)  # the three openings
    view.apply(reads, view.table, batch[3:], carry)
    assert reads.selects == 0
    forgetful = Reads(fresh(view_class)[1])
    view.apply(forgetful, view.table, batch[:3], Carry())
    view.apply(forgetful, view.table, batch[3:], Carry())  # a new carry knows nothing: read back
    assert forgetful.selects > 0


def test_the_carry_forgets_the_deposit_used_least_recently() -> None:
    first, second, third = uuid4().int, uuid4().int, uuid4().int
    carry = Carry(limit=2)
    carry.remember(first, "a")
    carry.remember(second, "b")
    carry.remember(first, "a2")  # used again: now the most recent
    carry.remember(third, "c")
    assert (carry.get(first), carry.get(second), carry.get(third)) == ("a2", None, "c")
    assert carry.recall({first, second, third}) == ({first: "a2", third: "c"}, {second})
    carry.clear()
    assert len(carry) == 0 and carry.get(first) is None
