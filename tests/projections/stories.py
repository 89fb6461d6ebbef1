"""Deposit histories built in memory, and a view's tables in a database of either engine.

The aggregate is the oracle: a view fed its events must report what the
deposit itself reports after each command.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from domain import Channel, DeductionReason, DepositEvent, DepositState, ShopDeposit, Stamp
from ledger.store.urls import Store
from projections.view import Positioned, View
from tests.domain.policy_fixtures import policy

START = datetime(2026, 1, 1, tzinfo=UTC)
SETTLEMENT_WINDOW = timedelta(days=90)


def stamp(minutes: float, actor: str = "risk-ops") -> Stamp:
    """A stamp ``minutes`` after the start, recorded one second after it took effect."""
    at = START + timedelta(minutes=minutes)
    return Stamp(effective_at=at, recorded_at=at + timedelta(seconds=1), actor=actor)


@dataclass(frozen=True)
class Step:
    """The events one command recorded, and the deposit's state after it."""

    command: str
    events: tuple[DepositEvent, ...]
    state: DepositState


Command = Callable[[ShopDeposit], Any]


def story(deposit: ShopDeposit, commands: Sequence[tuple[str, Command]]) -> list[Step]:
    """Run the commands on the deposit; the first step is its opening."""
    steps = [Step("open", tuple(deposit.collect_events()), deposit.state())]
    for name, command in commands:
        command(deposit)
        steps.append(Step(name, tuple(deposit.collect_events()), deposit.state()))
    return steps


def refunded_story(shop_id: str = "tea-house") -> list[Step]:
    """Paid through both channels, deducted with a note, closed and refunded."""
    deposit = ShopDeposit.open(shop_id=shop_id, site="CN", currency="CNY", required_minor=200000, stamp=stamp(0))
    return story(
        deposit,
        [
            (
                "pay",
                lambda d: d.pay(amount_minor=150000, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp(1)),
            ),
            (
                "top-up",
                lambda d: d.pay(
                    amount_minor=50000, channel=Channel.WECHAT_PAY, trade_no="W1", payer="wx-77", stamp=stamp(2)
                ),
            ),
            (
                "deduct",
                lambda d: d.deduct(
                    amount_minor=5000,
                    reason=DeductionReason.LATE_SHIPMENT,
                    case_id="LS-1",
                    note="3 orders shipped after 48h",
                    stamp=stamp(3),
                ),
            ),
            ("close", lambda d: d.close(settlement_window=SETTLEMENT_WINDOW, stamp=stamp(4))),
            ("refund", lambda d: d.refund(stamp=stamp(4 + SETTLEMENT_WINDOW.total_seconds() / 60))),
        ],
    )


def forfeited_story(shop_id: str = "gadget-hub") -> list[Step]:
    """Underpaid, deducted beyond its frozen balance, settled by the next payment, force-closed."""
    deposit = ShopDeposit.open(shop_id=shop_id, site="US", currency="USD", required_minor=100000, stamp=stamp(0))
    return story(
        deposit,
        [
            (
                "pay",
                lambda d: d.pay(amount_minor=10000, channel=Channel.ALIPAY, trade_no="A9", payer=None, stamp=stamp(5)),
            ),
            (
                "deduct",
                lambda d: d.deduct(
                    amount_minor=30000, reason=DeductionReason.FAKE_LISTING, case_id="FL-7", note="", stamp=stamp(6)
                ),
            ),
            (
                "settle",
                lambda d: d.pay(
                    amount_minor=25000, channel=Channel.WECHAT_PAY, trade_no="W9", payer=None, stamp=stamp(7)
                ),
            ),
            ("force-close", lambda d: d.force_close(reason="repeated fake listings", stamp=stamp(8))),
        ],
    )


