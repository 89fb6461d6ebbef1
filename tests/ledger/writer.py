"""A writer process for the concurrency tests: ``python -m tests.ledger.writer --db URL PLAN OUT``.

It reads a plan (a JSON list of ``open``, ``pay`` and ``deduct`` commands), waits for a
line ``go`` on stdin so that all writers start together, then runs every
command through the Python API on one long-lived ledger, as an application
server would. Each outcome is one JSON line appended to OUT as it happens.

Like a careful client, it retries a command that did not get through: when
the store cannot be reached (it reopens the ledger) and when other writers
kept winning (``ConcurrencyExhausted``). Payments and deductions are
idempotent by trade number and case id, so a retry of a command that did get
through is reported as a duplicate, never applied twice.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ledger import ConcurrencyExhausted, DepositLedger
from ledger.store.urls import UNAVAILABLE

GIVE_UP_AFTER_S = 120
"""A command that cannot get through for this long fails the writer."""


def run_command(ledger: DepositLedger, command: dict[str, Any]) -> bool:
    """Run one planned command; True when it was a duplicate."""
    if command["command"] == "open":
        result = ledger.open(command["shop"], currency=command["currency"], required=command["required"])
    elif command["command"] == "pay":
        result = ledger.pay(command["shop"], command["amount"], channel=command["channel"], ref=command["ref"])
    else:
        result = ledger.deduct(command["shop"], command["amount"], reason=command["reason"], case=command["case"])
    return result.duplicate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    arguments = parser.parse_args()
    plan: list[dict[str, Any]] = json.loads(arguments.plan.read_text())
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected go")
    ledger: DepositLedger | None = None
    with arguments.out.open("a") as out:
        for index, command in enumerate(plan):
            unavailable = exhausted = 0
            deadline = time.monotonic() + GIVE_UP_AFTER_S
            while True:
                try:
                    if ledger is None:
                        ledger = DepositLedger(arguments.db, actor=f"writer-{arguments.plan.stem}")
                    duplicate = run_command(ledger, command)
                    break
                except ConcurrencyExhausted:
                    exhausted += 1
                except UNAVAILABLE:
                    unavailable += 1
                    if ledger is not None:
                        ledger.close()
                        ledger = None
                    time.sleep(0.1)
                if time.monotonic() > deadline:
                    raise SystemExit(f"command {index} did not get through in {GIVE_UP_AFTER_S}s")
            outcome = {
                "index": index,
                **command,
                "duplicate": duplicate,
                "unavailable": unavailable,
                "exhausted": exhausted,
            }
            out.write(json.dumps(outcome) + "\n")
            out.flush()
    if ledger is not None:
        ledger.close()


if __name__ == "__main__":
    main()
