"""``deposit-ledger``: the command line of the deposit ledger (a fixed contract).

Exit codes: 0 done; 1 refused by a deposit rule; 2 malformed input. Every failure
is one line on stderr, and a failed command has written nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from eventsourcing.domain import EventSourcingError
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from domain import Channel, LedgerError, MalformedInput, deposit_id
from ledger.app.parse import InputsRule, parse_choice, parse_shop_id, parse_time
from ledger.app.policy_file import load_policy
from ledger.app.service import CommandResult, DepositLedger, utc_now
from ledger.app.settings import refuse_library_variables
from ledger.faces.demo import run_demo
from ledger.faces.feeds.commands import relay_command, webhooks_app
from ledger.faces.http.keys import ApiKeys, keys_table
from ledger.faces.http.roles import Role
from ledger.faces.output_file import check_output_path, protected_files, replacing
from ledger.faces.reports import (
    audit_json,
    audit_table,
    balances_table,
    event_json,
    history_table,
    import_table,
    policy_json,
    policy_tables,
    progress_bar,
    projection_json,
    projections_table,
    reconciliation_json,
    reconciliation_tables,
    reconciliations_table,
    state_json,
    state_table,
    verify_table,
    worker_status_line,
)
from ledger.store.urls import StoreLocked, StoreUnavailable, resolve_store
from ledger.tools.audit import Auditor, parse_checkpoint
from ledger.tools.journal import (
    JOURNAL_FORMATS,
    JournalFormat,
    JournalReader,
    LineResult,
    Rejects,
    check_readable,
    export_journal,
    import_journal,
)
from ledger.tools.reconcile import reconcile_bill
from ledger.tools.reconcile.recording import reconciliations, record_reconciliation
from ledger.views.runner import ViewStatus
from ledger.views.workers import POLL_INTERVAL_S, ProjectionWorker, stopping_on_signals

EXIT_REFUSED = 1
EXIT_MALFORMED = 2
ACTOR_ENV_VAR = "DEPOSIT_LEDGER_ACTOR"

app = typer.Typer(
    name="deposit-ledger",
    help="An event-sourced ledger of merchant shops' security deposits (保证金).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Store: an SQLite file path or sqlite:///path, or postgresql://USER@HOST/DBNAME[?schema=NAME]. "
        "(environment: DEPOSIT_LEDGER_DB; default: deposits.db)",
    ),
]
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="Deposit policy file (TOML). "
        "(environment: DEPOSIT_LEDGER_POLICY; default: the policy shipped with the package)",
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option(
        "--actor", help="Who is recorded as asking. (environment: DEPOSIT_LEDGER_ACTOR; default: the OS user)"
    ),
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Effective time, ISO-8601 with a zone (default: now)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Shop = Annotated[str, typer.Argument(help="The shop's id.", show_default=False)]
Amount = Annotated[str, typer.Argument(help="Amount in major units, e.g. 1700.00.", show_default=False)]
Case = Annotated[str, typer.Option("--case", help="The case id (idempotency key).")]
Note = Annotated[str, typer.Option("--note", help="Free text for people.")]


class Settings:
    """The global options, shared by every command through Click's context."""

    def __init__(self, db: str | None, actor: str | None, policy: str | None) -> None:
        self.db = db
        self.actor = actor or os.environ.get(ACTOR_ENV_VAR) or None
        # None: the ledger reads DEPOSIT_LEDGER_POLICY, else the shipped policy, when first needed.
        self.policy = policy


@app.callback()
def main_options(
    ctx: typer.Context, db: DbOption = None, actor: ActorOption = None, policy: PolicyOption = None
) -> None:
    """Record and inspect shop deposits: pay, deduct, hold, appeal, close, refund, force-close."""
    refuse_library_variables()
    ctx.obj = Settings(db, actor, policy)


@contextmanager
def open_ledger(ctx: typer.Context, *, migrate: bool = False) -> Iterator[DepositLedger]:
    """The ledger on the chosen store, closed again when the command ends.

    Only the commands that start a store (``open``, ``import``, ``demo``, ``migrate``)
    create its tables; the others say in one line that it has none.
    """
    settings: Settings = ctx.obj
    ledger = DepositLedger(resolve_store(settings.db), actor=settings.actor, policy=settings.policy, migrate=migrate)
    try:
        yield ledger
    finally:
        ledger.close()


