"""Many processes on one store at once: nothing lost, nothing applied twice, nobody stuck."""

from __future__ import annotations

import json
import random
import sqlite3
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from domain import Deducted, Paid
from domain.money import to_minor
from ledger import DepositLedger
from ledger.store.urls import Store
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean, lags
from tests.ledger.processes import Child, Children, eventually

OPENERS = 4
"""Processes opening a new store at once: enough to collide when table creation is not serialised."""


def start_writers(
    children: Children,
    store_url: str,
    plans: list[list[dict[str, Any]]],
    folder: Path,
    *,
    inline_views: Callable[[int], bool] = lambda _number: True,
) -> list[Child]:
    """One writer process per plan, all released at once; see ``tests.ledger.writer``."""
    writers = []
    for number, plan in enumerate(plans):
        plan_file = folder / f"writer-{number}.json"
        plan_file.write_text(json.dumps(plan))
        argv = [
            sys.executable,
            "-m",
            "tests.ledger.writer",
            "--db",
            store_url,
            str(plan_file),
            f"writer-{number}.jsonl",
        ]
        env = {"DEPOSIT_LEDGER_INLINE_VIEWS": "1" if inline_views(number) else "0"}
        writers.append(children.start(argv, name=f"writer-{number}", env=env))
    for writer in writers:
        eventually(lambda writer=writer: writer.stdout().startswith("ready"), f"writer {writer.pid} to start")
    for writer in writers:
        writer.send("go")
    return writers


def outcomes(folder: Path, count: int) -> list[dict[str, Any]]:
    """Every writer's outcomes, in the order each wrote them."""
    return [
        json.loads(line)
        for number in range(count)
        for line in (folder / f"writer-{number}.jsonl").read_text().splitlines()
    ]


def test_processes_opening_a_new_store_at_once_all_get_through(
    children: Children, store_url: str, tmp_path: Path
) -> None:
    shops = [f"shop-{number}" for number in range(OPENERS)]
    plans = [[{"command": "open", "shop": shop, "currency": "CNY", "required": "100"}] for shop in shops]

    writers = start_writers(children, store_url, plans, tmp_path)

    assert [writer.wait() for writer in writers] == [0] * OPENERS, [writer.stderr()[-500:] for writer in writers]
    assert sorted(outcome["shop"] for outcome in outcomes(tmp_path, OPENERS)) == shops
    ledger = DepositLedger(store_url, actor="checker")
    try:
        assert [state.shop_id for state in ledger.shops()] == shops
    finally:
        ledger.close()
    assert_views_are_a_rebuild_and_verify_clean(store_url)


WRITERS = 8
OWN_PAYMENTS, SHARED_PAYMENTS, OWN_DEDUCTIONS, SHARED_DEDUCTIONS = 8, 3, 4, 2


def busy_shop_plans(shop: str) -> list[list[dict[str, Any]]]:
    """Each writer's commands, shuffled: its own trade numbers and cases, and some every writer sends."""
    plans = []
    for writer in range(WRITERS):
        own_payments = [
            {"command": "pay", "ref": f"P{writer}-{n}", "amount": f"{100 + 10 * writer + n}", "channel": "wechat_pay"}
            for n in range(OWN_PAYMENTS)
        ]
        shared_payments = [
            {"command": "pay", "ref": f"SHARED-{n}", "amount": f"{50 + n}", "channel": "alipay"}
            for n in range(SHARED_PAYMENTS)
        ]
        own_deductions = [
            {"command": "deduct", "case": f"C{writer}-{n}", "amount": f"{1 + n}.{writer}5", "reason": "late_shipment"}
            for n in range(OWN_DEDUCTIONS)
        ]
        shared_deductions = [
            {"command": "deduct", "case": f"SC-{n}", "amount": "5", "reason": "other"} for n in range(SHARED_DEDUCTIONS)
        ]
        plan = [
            {"shop": shop, **command} for command in own_payments + shared_payments + own_deductions + shared_deductions
        ]
        random.Random(writer).shuffle(plan)
        plans.append(plan)
    return plans


PAYERS, PAYMENTS_EACH = 8, 60


