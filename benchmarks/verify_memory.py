"""How much memory ``verify`` and the exports need as the store grows: they stream, so the peak should stay flat.

    python -m benchmarks.verify_memory                      # a quick run: 20,000 events
    python -m benchmarks.verify_memory --full               # 100,000 and 1,000,000 events
    python -m benchmarks.verify_memory --events 250000      # any sizes, repeatable

For each size a child process builds a store of shops with 50 events each
(open, 22 payments, 3 deductions, closure, refund), saving many deposits per
transaction; then a child each runs ``Auditor(path).verify()``, ``export
journal`` (JSON lines, what ``deposit-ledger export journal`` runs) and
``export audit`` (CSV) over it, the exports written to a file. The peak
resident set size of each of those children alone and its run time are printed
as a table, beside an empty store's as the floor, and written as JSON to
``benchmarks/results/``.

This driver imports nothing from the ledger and stays small on purpose: on
Linux a child's peak RSS includes the parent's RSS at the moment of the spawn.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENTS_PER_SHOP = 50
SHOPS_PER_SAVE = 400
"""Deposits saved per transaction while building: 20,000 events a commit."""

QUICK_SIZES = (20_000,)
FULL_SIZES = (100_000, 1_000_000)
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Measurement:
    """One store size: how long building and verifying took, and verify's peak memory.

    ``verify_cpu_s`` (user + system) is the steadier figure on a busy machine.
    """

    events: int
    deposits: int
    build_s: float
    verify_s: float
    verify_cpu_s: float
    peak_rss_mib: float
    events_per_s: float
    journal_export_s: float
    journal_export_peak_rss_mib: float
    audit_export_s: float
    audit_export_peak_rss_mib: float


# ------------------------------------------------------------------ children


def build(path: Path, events: int) -> None:
    """Fill a fresh store at ``path`` with ``events`` events, ``EVENTS_PER_SHOP`` per shop."""
    from domain import Channel, DeductionReason, ShopDeposit, Stamp
    from ledger import DepositLedger

    start = datetime(2025, 1, 1, tzinfo=UTC)
    recorded_at = start + timedelta(days=400)
    ledger = DepositLedger(str(path), actor="benchmark", clock=lambda: recorded_at)

    def stamp(at: datetime) -> Stamp:
        return Stamp(effective_at=at, recorded_at=recorded_at, actor="benchmark")

    def deposit(number: int) -> ShopDeposit:
        at = start + timedelta(minutes=number % 10_000)
        shop = ShopDeposit.open(
            shop_id=f"shop-{number:07d}", site="CN", currency="CNY", required_minor=200_000, stamp=stamp(at)
        )
        for payment in range(22):
            channel = Channel.ALIPAY if payment % 2 else Channel.WECHAT_PAY
            at += timedelta(hours=1)
            shop.pay(amount_minor=10_000, channel=channel, trade_no=f"T{number}-{payment}", payer=None, stamp=stamp(at))
        for case in range(3):
            at += timedelta(days=1)
            shop.deduct(
                amount_minor=1_500,
                reason=DeductionReason.LATE_SHIPMENT,
                case_id=f"C{number}-{case}",
                note="",
                stamp=stamp(at),
            )
        shop.close(settlement_window=timedelta(days=90), stamp=stamp(at))
        shop.refund(stamp=stamp(at + timedelta(days=91)))
        assert shop.version == EVENTS_PER_SHOP
        return shop

    try:
        shops = events // EVENTS_PER_SHOP
        for first in range(0, shops, SHOPS_PER_SAVE):
            ledger.save(*(deposit(number) for number in range(first, min(first + SHOPS_PER_SAVE, shops))))
    finally:
        ledger.close()


def verify(path: Path) -> None:
    """Verify the store and print what was checked; fail unless it is clean."""
    from ledger.store.urls import resolve_store
    from ledger.tools.audit import Auditor

    report = Auditor(resolve_store(str(path))).verify()
    if not report.ok:
        raise SystemExit(f"the benchmark store does not verify: {report.problems[:3]}")
    print(json.dumps({"events": report.events_checked, "deposits": report.deposits_checked}))


def export_journal(path: Path, target: Path) -> None:
    """Export the store's journal as JSON lines to ``target``; print how many lines."""
    from ledger import DepositLedger
    from ledger.tools.journal import export_journal as export

    ledger = DepositLedger(str(path), actor="benchmark")
    try:
        with target.open("w", encoding="utf-8") as out:
            print(json.dumps({"lines": export(ledger, out, file_format="jsonl")}))
    finally:
        ledger.close()


