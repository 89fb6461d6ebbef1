"""Journals: deposit commands as lines of a file, imported in order and exported back.

A journal holds one operation per line: a JSON object per line (``jsonl``) or a
CSV row under a header row (``csv``). Fields are named like the command line's:
``op`` (any write command: ``open``, ``pay``, ``deduct``, ``hold``, ``release``,
``appeal``, ``resolve-appeal``, ``categories``, ``apply-policy``,
``refund-excess``, ``close``, ``refund``, ``force-close``, ``write-off``), ``shop``, ``at``
(ISO-8601 with a zone; required in a journal), ``actor``, and the command's own
options: ``currency``, ``required``, ``site``, ``category``, ``amount``,
``order_value``, ``channel``, ``ref``, ``payer``, ``channel_time``, ``reason``, ``case``, ``add``,
``remove``, ``note``, and ``outcome`` (``upheld`` or ``rejected``: the
``--upheld``/``--rejected`` flags of ``resolve-appeal``). ``category``, ``add``
and ``remove`` may name several categories, separated by commas (or, in JSON, as
an array). An empty CSV cell or a JSON ``null`` is a field left out; amounts may
be JSON numbers (read exactly, never as floats) or strings.

**Import** applies the lines in file order, many per transaction
(:meth:`DepositLedger.batch`): the deposits a batch names are looked up
together and loaded once, each line runs the very command the command line
runs, and a line that is malformed or refused leaves no trace. It is reported
with its line number and the reason, and the other lines go on.

**Idempotency.** Every operation is recognised by a natural key, so importing a
journal again, or again after a run was killed half way, applies nothing twice:

- ``pay``: channel and ``ref``; ``deduct``, ``hold``, ``release``,
  ``resolve-appeal``, ``write-off``: ``case``. As on the command line, the same line again is a
  duplicate and one with other figures a conflict (rejected).
- ``appeal``: ``case``; a case is appealed once, so a repeat is a duplicate even
  after the appeal was resolved.
- ``open``: the shop. A repeat is a duplicate when the deposit was opened at the
  same effective time with the same site and categories (and the same currency
  and required amount, where the line gives them); otherwise it is refused (the
  shop already has a deposit).
- ``close``, ``refund``, ``force-close``, ``refund-excess``, ``categories``,
  ``apply-policy``: the shop and the effective time. A repeat is a duplicate when
  the deposit's history already holds the event the line records
  (``ClosureRequested``, ``Refunded``, ``Forfeited`` with the same reason,
  ``ExcessRefunded``, ``RequirementChanged`` agreeing with the line) at that same
  effective time, even if later lines have moved the deposit on since; otherwise
  the command's own answer stands (a ``categories`` or ``apply-policy`` line that
  changes nothing is a duplicate already).

A line rejected on the first run is tried again on the next; it may succeed if
the store changed meanwhile (a ``pay`` placed before its shop's ``open`` line, say).

**Export** writes the store back as a journal: one line per original command in
the order the commands were recorded (a payment's ``Paid``, ``Frozen`` and any
debt-settling ``Deducted`` are one ``pay`` line; the holds a forced closure
releases belong to its ``force-close``). Importing it into an empty store
reproduces the same balances and histories, recording times aside, provided
the importing ledger runs the same deposit policy: lines the policy priced or
derived (a deduction by the catalogue, a requirement from categories, a
closure's settlement window) are priced again on import.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Literal
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from pydantic import BaseModel, ConfigDict

from domain import (
    AppealFiled,
    AppealRejected,
    ClosureRequested,
    Deducted,
    DeductionReversed,
    DepositEvent,
    ExcessRefunded,
    Forfeited,
    Frozen,
    HoldPlaced,
    HoldReleased,
    InvariantBroken,
    LedgerError,
    MalformedInput,
    Opened,
    Paid,
    Phase,
    Refunded,
    Refused,
    RequirementChanged,
    ShopNotFound,
    WrittenOff,
)
from domain.deposit import FORCED_CLOSURE_RELEASE
from domain.money import format_minor, normalise_currency, to_minor
from domain.reconciliation import RECONCILIATION_TYPES
from ledger.app.parse import parse_category, parse_shop_id, parse_time
from ledger.app.service import CommandResult, DepositLedger
from ledger.app.unit_of_work import MAX_ATTEMPTS, ConcurrencyExhausted
from ledger.views.collector import collect_young, collector_paused
from projections.view import stored_time

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
    "category",
    "amount",
    "order_value",
    "channel",
    "ref",
    "payer",
    "channel_time",
    "reason",
    "case",
    "outcome",
    "add",
    "remove",
    "note",
)
"""Every field a journal line may have, in the order an export writes them."""

_ENVELOPE = ("op", "shop", "at", "actor")
_AMOUNTS = frozenset({"amount", "required", "order_value"})
_LISTS = frozenset({"category", "add", "remove"})
_OUTCOMES = {"upheld": True, "rejected": False}

IMPORT_BATCH_LINES = 10_000
"""Lines applied per transaction: large enough that a shop's lines close together in the
file share one commit (each deposit's index and view pages written once, not once per
line: 2,000 lines a batch imported a million events a fifth slower), small enough that
a batch's deposits stay some tens of megabytes of memory."""

