"""Journals: deposit commands as lines of a file, imported in order and exported back.

A journal holds one operation per line: a JSON object per line (``jsonl``) or a
CSV row under a header row (``csv``). Fields are named like the command line's:
``op`` (``open``, ``pay``, ``deduct``, ``close``, ``refund``, ``force-close``),
``shop``, ``at`` (ISO-8601 with a zone; required in a journal), ``actor``, and the
command's own options: ``currency``, ``required``, ``site``, ``amount``,
``channel``, ``ref``, ``payer``, ``reason``, ``case``, ``note``. An empty CSV cell
or a JSON ``null`` is a field left out; amounts may be JSON numbers (read
exactly, never as floats) or strings.

**Import** applies the lines in file order, many per transaction
(:meth:`DepositLedger.batch`): each deposit of a batch is loaded once, each line
runs the very command the command line runs, and a line that is malformed or
refused leaves no trace. It is reported with its line number and the reason,
and the other lines go on.

**Idempotency.** Every operation is recognised by a natural key, so importing a
journal again, or again after a run was killed half way, applies nothing twice:

- ``pay``: channel and ``ref``; ``deduct``: ``case``. As on the command line, the
  same figures again are a duplicate and other figures a conflict (rejected).
- ``open``: the shop. A repeat is a duplicate when the deposit was opened at the
  same effective time with the same currency, required amount and site;
  otherwise it is refused (the shop already has a deposit).
- ``close``, ``refund``, ``force-close``: the shop and the effective time. A
  repeat is a duplicate when the deposit's history already holds the event the
  line records (``ClosureRequested``, ``Refunded``, or ``Forfeited`` with the same
  reason) at that same effective time, even if later lines have moved the
  deposit on since; otherwise the usual refusal stands.

A line rejected on the first run is tried again on the next; it may succeed if
the store changed meanwhile (a ``pay`` placed before its shop's ``open`` line, say).

**Export** writes the store back as a journal: one line per original command in
the order the commands were recorded (a payment's ``Paid``, ``Frozen`` and any
debt-settling ``Deducted`` are one ``pay`` line). Importing it into an empty store
reproduces the same balances and histories, recording times aside; ``close``
lines take the settlement window of the importing ledger.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from typing import IO, Any, Literal
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from pydantic import BaseModel, ConfigDict

from domain import (
    ClosureRequested,
    Deducted,
    DepositEvent,
    Forfeited,
    Frozen,
    LedgerError,
    MalformedInput,
    Opened,
    Paid,
    Refunded,
    Refused,
    ShopNotFound,
)
from domain.money import format_minor, normalise_currency, to_minor
from ledger.application import (
    MAX_ATTEMPTS,
    CommandResult,
    ConcurrencyExhausted,
    DepositLedger,
    parse_shop_id,
    parse_time,
)

JournalFormat = Literal["jsonl", "csv"]
JOURNAL_FORMATS: tuple[JournalFormat, ...] = ("jsonl", "csv")

FIELDS = (
    "op",
    "shop",
    "at",
    "actor",
    "currency",
    "required",
    "site",
    "amount",
    "channel",
    "ref",
    "payer",
    "reason",
    "case",
    "note",
)
"""Every field a journal line may have, in the order an export writes them."""

_ENVELOPE = ("op", "shop", "at", "actor")
_AMOUNTS = frozenset({"amount", "required"})

IMPORT_BATCH_LINES = 2_000
"""Lines applied per transaction: large enough to spread a commit over thousands of
events, small enough that a batch's deposits stay a few megabytes of memory."""

MAX_LINE_CHARS = 16_384
"""A longer line is rejected unread: no field of any operation comes near it."""

EXPORT_PAGE = 5_000
"""Events read from the store at a time while exporting."""


