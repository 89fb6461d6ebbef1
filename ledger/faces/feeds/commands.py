"""``deposit-ledger webhooks ...`` and ``deposit-ledger relay``: the feeds on the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from domain import MalformedInput, Refused
from ledger.app.service import DepositLedger
from ledger.faces.feeds.bus import SUBJECT_PREFIX
from ledger.faces.feeds.messages import iso
from ledger.faces.feeds.outbox import DELIVERED, PARKED, Delivery, FeedBook, from_ms
from ledger.faces.feeds.relay import POLL_INTERVAL_S, Relay, RelayReport, RelayWorker
from ledger.faces.feeds.subscriptions import (
    Subscription,
    parse_secret,
    parse_types,
    parse_url,
    subscription_id,
)
from ledger.store.urls import resolve_store
from ledger.views.workers import stopping_on_signals

webhooks_app = typer.Typer(help="Webhook subscriptions and their deliveries.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class UnknownSubscription(Refused):
    """No subscription has that id."""


class SubscriptionConflict(Refused):
    """The URL is subscribed already, to other types or with another secret."""


@contextmanager
def _ledger(ctx: typer.Context) -> Iterator[DepositLedger]:
    settings = ctx.obj
    ledger = DepositLedger(resolve_store(settings.db), actor=settings.actor, policy=settings.policy, inline_views=False)
    try:
        yield ledger
    finally:
        ledger.close()


@contextmanager
def _book(ledger: DepositLedger) -> Iterator[FeedBook]:
    book = FeedBook(ledger.store)
    try:
        book.ensure_tables()
        yield book
    finally:
        book.close()


@webhooks_app.command("add")
def add_command(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST: http(s)://HOST/PATH.", show_default=False)],
    events: Annotated[
        str, typer.Option("--events", help="Event types and notices, comma-separated (Paid,DepositShort,...), or *.")
    ],
    secret: Annotated[str, typer.Option("--secret", help="The signing secret: whsec_<base64 of 24-64 bytes>.")],
    as_json: JsonOption = False,
) -> None:
    """Subscribe a URL to events and notices from now on, signed with SECRET (Standard Webhooks)."""
    wanted = Subscription(
        id=subscription_id(parse_url(url)),
        url=parse_url(url),
        types=parse_types(events),
        secret=parse_secret(secret),
        created_at=datetime.now(tz=UTC),
    )
    with _ledger(ctx) as ledger, _book(ledger) as book:
        stored, created = book.add_subscription(wanted, ledger.views.head())
    if not created and (stored.types, stored.secret) != (wanted.types, wanted.secret):
        raise SubscriptionConflict(
            f"{stored.url} is subscribed already as {stored.id} to {','.join(stored.types)}: "
            f"remove it first (deposit-ledger webhooks remove {stored.id})"
        )
    if as_json:
        _print_json({**subscription_json(stored), "duplicate": not created})
        return
    verb = "subscribed" if created else "duplicate: already subscribed;"
    Console().print(f"{verb} {stored.id} {stored.url} to {','.join(stored.types)}", markup=False, highlight=False)


@webhooks_app.command("list")
def list_command(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The subscriptions: URL, types, masked secret."""
    with _ledger(ctx) as ledger, _book(ledger) as book:
        subscriptions = book.subscriptions()
    if as_json:
        _print_json([subscription_json(subscription) for subscription in subscriptions])
        return
    table = Table(title="Webhook subscriptions", title_justify="left")
    # Ids are what people copy into the next command: never cut; the rest folds.
    table.add_column("id", no_wrap=True, min_width=15)
    for column in ("url", "events", "secret", "since"):
        table.add_column(column, overflow="fold")
    for subscription in subscriptions:
        table.add_row(
            subscription.id,
            subscription.url,
            ",".join(subscription.types),
            subscription.masked_secret,
            iso(subscription.created_at),
        )
    Console().print(table)


@webhooks_app.command("remove")
def remove_command(
    ctx: typer.Context, subscription: Annotated[str, typer.Argument(help="The subscription's id (wh_...).")]
) -> None:
    """Unsubscribe: its waiting deliveries are dropped with it."""
    with _ledger(ctx) as ledger, _book(ledger) as book:
        if not book.remove_subscription(subscription):
            raise UnknownSubscription(f"no subscription {subscription}: see deposit-ledger webhooks list")
    Console().print(f"removed {subscription}", markup=False, highlight=False)


