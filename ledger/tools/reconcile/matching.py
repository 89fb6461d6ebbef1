"""Matching a bill against the ledger, on disk: both sides in a working SQLite file, joined by SQL.

The rules, in order:

1. A bill line is looked up among the ledger's entries of the same kind
   (payment or refund share) by the channel's trade number; if none has it, by
   the merchant's order number (the ``--ref`` a payment was recorded with may be
   either). Several entries of one trade number (partial refunds) pair up with
   the bill's lines in order of amount.
2. Paired, the amounts must be equal to the cent, in the same currency
   (``matched``), else the pair is an ``amount_mismatch``. A bill line without
   a partner is ``missing_in_ledger`` (money the channel moved that the ledger
   never recorded), wherever in time the ledger's entry might have been.
3. A ledger entry effective on the bill's day (Beijing time) without a bill
   line is ``missing_in_channel`` - unless it lies within
   :data:`MIDNIGHT_WINDOW` of the day's start or end: the channel may have
   booked it on the neighbouring day's bill, so it is listed as
   ``near_midnight`` and does not fail the reconciliation.

Fees are summed from the bill on their own; they never enter the amounts.
Memory holds one batch of lines at a time; the rest lives in the working file,
which is deleted when the report is closed.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from eventsourcing.persistence import Mapper

from domain import Channel, MalformedInput
from ledger.store.urls import Store
from ledger.tools.reconcile.alipay import AlipayBill
from ledger.tools.reconcile.bill import BillLine, day_bounds, utc_second
from ledger.tools.reconcile.ledger_side import ledger_rows
from ledger.tools.reconcile.report import NEAR_MIDNIGHT, OUTCOMES, Entry, ReconciliationReport, Side
from ledger.tools.reconcile.wechat_pay import WeChatPayBill

MIDNIGHT_WINDOW = timedelta(minutes=10)
"""How close to midnight a ledger entry may be and still be booked on the neighbouring day's bill."""

INSERT_BATCH = 10_000
"""Rows written to the working file per statement."""

WORKING_CACHE_KIB = 32 * 1024
"""The working file's page cache: the bound on what matching keeps in memory."""


class Bill(Protocol):
    """What the matcher needs of a bill reader."""

    day: date | None
    ignored: int

    def __iter__(self) -> Iterator[BillLine]:
        """The bill's lines."""


def open_bill(channel: Channel, source: IO[bytes], day: date | None) -> Bill:
    """The reader of ``channel``'s bill format over ``source``."""
    if channel is Channel.ALIPAY:
        return AlipayBill(source, day)
    return WeChatPayBill(source, day)


