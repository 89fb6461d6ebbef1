"""What a process remembers between its own commands, the views' rows and the chain's head, is never stale.

Both are used only while nobody else has written since this process's last
commit; a rival process, a rolled-back transaction or a view that fell behind
makes the next command read from the tables again.
"""

from __future__ import annotations

import gc
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from ledger import DepositLedger
from ledger.store import chain
from ledger.store.chain import GENESIS, ChainKey
from ledger.store.chain_keys import KeyRing
from ledger.store.recorder import ChainHead
from tests.conftest import FakeClock
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean
from tests.ledger.stores import drop_views


def statements(command: Callable[[], object]) -> list[str]:
    """The SQL statements a command runs on SQLite, on any of the process's connections."""
    seen: list[str] = []
    connections = []
    for found in gc.get_objects():
        if isinstance(found, sqlite3.Connection):
            try:
                found.set_trace_callback(seen.append)
            except sqlite3.ProgrammingError:
                continue  # closed, left over from another test
            connections.append(found)
    try:
        command()
    finally:
        for connection in connections:
            connection.set_trace_callback(None)
    return seen


@pytest.mark.sqlite_only("traces SQLite's statements")
def test_a_second_command_on_a_deposit_reads_neither_its_view_rows_nor_the_chain_head(
    ledger: DepositLedger, clock: FakeClock
) -> None:
    ledger.open("shop-1", currency="CNY", required="100")
    ledger.pay("shop-1", "10", channel="alipay", ref="A1")
    clock.advance(minutes=1)
    run = statements(lambda: ledger.pay("shop-1", "10", channel="alipay", ref="A2"))
    assert any(statement.startswith("INSERT INTO audit_trail") for statement in run), "traced the command"
    reads = [statement for statement in run if statement.startswith("SELECT")]
    assert not [read for read in reads if "deposit_balances" in read or "audit_trail" in read or "event_chain" in read]
    assert ledger.balance("shop-1") == ledger.show("shop-1")


