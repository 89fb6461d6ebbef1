"""How the faces print deposits and events: JSON objects and Rich tables.

Amounts leave the ledger here, as decimal strings in major units with the
currency's own digits (``"1700.00"``, ``"70000"`` for JPY); field names lose
their ``_minor`` suffix on the way out.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from domain import DepositEvent, DepositPolicy, DepositState, PolicyHistory, Refused, listed_figures
from domain.events import event_fields
from domain.money import format_minor
from domain.reconciliation import BillReconciled
from ledger.tools.audit import VerifyReport
from ledger.tools.journal import ImportSummary
from ledger.tools.reconcile.report import DISCREPANCIES, NEAR_MIDNIGHT, OUTCOMES, ReconciliationReport
from ledger.views.runner import ViewStatus
from ledger.views.workers import WorkerStatus
from projections.audit_trail import AuditRow

SHOW_FIGURES = listed_figures()[:-1]
"""The figures of ``show --json``, in their places: a fixed contract (the last listed figure,
the last event's time, is for tables only)."""

_MINOR = "_minor"


def state_json(state: DepositState) -> dict[str, Any]:
    """The ``show --json`` object: each figure in its place, amounts as decimal strings without ``_minor``."""
    return {_key(name): _json_value(getattr(state, name), name, state.currency) for name in SHOW_FIGURES}


def _key(name: str) -> str:
    return name.removesuffix(_MINOR)


def _json_value(value: Any, name: str, currency: str) -> Any:
    if name.endswith(_MINOR):
        return format_minor(value, currency)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, tuple):
        return list(value)
    return value.value if hasattr(value, "value") else value


def event_json(event: DepositEvent, currency: str) -> dict[str, Any]:
    """One ``history --json`` entry: the envelope, then the event's own fields."""
    entry: dict[str, Any] = {
        "type": event.type_name,
        "version": event.originator_version,
        "effective_at": _iso(event.effective_at),
        "recorded_at": _iso(event.recorded_at),
        "actor": event.actor,
    }
    entry.update(_plain(event_fields(event), currency))
    return entry


def _plain(fields: dict[str, Any], currency: str) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in fields.items():
        if key.endswith(_MINOR):
            plain[key.removesuffix(_MINOR)] = None if value is None else format_minor(value, currency)
        elif isinstance(value, datetime):
            plain[key] = _iso(value)
        elif isinstance(value, tuple | list):
            plain[key] = [_plain(item, currency) if isinstance(item, dict) else item for item in value]
        elif hasattr(value, "value"):
            plain[key] = value.value
        else:
            plain[key] = value
    return plain


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def state_table(state: DepositState, *, title: str | None = None) -> FittedTable:
    """A two-column table of one deposit's figures, in their places; those that may be empty only when set."""
    always = listed_figures(always=True)
    rows = [
        [_key(name), _table_value(getattr(state, name), name, state.currency)]
        for name in listed_figures()
        if name in always or getattr(state, name)
    ]
    columns = [TableColumn("figure"), TableColumn("value", "words", "right")]
    return FittedTable(title or f"Deposit of {state.shop_id}", columns, rows, show_header=False, box_style=box.ROUNDED)


def _table_value(value: Any, name: str, currency: str) -> str:
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(_json_value(value, name, currency))


def side_by_side_table(states: list[DepositState], *, title: str) -> FittedTable:
    """A few deposits side by side: one column per shop, one row per figure always listed.

    Columns per shop rather than per figure keep every amount whole in an
    80-column terminal, where eleven figure columns would be cut short.
    """
    columns = [TableColumn(""), *(TableColumn(state.shop_id, "whole", "right") for state in states)]
    rows = [
        [_key(name), *(_table_value(getattr(state, name), name, state.currency) for state in states)]
        for name in listed_figures(always=True)
        if name in SHOW_FIGURES and name not in ("shop_id", "version")
    ]
    return FittedTable(title, columns, rows)