def export_audit(path: Path, target: Path) -> None:
    """Export the store's audit trail as CSV to ``target``; print how many rows."""
    from ledger.store.urls import resolve_store
    from ledger.tools.audit import Auditor

    with target.open("w", encoding="utf-8", newline="") as out:
        print(json.dumps({"rows": Auditor(resolve_store(str(path))).export_audit(out, file_format="csv")}))


# -------------------------------------------------------------------- driver


def _child(*args: str) -> tuple[str, float, float, float]:
    """Run this module in a child: its stdout, wall time, CPU time and peak RSS in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.verify_memory", *args], stdout=subprocess.PIPE)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    # wait4 gives this child's own resource usage, not the maximum over every child so far.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {process.returncode}")
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak_mib = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return out, elapsed, usage.ru_utime + usage.ru_stime, peak_mib


def measure(folder: Path, events: int) -> Measurement:
    """Build a store of ``events`` events, verify it in a fresh process, and measure that process."""
    path = folder / f"verify-{events}.db"
    path.unlink(missing_ok=True)
    _, build_s, _, _ = _child("_build", str(path), str(events))
    out, verify_s, verify_cpu_s, peak_mib = _child("_verify", str(path))
    checked = json.loads(out)
    assert checked["events"] == events, checked
    exported = folder / f"export-{events}.out"
    _, journal_s, _, journal_peak_mib = _child("_export_journal", str(path), str(exported))
    _, audit_s, _, audit_peak_mib = _child("_export_audit", str(path), str(exported))
    exported.unlink()
    path.unlink()
    return Measurement(
        events=events,
        deposits=checked["deposits"],
        build_s=round(build_s, 1),
        verify_s=round(verify_s, 1),
        verify_cpu_s=round(verify_cpu_s, 1),
        peak_rss_mib=round(peak_mib, 1),
        events_per_s=round(events / verify_s) if events else 0,
        journal_export_s=round(journal_s, 1),
        journal_export_peak_rss_mib=round(journal_peak_mib, 1),
        audit_export_s=round(audit_s, 1),
        audit_export_peak_rss_mib=round(audit_peak_mib, 1),
    )


def main(argv: list[str] | None = None) -> None:
    """Measure each size, print the table, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, action="append", help=f"store size (a multiple of {EVENTS_PER_SHOP})")
    parser.add_argument("--full", action="store_true", help="measure 100,000 and 1,000,000 events")
    parser.add_argument("--folder", type=Path, help="where to build the stores (default: a temporary folder)")
    args = parser.parse_args(argv)
    sizes = args.events or (FULL_SIZES if args.full else QUICK_SIZES)
    if any(size <= 0 or size % EVENTS_PER_SHOP for size in sizes):
        parser.error(f"--events must be positive multiples of {EVENTS_PER_SHOP}")

    results = []
    print(
        f"{'events':>10} {'deposits':>9} {'build s':>8} {'verify s':>9} {'cpu s':>7} {'peak RSS MiB':>13} "
        f"{'events/s':>9} {'journal s':>10} {'MiB':>7} {'audit s':>8} {'MiB':>7}"
    )
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        # An empty store first: the floor of imports and connections every run pays.
        for size in (0, *sorted(sizes)):
            result = measure(Path(folder), size)
            results.append(result)
            print(
                f"{result.events:>10,} {result.deposits:>9,} {result.build_s:>8.1f} {result.verify_s:>9.1f} "
                f"{result.verify_cpu_s:>7.1f} {result.peak_rss_mib:>13.1f} {result.events_per_s:>9,} "
                f"{result.journal_export_s:>10.1f} {result.journal_export_peak_rss_mib:>7.1f} "
                f"{result.audit_export_s:>8.1f} {result.audit_export_peak_rss_mib:>7.1f}",
                flush=True,
            )

    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    target = RESULTS / f"verify_memory-{stamp}.json"
    environment = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    target.write_text(json.dumps({"environment": environment, "results": [asdict(r) for r in results]}, indent=2))
    print(f"written to {target}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        build(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_verify":
        verify(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_export_journal":
        export_journal(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_export_audit":
        export_audit(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
