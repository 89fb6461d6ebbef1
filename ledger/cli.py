"""``deposit-ledger``: the command line of the deposit ledger (a fixed contract).

Exit codes: 0 done; 1 refused by a deposit rule; 2 malformed input. Every failure
is one line on stderr, and a failed command has written nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from domain import LedgerError, MalformedInput
from ledger.application import CommandResult, DepositLedger
from ledger.demo import run_demo
from ledger.reports import event_json, history_table, state_json, state_table
from ledger.store import resolve_store

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
        "--db", help="Store: an SQLite file path or sqlite:///path. [env: DEPOSIT_LEDGER_DB; default: deposits.db]"
    ),
]
ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who is recorded as asking. [env: DEPOSIT_LEDGER_ACTOR; default: the OS user]"),
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Effective time, ISO-8601 with a zone (default: now)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Shop = Annotated[str, typer.Argument(help="The shop's id.", show_default=False)]
Amount = Annotated[str, typer.Argument(help="Amount in major units, e.g. 1700.00.", show_default=False)]


class Settings:
    """The global options, shared by every command through Click's context."""

    def __init__(self, db: str | None, actor: str | None) -> None:
        self.db = db
        self.actor = actor or os.environ.get(ACTOR_ENV_VAR) or None


@app.callback()
def main_options(ctx: typer.Context, db: DbOption = None, actor: ActorOption = None) -> None:
    """Record and inspect shop deposits: pay, deduct, close, refund, force-close."""
    ctx.obj = Settings(db, actor)


@contextmanager
def open_ledger(ctx: typer.Context) -> Iterator[DepositLedger]:
    """The ledger on the chosen store, closed again when the command ends."""
    settings: Settings = ctx.obj
    ledger = DepositLedger(resolve_store(settings.db), actor=settings.actor)
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


def _write(ctx: typer.Context, as_json: bool, action: str, command: Callable[[DepositLedger], CommandResult]) -> None:
    with open_ledger(ctx) as ledger:
        _report(command(ledger), as_json, action)


@app.command("open")
def open_command(
    ctx: typer.Context,
    shop: Shop,
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code: CNY, USD, GBP, JPY...")],
    required: Annotated[str, typer.Option("--required", help="The deposit the platform requires.")],
    site: Annotated[str | None, typer.Option("--site", help="Marketplace site code, e.g. CN, US, UK.")] = None,
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Open a shop's deposit account with the required amount."""
    _write(
        ctx, as_json, "open", lambda ledger: ledger.open(shop, currency=currency, required=required, site=site, at=at)
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
    as_json: JsonOption = False,
) -> None:
    """Record a payment; it is frozen at once, after settling what the shop owes."""
    _write(
        ctx,
        as_json,
        f"payment {channel} {ref}",
        lambda ledger: ledger.pay(shop, amount, channel=channel, ref=ref, payer=payer, at=at),
    )


@app.command("deduct")
def deduct_command(
    ctx: typer.Context,
    shop: Shop,
    amount: Amount,
    reason: Annotated[
        str,
        typer.Option("--reason", help="fake_listing, order_brushing, late_shipment, after_sales_dispute or other."),
    ],
    case: Annotated[str, typer.Option("--case", help="The violation case id (idempotency key).")],
    note: Annotated[str, typer.Option("--note", help="Free text for people.")] = "",
    at: AtOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deduct a penalty; what the frozen balance cannot cover is recorded as owed."""
    _write(
        ctx,
        as_json,
        f"deduction {case}",
        lambda ledger: ledger.deduct(shop, amount, reason=reason, case=case, note=note, at=at),
    )


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
def history_command(ctx: typer.Context, shop: Shop, as_json: JsonOption = False) -> None:
    """The deposit's events, oldest first."""
    with open_ledger(ctx) as ledger:
        events = ledger.history(shop)
        currency = ledger.show(shop).currency
    if as_json:
        _print_json([event_json(event, currency) for event in events])
    else:
        Console().print(history_table(events, currency, title=f"History of {shop}"))


@app.command("demo")
def demo_command(ctx: typer.Context) -> None:
    """Fill the store with a realistic month of deposits and print what happened."""
    with open_ledger(ctx) as ledger:
        run_demo(ledger, Console())


def _fail(message: str, code: int) -> NoReturn:
    # One line whatever the message holds: scripts read the reason from a single line.
    sys.stderr.write(f"deposit-ledger: {' '.join(message.split())}\n")
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``deposit-ledger``: run one command, turn errors into one line and an exit code."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode Click returns the exit code of --help and friends.
        exit_code = command.main(args=argv, prog_name="deposit-ledger", standalone_mode=False)
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
        _fail(str(error), EXIT_MALFORMED)
    except LedgerError as error:
        _fail(str(error), EXIT_REFUSED)
    except PersistenceError as error:
        _fail(
            f"store unavailable: {str(error).splitlines()[0] if str(error) else type(error).__name__}", EXIT_MALFORMED
        )
    if isinstance(exit_code, int) and exit_code:
        raise SystemExit(exit_code)
