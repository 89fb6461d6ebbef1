"""Bulk import, projection rebuild and balance queries over a large store, each beside its floor.

- **Import**: a journal of ``events`` events (``events / 10`` shops, each opened,
  paid four times and deducted once: six lines, ten events) imported through
  :func:`ledger.tools.journal.import_journal`, as ``deposit-ledger import`` does. Lines
  are in time order; each shop's six lines lie within 600 lines of each other, as
  when a shop's onboarding takes a few days of a busy back office. Floor: the
  very rows of ``stored_events`` the import wrote, inserted into a fresh file
  with the library's schema by bare ``sqlite3`` ``executemany``, as many rows per
  transaction as the import wrote per batch.
- **Rebuild**: both views rebuilt from position 0 (``projections rebuild``), in a
  child process whose peak RSS is measured. Floor: a bare scan of the events
  table in position order, in a child process too.
- **Balance query**: ``DepositLedger.balance`` for random shops among all of them,
  alternating with a bare ``sqlite3`` lookup of the same row by shop id.

Children run this module: ``python -m benchmarks.bulk import|insert|rebuild|scan ...``.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, alternate, note, peak_rss_mib, percentile, run_child

EVENTS_PER_SHOP = 10
LINES_PER_SHOP = 6
SPREAD_SLOTS = 100
"""A shop's k-th line comes ``k * SPREAD_SLOTS`` slots after its opening; each slot holds up to six lines."""


def write_journal(path: Path, events: int) -> int:
    """Write the benchmark's journal of ``events`` events (a multiple of ten); return its number of lines."""
    assert events % EVENTS_PER_SHOP == 0 and events > 0
    shops = events // EVENTS_PER_SHOP
    lines = 0
    with path.open("w", encoding="utf-8") as out:
        for slot in range(shops + SPREAD_SLOTS * (LINES_PER_SHOP - 1)):
            for step in range(LINES_PER_SHOP):
                shop = slot - step * SPREAD_SLOTS
                if 0 <= shop < shops:
                    out.write(json.dumps(_line(shop, step, slot)) + "\n")
                    lines += 1
    return lines


def _line(shop: int, step: int, slot: int) -> dict[str, str]:
    # One second per slot from 2024-01-01: times never go backwards within a shop.
    seconds = slot
    at = f"2024-01-{1 + seconds // 86_400:02d}T{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
    shop_id = f"shop-{shop:07d}"
    if step == 0:
        site = ("CN", "US", "UK", "JP")[shop % 4]
        return {"op": "open", "shop": shop_id, "at": at, "currency": "CNY", "required": "2000", "site": site}
    if step < 5:
        channel = ("alipay", "wechat_pay")[step % 2]
        return {
            "op": "pay",
            "shop": shop_id,
            "at": at,
            "amount": "500.00",
            "channel": channel,
            "ref": f"T{shop}-{step}",
        }
    return {
        "op": "deduct",
        "shop": shop_id,
        "at": at,
        "amount": "80",
        "reason": "late_shipment",
        "case": f"C{shop}",
        "note": "3 orders shipped after 48 h",
    }


# ------------------------------------------------------------------ children


def import_child(journal: Path, db: Path) -> dict[str, Any]:
    """Import the journal into a fresh store, as ``deposit-ledger import`` does."""
    from ledger import DepositLedger
    from ledger.tools.journal import JournalReader, import_journal

    ledger = DepositLedger(str(db), actor="benchmark")
    try:
        batches = 0

        def count_batch(_: int) -> None:
            nonlocal batches
            batches += 1

        started = time.perf_counter()
        with journal.open(encoding="utf-8") as source:
            summary = import_journal(ledger, JournalReader(source, "jsonl"), progress=count_batch)
        seconds = time.perf_counter() - started
        assert summary.rejected == 0, summary
        assert all(status.lag == 0 for status in ledger.projection_status())
    finally:
        ledger.close()
    return {"seconds": seconds, "events": summary.events, "lines": summary.lines, "batches": batches}


def insert_child(source: Path, target: Path, rows_per_transaction: int) -> dict[str, Any]:
    """Insert the source's event rows into a fresh file with the same schema; time only the inserts."""
    with closing(sqlite3.connect(source)) as reading, closing(sqlite3.connect(target, isolation_level=None)) as writing:
        writing.execute("PRAGMA journal_mode=WAL")
        (schema,) = reading.execute("SELECT sql FROM sqlite_master WHERE name = 'stored_events'").fetchone()
        writing.execute(schema)
        rows = reading.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
        )
        inserted = 0
        seconds = 0.0
        while batch := rows.fetchmany(rows_per_transaction):
            started = time.perf_counter()
            writing.execute("BEGIN")
            writing.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", batch)
            writing.execute("COMMIT")
            seconds += time.perf_counter() - started
            inserted += len(batch)
    return {"seconds": seconds, "events": inserted}


def rebuild_child(db: Path) -> dict[str, Any]:
    """Rebuild both views from position 0, as ``projections rebuild`` does."""
    from ledger import DepositLedger

    ledger = DepositLedger(str(db), actor="benchmark")
    try:
        events = ledger.views.head()
        started = time.perf_counter()
        ledger.views.rebuild()
        seconds = time.perf_counter() - started
    finally:
        ledger.close()
    return {"seconds": seconds, "events": events, "peak_rss_mib": peak_rss_mib()}