def test_no_other_writer_slips_in_between_a_command_reading_its_deposit_and_writing(
    ledger: DepositLedger, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command's turn is taken before it loads the deposit: another writer queues
    # instead of writing the deposit's next version first and making this one try again.
    ledger.open("queue-shop", currency="CNY", required="100")
    ledger.deposits.check_out("queue-shop")  # out of the cache: the command loads it while holding its turn
    other_writer_refused: list[bool] = []
    commit = ledger.work._commit

    def decided(deposit: Any) -> None:
        other_writer_refused.append(_another_writer_must_wait(store, deposit.id.hex))
        commit(deposit)

    monkeypatch.setattr(ledger.work, "_commit", decided)

    ledger.pay("queue-shop", "10", channel="alipay", ref="T-1")

    assert other_writer_refused == [True], "decided once, and nobody could write meanwhile"


def _another_writer_must_wait(store: Store, deposit_hex: str) -> bool:
    # Whether a second session, not willing to wait at all, is kept from writing the deposit.
    if store.kind == "sqlite":
        assert store.sqlite_path is not None
        other = sqlite3.connect(store.sqlite_path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            return "locked" in str(error)
        else:
            other.execute("ROLLBACK")
            return False
        finally:
            other.close()
    connection = store.connect()
    try:
        key = (f"deposit-ledger:{store.schema}", deposit_hex)
        taken = connection.execute("SELECT pg_try_advisory_lock(hashtext(?), hashtext(?))", key).fetchone()[0]
        return not taken
    finally:
        connection.close()


PAYERS, PAYMENTS_EACH = 8, 60


def test_many_processes_paying_one_shop_all_get_through_at_once_and_none_twice(
    children: Children, store_url: str, tmp_path: Path
) -> None:
    # Before writers took turns, SQLite writers lost their insert to each other and a
    # few of every thousand payments gave up (ConcurrencyExhausted) on a legitimate payment.
    ledger = DepositLedger(store_url, actor="tester")
    ledger.open("queue-shop", currency="CNY", required="1000")
    ledger.close()
    plans = [
        [
            {"shop": "queue-shop", "command": "pay", "ref": f"Q{payer}-{n}", "amount": f"{n + 1}", "channel": "alipay"}
            for n in range(PAYMENTS_EACH)
        ]
        for payer in range(PAYERS)
    ]

    payers = start_writers(children, store_url, plans, tmp_path)

    assert [payer.wait(timeout_s=240) for payer in payers] == [0] * PAYERS, [p.stderr()[-800:] for p in payers]
    results = outcomes(tmp_path, PAYERS)
    assert [result["exhausted"] for result in results] == [0] * PAYERS * PAYMENTS_EACH, "every payment at once"
    assert [result["duplicate"] for result in results] == [False] * PAYERS * PAYMENTS_EACH
    ledger = DepositLedger(store_url, actor="checker")
    try:
        history = ledger.history("queue-shop")
        refs = [event.trade_no for event in history if isinstance(event, Paid)]
        assert sorted(refs) == sorted(result["ref"] for result in results), "each payment once"
        expected = PAYERS * sum(range(1, PAYMENTS_EACH + 1))
        assert ledger.show("queue-shop").paid_minor == to_minor(Decimal(expected), "CNY")
    finally:
        ledger.close()
    assert_views_are_a_rebuild_and_verify_clean(store_url)


def test_eight_writers_on_one_shop_and_two_workers_lose_nothing_and_apply_nothing_twice(
    children: Children, store_url: str, backend: str, tmp_path: Path
) -> None:
    ledger = DepositLedger(store_url, actor="tester")
    ledger.open("busy-shop", currency="CNY", required="1000")
    ledger.close()
    workers = [
        children.ledger(
            "--db", store_url, "projections", "run", "--follow", "--poll-interval", "0.1", name=f"worker-{n}"
        )
        for n in range(2)
    ]
    for worker in workers:
        eventually(lambda worker=worker: "following" in worker.stderr(), "the workers to start")
    plans = busy_shop_plans("busy-shop")

    # Half the writers keep the views current themselves, half leave them to the workers.
    writers = start_writers(children, store_url, plans, tmp_path, inline_views=lambda number: number % 2 == 0)

    assert [writer.wait(timeout_s=240) for writer in writers] == [0] * WRITERS, [w.stderr()[-800:] for w in writers]
    results = outcomes(tmp_path, WRITERS)
    assert len(results) == sum(len(plan) for plan in plans)
    assert sum(result["unavailable"] for result in results) == 0, "the store was always reachable"
    # Writers take turns (the deposit's lock, the file's write lock): no command loses its write, none gives up.
    assert sum(result["exhausted"] for result in results) == 0
    accepted = [result for result in results if not result["duplicate"]]
    payments = {result["ref"]: Decimal(result["amount"]) for result in results if result["command"] == "pay"}
    deductions = {result["case"]: Decimal(result["amount"]) for result in results if result["command"] == "deduct"}
    assert sorted(r.get("ref") or r["case"] for r in accepted) == sorted([*payments, *deductions]), "each key once"

    ledger = DepositLedger(store_url, actor="checker", inline_views=False)
    try:
        state = ledger.show("busy-shop")
        assert state.paid_minor == to_minor(sum(payments.values()), "CNY")
        assert state.deducted_minor + state.owed_minor == to_minor(sum(deductions.values()), "CNY")
        assert state.frozen_minor == state.paid_minor - state.deducted_minor
        history = ledger.history("busy-shop")
        assert sorted(e.trade_no for e in history if isinstance(e, Paid)) == sorted(payments)
        assert sorted(e.case_id for e in history if isinstance(e, Deducted) and not e.settles_debt) == sorted(
            deductions
        )
        eventually(lambda: lags(store_url) == {"balances": 0, "audit_trail": 0}, "the views to catch up")
        assert ledger.balance("busy-shop") == state
    finally:
        ledger.close()
    assert [worker.stop() for worker in workers] == [0, 0]
    assert_views_are_a_rebuild_and_verify_clean(store_url)