# ---------------------------------------------------------------- the lines


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One line of a journal as read: its number, its text or cells, and its fields or what is wrong."""

    number: int
    raw: str | list[str]
    fields: Mapping[str, str]
    error: str | None = None


class JournalReader:
    """The lines of a journal, read one at a time; a CSV journal's header is checked at once."""

    def __init__(self, source: IO[str], file_format: JournalFormat) -> None:
        """Read ``source`` as ``file_format``; ``MalformedInput`` for a CSV header naming unknown columns."""
        self.file_format = file_format
        self._source = source
        self.header: list[str] = []
        if file_format == "csv":
            self._csv = csv.reader(source)
            self.header = self._read_header()

    def __iter__(self) -> Iterator[JournalLine]:
        """Every line that is not blank, in file order."""
        return self._csv_lines() if self.file_format == "csv" else self._jsonl_lines()

    def _jsonl_lines(self) -> Iterator[JournalLine]:
        for number, text in enumerate(self._source, start=1):
            raw = text.rstrip("\r\n")
            if not raw.strip():
                continue
            if len(raw) > MAX_LINE_CHARS:
                yield JournalLine(number, raw[:200], {}, f"line longer than {MAX_LINE_CHARS} characters")
                continue
            try:
                record = json.loads(raw, parse_float=Decimal)
            except ValueError as error:
                yield JournalLine(number, raw, {}, f"not JSON: {error}")
                continue
            if not isinstance(record, dict):
                yield JournalLine(number, raw, {}, "not a JSON object")
                continue
            fields, problem = _json_fields(record)
            yield JournalLine(number, raw, fields, problem)

    def _read_header(self) -> list[str]:
        header = [name.strip() for name in next(self._csv, [])]
        if not header:
            return header
        unknown = [name for name in header if name not in FIELDS]
        if unknown or len(set(header)) != len(header):
            problem = f"unknown column(s) {', '.join(unknown)}" if unknown else "a column named twice"
            raise MalformedInput(f"CSV journal header has {problem}: expected columns among {', '.join(FIELDS)}")
        if not {"op", "shop", "at"} <= set(header):
            raise MalformedInput("CSV journal header must name the columns op, shop and at")
        return header

    def _csv_lines(self) -> Iterator[JournalLine]:
        header = self.header
        last_line = self._csv.line_num
        for row in self._csv:
            # A quoted cell may span lines: a row is numbered by the line it starts on.
            number, last_line = last_line + 1, self._csv.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield JournalLine(number, row, {}, f"has {len(row)} cells, the header has {len(header)}")
            elif sum(len(cell) for cell in row) > MAX_LINE_CHARS:
                yield JournalLine(number, row, {}, f"line longer than {MAX_LINE_CHARS} characters")
            else:
                yield JournalLine(number, row, {name: cell for name, cell in zip(header, row, strict=True) if cell})


def _json_fields(record: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    fields: dict[str, str] = {}
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, str):
            fields[key] = value
        elif key in _AMOUNTS and isinstance(value, int | Decimal) and not isinstance(value, bool):
            fields[key] = str(value)
        else:
            return fields, f"field {key!r} must be a string"
    return fields, None


# ---------------------------------------------------------------- operations

Run = Callable[[DepositLedger, Mapping[str, str]], CommandResult]
Repeats = Callable[[Mapping[str, str], DepositEvent], bool]


@dataclass(frozen=True)
class Operation:
    """One kind of journal line: its fields, the command it runs, and how a repeat of it is recognised."""

    required: tuple[str, ...]
    optional: tuple[str, ...]
    run: Run
    repeats: Repeats | None = None
    """For operations without a key of their own: whether a history event is what the line records."""


def _opened_alike(fields: Mapping[str, str], event: DepositEvent) -> bool:
    if not isinstance(event, Opened) or event.effective_at != parse_time(fields["at"]):
        return False
    currency = normalise_currency(fields["currency"])
    site = fields.get("site")
    return (
        event.currency == currency
        and event.required_minor == to_minor(fields["required"], currency)
        and event.site == (site.strip().upper() if site is not None else None)
    )


def _recorded(event_type: type[DepositEvent]) -> Repeats:
    def repeats(fields: Mapping[str, str], event: DepositEvent) -> bool:
        return isinstance(event, event_type) and event.effective_at == parse_time(fields["at"])

    return repeats


def _forfeited_alike(fields: Mapping[str, str], event: DepositEvent) -> bool:
    return (
        isinstance(event, Forfeited)
        and event.effective_at == parse_time(fields["at"])
        and event.reason == fields["reason"]
    )


