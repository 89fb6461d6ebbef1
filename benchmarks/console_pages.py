"""Does every console page answer within 200 ms on a store of 100,000 shops?

Builds a store of ``shops`` deposits through the journal import (as
``deposit-ledger import`` does): every shop opened and paid, and a mix of what a
back office lives with: one shop in ten deducted into a shortfall long ago (its
top-up overdue), one in fifty with a hold still open, one in a hundred with an
appeal awaiting its decision, one in a hundred closing with its settlement due,
a few owing. Then, signed in as an admin (who is offered every form), times each
page of the console, one after another round after round, through the app as the
server runs it (the ASGI app with its lifespan; the HTTP client in the same
process, so the figure is the server's time plus the ASGI call, without a
network): the first page of shops, the same filtered and sorted by shortfall and
by top-up deadline, a page deep in the list (by its cursor), one deposit, the
work queue and the audit page. Beside them, the floor: the API's ``/healthz`` on
the same app.

Prints a table (p50, p99, max per page) and the JSON; ``python -m benchmarks.console_pages
[--shops N] [--rounds N] [--db URL]`` (default: a fresh SQLite file in a temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import note, percentile

TARGET_MS = 200.0
START_DAY = "2025-01-"


@dataclass(frozen=True)
class PageTime:
    """One page's latencies."""

    page: str
    path: str
    p50_ms: float
    p99_ms: float
    max_ms: float
    calls: int


def write_journal(path: Path, shops: int) -> int:
    """The benchmark's journal: ``shops`` shops, in time order over January 2025; return its line count."""
    lines = 0
    with path.open("w", encoding="utf-8") as out:

        def line(entry: dict[str, Any]) -> None:
            nonlocal lines
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            lines += 1

        for number in range(shops):
            shop = f"shop-{number:07d}"
            second = number * 20  # shops spread over the month; each one's own events a few seconds apart
            at = [_at(second + step) for step in range(8)]
            currency, site = (("CNY", "CN"), ("USD", "US"), ("GBP", "UK"), ("JPY", "JP"))[number % 4]
            required = "70000" if currency == "JPY" else "2000"
            line({"op": "open", "shop": shop, "at": at[0], "currency": currency, "required": required, "site": site})
            line(
                {
                    "op": "pay",
                    "shop": shop,
                    "at": at[1],
                    "amount": required,
                    "channel": ("alipay", "wechat_pay")[number % 2],
                    "ref": f"T{number}",
                }
            )
            if number % 10 == 3:
                deducted = "90000" if currency == "JPY" else "2500" if number % 40 == 3 else "300"
                case = f"C{number}"
                line(
                    {
                        "op": "deduct",
                        "shop": shop,
                        "at": at[2],
                        "amount": deducted,
                        "reason": "late_shipment",
                        "case": case,
                    }
                )
                if number % 100 == 13:
                    line({"op": "appeal", "shop": shop, "at": at[3], "case": case})
            elif number % 50 == 7:
                line(
                    {
                        "op": "hold",
                        "shop": shop,
                        "at": at[2],
                        "amount": "100" if currency != "JPY" else "1000",
                        "case": f"H{number}",
                    }
                )
            elif number % 100 == 21:
                line({"op": "close", "shop": shop, "at": at[2]})
    return lines


def _at(second: int) -> str:
    # Within January 2025: a month's seconds hold 130,000 shops of 20 seconds each.
    day, rest = divmod(second, 86_400)
    return f"{START_DAY}{1 + day:02d}T{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}Z"


def build(store_url: str, shops: int, folder: Path) -> dict[str, Any]:
    """Import the journal into ``store_url``; the seconds it took and the events written."""
    from ledger import DepositLedger
    from ledger.store.urls import resolve_store
    from ledger.tools.journal import JournalReader, import_journal

    journal = folder / "console_pages.jsonl"
    write_journal(journal, shops)
    ledger = DepositLedger(store_url, actor="benchmark")
    try:
        started = time.perf_counter()
        with journal.open(encoding="utf-8") as source:
            summary = import_journal(ledger, JournalReader(source, "jsonl"))
        seconds = time.perf_counter() - started
        assert summary.rejected == 0, summary
    finally:
        ledger.close()
    store = resolve_store(store_url)
    if store.kind == "postgresql":
        # As after any bulk load: the planner's statistics, which autovacuum would gather later. Without
        # them PostgreSQL reads the work queue's closing rows by a sequential scan (400 ms, not 1 ms).
        connection = store.connect()
        try:
            connection.autocommit = True
            connection.cursor().execute("ANALYZE deposit_balances")
            connection.cursor().execute("ANALYZE audit_trail")
        finally:
            connection.close()
    return {"seconds": round(seconds, 1), "events": summary.events}


