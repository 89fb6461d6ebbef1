"""Many processes on one store at once: nothing lost, nothing applied twice, nobody stuck."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ledger import DepositLedger
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean
from tests.ledger.processes import Child, Children, eventually

OPENERS = 4
"""Processes opening a new store at once: enough to collide when table creation is not serialised."""


def start_writers(children: Children, store_url: str, plans: list[list[dict[str, Any]]], folder: Path) -> list[Child]:
    """One writer process per plan, all released at once; see ``tests.ledger.writer``."""
    writers = []
    for number, plan in enumerate(plans):
        plan_file = folder / f"writer-{number}.json"
        plan_file.write_text(json.dumps(plan))
        writers.append(
            children.start(
                [
                    sys.executable,
                    "-m",
                    "tests.ledger.writer",
                    "--db",
                    store_url,
                    str(plan_file),
                    f"writer-{number}.jsonl",
                ],
                name=f"writer-{number}",
            )
        )
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