def balances_stopped(ledger: DepositLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the balances view fail from now on, so that the audit trail follows alone.

    With both views current, a stale carry is caught anyway: the balances view
    checks each event's version and the batch falls back to reading the tables.
    The audit trail has no such check; alone, it shows whether the carry is trusted.
    """
    balances = ledger.views.view("balances")

    def stopped(*args: Any) -> None:
        raise RuntimeError("balances stopped")

    monkeypatch.setattr(balances, "apply", stopped)


def frozen_after(ledger: DepositLedger, shop_id: str) -> list[int]:
    return [row.frozen_after_minor for row in ledger.audit(shop_id)]


@pytest.mark.parametrize("audit_alone", [False, True], ids=["both views", "audit trail alone"])
def test_commands_of_two_processes_taking_turns_on_one_deposit_keep_the_views_exact(
    ledger: DepositLedger,
    reopen: Callable[[], DepositLedger],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    audit_alone: bool,
) -> None:
    rival = reopen()
    if audit_alone:
        balances_stopped(ledger, monkeypatch)
    ledger.open("shop-1", currency="CNY", required="1000")
    for turn in range(6):
        writer = ledger if turn % 2 == 0 else rival
        writer.pay("shop-1", "10", channel="alipay", ref=f"A{turn}")
        writer.deduct("shop-1", "3", reason="late_shipment", case=f"C{turn}")
        clock.advance(minutes=1)
    assert frozen_after(ledger, "shop-1") == [0] + [n * 700 + step for n in range(6) for step in (0, 1_000, 700)]
    if not audit_alone:
        assert ledger.balance("shop-1") == ledger.show("shop-1") == rival.balance("shop-1")
        assert_views_are_a_rebuild_and_verify_clean(ledger.store.url)


@pytest.mark.parametrize("audit_alone", [False, True], ids=["both views", "audit trail alone"])
def test_a_transaction_rolled_back_after_the_views_applied_leaves_nothing_remembered(
    ledger: DepositLedger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, audit_alone: bool
) -> None:
    ledger.open("shop-1", currency="CNY", required="1000")
    if audit_alone:
        balances_stopped(ledger, monkeypatch)
        ledger.pay("shop-1", "1", channel="alipay", ref="A0")  # the balances view falls behind here
    ledger.pay("shop-1", "10", channel="alipay", ref="A1")
    apply_inline = ledger.views.apply_inline

    def apply_then_fail(*args: Any) -> None:
        apply_inline(*args)
        raise sqlite3.OperationalError("disk I/O error")  # the commit never happens

    monkeypatch.setattr(ledger.recorder, "after_insert", apply_then_fail)
    with pytest.raises(Exception, match="disk I/O error"):
        ledger.pay("shop-1", "500", channel="alipay", ref="A-lost")
    monkeypatch.setattr(ledger.recorder, "after_insert", apply_inline)
    clock.advance(minutes=1)
    ledger.pay("shop-1", "20", channel="alipay", ref="A2")
    before = 100 if audit_alone else 0
    assert frozen_after(ledger, "shop-1")[-4:] == [before, before + 1_000, before + 1_000, before + 3_000]
    assert [row.ref for row in ledger.audit("shop-1") if row.type == "Paid"][-2:] == ["A1", "A2"]
    if not audit_alone:
        assert ledger.balance("shop-1").frozen_minor == 3_000 == ledger.show("shop-1").frozen_minor
        assert_views_are_a_rebuild_and_verify_clean(ledger.store.url)


def test_a_view_that_fell_behind_forgets_what_it_carried(
    ledger: DepositLedger, reopen: Callable[[], DepositLedger], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.open("shop-1", currency="CNY", required="1000")
    ledger.pay("shop-1", "10", channel="alipay", ref="A1")
    monkeypatch.setenv("DEPOSIT_LEDGER_INLINE_VIEWS", "0")
    quiet = reopen()  # leaves the views to others
    quiet.pay("shop-1", "10", channel="alipay", ref="Q1")
    monkeypatch.delenv("DEPOSIT_LEDGER_INLINE_VIEWS")
    clock.advance(minutes=1)
    ledger.pay("shop-1", "10", channel="alipay", ref="A2")  # catches the views up first, then applies its own
    assert ledger.balance("shop-1") == ledger.show("shop-1")
    assert ledger.balance("shop-1").paid_minor == 3_000
    assert_views_are_a_rebuild_and_verify_clean(ledger.store.url)


@pytest.mark.parametrize("audit_alone", [False, True], ids=["both views", "audit trail alone"])
def test_views_dropped_and_rebuilt_elsewhere_do_not_take_the_rows_this_process_carried(
    ledger: DepositLedger, store_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, audit_alone: bool
) -> None:
    # The operator drops the views and rebuilds them from another process while this one
    # keeps taking payments: its views were not current for one of them, so what they
    # carried is behind what the rebuild wrote.
    ledger.open("shop-1", currency="CNY", required="1000")
    ledger.pay("shop-1", "10", channel="alipay", ref="A1")  # both views carry the deposit's rows now
    if audit_alone:
        balances_stopped(ledger, monkeypatch)
    drop_views(ledger.store)
    operator = DepositLedger(store_url, actor="operator", clock=clock, inline_views=False)
    try:
        clock.advance(minutes=1)
        ledger.pay("shop-1", "10", channel="alipay", ref="A2")  # no view is current here
        operator.views.rebuild("audit_trail")
        clock.advance(minutes=1)
        ledger.pay("shop-1", "10", channel="alipay", ref="A3")
    finally:
        operator.close()
    assert frozen_after(ledger, "shop-1") == [0, 0, 1_000, 1_000, 2_000, 2_000, 3_000]
    if not audit_alone:
        assert ledger.balance("shop-1") == ledger.show("shop-1")
        assert_views_are_a_rebuild_and_verify_clean(ledger.store.url)


@pytest.mark.parametrize("audit_alone", [False, True], ids=["both views", "audit trail alone"])
def test_a_commit_reported_late_by_another_thread_does_not_vouch_for_a_transaction_rolled_back_since(
    ledger: DepositLedger, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, audit_alone: bool
) -> None:
    ledger.open("shop-1", currency="CNY", required="1000")
    if audit_alone:
        balances_stopped(ledger, monkeypatch)
    ledger.pay("shop-1", "10", channel="alipay", ref="A1")
    reports: list[int] = []
    monkeypatch.setattr(ledger.recorder, "after_commit", reports.append)  # thread A: its report is late
    clock.advance(minutes=1)
    ledger.pay("shop-1", "10", channel="alipay", ref="A2")
    (late,) = reports
    monkeypatch.setattr(ledger.recorder, "after_commit", ledger.views.committed)

    # Thread B's insert: thread A's report lands while B's views apply, then B's transaction fails.
    audit = ledger.views.view("audit_trail")
    audit_apply, apply_inline = audit.apply, ledger.views.apply_inline

    def apply_then_late_report(*args: Any) -> None:
        audit_apply(*args)
        ledger.views.committed(late)

    def apply_then_fail(*args: Any) -> None:
        apply_inline(*args)
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(audit, "apply", apply_then_late_report)
    monkeypatch.setattr(ledger.recorder, "after_insert", apply_then_fail)
    with pytest.raises(Exception, match="disk I/O error"):
        ledger.pay("shop-1", "500", channel="alipay", ref="B-lost")
    monkeypatch.setattr(audit, "apply", audit_apply)
    monkeypatch.setattr(ledger.recorder, "after_insert", apply_inline)

    clock.advance(minutes=1)
    ledger.pay("shop-1", "10", channel="alipay", ref="A3")
    assert frozen_after(ledger, "shop-1")[-2:] == [2_000, 3_000]
    if not audit_alone:
        assert_views_are_a_rebuild_and_verify_clean(ledger.store.url)


# ------------------------------------------------------------------ chain head


def chain_table() -> sqlite3.Cursor:
    cursor = sqlite3.connect(":memory:", isolation_level=None).cursor()
    cursor.execute("CREATE TABLE event_chain (position INTEGER PRIMARY KEY, link BLOB NOT NULL)")
    cursor.execute(chain.create_key_table_statement())
    return cursor


KEY = ChainKey(bytes(range(32)))


def keyed_head() -> ChainHead:
    head = ChainHead()
    head.keys = lambda: KeyRing([KEY], "a test key")
    return head


def link(previous: bytes, *fields: Any) -> bytes:
    return chain.keyed_link(KEY, previous, *fields)


def row(position: int) -> tuple[int, str, int, str, bytes]:
    return (position, "0" * 32, position, "ShopDeposit.Paid", b"{}")


def links(cursor: sqlite3.Cursor) -> list[bytes]:
    return [bytes(found) for (found,) in cursor.execute("SELECT link FROM event_chain ORDER BY position")]


def expected(count: int) -> list[bytes]:
    chained, previous = [], GENESIS
    for position in range(1, count + 1):
        previous = link(previous, *row(position))
        chained.append(previous)
    return chained


def test_the_remembered_head_is_used_only_after_its_commit_and_only_for_the_next_positions() -> None:
    cursor, head = chain_table(), keyed_head()
    assert head.extend(cursor, [row(1), row(2)]) == 0
    # Not committed yet: a forged head in the table would be read, not the remembered one.
    cursor.execute("UPDATE event_chain SET link = ? WHERE position = 2", (b"x" * 32,))
    assert head.extend(cursor, [row(3)]) == 2
    assert links(cursor)[2] == link(b"x" * 32, *row(3)), "read from the table: nothing was committed"
    cursor.execute("DELETE FROM event_chain WHERE position >= 2")
    cursor.executemany("INSERT INTO event_chain VALUES (?, ?)", list(zip([2], expected(2)[1:], strict=True)))
    head.extend(cursor, [row(3)])
    head.committed(3)
    cursor.execute("UPDATE event_chain SET link = ? WHERE position = 3", (b"y" * 32,))
    head.extend(cursor, [row(4)])  # follows 3: the remembered, committed head is used
    assert links(cursor)[3] == expected(4)[3]
    head.committed(4)
    cursor.execute("INSERT INTO event_chain VALUES (5, ?)", (b"z" * 32,))  # another process's event
    head.extend(cursor, [row(6)])  # does not follow 4: read from the table
    assert links(cursor)[-1] == link(b"z" * 32, *row(6))