def balances_table(states: list[DepositState], *, title: str) -> FittedTable:
    """One row per deposit, for long lists: status and the figures a back office acts on."""
    columns = [
        TableColumn("shop", FREE_TEXT_MIN_WIDTH),
        TableColumn("status"),
        TableColumn("cur"),
        *(TableColumn(name, "whole", "right") for name in ("required", "frozen", "held", "owed", "shortfall")),
        TableColumn("top-up due", "whole", "right"),
    ]
    rows = []
    for state in states:
        data = state_json(state)
        rows.append(
            [
                state.shop_id,
                data["status"],
                state.currency,
                *(data[key] for key in ("required", "frozen", "held", "owed", "shortfall")),
                f"{state.top_up_due:%Y-%m-%d}" if state.top_up_due else "",
            ]
        )
    return FittedTable(title, columns, rows)


def history_table(events: list[DepositEvent], currency: str, *, title: str) -> FittedTable:
    """One row per event, oldest first, with what it did in words.

    The details are one ``field value`` per line; in a narrow terminal a value
    moves below its field name rather than being cut, and only free text (notes,
    reasons in words, ids) is folded.
    """
    columns = [
        TableColumn("v", justify="right"),
        TableColumn("effective", "words"),
        TableColumn("event"),
        TableColumn("details", DETAILS_MIN_WIDTH),
        TableColumn("actor", FREE_TEXT_MIN_WIDTH),
    ]
    rows = []
    for event in events:
        entry = event_json(event, currency)
        details = "\n".join(
            _detail(key, value)
            for key, value in entry.items()
            if key not in ("type", "version", "effective_at", "recorded_at", "actor", "currency")
            and value not in ("", None, False, [])
            and not (key == "collected_from_hold" and format_minor(0, currency) == value)
        )
        version = str(event.originator_version)
        rows.append([version, _table_time(event.effective_at), entry["type"], details, event.actor])
    return FittedTable(title, columns, rows)


def _detail(key: str, value: Any) -> str:
    # One line per field; a list of records (a refund's lines) one line per record, its amount first.
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        lines = []
        for item in value:
            first = [item["amount"]] if "amount" in item else []
            parts = [*first, *(part for name, part in item.items() if name != "amount")]
            lines.append(f"{key} {' '.join(str(part) for part in parts)}")
        return "\n".join(lines)
    if isinstance(value, list):
        return f"{key} {', '.join(str(item) for item in value)}"
    return f"{key} {value}"


def _table_time(moment: datetime) -> str:
    # ISO-8601 with a space for the T, so that a narrow column breaks between date and time.
    return _iso(moment).replace("T", " ", 1)


_AUDIT_DETAILS = ("channel", "ref", "reason", "case", "note")


def audit_json(row: AuditRow) -> dict[str, Any]:
    """One ``audit --json`` entry; channel, ref, reason, case, note and a refund's channel ``share``
    (1, 2, ...) only where the row has them, after the keys every entry has."""
    entry: dict[str, Any] = {
        "position": row.position,
        "type": row.type,
        "amount": None if row.amount_minor is None else format_minor(row.amount_minor, row.currency),
        "frozen_after": format_minor(row.frozen_after_minor, row.currency),
        "actor": row.actor,
        "effective_at": _iso(row.effective_at),
        "recorded_at": _iso(row.recorded_at),
    }
    for key in _AUDIT_DETAILS:
        value = getattr(row, key)
        if value is not None:
            entry[key] = value
    if row.share:
        entry["share"] = row.share
    return entry


def audit_table(rows: list[AuditRow], *, title: str) -> FittedTable:
    """The audit trail as a table: one row per event (per channel share of a refund), oldest first."""
    columns = [
        TableColumn("pos", justify="right"),
        TableColumn("effective", "words"),
        TableColumn("event"),
        TableColumn("amount", justify="right"),
        TableColumn("frozen after", justify="right"),
        TableColumn("details", DETAILS_MIN_WIDTH),
    ]
    cells = []
    for row in rows:
        entry = audit_json(row)
        details = [f"{key} {entry[key]}" for key in _AUDIT_DETAILS if key in entry]
        # The actor is a line of the details: a column of its own would not leave the amounts room in 80 columns.
        details.append(f"by {row.actor}")
        cells.append(
            [
                str(row.position),
                f"{row.effective_at:%Y-%m-%d %H:%M}",
                row.type,
                entry["amount"] or "",
                entry["frozen_after"],
                "\n".join(details),
            ]
        )
    return FittedTable(title, columns, cells)