MAX_LINE_CHARS = 16_384
"""A longer line is rejected without being parsed: no field of any operation comes near it."""

EXPORT_PAGE = 5_000
"""Events read from the store at a time while exporting."""


READ_BLOCK_BYTES = 1 << 20
"""Bytes read at a time while checking a journal's encoding."""

# ---------------------------------------------------------------- the lines


def check_readable(path: Path) -> int:
    """Check that the journal at ``path`` is UTF-8 throughout, before any line is applied; return its line count.

    ``MalformedInput`` names the first line (and its byte in the file) that is not:
    an import applies a whole journal's lines or, when the file cannot be read,
    none of them. One pass over the bytes, a block at a time (memory stays flat).
    """
    line = 1  # the line the next byte belongs to
    offset = 0  # the file offset of ``pending[0]``
    pending = b""
    with path.open("rb") as raw:
        while True:
            block = raw.read(READ_BLOCK_BYTES)
            data = pending + block if pending else block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            if cut == 0 and len(data) > READ_BLOCK_BYTES:
                cut = _character_start(data, len(data) - 1)  # a very long line: check it in parts
            checked, pending = data[:cut], data[cut:]
            try:
                checked.decode("utf-8")
            except UnicodeDecodeError as error:
                where = line + checked.count(b"\n", 0, error.start)
                raise MalformedInput(
                    f"journal {path} is not UTF-8: line {where} (byte offset {offset + error.start}), "
                    "nothing was applied"
                ) from None
            line += checked.count(b"\n")
            offset += cut
            if not block:
                return line - 1 if data.endswith(b"\n") or not data else line


def _character_start(data: bytes, index: int) -> int:
    # Back to the first byte of the character at ``index``: UTF-8 continuation bytes are 0b10xxxxxx.
    for _ in range(3):
        if index > 0 and data[index] & 0xC0 == 0x80:
            index -= 1
    return index


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
                record = json.loads(raw, parse_float=_NumberText)
            except ValueError as error:
                yield JournalLine(number, raw, {}, f"not JSON: {error}")
                continue
            yield _record_line(number, raw, record)

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


def json_array_lines(text: str | bytes) -> list[JournalLine]:
    """The lines of a journal given as one JSON array of objects, numbered from 1.

    Each object is read as a line of a JSON-lines journal is: numbers as written
    (``2e-1`` is refused as an amount, as in a file), fields of the wrong type
    named. ``MalformedInput`` when the text is not a JSON array.
    """
    try:
        records = json.loads(text, parse_float=_NumberText)
    except ValueError as error:
        raise MalformedInput(f"the journal is not JSON: {error}") from None
    if not isinstance(records, list):
        raise MalformedInput("the journal must be a JSON array of lines")
    return [
        _record_line(number, json.dumps(record, ensure_ascii=False), record)
        for number, record in enumerate(records, start=1)
    ]