OPERATIONS: dict[str, Operation] = {
    "open": Operation(
        required=("currency", "required"),
        optional=("site",),
        run=lambda ledger, f: ledger.open(
            f["shop"],
            currency=f["currency"],
            required=f["required"],
            site=f.get("site"),
            at=f["at"],
            actor=f.get("actor"),
        ),
        repeats=_opened_alike,
    ),
    "pay": Operation(
        required=("amount", "channel", "ref"),
        optional=("payer",),
        run=lambda ledger, f: ledger.pay(
            f["shop"],
            f["amount"],
            channel=f["channel"],
            ref=f["ref"],
            payer=f.get("payer"),
            at=f["at"],
            actor=f.get("actor"),
        ),
    ),
    "deduct": Operation(
        required=("amount", "reason", "case"),
        optional=("note",),
        run=lambda ledger, f: ledger.deduct(
            f["shop"],
            f["amount"],
            reason=f["reason"],
            case=f["case"],
            note=f.get("note", ""),
            at=f["at"],
            actor=f.get("actor"),
        ),
    ),
    "close": Operation(
        required=(),
        optional=(),
        run=lambda ledger, f: ledger.close_shop(f["shop"], at=f["at"], actor=f.get("actor")),
        repeats=_recorded(ClosureRequested),
    ),
    "refund": Operation(
        required=(),
        optional=(),
        run=lambda ledger, f: ledger.refund(f["shop"], at=f["at"], actor=f.get("actor")),
        repeats=_recorded(Refunded),
    ),
    "force-close": Operation(
        required=("reason",),
        optional=(),
        run=lambda ledger, f: ledger.force_close(f["shop"], reason=f["reason"], at=f["at"], actor=f.get("actor")),
        repeats=_forfeited_alike,
    ),
}
"""Every operation a journal may hold, by its ``op``: the command line's commands."""


def _operation(fields: Mapping[str, str]) -> Operation:
    # The line's shape, before any command sees it: one clear reason per mistake.
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise MalformedInput(f"unknown field {unknown[0]!r}")
    name = fields.get("op")
    if name is None:
        raise MalformedInput("missing field 'op'")
    operation = OPERATIONS.get(name.strip().lower())
    if operation is None:
        raise MalformedInput(f"unknown op {name!r}: expected one of {', '.join(OPERATIONS)}")
    for field in ("shop", "at", *operation.required):
        if field not in fields:
            raise MalformedInput(f"{name} needs the field {field!r}")
    allowed = {*_ENVELOPE, *operation.required, *operation.optional}
    extra = [field for field in FIELDS if field in fields and field not in allowed]
    if extra:
        raise MalformedInput(f"field {extra[0]!r} does not apply to {name}")
    return operation


# ---------------------------------------------------------------- import