def in_force_or_first(policies: PolicyHistory, now: datetime) -> DepositPolicy | None:
    """The version in force at ``now``; ``None`` while the first has yet to take effect."""
    try:
        return policies.in_force_at(now)
    except Refused:
        return None


def policy_json(policies: PolicyHistory, now: datetime) -> dict[str, Any]:
    """The ``policy --json`` object: the version in force (its keys as ever), its ``effective_from``, every version.

    Before the first version takes effect the top-level keys describe that first
    version; each entry of ``versions`` says whether it is ``in_force``.
    """
    in_force = in_force_or_first(policies, now)
    shown = in_force or policies.versions[0]
    versions = [
        {**_policy_version_json(policy), "effective_from": _effective_from(policy), "in_force": policy is in_force}
        for policy in policies.versions
    ]
    return {**_policy_version_json(shown), "effective_from": _effective_from(shown), "versions": versions}


def _effective_from(policy: DepositPolicy) -> str | None:
    return None if policy.effective_from is None else _iso(policy.effective_from.astimezone(UTC))


def _policy_version_json(policy: DepositPolicy) -> dict[str, Any]:
    sites: dict[str, Any] = {}
    for code, site in policy.sites.items():
        violations: dict[str, Any] = {}
        for reason, rule in site.violations.items():
            cap = rule.daily_cap_minor
            violations[reason.value] = {
                "penalty": rule.penalty.describe(site.currency),
                "daily_cap": None if cap is None else format_minor(cap, site.currency),
            }
        sites[code] = {
            "currency": site.currency,
            "time_zone": site.time_zone,
            "required": {category: format_minor(amount, site.currency) for category, amount in site.required.items()},
            "violations": violations,
        }
    return {
        "version": policy.version,
        "settlement_window_days": policy.settlement_window.days,
        "top_up_deadline_days": policy.top_up_deadline.days,
        "appeal_window_days": policy.appeal_window.days,
        "sites": sites,
    }


def policy_tables(policies: PolicyHistory, now: datetime) -> list[FittedTable]:
    """Every version of the policy, oldest first: when it takes effect, its requirements and catalogue by site."""
    in_force = in_force_or_first(policies, now)
    several = len(policies.versions) > 1
    return [_policy_table(policy, in_force=several and policy is in_force) for policy in policies.versions]


def _policy_table(policy: DepositPolicy, *, in_force: bool) -> FittedTable:
    since = "" if policy.effective_from is None else f", from {_table_time(policy.effective_from.astimezone(UTC))}"
    now = " (in force)" if in_force else ""
    title = (
        f"Deposit policy {policy.version}{since}{now}: settlement {policy.settlement_window.days} days, "
        f"top-up {policy.top_up_deadline.days} days, appeal {policy.appeal_window.days} days"
    )
    rows = []
    for code, site in policy.sites.items():
        rows.append([code, "days counted in", site.time_zone])
        for category, amount in site.required.items():
            rows.append([code, f"required for {category}", f"{format_minor(amount, site.currency)} {site.currency}"])
        for reason, rule in site.violations.items():
            rows.append([code, reason.value, rule.describe(site.currency)])
    columns = [TableColumn("site"), TableColumn("what", "words"), TableColumn("amount or rule", "words")]
    return FittedTable(title, columns, rows)


def projection_json(status: ViewStatus) -> dict[str, Any]:
    """One ``projections status --json`` entry: name, position, head, lag (and error when stopped)."""
    entry: dict[str, Any] = {"name": status.name, "position": status.position, "head": status.head, "lag": status.lag}
    if status.error:
        entry["error"] = status.error
    return entry


