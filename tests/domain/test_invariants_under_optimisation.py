"""The laws of the books hold under ``python -O`` too: they are raised, not asserted."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BROKEN_HISTORY = textwrap.dedent(
    """
    from datetime import UTC, datetime
    from domain import Balance, Channel, ShopDeposit, Stamp
    from domain import InvariantBroken

    moment = datetime(2025, 1, 1, tzinfo=UTC)
    stamp = Stamp(effective_at=moment, recorded_at=moment, actor="t")
    deposit = ShopDeposit.open(shop_id="tea", site="CN", currency="CNY", required_minor=10_000, stamp=stamp)
    deposit.pay(amount_minor=5_000, channel=Channel.ALIPAY, trade_no="A1", payer=None, stamp=stamp)
    opened, paid, frozen = deposit.collect_events()
    balance = Balance.opened(opened)
    try:
        balance.apply(frozen)  # the payment it freezes is missing: a version gap
    except InvariantBroken as broken:
        print("caught:", broken)
    else:
        print("applied")
    """
)


def test_a_version_gap_is_caught_with_assertions_switched_off() -> None:
    ran = subprocess.run(
        [sys.executable, "-O", "-c", BROKEN_HISTORY], cwd=ROOT, capture_output=True, text=True, check=False, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("caught: version gap in tea"), ran.stdout