async def _measure_pages(store_url: str, shops: int, rounds: int) -> list[PageTime]:
    import httpx

    from ledger.faces.http import create_app

    app = create_app(store_url)
    async with app.router.lifespan_context(app):
        keys = app.state.service.keys
        known = {key.name for key in keys.all()}
        name = f"benchmark-{len(known)}"
        _, secret = keys.create(name, "admin")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.benchmark") as client:
            form = await client.get("/console/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert token is not None
            signed = await client.post("/console/login", data={"key": secret, "csrf_token": token.group(1)})
            assert signed.status_code == 303, signed.text
            deep = await _deep_page(client, pages=min(20, max(1, shops // 50 - 1)))
            paths = {
                "floor: /healthz": "/healthz",
                "shops, first page": "/console/shops",
                "shops, deep page (cursor)": deep,
                "shops, underfunded by shortfall": "/console/shops?underfunded=1&sort=shortfall",
                "shops, overdue by top-up deadline": "/console/shops?overdue=1&sort=top_up_due",
                "shops, site US, owing": "/console/shops?site=US&owing=1",
                "one deposit": f"/console/shops/shop-{min(shops - 1, 13):07d}",
                "work queue": "/console/queue",
                "audit": "/console/audit",
            }
            timings: dict[str, list[float]] = {page: [] for page in paths}
            for path in paths.values():  # one untimed call each: the first read of a page warms the caches
                answer = await client.get(path)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            for _ in range(rounds):
                for page, path in paths.items():
                    started = time.perf_counter()
                    answer = await client.get(path)
                    timings[page].append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200
    return [
        PageTime(
            page,
            paths[page],
            round(percentile(values, 0.5), 1),
            round(percentile(values, 0.99), 1),
            round(max(values), 1),
            len(values),
        )
        for page, values in timings.items()
    ]


async def _deep_page(client: Any, pages: int) -> str:
    # Follow the "next page" links ``pages`` times: the cursor of a page deep in the list.
    path = "/console/shops"
    for _ in range(pages):
        answer = await client.get(path)
        found = re.search(r'href="([^"]+)" rel="next"', answer.text)
        if found is None:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


def measure(
    folder: Path, shops: int, rounds: int, store_url: str | None = None
) -> tuple[dict[str, Any], list[PageTime]]:
    """Build a store of ``shops`` (a fresh SQLite file in ``folder`` unless ``store_url``) and time the pages."""
    url = store_url or str(folder / f"console_pages-{shops}.db")
    note(f"console pages: importing {shops:,} shops")
    built = build(url, shops, folder)
    note(f"console pages: {built['events']:,} events in {built['seconds']} s; timing {rounds} rounds")
    return built, asyncio.run(_measure_pages(url, shops, rounds))


def main(argv: list[str] | None = None) -> None:
    """Run at the given size and print the table and the JSON."""
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.console_pages", description=__doc__.splitlines()[0])
    parser.add_argument("--shops", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--db", help="a store URL (default: a fresh SQLite file in a temporary folder)")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        built, pages = measure(Path(folder), arguments.shops, arguments.rounds, arguments.db)
    table = Table(title=f"Console pages, {arguments.shops:,} shops ({built['events']:,} events)", title_justify="left")
    for column in ("page", "p50 ms", "p99 ms", "max ms", f"< {TARGET_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for result in pages:
        table.add_row(
            result.page,
            f"{result.p50_ms}",
            f"{result.p99_ms}",
            f"{result.max_ms}",
            "met" if result.p99_ms < TARGET_MS else "missed",
        )
    Console().print(table)
    print(json.dumps({"shops": arguments.shops, "build": built, "pages": [asdict(result) for result in pages]}))


if __name__ == "__main__":
    main()