def policy_story(shop_id: str = "noodle-bar") -> list[Step]:
    """Every event the deposit policy added: a dearer category, a hold its deduction takes, a
    catalogue-priced deduction, an appeal upheld and one rejected, an excess refund, and an
    appeal upheld after the refund (its money refunded again by a correcting event).
    """
    rules = policy()
    deposit = ShopDeposit.open(
        shop_id=shop_id,
        site="CN",
        currency="CNY",
        required_minor=rules.requirement_minor("CN", ["food"]),
        categories=["food"],
        policy_version=rules.version,
        stamp=stamp(0),
    )
    terms = rules.terms
    return story(
        deposit,
        [
            (
                "pay",
                lambda d: d.pay(amount_minor=400000, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp(1)),
            ),
            ("add jewelry", lambda d: d.change_categories(policy=rules, add=["jewelry"], remove=[], stamp=stamp(2))),
            ("hold", lambda d: d.hold(case_id="AS-1", amount_minor=30000, note="complaint", stamp=stamp(3))),
            (
                "deduct the held case",
                lambda d: d.deduct(
                    amount_minor=12000,
                    reason=DeductionReason.AFTER_SALES_DISPUTE,
                    case_id="AS-1",
                    note="",
                    stamp=stamp(4),
                    terms=terms,
                ),
            ),
            (
                "deduct by policy",
                lambda d: d.deduct_by_policy(
                    policy=rules,
                    reason=DeductionReason.LATE_SHIPMENT,
                    case_id="LS-1",
                    order_value_minor=32000,
                    note="",
                    stamp=stamp(5),
                ),
            ),
            ("appeal", lambda d: d.appeal(case_id="LS-1", note="", stamp=stamp(6), terms=terms)),
            ("uphold", lambda d: d.resolve_appeal(case_id="LS-1", upheld=True, note="", stamp=stamp(7), terms=terms)),
            ("appeal again", lambda d: d.appeal(case_id="AS-1", note="", stamp=stamp(8), terms=terms)),
            ("reject", lambda d: d.resolve_appeal(case_id="AS-1", upheld=False, note="", stamp=stamp(9), terms=terms)),
            ("drop jewelry", lambda d: d.change_categories(policy=rules, add=[], remove=["jewelry"], stamp=stamp(10))),
            (
                "top up",
                lambda d: d.pay(
                    amount_minor=20000, channel=Channel.WECHAT_PAY, trade_no="W1", payer=None, stamp=stamp(11)
                ),
            ),
            ("refund the excess", lambda d: d.refund_excess(stamp=stamp(12))),
            (
                "fake listing",
                lambda d: d.deduct(
                    amount_minor=50000,
                    reason=DeductionReason.FAKE_LISTING,
                    case_id="FL-1",
                    note="",
                    stamp=stamp(13),
                    terms=terms,
                ),
            ),
            ("close", lambda d: d.close(settlement_window=timedelta(minutes=1), stamp=stamp(14))),
            # Refunded under terms whose appeal window had passed; a policy with a longer
            # window lets the merchant appeal after the refund all the same.
            (
                "refund",
                lambda d: d.refund(
                    stamp=stamp(15), terms=terms.model_copy(update={"appeal_window": timedelta(minutes=1)})
                ),
            ),
            ("late appeal", lambda d: d.appeal(case_id="FL-1", note="", stamp=stamp(16), terms=terms)),
            (
                "upheld after the refund",
                lambda d: d.resolve_appeal(case_id="FL-1", upheld=True, note="", stamp=stamp(17), terms=terms),
            ),
        ],
    )


def events_of(steps: Sequence[Step]) -> list[DepositEvent]:
    """Every event of the story, in order."""
    return [event for step in steps for event in step.events]


def positioned(events: Sequence[DepositEvent], first: int = 1) -> list[Positioned]:
    """The events at consecutive positions from ``first``."""
    return [Positioned(first + offset, event) for offset, event in enumerate(events)]


def view_tables(view_class: type[View]) -> tuple[View, sqlite3.Cursor]:
    """The view and a cursor on a fresh in-memory database holding its live tables.

    The database lives as long as the cursor does.
    """
    connection = sqlite3.connect(":memory:", isolation_level=None)
    # The views never use their recorder when applied directly.
    view = view_class()
    cursor = connection.cursor()
    for statement in view.create_statements(view.table) + view.index_statements(view.table):
        cursor.execute(statement)
    return view, cursor


@contextmanager
def view_tables_in(store: Store, view_class: type[View]) -> Iterator[tuple[View, Any]]:
    """The view and a cursor on ``store`` (either backend) holding its live tables, closed afterwards."""
    connection = store.connect()
    try:
        view = view_class()
        cursor = connection.cursor()
        for statement in view.create_statements(view.table) + view.index_statements(view.table):
            cursor.execute(statement)
        yield view, cursor
    finally:
        connection.close()


INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)
"""What either engine raises when a row's key is taken."""


def table_rows(cursor: sqlite3.Cursor, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table``, in a stable order."""
    return cursor.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