def _report(result: CommandResult, as_json: bool, action: str) -> None:
    if as_json:
        data = state_json(result.state)
        if result.duplicate:
            data["duplicate"] = True
        _print_json(data)
        return
    console = Console()
    if result.duplicate:
        console.print(f"[yellow]duplicate[/]: {action} for {result.state.shop_id} was recorded before; nothing changed")
    console.print(state_table(result.state))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def _write(
    ctx: typer.Context,
    as_json: bool,
    action: str,
    command: Callable[[DepositLedger], CommandResult],
    *,
    migrate: bool = False,
) -> None:
    with open_ledger(ctx, migrate=migrate) as ledger:
        _report(command(ledger), as_json, action)


@app.command("open")
def open_command(
    ctx: typer.Context,
    shop: Shop,
    currency: Annotated[
        str | None, typer.Option("--currency", help="ISO 4217 code: CNY, USD, GBP, JPY... (default: the site's).")
    ] = None,
    required: Annotated[
        str | None, typer.Option("--required", help="The deposit required (default: derived by the policy).")
    ] = None,
    site: Annotated[str | None, typer.Option("--site", help="Marketplace site code, e.g. CN, US, UK.")] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="A product category the shop sells in (repeatable).")
    ] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a shop's deposit account: the required amount as given, or derived from site and categories."""
    _write(
        ctx,
        as_json,
        "open",
        lambda ledger: ledger.open(
            shop, currency=currency, required=required, site=site, categories=category or (), at=at
        ),
        migrate=True,
    )