class _HashingReader:
    """Reads a binary file line by line while hashing every byte: the SHA-256 of the bill as given."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for raw in self._source:
            self.sha256.update(raw)
            yield raw


@contextmanager
def reconcile_bill(
    store: Store, mapper: Mapper[Any], path: Path, channel: Channel, day: date | None = None
) -> Iterator[ReconciliationReport]:
    """Reconcile the bill at ``path`` with the ledger in ``store``; the report is valid inside the block.

    ``BillMalformed`` (a ``MalformedInput``) names the first line that cannot be read.
    """
    try:
        source = path.open("rb")
    except OSError as error:
        raise MalformedInput(f"cannot read bill {path}: {error.strerror or error}") from None
    with source, tempfile.TemporaryDirectory(prefix="reconcile-") as folder:
        work = sqlite3.connect(Path(folder) / "work.db", isolation_level=None)
        try:
            _prepare(work)
            hashing = _HashingReader(source)
            bill = open_bill(channel, hashing, day)  # type: ignore[arg-type]
            bill_side, charged, returned, lines = _load_bill(work, bill)
            for _ in hashing:  # whatever follows the table (a footer) is part of the file hashed
                pass
            if bill.day is None:
                raise MalformedInput("the bill holds no line to tell its day: give --date")
            ledger_side = _load_ledger(work, store, mapper, channel, bill.day)
            counts = _match(work, bill.day)
            yield ReconciliationReport(
                channel=channel.value,
                bill_date=bill.day,
                bill_sha256=hashing.sha256.hexdigest(),
                bill_lines=lines,
                lines_ignored=bill.ignored,
                counts=counts,
                ledger=ledger_side,
                bill=bill_side,
                fees_charged=charged,
                fees_returned=returned,
                entries=lambda outcome: _entries(work, outcome),
            )
        finally:
            work.close()


def _prepare(work: sqlite3.Connection) -> None:
    # A scratch file: nothing to recover after a crash, so no journal and no syncs.
    for pragma in (
        "journal_mode = OFF",
        "synchronous = OFF",
        f"cache_size = -{WORKING_CACHE_KIB}",
        "temp_store = FILE",
    ):
        work.execute(f"PRAGMA {pragma}")
    work.execute(
        "CREATE TABLE bill (line INTEGER PRIMARY KEY, kind TEXT, trade_no TEXT, order_no TEXT, refund_no TEXT, "
        "currency TEXT, amount INTEGER, at TEXT, key TEXT, seq INTEGER)"
    )
    work.execute(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, kind TEXT, trade_no TEXT, deposit TEXT, shop_id TEXT, "
        "currency TEXT, amount INTEGER, at TEXT, seq INTEGER)"
    )
    work.execute(
        "CREATE TABLE outcome (outcome TEXT, at TEXT, ref TEXT, kind TEXT, currency TEXT, shop_id TEXT, "
        "ledger_amount INTEGER, channel_amount INTEGER, refund_no TEXT, line INTEGER)"
    )


def _load_bill(work: sqlite3.Connection, bill: Bill) -> tuple[Side, dict[str, int], dict[str, int], int]:
    side = Side()
    charged: dict[str, int] = {}
    returned: dict[str, int] = {}
    lines = 0

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal lines
        at, at_text = None, ""
        for line in bill:
            lines += 1
            side.add(line.kind, line.currency, line.amount_minor)
            fees = charged if line.fee_minor >= 0 else returned
            fees[line.currency] = fees.get(line.currency, 0) + abs(line.fee_minor)
            if line.at is not at:  # the lines of one second share their time: formatted once
                at, at_text = line.at, utc_second(line.at)
            yield (
                line.line,
                line.kind.value,
                line.trade_no,
                line.order_no,
                line.refund_no,
                line.currency,
                line.amount_minor,
                at_text,
                line.trade_no,
            )

    _insert(
        work,
        "INSERT INTO bill (line, kind, trade_no, order_no, refund_no, currency, amount, at, key, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        rows(),
    )
    return side, charged, returned, lines


def _load_ledger(work: sqlite3.Connection, store: Store, mapper: Mapper[Any], channel: Channel, day: date) -> Side:
    # The ledger's totals of the bill's day are summed on the way in, not by a scan afterwards.
    start, end = (utc_second(moment) for moment in day_bounds(day))
    side = Side()

    def rows() -> Iterator[tuple[Any, ...]]:
        for row in ledger_rows(store, mapper, channel.value):
            if start <= row[6] < end:
                side.add(row[0], row[4], row[5])
            yield row

    _insert(
        work,
        "INSERT INTO ledger (kind, trade_no, deposit, shop_id, currency, amount, at, seq) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        rows(),
    )
    return side


def _match(work: sqlite3.Connection, day: date) -> dict[str, int]:
    start, end = day_bounds(day)
    inner_start, inner_end = utc_second(start + MIDNIGHT_WINDOW), utc_second(end - MIDNIGHT_WINDOW)
    # Every line and entry was stored keyed by its trade number, first of its key (seq 1):
    # only the keys that the order number decides, and the keys held more than once, change.
    statements = [
        "CREATE INDEX ledger_key ON ledger (kind, trade_no, amount, at, id)",
        # Rule 1: the trade number, else the merchant's order number.
        "UPDATE bill SET key = order_no WHERE order_no != '' "
        "AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.kind = bill.kind AND l.trade_no = bill.trade_no) "
        "AND EXISTS (SELECT 1 FROM ledger l WHERE l.kind = bill.kind AND l.trade_no = bill.order_no)",
        "CREATE INDEX bill_key ON bill (kind, key, amount, at, line)",
        # Rule 1 still: several lines or entries of one key pair up in order of amount.
        "UPDATE bill SET seq = numbered.seq FROM (SELECT line, "
        "row_number() OVER (PARTITION BY kind, key ORDER BY amount, at, line) AS seq FROM bill "
        "WHERE (kind, key) IN (SELECT kind, key FROM bill GROUP BY kind, key HAVING COUNT(*) > 1)) AS numbered "
        "WHERE bill.line = numbered.line",
        "UPDATE ledger SET seq = numbered.seq FROM (SELECT id, "
        "row_number() OVER (PARTITION BY kind, trade_no ORDER BY amount, at, id) AS seq FROM ledger "
        "WHERE (kind, trade_no) IN (SELECT kind, trade_no FROM ledger GROUP BY kind, trade_no HAVING COUNT(*) > 1)) "
        "AS numbered WHERE ledger.id = numbered.id",
        # Rule 2: every bill line, paired or not.
        "INSERT INTO outcome SELECT CASE WHEN l.id IS NULL THEN 'missing_in_ledger' "
        "WHEN l.amount = b.amount AND l.currency = b.currency THEN 'matched' ELSE 'amount_mismatch' END, "
        "b.at, b.key, b.kind, b.currency, l.shop_id, l.amount, b.amount, b.refund_no, b.line "
        "FROM bill b LEFT JOIN ledger l ON l.kind = b.kind AND l.trade_no = b.key AND l.seq = b.seq",
        # Rule 3: the day's ledger entries that no bill line took.
        "INSERT INTO outcome SELECT CASE WHEN l.at >= ? AND l.at < ? THEN 'missing_in_channel' ELSE ? END, "
        "l.at, l.trade_no, l.kind, l.currency, l.shop_id, l.amount, NULL, NULL, NULL "
        "FROM ledger l LEFT JOIN bill b ON b.kind = l.kind AND b.key = l.trade_no AND b.seq = l.seq "
        "WHERE b.line IS NULL AND l.at >= ? AND l.at < ?",
        "CREATE INDEX outcome_order ON outcome (outcome, at, ref, line)",
    ]
    day_range = (utc_second(start), utc_second(end))
    parameters: dict[int, tuple[Any, ...]] = {6: (inner_start, inner_end, NEAR_MIDNIGHT, *day_range)}
    for number, statement in enumerate(statements):
        work.execute(statement, parameters.get(number, ()))
    counts = dict.fromkeys((*OUTCOMES, NEAR_MIDNIGHT), 0)
    counts.update(work.execute("SELECT outcome, COUNT(*) FROM outcome GROUP BY outcome").fetchall())
    return counts


def _entries(work: sqlite3.Connection, outcome: str) -> Iterator[Entry]:
    cursor = work.execute(
        "SELECT at, ref, kind, currency, shop_id, ledger_amount, channel_amount, refund_no, line FROM outcome "
        "WHERE outcome = ? ORDER BY at, ref, line",
        (outcome,),
    )
    for at, ref, kind, currency, shop_id, ledger_amount, channel_amount, refund_no, line in cursor:
        yield Entry(
            kind=kind,
            ref=ref,
            currency=currency,
            at=at,
            shop_id=shop_id,
            ledger_amount_minor=ledger_amount,
            channel_amount_minor=channel_amount,
            refund_no=refund_no or None,
            line=line,
        )


def _insert(work: sqlite3.Connection, statement: str, rows: Iterable[tuple[Any, ...]]) -> None:
    work.execute("BEGIN")
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            work.executemany(statement, batch)
            batch.clear()
    if batch:
        work.executemany(statement, batch)
    work.execute("COMMIT")


__all__ = ["MIDNIGHT_WINDOW", "open_bill", "reconcile_bill"]