def _record_line(number: int, raw: str, record: object) -> JournalLine:
    if not isinstance(record, dict):
        return JournalLine(number, raw, {}, "not a JSON object")
    fields, problem = _json_fields(record)
    return JournalLine(number, raw, fields, problem)


class _NumberText(str):
    """A JSON number with a fraction or an exponent, exactly as the line writes it.

    Kept as text, so that an amount is judged as written: ``2e-1`` is refused like the
    string ``"2e-1"``, where a ``Decimal`` would have turned it into ``0.2``.
    """


def _json_fields(record: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    fields: dict[str, str] = {}
    for key, value in record.items():
        if value is None:
            continue
        if isinstance(value, str) and not isinstance(value, _NumberText):
            fields[key] = value
        elif key in _AMOUNTS and isinstance(value, int | _NumberText) and not isinstance(value, bool):
            fields[key] = str(value)
        elif key in _LISTS and isinstance(value, list) and all(isinstance(item, str) for item in value):
            fields[key] = ",".join(value)
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

    @property
    def fields(self) -> frozenset[str]:
        """Every field a line of this operation may have."""
        return frozenset((*_ENVELOPE, *self.required, *self.optional))


def _names(fields: Mapping[str, str], field: str) -> list[str]:
    # A list field: categories separated by commas.
    return [name.strip() for name in fields.get(field, "").split(",") if name.strip()]


def _opened_alike(fields: Mapping[str, str], event: DepositEvent) -> bool:
    if not isinstance(event, Opened) or event.effective_at != parse_time(fields["at"]):
        return False
    site = fields.get("site")
    same = (
        event.site == (site.strip().upper() if site is not None else None)
        and event.categories == tuple(sorted({parse_category(name) for name in _names(fields, "category")}))
        and ("currency" not in fields or event.currency == normalise_currency(fields["currency"]))
    )
    if "required" in fields:
        return same and event.required_minor == to_minor(fields["required"], event.currency)
    return same and event.policy_version is not None


def _recorded(event_type: type[DepositEvent]) -> Repeats:
    def repeats(fields: Mapping[str, str], event: DepositEvent) -> bool:
        return isinstance(event, event_type) and event.effective_at == parse_time(fields["at"])

    return repeats


def _forfeited_alike(fields: Mapping[str, str], event: DepositEvent) -> bool:
    return _recorded(Forfeited)(fields, event) and isinstance(event, Forfeited) and event.reason == fields["reason"]


def _categories_alike(fields: Mapping[str, str], event: DepositEvent) -> bool:
    if not _recorded(RequirementChanged)(fields, event) or not isinstance(event, RequirementChanged):
        return False
    added = {parse_category(name) for name in _names(fields, "add")}
    removed = {parse_category(name) for name in _names(fields, "remove")}
    return added <= set(event.categories) and not removed & set(event.categories)


def _appealed(fields: Mapping[str, str], event: DepositEvent) -> bool:
    return isinstance(event, AppealFiled) and event.case_id == fields["case"]


def _outcome(fields: Mapping[str, str]) -> bool:
    try:
        return _OUTCOMES[fields["outcome"].strip().lower()]
    except KeyError:
        raise MalformedInput(f"unknown outcome {fields['outcome']!r}: expected upheld or rejected") from None


OPERATIONS: dict[str, Operation] = {
    "open": Operation(
        required=(),
        optional=("currency", "required", "site", "category"),
        run=lambda ledger, f: ledger.open(
            f["shop"],
            currency=f.get("currency"),
            required=f.get("required"),
            site=f.get("site"),
            categories=_names(f, "category"),
            at=f["at"],
            actor=f.get("actor"),
        ),
        repeats=_opened_alike,
    ),
    "pay": Operation(
        required=("amount", "channel", "ref"),
        optional=("payer", "channel_time"),
        run=lambda ledger, f: ledger.pay(
            f["shop"],
            f["amount"],
            channel=f["channel"],
            ref=f["ref"],
            payer=f.get("payer"),
            at=f["at"],
            actor=f.get("actor"),
            channel_time=f.get("channel_time"),
        ),
    ),
    "deduct": Operation(
        required=("reason", "case"),
        optional=("amount", "order_value", "note"),
        run=lambda ledger, f: ledger.deduct(
            f["shop"],
            f.get("amount"),
            reason=f["reason"],
            case=f["case"],
            note=f.get("note", ""),
            order_value=f.get("order_value"),
            at=f["at"],
            actor=f.get("actor"),
        ),
    ),
    "hold": Operation(
        required=("amount", "case"),
        optional=("note",),
        run=lambda ledger, f: ledger.hold(
            f["shop"], f["amount"], case=f["case"], note=f.get("note", ""), at=f["at"], actor=f.get("actor")
        ),
    ),
    "release": Operation(
        required=("case",),
        optional=("note",),
        run=lambda ledger, f: ledger.release(
            f["shop"], case=f["case"], note=f.get("note", ""), at=f["at"], actor=f.get("actor")
        ),
    ),
    "appeal": Operation(
        required=("case",),
        optional=("note",),
        run=lambda ledger, f: ledger.appeal(
            f["shop"], case=f["case"], note=f.get("note", ""), at=f["at"], actor=f.get("actor")
        ),
        repeats=_appealed,
    ),
    "resolve-appeal": Operation(
        required=("case", "outcome"),
        optional=("note",),
        run=lambda ledger, f: ledger.resolve_appeal(
            f["shop"], case=f["case"], upheld=_outcome(f), note=f.get("note", ""), at=f["at"], actor=f.get("actor")
        ),
    ),
    "categories": Operation(
        required=(),
        optional=("add", "remove"),
        run=lambda ledger, f: ledger.change_categories(
            f["shop"], add=_names(f, "add"), remove=_names(f, "remove"), at=f["at"], actor=f.get("actor")
        ),
        repeats=_categories_alike,
    ),
    "apply-policy": Operation(
        required=(),
        optional=(),
        run=lambda ledger, f: ledger.apply_policy(f["shop"], at=f["at"], actor=f.get("actor")),
        repeats=_recorded(RequirementChanged),
    ),
    "refund-excess": Operation(
        required=(),
        optional=(),
        run=lambda ledger, f: ledger.refund_excess(f["shop"], at=f["at"], actor=f.get("actor")),
        repeats=_recorded(ExcessRefunded),
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
    "write-off": Operation(
        required=("case", "reason"),
        optional=(),
        run=lambda ledger, f: ledger.write_off(
            f["shop"], case=f["case"], reason=f["reason"], at=f["at"], actor=f.get("actor")
        ),
    ),
}
"""Every operation a journal may hold, by its ``op``: the command line's write commands."""

_KNOWN_FIELDS = frozenset(FIELDS)
_ALLOWED = {operation: operation.fields for operation in OPERATIONS.values()}


def _operation(fields: Mapping[str, str]) -> Operation:
    # The line's shape, before any command sees it: one clear reason per mistake.
    if not _KNOWN_FIELDS.issuperset(fields):
        raise MalformedInput(f"unknown field {sorted(set(fields) - _KNOWN_FIELDS)[0]!r}")
    name = fields.get("op")
    if name is None:
        raise MalformedInput("missing field 'op'")
    operation = OPERATIONS.get(name.strip().lower())
    if operation is None:
        raise MalformedInput(f"unknown op {name!r}: expected one of {', '.join(OPERATIONS)}")
    for field in ("shop", "at", *operation.required):
        if field not in fields:
            raise MalformedInput(f"{name} needs the field {field!r}")
    if not _ALLOWED[operation].issuperset(fields):
        extra = [field for field in FIELDS if field in fields and field not in _ALLOWED[operation]]
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
    error: LedgerError | None = None
    """What refused a rejected line, when the ledger did (a malformed line's shape says nothing more)."""


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
    if batch_lines < 1:
        raise InvariantBroken(f"an import applies at least one line a batch, not {batch_lines}")
    started = time.perf_counter()
    counts = {"applied": 0, "duplicate": 0, "rejected": 0}
    events = done = 0
    remaining = iter(lines)
    with collector_paused():
        while chunk := list(islice(remaining, batch_lines)):
            results, recorded = _apply_batch(ledger, chunk)
            events += recorded
            for result in results:
                counts[result.outcome] += 1
                if result.outcome == "rejected" and on_reject is not None:
                    on_reject(result)
            done += len(chunk)
            del chunk, results  # gone before the collection: only what survives the batch is walked
            collect_young()
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
        return LineResult(line, "rejected", " ".join(str(error).split()), error)
    return LineResult(line, "duplicate" if result.duplicate else "applied")


def apply_line(ledger: DepositLedger, line: JournalLine) -> LineResult:
    """Decide one journal line as ``import`` does (inside the caller's :meth:`DepositLedger.batch`, if any)."""
    return _apply_line(ledger, line)


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
    commands = _Commands()
    count = 0
    # Streamed: the log is read a page at a time, and None marks its end for the last command.
    for event in chain(_events_in_order(ledger), [None]):
        for fields in commands.feed(event):
            if writer is not None:
                writer.writerow(fields)
            else:
                out.write(json.dumps(fields, ensure_ascii=False) + "\n")
            count += 1
    return count


class _Commands:
    """Turns the event log back into commands, one journal line each.

    A command's events are contiguous in the log and share one stamp (effective
    time, recording time, actor), so events are gathered by deposit and stamp,
    and each gathering is read as a sequence of commands: every command starts
    with an event of its own, followed by the events it caused.
    """

    def __init__(self) -> None:
        self._shops: dict[UUID, str] = {}
        self._phases: dict[UUID, Phase] = {}
        self._categories: dict[UUID, tuple[str, ...]] = {}
        self._gathered: list[DepositEvent] = []

    def feed(self, event: DepositEvent | None) -> list[dict[str, str]]:
        """Take the next event (None at the end); return the lines of the commands now complete."""
        gathered = self._gathered
        if gathered and event is not None and _same_command_stamp(gathered[-1], event):
            gathered.append(event)
            return []
        lines = self._lines(gathered) if gathered else []
        self._gathered = [event] if event is not None else []
        return lines

    def _lines(self, events: list[DepositEvent]) -> list[dict[str, str]]:
        lines: list[dict[str, str]] = []
        start = 0
        while start < len(events):
            command = events[start]
            if isinstance(command, Opened):
                self._shops[command.originator_id] = command.shop_id
            phase = self._phases.get(command.originator_id, Phase.OPEN)
            end = start + 1
            while end < len(events) and _caused(command, events[end], phase):
                end += 1
            line = self._line(command, phase)
            for event in events[start:end]:
                self._follow(event)
            if line is not None:
                lines.append(line)
            start = end
        return lines

    def _follow(self, event: DepositEvent) -> None:
        # What reading later commands needs: each deposit's phase and categories.
        deposit = event.originator_id
        if isinstance(event, Opened):
            self._phases[deposit] = Phase.OPEN
            self._categories[deposit] = event.categories
        elif isinstance(event, ClosureRequested):
            self._phases[deposit] = Phase.CLOSING
        elif isinstance(event, Refunded):
            self._phases[deposit] = Phase.CLOSED
        elif isinstance(event, Forfeited):
            self._phases[deposit] = Phase.FORFEITED
        elif isinstance(event, RequirementChanged):
            self._categories[deposit] = event.categories

    def _line(self, event: DepositEvent, phase: Phase) -> dict[str, str] | None:
        shop_id = self._shops[event.originator_id]
        line = {"op": "", "shop": shop_id, "at": stored_time(event.effective_at), "actor": event.actor}
        if isinstance(event, Opened):
            line.update(op="open")
            if event.policy_version is None:
                line.update(currency=event.currency, required=format_minor(event.required_minor, event.currency))
            if event.site is not None:
                line["site"] = event.site
            if event.categories:
                line["category"] = ",".join(event.categories)
        elif isinstance(event, Paid):
            line.update(
                op="pay",
                amount=format_minor(event.amount_minor, event.currency),
                channel=event.channel.value,
                ref=event.trade_no,
            )
            if event.payer is not None:
                line["payer"] = event.payer
            if event.channel_time is not None:
                line["channel_time"] = stored_time(event.channel_time)
        elif isinstance(event, Deducted):
            line.update(op="deduct", reason=event.reason.value, case=event.case_id)
            if event.rule is None:
                line["amount"] = format_minor(event.amount_collected_minor + event.amount_owed_minor, event.currency)
            elif event.order_value_minor is not None:
                line["order_value"] = format_minor(event.order_value_minor, event.currency)
        elif isinstance(event, HoldPlaced):
            line.update(op="hold", amount=format_minor(event.amount_minor, event.currency), case=event.case_id)
        elif isinstance(event, HoldReleased):
            if event.note == FORCED_CLOSURE_RELEASE:
                return None  # the forced closure that follows releases it again
            line.update(op="release", case=event.case_id)
        elif isinstance(event, AppealFiled):
            line.update(op="appeal", case=event.case_id)
        elif isinstance(event, AppealRejected | DeductionReversed):
            outcome = "upheld" if isinstance(event, DeductionReversed) else "rejected"
            line.update(op="resolve-appeal", case=event.case_id, outcome=outcome)
        elif isinstance(event, RequirementChanged):
            before, after = set(self._categories[event.originator_id]), set(event.categories)
            if before == after:
                line["op"] = "apply-policy"
            else:
                line["op"] = "categories"
                if after - before:
                    line["add"] = ",".join(sorted(after - before))
                if before - after:
                    line["remove"] = ",".join(sorted(before - after))
        elif isinstance(event, ClosureRequested):
            line["op"] = "close"
        elif isinstance(event, Refunded):
            line["op"] = "refund"
        elif isinstance(event, ExcessRefunded):
            line["op"] = "refund-excess"
        elif isinstance(event, Forfeited):
            line.update(op="force-close", reason=event.reason)
        elif isinstance(event, WrittenOff):
            line.update(op="write-off", case=event.case_id, reason=event.reason)
        else:
            # Never skip silently: an export that dropped events would not import back the same.
            raise AssertionError(f"the journal does not know {event.type_name} as the start of a command")
        note = getattr(event, "note", "")
        if note:
            line["note"] = note
        return {field: line[field] for field in FIELDS if field in line}


def _same_command_stamp(before: DepositEvent, after: DepositEvent) -> bool:
    return (
        after.originator_id == before.originator_id
        and after.originator_version == before.originator_version + 1
        and after.effective_at == before.effective_at
        and after.recorded_at == before.recorded_at
        and after.actor == before.actor
    )


def _caused(command: DepositEvent, event: DepositEvent, phase: Phase) -> bool:
    # Whether ``event``, recorded after ``command`` under the same stamp, is part of that command.
    if isinstance(event, Frozen) or (isinstance(event, Deducted) and event.settles_debt):
        return True
    if isinstance(command, Deducted) and isinstance(event, HoldReleased):
        return event.case_id == command.case_id
    if isinstance(command, DeductionReversed):
        return (isinstance(event, Refunded) and phase is Phase.CLOSED) or (
            isinstance(event, Forfeited) and phase is Phase.FORFEITED
        )
    return False


def _events_in_order(ledger: DepositLedger) -> Iterator[DepositEvent]:
    position = 0
    while True:
        page = ledger.recorder.select_notifications(start=position, limit=EXPORT_PAGE, inclusive_of_start=False)
        for notification in page:
            if notification.topic in RECONCILIATION_TYPES:
                continue  # a reconciliation's outcome, not a command on a deposit
            event = ledger.mapper.to_domain_event(notification)
            if not isinstance(event, DepositEvent):
                raise InvariantBroken(f"position {notification.id} holds {type(event).__name__}")
            yield event
        if len(page) < EXPORT_PAGE:
            return
        position = page[-1].id
