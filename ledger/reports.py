"""How the faces print deposits and events: JSON objects and Rich tables.

Amounts leave the ledger here, as decimal strings in major units with the
currency's own digits (``"1700.00"``, ``"70000"`` for JPY); field names lose
their ``_minor`` suffix on the way out.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from domain import DepositEvent, DepositPolicy, DepositState
from domain.events import event_fields
from domain.money import format_minor
from domain.reconciliation import BillReconciled
from ledger.audit import VerifyReport
from ledger.journal import ImportSummary
from ledger.tools.reconcile.report import DISCREPANCIES, NEAR_MIDNIGHT, OUTCOMES, ReconciliationReport
from ledger.views import ViewStatus
from ledger.workers import WorkerStatus
from projections.audit_trail import AuditRow

STATE_KEYS = (
    "shop_id",
    "status",
    "currency",
    "required",
    "paid",
    "frozen",
    "deducted",
    "refunded",
    "forfeited",
    "owed",
    "shortfall",
    "version",
)
"""The keys of ``show --json``, in order: a fixed contract."""

POLICY_STATE_KEYS = ("held", "reversed", "top_up_due", "policy_version", "categories")
"""Keys appended after :data:`STATE_KEYS` since deposit policies: money held for open cases,
what upheld appeals gave back, when the top-up is due (``null`` if none), the policy version
the requirement follows (``null`` if set by hand) and the shop's categories."""

DEBT_STATE_KEYS = ("written_off",)
"""Keys appended after :data:`POLICY_STATE_KEYS` since debts outlive closure: what was written
off as a loss of what the shop owed."""

_MINOR = "_minor"


def state_json(state: DepositState) -> dict[str, Any]:
    """The ``show --json`` object: the contract's keys, then the policy's and the debts'; amounts as decimal strings."""
    dumped = state.model_dump()
    result: dict[str, Any] = {}
    for key in (*STATE_KEYS, *POLICY_STATE_KEYS, *DEBT_STATE_KEYS):
        if key in dumped:
            value = dumped[key]
            if isinstance(value, datetime):
                value = _iso(value)
            elif isinstance(value, tuple):
                value = list(value)
            result[key] = value.value if hasattr(value, "value") else value
        else:
            result[key] = format_minor(dumped[key + _MINOR], state.currency)
    return result


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


def state_table(state: DepositState, *, title: str | None = None) -> Table:
    """A two-column Rich table of one deposit's figures."""
    table = Table(title=title or f"Deposit of {state.shop_id}", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    data = state_json(state)
    for key in (*STATE_KEYS, "held", "reversed"):
        table.add_row(key, str(data[key]))
    if state.written_off_minor:
        table.add_row("written_off", data["written_off"])
    if state.top_up_due:
        table.add_row("top_up_due", data["top_up_due"])
    if state.site:
        table.add_row("site", state.site)
    if state.categories:
        table.add_row("categories", ", ".join(state.categories))
    if state.policy_version:
        table.add_row("policy_version", state.policy_version)
    if state.settlement_due:
        table.add_row("settlement_due", _iso(state.settlement_due))
    table.add_row("last_effective_at", _iso(state.last_effective_at))
    return table


def side_by_side_table(states: list[DepositState], *, title: str) -> Table:
    """A few deposits side by side: one column per shop, one row per figure.

    Columns per shop rather than per figure keep every amount whole in an
    80-column terminal, where eleven figure columns would be cut short.
    """
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("", style="bold", no_wrap=True)
    for state in states:
        table.add_column(state.shop_id, justify="right", overflow="fold")
    figures = [state_json(state) for state in states]
    for key in (*STATE_KEYS, "held", "reversed"):
        if key not in ("shop_id", "version"):
            table.add_row(key, *(str(data[key]) for data in figures))
    return table


def balances_table(states: list[DepositState], *, title: str) -> Table:
    """One row per deposit, for long lists: status and the figures a back office acts on."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("shop", "status", "cur", "required", "frozen", "held", "owed", "shortfall", "top-up due"):
        table.add_column(column, justify="left" if column in ("shop", "status", "cur") else "right", no_wrap=True)
    for state in states:
        data = state_json(state)
        table.add_row(
            state.shop_id,
            data["status"],
            state.currency,
            *(data[key] for key in ("required", "frozen", "held", "owed", "shortfall")),
            f"{state.top_up_due:%Y-%m-%d}" if state.top_up_due else "",
        )
    return table


def history_table(events: list[DepositEvent], currency: str, *, title: str) -> Table:
    """One row per event, oldest first, with what it did in words."""
    table = Table(title=title, title_justify="left")
    table.add_column("v", justify="right")
    table.add_column("effective", no_wrap=True)
    table.add_column("event", overflow="fold")
    table.add_column("details", overflow="fold")
    table.add_column("actor")
    for event in events:
        entry = event_json(event, currency)
        details = ", ".join(
            f"{key}={', '.join(value) if isinstance(value, list) else value}"
            for key, value in entry.items()
            if key not in ("type", "version", "effective_at", "recorded_at", "actor", "currency")
            and value not in ("", None, False, [])
            and not (key == "collected_from_hold" and format_minor(0, currency) == value)
        )
        table.add_row(str(event.originator_version), entry["effective_at"], entry["type"], details, event.actor)
    return table


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


def audit_table(rows: list[AuditRow], *, title: str) -> Table:
    """The audit trail as a table: one row per event (per channel share of a refund), oldest first."""
    table = Table(title=title, title_justify="left")
    for column in ("pos", "effective", "event", "amount", "frozen after", "details", "actor"):
        table.add_column(column, justify="right" if column in ("pos", "amount", "frozen after") else "left")
    for row in rows:
        entry = audit_json(row)
        details = " ".join(
            f"{key}={entry[key]}" for key in ("channel", "ref", "reason", "case", "note") if key in entry
        )
        table.add_row(
            str(row.position),
            f"{row.effective_at:%Y-%m-%d %H:%M}",
            row.type,
            entry["amount"] or "",
            entry["frozen_after"],
            details,
            row.actor,
        )
    return table


def policy_json(policy: DepositPolicy) -> dict[str, Any]:
    """The ``policy --json`` object: version, time limits in days, each site's figures in major units."""
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


def policy_table(policy: DepositPolicy) -> Table:
    """The policy in force: the requirement per category and the catalogue, site by site."""
    title = (
        f"Deposit policy {policy.version}: settlement {policy.settlement_window.days} days, "
        f"top-up {policy.top_up_deadline.days} days, appeal {policy.appeal_window.days} days"
    )
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("site", "what", "amount or rule"):
        table.add_column(column, overflow="fold")
    for code, site in policy.sites.items():
        table.add_row(code, "days counted in", site.time_zone)
        for category, amount in site.required.items():
            table.add_row(code, f"required for {category}", f"{format_minor(amount, site.currency)} {site.currency}")
        for reason, rule in site.violations.items():
            table.add_row(code, reason.value, rule.describe(site.currency))
    return table


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