@app.command("pay")
def pay_command(
    ctx: typer.Context,
    shop: Shop,
    amount: Amount,
    channel: Annotated[str, typer.Option("--channel", help="alipay or wechat_pay.")],
    ref: Annotated[str, typer.Option("--ref", help="The channel's trade number (idempotency key).")],
    payer: Annotated[str | None, typer.Option("--payer", help="The paying account.")] = None,
    at: AtOption = None,
    channel_time: Annotated[
        str | None,
        typer.Option(
            "--channel-time",
            help="When the channel says it was paid (ISO-8601 with a zone), for a late notification;"
            " kept beside the effective time.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Record a payment; it is frozen at once, after settling what the shop owes."""
    _write(
        ctx,
        as_json,
        f"payment {channel} {ref}",
        lambda ledger: ledger.pay(
            shop, amount, channel=channel, ref=ref, payer=payer, at=at, channel_time=channel_time
        ),
    )


@app.command("deduct")
def deduct_command(
    ctx: typer.Context,
    shop: Shop,
    reason: Annotated[
        str,
        typer.Option("--reason", help="fake_listing, order_brushing, late_shipment, after_sales_dispute or other."),
    ],
    case: Annotated[str, typer.Option("--case", help="The violation case id (idempotency key).")],
    amount: Annotated[
        str | None,
        typer.Argument(help="Amount in major units (default: priced by the policy's catalogue).", show_default=False),
    ] = None,
    order_value: Annotated[
        str | None, typer.Option("--order-value", help="The order's value, for a penalty priced as a share of it.")
    ] = None,
    note: Note = "",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deduct a penalty (given, or priced by the policy); what the deposit cannot cover is owed."""
    _write(
        ctx,
        as_json,
        f"deduction {case}",
        lambda ledger: ledger.deduct(shop, amount, reason=reason, case=case, note=note, order_value=order_value, at=at),
    )


@app.command("hold")
def hold_command(
    ctx: typer.Context,
    shop: Shop,
    amount: Amount,
    case: Case,
    note: Note = "",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hold part of the frozen balance for an open case; held money cannot be refunded."""
    _write(ctx, as_json, f"hold {case}", lambda ledger: ledger.hold(shop, amount, case=case, note=note, at=at))


@app.command("release")
def release_command(
    ctx: typer.Context, shop: Shop, case: Case, note: Note = "", at: AtOption = None, as_json: JsonOption = False
) -> None:
    """Release a case's hold: it settles what is owed, the rest is frozen again."""
    _write(ctx, as_json, f"release {case}", lambda ledger: ledger.release(shop, case=case, note=note, at=at))


@app.command("appeal")
def appeal_command(
    ctx: typer.Context, shop: Shop, case: Case, note: Note = "", at: AtOption = None, as_json: JsonOption = False
) -> None:
    """The merchant appeals a deduction, within the policy's appeal window."""
    _write(ctx, as_json, f"appeal {case}", lambda ledger: ledger.appeal(shop, case=case, note=note, at=at))


@app.command("resolve-appeal")
def resolve_appeal_command(
    ctx: typer.Context,
    shop: Shop,
    case: Case,
    upheld: Annotated[bool, typer.Option("--upheld", help="The appeal succeeds: the deduction is reversed.")] = False,
    rejected: Annotated[bool, typer.Option("--rejected", help="The appeal fails: the deduction stands.")] = False,
    note: Note = "",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record an appeal's outcome: --upheld reverses the deduction, --rejected lets it stand."""
    if upheld == rejected:
        raise MalformedInput("give exactly one of --upheld or --rejected")
    _write(
        ctx,
        as_json,
        f"appeal outcome {case}",
        lambda ledger: ledger.resolve_appeal(shop, case=case, upheld=upheld, note=note, at=at),
    )


@app.command("categories")
def categories_command(
    ctx: typer.Context,
    shop: Shop,
    add: Annotated[list[str] | None, typer.Option("--add", help="A category to add (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="A category to remove (repeatable).")] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the shop's categories; the requirement becomes the highest of the new set."""
    _write(
        ctx,
        as_json,
        "category change",
        lambda ledger: ledger.change_categories(shop, add=add or (), remove=remove or (), at=at),
    )


@app.command("apply-policy")
def apply_policy_command(ctx: typer.Context, shop: Shop, at: AtOption = None, as_json: JsonOption = False) -> None:
    """Bring the shop's requirement in line with the policy in force (after a policy change)."""
    _write(ctx, as_json, "policy", lambda ledger: ledger.apply_policy(shop, at=at))


@app.command("refund-excess")
def refund_excess_command(ctx: typer.Context, shop: Shop, at: AtOption = None, as_json: JsonOption = False) -> None:
    """Refund the frozen money above the requirement, newest payment first; the shop stays open."""
    _write(ctx, as_json, "excess refund", lambda ledger: ledger.refund_excess(shop, at=at))


@app.command("policy")
def policy_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The deposit policy's versions, and which is in force: requirements per category and the catalogue, per site."""
    policies = load_policy(ctx.obj.policy)
    now = utc_now()
    if as_json:
        _print_json(policy_json(policies, now))
    else:
        console = Console()
        for table in policy_tables(policies, now):
            console.print(table)


@app.command("close")
def close_command(ctx: typer.Context, shop: Shop, at: AtOption = None, as_json: JsonOption = False) -> None:
    """The merchant closes the shop; the refund waits for the settlement window."""
    _write(ctx, as_json, "closure", lambda ledger: ledger.close_shop(shop, at=at))


@app.command("refund")
def refund_command(ctx: typer.Context, shop: Shop, at: AtOption = None, as_json: JsonOption = False) -> None:
    """Refund what remains to the paying channels, once settlement is due."""
    _write(ctx, as_json, "refund", lambda ledger: ledger.refund(shop, at=at))


@app.command("force-close")
def force_close_command(
    ctx: typer.Context,
    shop: Shop,
    reason: Annotated[str, typer.Option("--reason", help="Why the platform closes the shop.")],
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """The platform force-closes the shop; what remains is forfeited."""
    _write(ctx, as_json, "forced closure", lambda ledger: ledger.force_close(shop, reason=reason, at=at))


@app.command("write-off")
def write_off_command(
    ctx: typer.Context,
    shop: Shop,
    case: Case,
    reason: Annotated[str, typer.Option("--reason", help="Why the debt is given up, for the auditors.")],
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record what a closed or forfeited shop still owes on a case as a loss (once its appeal window has passed)."""
    _write(ctx, as_json, f"write-off {case}", lambda ledger: ledger.write_off(shop, case=case, reason=reason, at=at))


@app.command("show")
def show_command(ctx: typer.Context, shop: Shop, as_json: JsonOption = False) -> None:
    """The deposit's state, rebuilt from its events."""
    with open_ledger(ctx) as ledger:
        state = ledger.show(shop)
    if as_json:
        _print_json(state_json(state))
    else:
        Console().print(state_table(state))


@app.command("history")
def history_command(
    ctx: typer.Context,
    shop: Shop,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Only events effective by this time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The deposit's events, oldest first."""
    with open_ledger(ctx) as ledger:
        events = ledger.history(shop, as_of=as_of)
        currency = ledger.show(shop).currency
    if as_json:
        _print_json([event_json(event, currency) for event in events])
    else:
        Console().print(history_table(events, currency, title=f"History of {shop}"))


@app.command("replay")
def replay_command(
    ctx: typer.Context,
    shop: Shop,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Effective time, ISO-8601 with a zone.")] = None,
    version: Annotated[int | None, typer.Option("--version", help="Replay up to this version.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The deposit as it stood at a moment (or version), replayed from its events."""
    if as_of is None and version is None:
        raise MalformedInput("replay needs --as-of TIME or --version N")
    with open_ledger(ctx) as ledger:
        state = ledger.replay(shop, as_of=as_of, version=version)
    if as_json:
        _print_json(state_json(state))
    else:
        moment = f"as of {as_of}" if as_of else f"at version {version}"
        Console().print(state_table(state, title=f"Deposit of {state.shop_id} {moment}"))


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    against: Annotated[
        str | None, typer.Option("--against", help="A checkpoint (its JSON, or a file holding it) to extend.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the hash chain, the balances and the audit trail against the events."""
    checkpoint = parse_checkpoint(against) if against is not None else None
    with progress_bar("verifying") as advance:
        report = _auditor(ctx).verify(checkpoint, progress=advance)
    if as_json:
        _print_json(report.as_json())
    else:
        Console().print(verify_table(report))
    if not report.ok:
        first = report.first_bad_position()
        count = len(report.problems) + report.problems_not_listed
        where = f"; first bad position {first}" if first is not None else ""
        _fail(f"verify found {count} problem(s){where}: {report.problems[0].detail}", EXIT_REFUSED)


@app.command("checkpoint")
def checkpoint_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the head of the hash chain, to keep outside the database."""
    checkpoint = _auditor(ctx).checkpoint()
    if as_json:
        _print_json(checkpoint.model_dump())
    else:
        Console().print(f"position {checkpoint.position}  chain_hash {checkpoint.chain_hash}")


export_app = typer.Typer(help="Stream records out of the ledger.")
app.add_typer(export_app, name="export")


@export_app.command("audit")
def export_audit_command(
    ctx: typer.Context,
    file_format: Annotated[str, typer.Option("--format", help="csv or jsonl.")],
    shop: Annotated[str | None, typer.Option("--shop", help="Only this shop.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Only events effective at or after this time.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Only events effective at or before this time.")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of stdout.")] = None,
) -> None:
    """The audit trail with each row's chain hash, as CSV or JSON lines."""
    chosen = file_format.strip().lower()
    if chosen not in ("csv", "jsonl"):
        raise MalformedInput(f"unknown format {file_format!r}: expected csv or jsonl")
    start_at = parse_time(start) if start else None
    end_at = parse_time(end) if end else None
    deposit = deposit_id(parse_shop_id(shop)) if shop else None
    target = _output_target(ctx, "--output", output)
    auditor = _auditor(ctx)
    if target is None:
        auditor.export_audit(sys.stdout, file_format=chosen, deposit=deposit, start=start_at, end=end_at)
    else:
        with replacing(target) as out:
            count = auditor.export_audit(out, file_format=chosen, deposit=deposit, start=start_at, end=end_at)
        sys.stderr.write(f"deposit-ledger: wrote {count} rows to {output}\n")


@export_app.command("journal")
def export_journal_command(
    ctx: typer.Context,
    file_format: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv. [default: from --output's suffix, else jsonl]")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write here instead of stdout.")] = None,
) -> None:
    """The store as a journal: one line per command, which import reads back."""
    chosen = _journal_format(file_format, output)
    target = _output_target(ctx, "--output", output)
    _require_store(ctx)
    with open_ledger(ctx) as ledger:
        if target is None:
            export_journal(ledger, sys.stdout, file_format=chosen)
            return
        with replacing(target) as out:
            count = export_journal(ledger, out, file_format=chosen)
    sys.stderr.write(f"deposit-ledger: wrote {count} lines to {output}\n")


@app.command("import")
def import_command(
    ctx: typer.Context,
    journal: Annotated[Path, typer.Argument(help="The journal: JSON lines or CSV.", show_default=False)],
    file_format: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv. [default: from the file's suffix, else jsonl]")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Write rejected lines here, with line number and reason.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Apply a journal of operations in file order; exit 1 if any line was rejected."""
    chosen = _journal_format(file_format, journal)
    if not journal.is_file():
        raise MalformedInput(f"no journal file at {journal}")
    rejects_target = _output_target(ctx, "--rejects", rejects, inputs=[journal])
    total = check_readable(journal)
    with ExitStack() as stack:
        source = stack.enter_context(journal.open(newline="", encoding="utf-8"))
        reader = JournalReader(source, chosen)
        if rejects_target is not None:
            sink = Rejects(stack.enter_context(replacing(rejects_target)), reader)
            on_reject = sink.write
        else:
            on_reject = _reject_to_stderr
        ledger = stack.enter_context(open_ledger(ctx, migrate=True))
        advance = stack.enter_context(progress_bar("importing", unit="lines"))
        advance(0, total)
        try:
            summary = import_journal(
                ledger, reader, on_reject=on_reject, progress=lambda done: advance(done, max(total, done))
            )
        except UnicodeDecodeError:
            # Checked before the first line: only a file changed while it is imported gets here.
            raise MalformedInput(f"journal {journal} changed while it was imported and is no longer UTF-8") from None
    if as_json:
        _print_json(summary.model_dump())
    else:
        Console().print(import_table(summary))
    if summary.rejected:
        where = f", written to {rejects}" if rejects is not None else ""
        _fail(f"{summary.rejected} of {summary.lines} lines rejected{where}", EXIT_REFUSED)


def _journal_format(chosen: str | None, path: Path | None) -> JournalFormat:
    if chosen is None:
        return "csv" if path is not None and path.suffix.lower() == ".csv" else "jsonl"
    for known in JOURNAL_FORMATS:
        if chosen.strip().lower() == known:
            return known
    raise MalformedInput(f"unknown format {chosen!r}: expected jsonl or csv")


def _reject_to_stderr(result: LineResult) -> None:
    sys.stderr.write(f"deposit-ledger: line {result.line.number}: {' '.join(str(result.reason).split())}\n")


def _output_target(ctx: typer.Context, option: str, path: Path | None, inputs: list[Path] | None = None) -> Path | None:
    # Checked before the store is opened: a refused path leaves everything as it was.
    if path is None:
        return None
    return check_output_path(option, path, protected=protected_files(resolve_store(ctx.obj.db)), inputs=inputs or [])


def _require_store(ctx: typer.Context) -> None:
    # Reading commands must not create an empty store where none was.
    store = resolve_store(ctx.obj.db)
    if store.sqlite_path is not None and not store.sqlite_path.is_file():
        raise MalformedInput(f"no ledger store at {store.sqlite_path}")


def _auditor(ctx: typer.Context) -> Auditor:
    # The auditor reads the store as it is, without opening the application (which would
    # create tables and catch the views up): verification must not change what it checks.
    store = resolve_store(ctx.obj.db)
    if store.sqlite_path is not None and not store.sqlite_path.is_file():
        raise MalformedInput(f"no ledger store at {store.sqlite_path}")
    return Auditor(store)


@app.command("balance")
def balance_command(ctx: typer.Context, shop: Shop, as_json: JsonOption = False) -> None:
    """The shop's row in the balances view (the same figures as show, without replaying)."""
    with open_ledger(ctx) as ledger:
        state = ledger.balance(shop)
        _warn_if_stale(ledger)
    if as_json:
        _print_json(state_json(state))
    else:
        Console().print(state_table(state, title=f"Balance of {state.shop_id}"))


@app.command("shops")
def shops_command(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only deposits with this status.")] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only shops on this site.")] = None,
    underfunded: Annotated[
        bool, typer.Option("--underfunded", help="Only open deposits with a shortfall: the shops that must pay.")
    ] = False,
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only shops whose top-up is overdue: the restricted shops.")
    ] = False,
    owing: Annotated[
        bool, typer.Option("--owing", help="Only shops with a debt, whatever their status (closed ones too).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Deposits from the balances view, ordered by shop id."""
    with open_ledger(ctx) as ledger:
        states = ledger.shops(status=status, site=site, underfunded=underfunded, overdue=overdue, owing=owing)
        _warn_if_stale(ledger)
    if as_json:
        _print_json([state_json(state) for state in states])
    else:
        Console().print(balances_table(states, title=f"Deposits ({len(states)})"))


@app.command("audit")
def audit_command(ctx: typer.Context, shop: Shop, as_json: JsonOption = False) -> None:
    """The shop's audit trail: every event once, with the frozen balance after it."""
    with open_ledger(ctx) as ledger:
        rows = ledger.audit(shop)
        _warn_if_stale(ledger)
    if as_json:
        _print_json([audit_json(row) for row in rows])
    else:
        Console().print(audit_table(rows, title=f"Audit trail of {shop}"))


projections_app = typer.Typer(
    help="Inspect, catch up, rebuild and keep current the read models (balances, audit_trail)."
)
app.add_typer(projections_app, name="projections")
ViewName = Annotated[str | None, typer.Argument(help="balances or audit_trail (default: all).", show_default=False)]


@projections_app.command("status")
def projections_status_command(ctx: typer.Context, name: ViewName = None, as_json: JsonOption = False) -> None:
    """Each view's position, the head of the event log, and the lag between them."""
    with open_ledger(ctx) as ledger:
        statuses = [s for s in ledger.projection_status() if name is None or s.name == _view_name(ledger, name)]
    _report_views(statuses, as_json)


@projections_app.command("catch-up")
def projections_catch_up_command(ctx: typer.Context, name: ViewName = None, as_json: JsonOption = False) -> None:
    """Apply the events the views have not seen yet."""
    with open_ledger(ctx, migrate=True) as ledger:  # the views' tables are theirs to create
        names = [_view_name(ledger, name)] if name else None
        with progress_bar("catching up") as advance:
            ledger.views.catch_up(names, progress=advance)
        statuses = ledger.projection_status()
    _report_views(statuses, as_json)


@projections_app.command("rebuild")
def projections_rebuild_command(ctx: typer.Context, name: ViewName = None, as_json: JsonOption = False) -> None:
    """Rebuild views from the first event beside the live ones, then switch over."""
    with open_ledger(ctx, migrate=True) as ledger:  # the views' tables are theirs to create
        names = [_view_name(ledger, name)] if name else list(ledger.views.views)
        with progress_bar(f"rebuilding {', '.join(names)}") as advance:
            ledger.views.rebuild(*names, progress=advance)
        statuses = ledger.projection_status()
    _report_views(statuses, as_json)


def _report_views(statuses: list[ViewStatus], as_json: bool) -> None:
    if as_json:
        _print_json([projection_json(status) for status in statuses])
    else:
        Console().print(projections_table(statuses))


@projections_app.command("run")
def projections_run_command(
    ctx: typer.Context,
    name: ViewName = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep running: apply new events as they commit (PostgreSQL: woken by NOTIFY; SQLite: polling) "
            "until SIGTERM or SIGINT; reconnect when the store goes away.",
        ),
    ] = False,
    poll_interval: Annotated[
        float,
        typer.Option("--poll-interval", min=0.05, max=3600, help="Seconds between looks for new events."),
    ] = POLL_INTERVAL_S,
    as_json: JsonOption = False,
) -> None:
    """A projection worker: catch the views up and exit, or with --follow keep them current."""
    settings: Settings = ctx.obj
    store = resolve_store(settings.db)
    console = Console(stderr=True)
    status_line = console.status("starting") if console.is_terminal else None

    def notice(line: str) -> None:
        if status_line is not None:
            console.print(line, markup=False, highlight=False)
        else:
            sys.stderr.write(f"deposit-ledger: {line}\n")
            sys.stderr.flush()

    worker = ProjectionWorker(
        lambda: DepositLedger(store, actor=settings.actor, inline_views=False),
        [name] if name else None,
        poll_interval_s=poll_interval,
        on_status=(lambda status: status_line.update(worker_status_line(status))) if status_line else None,
        on_notice=notice,
    )
    with stopping_on_signals(worker), status_line or nullcontext():
        if follow:
            worker.follow()
            return
        worker.catch_up()
    if as_json:
        _print_json([projection_json(status) for status in worker.status.views])
    else:
        Console().print(projections_table(worker.status.views))


def _view_name(ledger: DepositLedger, name: str) -> str:
    try:
        return ledger.views.view(name).name
    except LookupError as error:
        raise MalformedInput(str(error)) from None


def _warn_if_stale(ledger: DepositLedger) -> None:
    try:
        statuses = ledger.projection_status()
    except StoreLocked:
        # The answer came from the view; only its lag is unknown while another session locks the events.
        sys.stderr.write("deposit-ledger: warning: the views' lag is unknown: another session locks the events\n")
        return
    for status in statuses:
        if status.lag:
            detail = f" ({status.error})" if status.error else ""
            sys.stderr.write(f"deposit-ledger: warning: view {status.name} lags {status.lag} events{detail}\n")


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The TCP port to listen on.")] = 8000,
) -> None:
    """Serve the ledger's HTTP API on this store until SIGTERM (docs/service.md)."""
    from ledger.faces.http.serve import serve  # the web stack is loaded only by the command that needs it

    settings: Settings = ctx.obj
    store = resolve_store(settings.db)
    sys.stderr.write(f"deposit-ledger: serving {store.describe()} on http://{host}:{port} (docs at /docs)\n")
    sys.stderr.flush()
    serve(store, host=host, port=port, policy=settings.policy)


keys_app = typer.Typer(help="API keys of the HTTP service: each with a name (the actor it writes as) and a role.")
app.add_typer(keys_app, name="keys")
KeyName = Annotated[str, typer.Argument(help="The key's name: the actor of every event written with it.")]


def _keys(ctx: typer.Context) -> ApiKeys:
    return ApiKeys(resolve_store(ctx.obj.db))


@keys_app.command("create")
def keys_create_command(
    ctx: typer.Context,
    name: KeyName,
    role: Annotated[str, typer.Option("--role", help=f"One of {', '.join(Role)}.")],
    as_json: JsonOption = False,
) -> None:
    """Create a key and print its secret, once: the store keeps only its hash."""
    keys = _keys(ctx)
    try:
        key, secret = keys.create(name, role)
    finally:
        keys.close()
    if as_json:
        _print_json({"name": key.name, "role": key.role.value, "key": secret})
        return
    Console().print(f"key [bold]{key.name}[/] ({key.role.value}): {secret}", markup=True, highlight=False)
    sys.stderr.write("deposit-ledger: keep the key now: it is not shown again\n")


@keys_app.command("list")
def keys_list_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every key with its role, creation and revocation times (never a secret)."""
    keys = _keys(ctx)
    try:
        listed = keys.all()
    finally:
        keys.close()
    if as_json:
        _print_json([key.as_json() for key in listed])
        return
    Console().print(keys_table(listed))


@keys_app.command("revoke")
def keys_revoke_command(ctx: typer.Context, name: KeyName, as_json: JsonOption = False) -> None:
    """Revoke a key: refused from now on by every server on this store. Its name is never reused."""
    keys = _keys(ctx)
    try:
        key = keys.revoke(name)
    finally:
        keys.close()
    if as_json:
        _print_json(key.as_json())
    else:
        Console().print(f"key {key.name} revoked at {key.revoked_at.isoformat() if key.revoked_at else '?'}")


@app.command("reconcile")
def reconcile_command(
    ctx: typer.Context,
    bill: Annotated[Path, typer.Argument(help="The channel's bill, as downloaded.", show_default=False)],
    channel: Annotated[str, typer.Option("--channel", help="alipay or wechat_pay: whose bill it is.")],
    day: Annotated[
        str | None, typer.Option("--date", help="The bill's day, YYYY-MM-DD (default: the bill's own).")
    ] = None,
    as_json: JsonOption = False,
    record: Annotated[
        bool, typer.Option("--record", help="Keep the outcome in the store (a new version when it changed).")
    ] = False,
) -> None:
    """Match a channel's daily bill with the ledger; exit 1 if anything did not match."""
    chosen = parse_choice(Channel, channel, "channel")
    bill_day = parse_bill_date(day) if day is not None else None
    with open_ledger(ctx) as ledger, reconcile_bill(ledger.store, ledger.mapper, bill, chosen, bill_day) as report:
        recorded = None
        if record:
            event, new = record_reconciliation(ledger, report)
            recorded = {"version": event.originator_version, "new": new, "actor": event.actor}
        if as_json:
            report.write_json(sys.stdout, recorded)
        else:
            console = Console()
            for table in reconciliation_tables(report):
                console.print(table)
            if recorded is not None:
                state = "recorded as" if recorded["new"] else "already recorded as"
                console.print(
                    f"{state} version {recorded['version']} of the {channel} reconciliation of {report.bill_date}"
                )
        ok = report.ok
        counts = {
            outcome: report.counts[outcome]
            for outcome in ("missing_in_ledger", "missing_in_channel", "amount_mismatch")
        }
    if not ok:
        found = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
        _fail(f"the {channel} bill does not match the ledger: {found}", EXIT_REFUSED)


@app.command("reconciliations")
def reconciliations_command(
    ctx: typer.Context,
    channel: Annotated[str | None, typer.Option("--channel", help="alipay or wechat_pay (default: both).")] = None,
    start: Annotated[str | None, typer.Option("--from", help="The first bill day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="The last bill day, YYYY-MM-DD.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The recorded reconciliations: every version, by bill day and channel."""
    chosen = parse_choice(Channel, channel, "channel") if channel is not None else None
    first = parse_bill_date(start) if start is not None else None
    last = parse_bill_date(end) if end is not None else None
    with open_ledger(ctx) as ledger:
        found = reconciliations(ledger, channel=chosen, start=first, end=last)
    if as_json:
        _print_json([reconciliation_json(event) for event in found])
    else:
        Console().print(reconciliations_table(found))


def parse_bill_date(text: str) -> date:
    """A bill's day as YYYY-MM-DD, or ``MalformedInput``."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise MalformedInput(f"date {text!r} is not YYYY-MM-DD") from None


app.add_typer(webhooks_app, name="webhooks")
app.command("relay")(relay_command)


@app.command("demo")
def demo_command(ctx: typer.Context) -> None:
    """Fill the store with a realistic month of deposits and print what happened."""
    with open_ledger(ctx, migrate=True) as ledger:
        run_demo(ledger, Console())


@app.command("migrate")
def migrate_command(ctx: typer.Context) -> None:
    """Create the store's tables (and its PostgreSQL schema) where missing; a current store is left as it is."""
    with open_ledger(ctx, migrate=True) as ledger:
        sys.stderr.write(f"deposit-ledger: {ledger.store.describe()} has the ledger's tables\n")


CLI_WORDING = {
    "categories_need_site": "--category needs --site: the policy prices categories per site",
    "required_or_site_and_categories": "give --required, or --site and --category to derive it from the policy",
    "currency_or_priced_site": "give --currency, or a --site the policy prices",
    "amount_or_order_value": "give AMOUNT or --order-value, not both: the order value prices by the policy",
    "categories_to_change": "give --add CATEGORY or --remove CATEGORY",
}
"""The rules between a command's inputs, worded with the command line's own options."""


def worded(error: MalformedInput) -> str:
    """The reason of ``error`` as the command line says it: its options by name."""
    if isinstance(error, InputsRule):
        return CLI_WORDING[error.rule]
    return str(error)


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the message holds: scripts read the reason from a single line.
    sys.stderr.write(f"deposit-ledger: {' '.join(message.split())}\n")
    raise SystemExit(code)


def _quiet_stdout() -> None:
    # What could not be written must not be tried again (and fail again) when the process exits.
    if sys.__stdout__ is None or sys.stdout is not sys.__stdout__:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        return


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``deposit-ledger``: run one command, turn errors into one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode Click returns the exit code of --help and friends.
        exit_code = command.main(args=argv, prog_name="deposit-ledger", standalone_mode=False)
        sys.stdout.flush()
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except typer.Abort:
        _fail("aborted", 130)
    except typer.TyperException as error:
        # Usage errors (a missing option, an unknown command) also get one line and exit 2.
        # format_message() names the option as typed ("Missing option '--channel'.");
        # str() would give the Python parameter name.
        message = error.format_message().strip()
        if not message:
            raise SystemExit(EXIT_MALFORMED) from None
        _fail(message, EXIT_MALFORMED)
    except MalformedInput as error:
        _fail(worded(error), EXIT_MALFORMED)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_MALFORMED)
    except LedgerError as error:
        _fail(str(error), EXIT_REFUSED)
    except (PersistenceError, psycopg.Error) as error:
        _fail(f"store unavailable: {str(error).strip() or type(error).__name__}", EXIT_MALFORMED)
    except EventSourcingError as error:
        # A stored record the ledger cannot read: a damaged or tampered store, never user input.
        _fail(f"cannot read the store: {error}; run deposit-ledger verify", EXIT_REFUSED)
    except OSError as error:
        # A file or the standard output that cannot be read or written: a full disk, a closed pipe.
        _quiet_stdout()
        where = f" ({error.filename})" if error.filename else ""
        _fail(f"input/output failed: {error.strerror or error}{where}", EXIT_MALFORMED)
    if isinstance(exit_code, int) and exit_code:
        raise SystemExit(exit_code)