def projections_table(statuses: list[ViewStatus]) -> Table:
    """The views against the head of the event log."""
    table = Table(title="Read models", title_justify="left")
    for column in ("view", "position", "head", "lag", "state"):
        table.add_column(column, justify="right" if column in ("position", "head", "lag") else "left")
    for status in statuses:
        state = f"[red]stopped at {status.error}[/]" if status.error else ("current" if not status.lag else "behind")
        table.add_row(status.name, str(status.position), str(status.head), str(status.lag), state)
    return table


def worker_status_line(status: WorkerStatus) -> str:
    """One line for a projection worker's status on a terminal: state, each view's position, the head."""
    head = max((view.head for view in status.views), default=0)
    views = " · ".join(
        f"{view.name} {view.position}" + (f" [red](stopped: {view.error})[/]" if view.error else "")
        for view in status.views
    )
    parts = [status.state, f"head {head}", views, f"{status.applied} applied"]
    if status.reconnects:
        parts.append(f"{status.reconnects} reconnects")
    return " · ".join(part for part in parts if part)


@contextmanager
def progress_bar(description: str, unit: str = "events") -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar on stderr (``unit`` done, rate, time left), silent when not a terminal."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=not sys.stderr.isatty(), transient=False) as progress:
        task = progress.add_task(description, total=None, rate="")

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)
            speed = progress.tasks[task].speed
            progress.update(task, rate=f"{speed:,.0f} {unit}/s" if speed else "")

        yield advance


def verify_table(report: VerifyReport) -> Table:
    """The verification summary, and the problems found, first ones first."""
    verdict = (
        "[green]clean[/]" if report.ok else f"[red]{len(report.problems) + report.problems_not_listed} problem(s)[/]"
    )
    table = Table(
        title=f"Verified {report.events_checked} events of {report.deposits_checked} deposits: {verdict}",
        title_justify="left",
    )
    for column in ("position", "shop", "kind", "detail"):
        table.add_column(column, justify="right" if column == "position" else "left")
    for problem in report.problems:
        table.add_row(str(problem.position or ""), problem.shop_id or "", problem.kind, problem.detail)
    if report.views_behind:
        behind = (
            f"{view.name} at {view.position} of {view.head}" + (" (stopped)" if view.stopped else "")
            for view in report.views_behind
        )
        table.caption = f"views behind the log, checked up to their position: {', '.join(behind)}"
    return table