@webhooks_app.command("deliveries")
def deliveries_command(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only those failing: retrying or parked.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="At most this many, newest first.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Deliveries, newest first: status, attempts, last error, next attempt."""
    with _ledger(ctx) as ledger, _book(ledger) as book:
        deliveries = book.deliveries(failed_only=failed, limit=limit)
    if as_json:
        _print_json([delivery_json(delivery) for delivery in deliveries])
        return
    table = Table(title="Failing deliveries" if failed else "Deliveries", title_justify="left")
    table.add_column("id", no_wrap=True, min_width=24)
    # The subscription of each is in --json; the table keeps to what a person on call reads.
    for column in ("type", "shop", "position", "status", "attempts", "next attempt", "error"):
        table.add_column(column, justify="right" if column in ("position", "attempts") else "left", overflow="fold")
    for delivery in deliveries:
        entry = delivery_json(delivery)
        table.add_row(
            delivery.id,
            delivery.type,
            delivery.shop_id,
            str(delivery.position),
            entry["status"],
            str(delivery.attempts),
            entry["next_attempt_at"] or "",
            delivery.last_error or "",
        )
    Console().print(table)


@webhooks_app.command("retry")
def retry_command(
    ctx: typer.Context,
    delivery: Annotated[str, typer.Argument(help="The delivery's id (dlv_...), from webhooks deliveries.")],
    as_json: JsonOption = False,
) -> None:
    """Send a delivery again now (a parked one gets a fresh round of retries)."""
    with _ledger(ctx) as ledger:
        relay = Relay(ledger)
        try:
            after = relay.retry(delivery)
        finally:
            relay.close()
    if as_json:
        _print_json(delivery_json(after))
        return
    if after.status == DELIVERED:
        line = f"delivered {after.id} ({after.type} of {after.shop_id})"
    elif after.attempts == 0:
        line = f"queued {after.id}: it waits for an earlier delivery of shop {after.shop_id}"
    else:
        line = f"failed again {after.id}: {after.last_error}; next attempt {delivery_json(after)['next_attempt_at']}"
    Console().print(line, markup=False, highlight=False)


def relay_command(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            help="Keep running: relay new events as they commit and retry when due, until SIGTERM or SIGINT.",
        ),
    ] = False,
    nats_url: Annotated[
        str | None, typer.Option("--nats", help="Publish every event to NATS JetStream at nats://HOST:4222.")
    ] = None,
    stream: Annotated[
        str | None, typer.Option("--stream", help="The JetStream stream (created if missing), with --nats.")
    ] = None,
    subject_prefix: Annotated[
        str, typer.Option("--subject-prefix", help="The first token of the subjects, with --nats.")
    ] = SUBJECT_PREFIX,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.05, max=3600, help="Seconds between looks for new events.")
    ] = POLL_INTERVAL_S,
) -> None:
    """Feed the events to the webhook subscriptions (or with --nats to a JetStream stream): catch up and exit,
    or with --follow keep going."""
    # Imported here: the NATS client is needed by this command alone.
    from ledger.faces.feeds.nats_bus import NatsJetStreamBus, parse_nats_url, parse_stream_name

    if (nats_url is None) != (stream is None):
        raise MalformedInput("--nats and --stream go together")
    if nats_url is not None and stream is not None:
        parse_nats_url(nats_url)
        parse_stream_name(stream)
    settings = ctx.obj
    store = resolve_store(settings.db)

    def open_relay() -> Relay:
        ledger = DepositLedger(store, actor=settings.actor, policy=settings.policy, inline_views=False)
        try:
            bus = (
                NatsJetStreamBus(nats_url, stream, subject_prefix=subject_prefix)
                if nats_url is not None and stream is not None
                else None
            )
        except BaseException:
            ledger.close()
            raise
        return _ClosingRelay(ledger, bus=bus, subject_prefix=subject_prefix)

    def notice(line: str) -> None:
        sys.stderr.write(f"deposit-ledger: relay: {line}\n")
        sys.stderr.flush()

    if follow:
        worker = RelayWorker(open_relay, poll_interval_s=poll_interval, on_notice=notice)
        with stopping_on_signals(worker):  # type: ignore[arg-type]
            worker.follow()
        return
    relay = open_relay()
    try:
        report = relay.run_once()
    finally:
        relay.close()
    Console().print(_report_line(report, relay), markup=False, highlight=False)


class _ClosingRelay(Relay):
    """A relay that owns its ledger and bus, for the command line."""

    def close(self) -> None:
        super().close()
        if self.bus is not None:
            self.bus.close()
        self.ledger.close()


def _report_line(report: RelayReport, relay: Relay) -> str:
    if relay.bus is not None:
        return f"published {report.published} events to {relay.bus.target}"
    line = f"queued {report.queued} messages, delivered {report.delivered}"
    if report.failed_attempts:
        line += f", {report.failed_attempts} failed attempts ({report.parked} parked)"
    return line


def subscription_json(subscription: Subscription) -> dict[str, Any]:
    """A subscription as ``webhooks list --json`` shows it (the secret masked)."""
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": list(subscription.types),
        "secret": subscription.masked_secret,
        "created_at": iso(subscription.created_at),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """A delivery as ``webhooks deliveries --json`` shows it."""
    status = delivery.status
    if status not in (DELIVERED, PARKED) and delivery.attempts > 0:
        status = "retrying"
    waiting = delivery.status not in (DELIVERED, PARKED)
    return {
        "id": delivery.id,
        "subscription": delivery.subscription,
        "webhook_id": delivery.message_id,
        "type": delivery.type,
        "shop_id": delivery.shop_id,
        "position": delivery.position,
        "status": status,
        "attempts": delivery.attempts,
        "last_attempt_at": iso(from_ms(delivery.last_attempt_ms)) if delivery.last_attempt_ms is not None else None,
        "next_attempt_at": iso(from_ms(delivery.next_attempt_ms)) if waiting else None,
        "delivered_at": iso(from_ms(delivery.delivered_ms)) if delivery.delivered_ms is not None else None,
        "error": delivery.last_error,
    }


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
