"""``/v1/webhooks``: the webhook subscriptions over HTTP, for ``admin`` keys (as ``deposit-ledger webhooks``).

- ``GET /v1/webhooks``: the subscriptions (secrets masked).
- ``POST /v1/webhooks`` ``{"url", "events", "secret"}``: subscribe; 201, or 200 with
  ``duplicate`` when the same subscription exists; 409 when the URL is subscribed otherwise.
- ``DELETE /v1/webhooks/{id}``: unsubscribe; 204, or 404.
- ``GET /v1/webhooks/deliveries?failed=true&limit=N``: deliveries, newest first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ledger.app.service import DepositLedger
from ledger.faces.feeds.commands import delivery_json, subscription_json
from ledger.faces.feeds.outbox import FeedBook
from ledger.faces.feeds.subscriptions import (
    MAX_URL_LENGTH,
    Subscription,
    parse_secret,
    parse_types,
    parse_url,
    subscription_id,
)
from ledger.faces.http.answers import json_response
from ledger.faces.http.auth import Caller, requires, service_of
from ledger.faces.http.problems import Problem
from ledger.faces.http.roles import Action

router = APIRouter(prefix="/v1", tags=["webhooks"])

_Answer = TypeVar("_Answer")


class WebhookIn(BaseModel):
    """A subscription to add: ``events`` as ``"Paid,DepositShort"``, a list, or ``"*"``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH)
    events: str | list[Annotated[str, Field(max_length=64)]] = Field(max_length=64)
    secret: str = Field(max_length=200)


def _with_book(request: Request, use: Callable[[FeedBook, DepositLedger], _Answer]) -> _Answer:
    def query(ledger: DepositLedger) -> _Answer:
        book = FeedBook(ledger.store)
        try:
            book.ensure_tables()
            return use(book, ledger)
        finally:
            book.close()

    return service_of(request).read(query)


@router.get("/webhooks", summary="The webhook subscriptions")
def list_webhooks(request: Request, who: Annotated[Caller, Depends(requires(Action.WEBHOOKS))]) -> Response:
    """As ``webhooks list --json``."""
    found = _with_book(request, lambda book, _: book.subscriptions())
    return json_response([subscription_json(subscription) for subscription in found])


@router.post("/webhooks", summary="Subscribe a URL to events and notices, signed with a secret", status_code=201)
def add_webhook(
    request: Request, body: WebhookIn, who: Annotated[Caller, Depends(requires(Action.WEBHOOKS))]
) -> Response:
    """As ``webhooks add URL --events TYPES --secret SECRET --json``."""
    events = body.events if isinstance(body.events, str) else ",".join(body.events)
    url = parse_url(body.url)
    wanted = Subscription(subscription_id(url), url, parse_types(events), parse_secret(body.secret), datetime.now(UTC))
    stored, created = _with_book(request, lambda book, ledger: book.add_subscription(wanted, ledger.views.head()))
    if not created and (stored.types, stored.secret) != (wanted.types, wanted.secret):
        raise Problem(409, "refused", f"{stored.url} is subscribed already as {stored.id}: remove it first")
    return json_response({**subscription_json(stored), "duplicate": not created}, status=201 if created else 200)


@router.delete("/webhooks/{subscription}", summary="Unsubscribe", status_code=204)
def remove_webhook(
    request: Request, subscription: str, who: Annotated[Caller, Depends(requires(Action.WEBHOOKS))]
) -> Response:
    """As ``webhooks remove ID``."""
    if not _with_book(request, lambda book, _: book.remove_subscription(subscription)):
        raise Problem(404, "webhook-not-found", f"no subscription {subscription}")
    return Response(status_code=204)


@router.get("/webhooks/deliveries", summary="Deliveries, newest first: status, attempts, last error")
def list_deliveries(
    request: Request,
    who: Annotated[Caller, Depends(requires(Action.WEBHOOKS))],
    failed: Annotated[bool, Query(description="Only those failing: retrying or parked.")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    """As ``webhooks deliveries --json``."""
    found = _with_book(request, lambda book, _: book.deliveries(failed_only=failed, limit=limit))
    return json_response([delivery_json(delivery) for delivery in found])