Outcome = Literal["applied", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class LineResult:
    """What became of one line."""

    line: JournalLine
    outcome: Outcome
    reason: str | None = None


class ImportSummary(BaseModel):
    """The counts an import reports at the end."""

    model_config = ConfigDict(frozen=True)

    lines: int
    """Operations read (blank lines are not counted)."""
    applied: int
    duplicates: int
    rejected: int
    events: int
    """Events recorded by the applied lines."""
    seconds: float


class Rejects:
    """Where rejected lines go: each with its line number and reason, beside the line as it was.

    JSONL: one object ``{"line", "reason", "input"}`` per line, ``input`` being the
    line's text. CSV: the columns ``line`` and ``reason``, then the journal's own.
    """

    def __init__(self, out: IO[str], reader: JournalReader) -> None:
        """Write to ``out`` in the format of ``reader``'s journal."""
        self._out = out
        self._csv = None
        if reader.file_format == "csv":
            self._csv = csv.writer(out)
            self._csv.writerow(["line", "reason", *reader.header])

    def write(self, result: LineResult) -> None:
        """Write one rejected line."""
        raw = result.line.raw
        if self._csv is not None:
            self._csv.writerow([result.line.number, result.reason, *(raw if isinstance(raw, list) else [raw])])
        else:
            record = {"line": result.line.number, "reason": result.reason, "input": raw}
            self._out.write(json.dumps(record, ensure_ascii=False) + "\n")


def import_journal(
    ledger: DepositLedger,
    lines: Iterable[JournalLine],
    *,
    on_reject: Callable[[LineResult], None] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_lines: int = IMPORT_BATCH_LINES,
) -> ImportSummary:
    """Apply a journal's lines (a :class:`JournalReader`) in file order; return the counts.

    ``on_reject`` is called for each rejected line once its batch is saved;
    ``progress`` with the number of lines done after each batch.
    """
    assert batch_lines >= 1
    started = time.perf_counter()
    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    events = done = 0
    remaining = iter(lines)
    while chunk := list(islice(remaining, batch_lines)):
        results, recorded = _apply_batch(ledger, chunk)
        events += recorded
        for result in results:
            counts[result.outcome] += 1
            if result.outcome == "rejected" and on_reject is not None:
                on_reject(result)
        done += len(chunk)
        if progress is not None:
            progress(done)
    return ImportSummary(
        lines=done,
        applied=counts["applied"],
        duplicates=counts["duplicate"],
        rejected=counts["rejected"],
        events=events,
        seconds=round(time.perf_counter() - started, 3),
    )


def _apply_batch(ledger: DepositLedger, chunk: list[JournalLine]) -> tuple[list[LineResult], int]:
    # One transaction; if another writer saved one of its deposits first, decide every line again.
    for _ in range(MAX_ATTEMPTS):
        try:
            with ledger.batch() as batch:
                batch.prefetch(_shops(chunk))
                results = [_apply_line(ledger, line) for line in chunk]
            return results, len(batch.events)
        except IntegrityError:
            continue
    raise ConcurrencyExhausted(f"gave up after {MAX_ATTEMPTS} conflicting writes; the last batch was not written")


def _shops(chunk: list[JournalLine]) -> Iterator[str]:
    # The shops a batch's lines name, as far as they are valid: loaded together up front.
    for line in chunk:
        shop = line.fields.get("shop")
        if line.error is None and shop is not None:
            try:
                yield parse_shop_id(shop)
            except MalformedInput:
                continue


def _apply_line(ledger: DepositLedger, line: JournalLine) -> LineResult:
    if line.error is not None:
        return LineResult(line, "rejected", line.error)
    try:
        operation = _operation(line.fields)
        fields = line.fields
        try:
            result = operation.run(ledger, fields)
        except Refused:
            if operation.repeats is not None and _already_recorded(ledger, operation.repeats, fields):
                return LineResult(line, "duplicate")
            raise
    except LedgerError as error:
        return LineResult(line, "rejected", " ".join(str(error).split()))
    return LineResult(line, "duplicate" if result.duplicate else "applied")


def _already_recorded(ledger: DepositLedger, repeats: Repeats, fields: Mapping[str, str]) -> bool:
    try:
        history = ledger.history(fields["shop"])
    except ShopNotFound:
        return False
    return any(repeats(fields, event) for event in history)


# ---------------------------------------------------------------- export


def export_journal(ledger: DepositLedger, out: IO[str], *, file_format: JournalFormat) -> int:
    """Write every command recorded in the store as a journal line, in recording order; return the count."""
    writer = csv.DictWriter(out, fieldnames=FIELDS) if file_format == "csv" else None
    if writer is not None:
        writer.writeheader()
    shops: dict[UUID, str] = {}
    count = 0
    for event in _events_in_order(ledger):
        if isinstance(event, Opened):
            shops[event.originator_id] = event.shop_id
        fields = journal_fields(event, shops[event.originator_id])
        if fields is None:
            continue
        if writer is not None:
            writer.writerow(fields)
        else:
            out.write(json.dumps(fields, ensure_ascii=False) + "\n")
        count += 1
    return count


def journal_fields(event: DepositEvent, shop_id: str) -> dict[str, str] | None:
    """The journal line of the command that recorded ``event``; None for an event that follows from another.

    ``Frozen`` and a debt-settling ``Deducted`` are part of the ``pay`` whose ``Paid`` came first.
    """
    line = {"op": "", "shop": shop_id, "at": _journal_time(event.effective_at), "actor": event.actor}
    if isinstance(event, Opened):
        line.update(op="open", currency=event.currency, required=format_minor(event.required_minor, event.currency))
        if event.site is not None:
            line["site"] = event.site
    elif isinstance(event, Paid):
        line.update(
            op="pay",
            amount=format_minor(event.amount_minor, event.currency),
            channel=event.channel.value,
            ref=event.trade_no,
        )
        if event.payer is not None:
            line["payer"] = event.payer
    elif isinstance(event, Frozen) or (isinstance(event, Deducted) and event.settles_debt):
        return None
    elif isinstance(event, Deducted):
        asked = event.amount_collected_minor + event.amount_owed_minor
        line.update(op="deduct", amount=format_minor(asked, event.currency), reason=event.reason.value)
        line["case"] = event.case_id
        if event.note:
            line["note"] = event.note
    elif isinstance(event, ClosureRequested):
        line["op"] = "close"
    elif isinstance(event, Refunded):
        line["op"] = "refund"
    elif isinstance(event, Forfeited):
        line.update(op="force-close", reason=event.reason)
    else:
        # Never skip silently: an export that dropped events would not import back the same.
        raise AssertionError(f"the journal does not know {event.type_name}")
    return {field: line[field] for field in FIELDS if field in line}


def _journal_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _events_in_order(ledger: DepositLedger) -> Iterator[DepositEvent]:
    position = 0
    while True:
        page = ledger.recorder.select_notifications(start=position, limit=EXPORT_PAGE, inclusive_of_start=False)
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            assert isinstance(event, DepositEvent), f"position {notification.id} holds {type(event).__name__}"
            yield event
        if len(page) < EXPORT_PAGE:
            return
        position = page[-1].id
