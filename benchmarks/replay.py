"""Replaying one deposit with a long history, with and without snapshots.

The deposit is opened, paid ``(events - 2) / 2`` times (``Paid`` and ``Frozen``
each) and deducted once: ``events`` events. It is saved a few hundred events at
a time, so snapshots fall where single commands would put them. Timed:

- **with snapshots**: ``replay`` at the version just before the head, the worst
  case of a snapshot interval: the nearest snapshot plus up to an interval of
  events; and ``show`` (the head).
- **without snapshots**: the same replay on a ledger whose snapshot store is
  switched off, folding every event from the first.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.common import Figure, alternate, note, percentile

PAYMENTS_PER_SAVE = 100


def measure(folder: Path, events: int, rounds: int) -> list[Figure]:
    """Build the deposit, then time its replays."""
    from domain import Channel, DeductionReason, ShopDeposit, Stamp
    from ledger import DepositLedger

    assert events >= 4 and events % 2 == 0
    path = folder / "replay.db"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ledger = DepositLedger(str(path), actor="benchmark")
    unsnapshotted = DepositLedger(str(path), actor="benchmark", env={"IS_SNAPSHOTTING_ENABLED": "n"})
    try:
        note(f"building a deposit of {events:,} events")
        stamp = Stamp(effective_at=start, recorded_at=start, actor="benchmark")
        deposit = ShopDeposit.open(shop_id="long", site="CN", currency="CNY", required_minor=1, stamp=stamp)
        payments = (events - 2) // 2
        for number in range(payments):
            at = start + timedelta(seconds=number)
            deposit.pay(
                amount_minor=100,
                channel=(Channel.ALIPAY, Channel.WECHAT_PAY)[number % 2],
                trade_no=f"T{number}",
                payer=None,
                stamp=Stamp(effective_at=at, recorded_at=at, actor="benchmark"),
            )
            if number % PAYMENTS_PER_SAVE == PAYMENTS_PER_SAVE - 1:
                ledger.save(deposit)
        last = start + timedelta(seconds=payments)
        deposit.deduct(
            amount_minor=50,
            reason=DeductionReason.LATE_SHIPMENT,
            case_id="LS-1",
            note="",
            stamp=Stamp(effective_at=last, recorded_at=last, actor="benchmark"),
        )
        ledger.save(deposit)
        assert ledger.show("long").version == events

        note(f"replaying it {rounds} times with snapshots, fewer without")
        with_snapshots = alternate(
            [lambda: ledger.replay("long", version=events - 1), lambda: ledger.show("long")], rounds
        )
        without = alternate([lambda: unsnapshotted.replay("long", version=events - 1)], max(2, rounds // 20))
    finally:
        unsnapshotted.close()
        ledger.close()
    worst = max(statistics.median(with_snapshots[0]), statistics.median(with_snapshots[1]))
    return [
        Figure(
            f"replay of a {events:,}-event deposit, snapshots",
            worst * 1000,
            "ms",
            statistics.median(without[0]) * 1000,
            "the same without snapshots",
            "< 20 ms",
            worst < 0.020,
            {
                "replay_before_head_p50_ms": round(statistics.median(with_snapshots[0]) * 1000, 2),
                "replay_before_head_p99_ms": round(percentile(with_snapshots[0], 0.99) * 1000, 2),
                "show_p50_ms": round(statistics.median(with_snapshots[1]) * 1000, 2),
            },
        )
    ]
