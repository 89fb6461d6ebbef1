"""How long a day's bill takes to reconcile, and in how much memory: a million lines against a million payments.

    python -m benchmarks.reconcile_bill                  # a quick run: 20,000 payments and bill lines
    python -m benchmarks.reconcile_bill --full           # 1,000,000 of each

A child process builds (once: see below) a store of shops that each opened a deposit and paid
``PAYMENTS_PER_SHOP`` times through WeChat Pay on one day (every payment is a
``Paid`` and a ``Frozen`` event, so the store holds twice as many events as
payments, plus one per shop), and writes that day's WeChat Pay trade bill with
one line per payment, in the channel's format, with a few planted
discrepancies. Another child runs ``deposit-ledger reconcile BILL --channel
wechat_pay --json`` over them, its report thrown away. Its wall time, CPU time
and peak resident memory (its own, from ``wait4``) are printed and written as
JSON to ``benchmarks/results/``.

Building the full store takes several minutes, so the store is kept in the
user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then
``deposit-ledger/benchmarks/``), never in the repository, under a name made of
the payment count and a hash of the code that built it: changing
:func:`build_store` builds afresh. A build is written under a temporary name
and renamed when complete, so an interrupted build is never reused. The bill
takes seconds and is written afresh beside it each run. Before the
measured run an untimed child opens the store once, so that a store cached by
an older release is brought to this one's tables outside the figures.
``--no-cache`` builds in a temporary folder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

PAYMENTS_PER_SHOP = 24
SHOPS_PER_SAVE = 400
QUICK_PAYMENTS = 20_000
FULL_PAYMENTS = 1_000_000
BEIJING = timezone(timedelta(hours=8))
DAY_START = datetime(2025, 3, 5, tzinfo=BEIJING)
PLANTED = 3
"""Bill lines changed or added on purpose: an amount, an unknown trade, a payment left out."""
RESULTS = Path(__file__).parent / "results"


def payment_time(number: int, payments: int) -> datetime:
    """When payment ``number`` of ``payments`` was made: spread over the day, away from midnight."""
    seconds_apart = 86_000 / payments
    return DAY_START + timedelta(seconds=300 + number * seconds_apart)


def build_store(folder: Path, payments: int) -> None:
    """The store ``folder/store.db`` of ``payments`` payments (rounded down to whole shops)."""
    from domain import Channel, ShopDeposit, Stamp
    from ledger import DepositLedger

    recorded_at = DAY_START + timedelta(days=2)
    ledger = DepositLedger(str(folder / "store.db"), actor="benchmark", clock=lambda: recorded_at)
    shops = payments // PAYMENTS_PER_SHOP

    def deposit(shop: int) -> ShopDeposit:
        stamp = Stamp(effective_at=DAY_START - timedelta(days=1), recorded_at=recorded_at, actor="benchmark")
        opened = ShopDeposit.open(
            shop_id=f"shop-{shop:07d}", site="CN", currency="CNY", required_minor=240_000, stamp=stamp
        )
        for payment in range(PAYMENTS_PER_SHOP):
            number = payment * shops + shop
            stamp = Stamp(effective_at=payment_time(number, payments), recorded_at=recorded_at, actor="benchmark")
            opened.pay(
                amount_minor=10_000, channel=Channel.WECHAT_PAY, trade_no=f"42{number:016d}", payer=None, stamp=stamp
            )
        return opened

    try:
        for first in range(0, shops, SHOPS_PER_SAVE):
            ledger.save(*(deposit(shop) for shop in range(first, min(first + SHOPS_PER_SAVE, shops))))
    finally:
        ledger.close()


def write_bill(target: Path, payments: int) -> None:
    """That day's WeChat Pay trade bill of the store's payments, with the planted discrepancies, at ``target``."""
    from ledger.tools.reconcile.wechat_pay import COLUMNS, SUMMARY_COLUMNS

    total = payments // PAYMENTS_PER_SHOP * PAYMENTS_PER_SHOP
    settled = fees = lines = 0

    def line(fields: list[str]) -> str:
        return ",".join("`" + field for field in fields) + "\r\n"

    partial = target.with_name(target.name + ".part")
    with partial.open("w", encoding="utf-8", newline="") as bill:
        bill.write(",".join(COLUMNS) + "\r\n")
        for number in range(total):
            if number == total // 3:
                continue  # a payment the channel never made
            amount = 9999 if number == 2 else 10_000
            yuan = f"{amount // 100}.{amount % 100:02d}"
            moment = payment_time(number, payments).strftime("%Y-%m-%d %H:%M:%S")
            fields = [moment, "wx2421b1c4370ec43b", "10000100", "0", "", f"42{number:016d}", f"O{number}", "oU"]
            fields += ["JSAPI", "SUCCESS", "CMB_CREDIT", "CNY", yuan, "0.00", "0", "0", "0.00", "0.00", "", ""]
            fields += ["店铺保证金", "", "0.60", "0.60%", yuan, "0.00", ""]
            bill.write(line(fields))
            settled, fees, lines = settled + amount, fees + 60, lines + 1
        moment = payment_time(total // 2, payments).strftime("%Y-%m-%d %H:%M:%S")
        unknown = [moment, "wx", "10000100", "0", "", "4299999999999999", "O-x", "oU", "JSAPI", "SUCCESS", "CMB"]
        unknown += ["CNY", "5.00", "0.00", "0", "0", "0.00", "0.00", "", "", "x", "", "0.03", "0.60%", "5.00"]
        unknown += ["0.00", ""]
        bill.write(line(unknown))
        settled, fees, lines = settled + 500, fees + 3, lines + 1
        bill.write(",".join(SUMMARY_COLUMNS) + "\r\n")
        settled_yuan, fees_yuan = f"{settled // 100}.{settled % 100:02d}", f"{fees // 100}.{fees % 100:02d}"
        bill.write(line([str(lines), settled_yuan, "0.00", "0.00", fees_yuan, settled_yuan, "0.00"]))
    partial.replace(target)


def prepare(folder: Path) -> None:
    """Open the store once: a cached store is brought to this release's tables before it is measured."""
    from ledger import DepositLedger

    DepositLedger(str(folder / "store.db"), actor="benchmark").close()