def import_table(summary: ImportSummary) -> Table:
    """What an import did: lines read, applied, duplicates, rejected, events recorded, and how fast."""
    table = Table(title="Journal import", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    for key in ("lines", "applied", "duplicates", "rejected", "events"):
        table.add_row(key, f"{getattr(summary, key):,}")
    table.add_row("seconds", f"{summary.seconds:,.1f}")
    if summary.seconds > 0:
        table.add_row("lines/s", f"{summary.lines / summary.seconds:,.0f}")
    return table


RECONCILE_ROWS_SHOWN = 50
"""Lines of each discrepancy the table prints; ``--json`` lists them all."""


def reconciliation_tables(report: ReconciliationReport) -> list[Table]:
    """A bill's reconciliation: the counts, totals and fees, then each discrepancy, first lines first."""
    verdict = "[green]everything matched[/]" if report.ok else "[red]discrepancies[/]"
    summary = Table(
        title=f"{report.channel} bill of {report.bill_date.isoformat()} ({report.bill_lines:,} lines): {verdict}",
        title_justify="left",
        show_header=False,
    )
    summary.add_column("figure", style="bold", no_wrap=True)
    summary.add_column("value", justify="right", no_wrap=True)
    for outcome in (*OUTCOMES, NEAR_MIDNIGHT):
        style = "red" if outcome in DISCREPANCIES and report.counts[outcome] else ""
        summary.add_row(outcome, f"[{style}]{report.counts[outcome]:,}[/]" if style else f"{report.counts[outcome]:,}")
    for side, figures in (("ledger", report.ledger.as_json()), ("channel", report.bill.as_json())):
        for code, money in figures.items():
            summary.add_row(f"{side} {code}", f"in {money['payments']}  out {money['refunds']}  net {money['net']}")
    for code, fees in report.fees_json().items():
        summary.add_row(f"fees {code}", f"charged {fees['charged']}  returned {fees['returned']}")
    tables = [summary]
    for outcome in (*DISCREPANCIES, NEAR_MIDNIGHT):
        count = report.counts[outcome]
        if not count:
            continue
        shown = f", the first {RECONCILE_ROWS_SHOWN}" if count > RECONCILE_ROWS_SHOWN else ""
        table = Table(title=f"{outcome}: {count:,}{shown}", title_justify="left")
        for column in ("at", "kind", "ref", "shop", "ledger", "channel", "line"):
            table.add_column(column, justify="right" if column in ("ledger", "channel", "line") else "left")
        table.columns[2].overflow = "fold"
        for number, entry in enumerate(report.entries(outcome)):
            if number == RECONCILE_ROWS_SHOWN:
                break
            found = entry.as_json()
            table.add_row(
                entry.at,
                entry.kind,
                entry.ref,
                entry.shop_id or "",
                found.get("ledger_amount", ""),
                found.get("channel_amount", ""),
                "" if entry.line is None else str(entry.line),
            )
        tables.append(table)
    return tables


def reconciliation_json(event: BillReconciled) -> dict[str, Any]:
    """One recorded version of a day's reconciliation, as ``reconciliations --json`` lists it."""
    outcome = event.outcome
    return {
        "channel": event.channel.value,
        "bill_date": event.bill_date.isoformat(),
        "version": event.originator_version,
        "ok": outcome.ok,
        "recorded_at": _iso(event.recorded_at),
        "actor": event.actor,
        "bill_sha256": outcome.bill_sha256,
        "bill_lines": outcome.bill_lines,
        "counts": {
            "matched": outcome.matched,
            "missing_in_ledger": outcome.missing_in_ledger,
            "missing_in_channel": outcome.missing_in_channel,
            "amount_mismatch": outcome.amount_mismatch,
            "near_midnight": outcome.near_midnight,
        },
    }


def reconciliations_table(events: list[BillReconciled]) -> Table:
    """The recorded reconciliations, one row per version."""
    table = Table(title=f"Reconciliations: {len(events)}", title_justify="left")
    for column in ("bill date", "channel", "version", "result", "lines", "matched", "missing ledger"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("version", "lines", "matched") else "left")
    table.add_column("missing channel", justify="right")
    table.add_column("mismatch", justify="right")
    table.add_column("by", overflow="fold")
    table.add_column("bill sha256", overflow="fold")
    for event in events:
        found = event.outcome
        table.add_row(
            event.bill_date.isoformat(),
            event.channel.value,
            str(event.originator_version),
            "[green]ok[/]" if found.ok else "[red]discrepancies[/]",
            f"{found.bill_lines:,}",
            f"{found.matched:,}",
            f"{found.missing_in_ledger:,}",
            f"{found.missing_in_channel:,}",
            f"{found.amount_mismatch:,}",
            event.actor,
            found.bill_sha256[:16],
        )
    return table


# ---------------------------------------------------------------- table layout

Fit = int | Literal["whole", "words"]
"""How a column may be narrowed: ``"whole"`` never (amounts, statuses, times, event names: never cut),
``"words"`` only between words, or an ``int``: folded (free text) down to that many characters."""

FREE_TEXT_MIN_WIDTH = 8
"""The narrowest a column of free text (notes, actors, shop ids) is folded to."""

DETAILS_MIN_WIDTH = 20
"""The narrowest a details column may be: field names, reasons (``after_sales_dispute``), amounts and
times (``2026-10-08T09:17:00Z``) are at most this long, and a value wraps below its field name
rather than being folded, so only free text is ever folded."""


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of a :class:`FittedTable`: its header, alignment and how it may be narrowed."""

    header: str
    fit: Fit = "whole"
    justify: Literal["left", "right"] = "left"


class FittedTable:
    """A table that fits the terminal without cutting an amount, a status or a word of a field's value.

    Each column is as wide as its content when the terminal allows. Otherwise free
    text is folded first, then columns of words are wrapped between words; when even
    that cannot fit, every row is printed as a block of ``header  value`` lines.
    Widths are decided here rather than by Rich, which would cut any column short.
    """

    def __init__(
        self,
        title: str,
        columns: list[TableColumn],
        rows: list[list[str]],
        *,
        show_header: bool = True,
        box_style: box.Box | None = box.SIMPLE_HEAD,
    ) -> None:
        """``rows`` hold one string per column; a string may hold several lines."""
        self.title = title
        self.columns = columns
        self.rows = rows
        self.show_header = show_header
        self.box_style = box_style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The table at the width the terminal gives, or the rows as blocks when it cannot fit."""
        widths = self._widths(options.max_width)
        if widths is None:
            yield from self._blocks(options.max_width)
            return
        table = self._frame()
        for column, width in zip(self.columns, widths, strict=True):
            table.add_column(
                column.header, justify=column.justify, width=width, no_wrap=column.fit == "whole", overflow="fold"
            )
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))
        yield table

    def _widths(self, available: int) -> list[int] | None:
        natural, least = [], []
        for index, column in enumerate(self.columns):
            cells = [row[index] for row in self.rows]
            header = [column.header] if self.show_header else []
            lines = [line for cell in (*header, *cells) for line in cell.splitlines()]
            natural.append(max((cell_len(line) for line in lines), default=1) or 1)
            if column.fit == "whole":
                # A header may wrap between its words; the cells never.
                words = [*lines[len(header) :], *(word for line in header for word in line.split())]
            elif column.fit == "words":
                words = [word for line in lines for word in line.split()]
            else:
                words = ["x" * column.fit]
            least.append(min(natural[-1], max((cell_len(word) for word in words), default=1)))
        room = available - self._frame_width()
        if sum(least) > room:
            return None
        widths = list(natural)
        # Narrow free text first, then columns of words: each down to its least, widest first.
        for kinds in ((lambda fit: isinstance(fit, int)), (lambda fit: fit == "words")):
            while sum(widths) > room:
                shrinkable = [i for i, column in enumerate(self.columns) if kinds(column.fit) and widths[i] > least[i]]
                if not shrinkable:
                    break
                widest = max(shrinkable, key=lambda i: widths[i])
                widths[widest] -= 1
        return widths if sum(widths) <= room else None

    def _frame(self) -> Table:
        # Lists (no box edges) keep one space and a separator between columns; a boxed table pads its cells.
        listing = self.box_style is box.SIMPLE_HEAD
        return Table(
            title=self.title,
            title_justify="left",
            box=self.box_style,
            show_header=self.show_header,
            show_edge=not listing,
            pad_edge=not listing,
            padding=(0, 1, 0, 0) if listing else (0, 1),
        )

    def _frame_width(self) -> int:
        # What borders and padding take: measured on the table itself with one-character columns.
        probe = self._frame()
        probe.title = None
        for _ in self.columns:
            probe.add_column(width=1)
        probe.add_row(*("x" for _ in self.columns))
        console = Console(width=1000, file=io.StringIO())
        lines = [line for line in console.render_lines(probe, pad=False) if line]
        return max(sum(cell_len(segment.text) for segment in line) for line in lines) - len(self.columns)

    def _blocks(self, available: int) -> RenderResult:
        yield Text(self.title)
        width = max((cell_len(column.header) for column in self.columns), default=1)
        for row in self.rows:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(no_wrap=True, width=width, style="bold")
            grid.add_column(overflow="fold", max_width=max(1, available - width - 2))
            for column, cell in zip(self.columns, row, strict=True):
                if cell:
                    grid.add_row(column.header if self.show_header else "", Text(cell))
            yield grid
            yield Text("")