def scan_child(db: Path) -> dict[str, Any]:
    """Read every event row in position order: the floor of any rebuild."""
    with closing(sqlite3.connect(db)) as connection:
        started = time.perf_counter()
        rows = connection.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
        )
        events = 0
        while batch := rows.fetchmany(1000):
            events += len(batch)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "events": events, "peak_rss_mib": peak_rss_mib()}


# ------------------------------------------------------------------ driver


def measure(folder: Path, events: int, queries: int) -> list[Figure]:
    """Import, floor, rebuild, scan and balance queries on a store of ``events`` events."""
    journal = folder / "journal.jsonl"
    db = folder / "bulk.db"
    note(f"writing a journal of {events:,} events")
    lines = write_journal(journal, events)
    note(f"importing {lines:,} lines")
    imported = run_child("benchmarks.bulk", "import", str(journal), str(db))
    assert imported["events"] == events, imported
    rows_per_transaction = max(1, round(events / imported["batches"]))
    note(f"bare insert of the same {events:,} rows, {rows_per_transaction:,} per transaction")
    floor = run_child("benchmarks.bulk", "insert", str(db), str(folder / "floor.db"), str(rows_per_transaction))
    note("rebuilding both views")
    rebuilt = run_child("benchmarks.bulk", "rebuild", str(db))
    note("bare scan of the events table")
    scanned = run_child("benchmarks.bulk", "scan", str(db))
    note(f"{queries:,} balance queries among {events // EVENTS_PER_SHOP:,} shops")
    query = _balance_queries(db, events // EVENTS_PER_SHOP, queries)

    import_rate = events / imported["seconds"]
    floor_rate = events / floor["seconds"]
    rebuild_rate = events / rebuilt["seconds"]
    scan_rate = events / scanned["seconds"]
    return [
        Figure(
            "bulk import",
            import_rate,
            "events/s",
            floor_rate,
            "bare batched insert",
            "≥ 50,000 events/s and ≥ 40% of floor",
            import_rate >= 50_000 and import_rate >= 0.4 * floor_rate,
            {
                "events": events,
                "lines": lines,
                "seconds": imported["seconds"],
                "rows_per_transaction": rows_per_transaction,
            },
        ),
        Figure(
            "rebuild (balances + audit trail)",
            rebuild_rate,
            "events/s",
            scan_rate,
            "bare scan",
            "≥ 50,000 events/s",
            rebuild_rate >= 50_000,
            {"seconds": rebuilt["seconds"], "events": events},
        ),
        Figure(
            "rebuild peak RSS",
            rebuilt["peak_rss_mib"],
            "MiB",
            scanned["peak_rss_mib"],
            "bare scan",
            "< 300 MB",
            rebuilt["peak_rss_mib"] * 1.048576 < 300,
        ),
        Figure(
            f"balance query p50 ({events // EVENTS_PER_SHOP:,} shops)",
            query["balance"]["p50"] * 1e6,
            "µs",
            query["floor"]["p50"] * 1e6,
            "bare SELECT by shop id",
        ),
        Figure(
            f"balance query p99 ({events // EVENTS_PER_SHOP:,} shops)",
            query["balance"]["p99"] * 1e6,
            "µs",
            query["floor"]["p99"] * 1e6,
            "bare SELECT by shop id",
            "< 1 ms",
            query["balance"]["p99"] < 0.001,
        ),
    ]


def _balance_queries(db: Path, shops: int, queries: int) -> dict[str, dict[str, float]]:
    from ledger import DepositLedger

    ledger = DepositLedger(str(db), actor="benchmark")
    try:
        with closing(sqlite3.connect(db)) as bare:
            picks = random.Random(7)
            shop_ids = [f"shop-{picks.randrange(shops):07d}" for _ in range(queries)]
            chosen = iter(shop_ids * 2)

            def ledger_balance() -> None:
                ledger.balance(next(chosen))

            def bare_select() -> None:
                bare.execute("SELECT * FROM deposit_balances WHERE shop_id = ?", (next(chosen),)).fetchone()

            alternate([ledger_balance, bare_select], min(200, queries // 10))  # warm the caches
            chosen = iter(shop_ids * 2)
            timings = alternate([ledger_balance, bare_select], queries)
    finally:
        ledger.close()
    return {
        name: {"p50": percentile(timing, 0.5), "p99": percentile(timing, 0.99)}
        for name, timing in zip(("balance", "floor"), timings, strict=True)
    }


def main(arguments: list[str]) -> None:
    """Run one child step and print its JSON result."""
    step, *rest = arguments
    if step == "import":
        result = import_child(Path(rest[0]), Path(rest[1]))
    elif step == "insert":
        result = insert_child(Path(rest[0]), Path(rest[1]), int(rest[2]))
    elif step == "rebuild":
        result = rebuild_child(Path(rest[0]))
    elif step == "scan":
        result = scan_child(Path(rest[0]))
    else:
        raise SystemExit(f"unknown step {step!r}: expected import, insert, rebuild or scan")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