def cache_folder() -> Path:
    """Where built stores are kept between runs: the user's cache, outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deposit-ledger" / "benchmarks"


def _code_hash(*functions: Any) -> str:
    source = "".join(inspect.getsource(function) for function in functions) + repr(PAYMENTS_PER_SHOP)
    return hashlib.sha256(source.encode()).hexdigest()[:12]


@contextmanager
def built(payments: int, *, cache: bool) -> Iterator[tuple[Path, float | None]]:
    """A folder holding the store and ``bill.csv`` of ``payments`` payments, and the store's build seconds.

    The seconds are None when the store came from the cache. The bill is cheap beside the
    store: it is written afresh each run, so changing the bill never rebuilds the store.
    """
    if not cache:
        with tempfile.TemporaryDirectory() as name:
            build_s, _, _ = _child("_build", name, str(payments))
            _child("_bill", name, str(payments))
            yield Path(name), build_s
        return
    folder = cache_folder() / f"reconcile_bill-{payments}-{_code_hash(payment_time, build_store)}"
    build_s = None
    if not folder.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            build_s, _, _ = _child("_build", str(partial), str(payments))
            partial.rename(folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    _child("_bill", str(folder), str(payments))
    yield folder, build_s


def reconcile(folder: Path) -> None:
    """Reconcile the bill with the store through the command line, the report to /dev/null."""
    from ledger.faces.cli import main

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the report is measured, not kept
    try:
        main(
            [
                "--db",
                str(folder / "store.db"),
                "reconcile",
                str(folder / "bill.csv"),
                "--channel",
                "wechat_pay",
                "--json",
            ]
        )
    except SystemExit as done:
        if done.code != 1:  # the planted discrepancies make it 1
            raise


def _child(*args: str) -> tuple[float, float, float]:
    """Run this module in a child: its wall time, CPU time and peak RSS in MiB."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.reconcile_bill", *args])
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"child {' '.join(args)} failed")
    return (
        elapsed,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024),
    )


def main(argv: list[str] | None = None) -> None:
    """Build, reconcile, print and keep the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reconcile_bill", description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help=f"{FULL_PAYMENTS:,} payments and bill lines")
    parser.add_argument("--payments", type=int, help="any size")
    parser.add_argument("--no-cache", action="store_true", help="build afresh in a temporary folder")
    args = parser.parse_args(argv)
    payments = args.payments or (FULL_PAYMENTS if args.full else QUICK_PAYMENTS)
    with built(payments, cache=not args.no_cache) as (folder, build_s):
        _child("_prepare", str(folder))
        bill_mib = (folder / "bill.csv").stat().st_size / 2**20
        store_mib = (folder / "store.db").stat().st_size / 2**20
        reconcile_s, cpu_s, peak_mib = _child("_reconcile", str(folder))
    result = {
        "payments": payments,
        "store_events": payments * 2 + payments // PAYMENTS_PER_SHOP,
        "bill_lines": payments,
        "bill_mib": round(bill_mib, 1),
        "store_mib": round(store_mib, 1),
        "build_s": None if build_s is None else round(build_s, 1),
        "reconcile_s": round(reconcile_s, 1),
        "reconcile_cpu_s": round(cpu_s, 1),
        "peak_rss_mib": round(peak_mib, 1),
    }
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    environment = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    target = RESULTS / f"reconcile_bill-{stamp}.json"
    target.write_text(json.dumps({"environment": environment, "result": result}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        build_store(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_bill":
        write_bill(Path(sys.argv[2]) / "bill.csv", int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_prepare":
        prepare(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_reconcile":
        reconcile(Path(sys.argv[2]))
    else:
        main()
