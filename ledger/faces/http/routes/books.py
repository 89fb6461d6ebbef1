"""Ledger-wide reads: verification, the checkpoint, and the event feed for pollers."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from domain import DepositEvent, Opened
from ledger.app.service import DepositLedger
from ledger.faces.http.answers import json_response
from ledger.faces.http.auth import Caller, requires, service_of
from ledger.faces.http.pages import DEFAULT_LIMIT, MAX_LIMIT
from ledger.faces.http.roles import Action
from ledger.faces.reports import event_json

router = APIRouter(prefix="/v1", tags=["books"])

SHOPS_REMEMBERED = 10_000
"""Shop ids and currencies the feed keeps by deposit, so that a page costs one read of the log."""


@router.get("/verify", summary="Check the hash chain, the balances and the audit trail against the events")
def verify(request: Request, who: Annotated[Caller, Depends(requires(Action.VERIFY))]) -> Response:
    """As ``verify --json``; ``ok`` false lists the problems found."""
    report = service_of(request).read(lambda ledger: ledger.auditor().verify())
    return json_response(report.as_json())


@router.get("/checkpoint", summary="The head of the hash chain, to keep outside the database")
def checkpoint(request: Request, who: Annotated[Caller, Depends(requires(Action.VERIFY))]) -> Response:
    """As ``checkpoint --json``."""
    found = service_of(request).read(lambda ledger: ledger.auditor().checkpoint())
    return json_response(found.model_dump())


class _Shops:
    # Which shop (and currency) a deposit id belongs to, read from its Opened event once.
    def __init__(self) -> None:
        self._known: OrderedDict[UUID, tuple[str, str]] = OrderedDict()

    def of(self, ledger: DepositLedger, deposit: UUID) -> tuple[str, str]:
        found = self._known.get(deposit)
        if found is None:
            opened = next(iter(ledger.events.get(deposit, lte=1)))
            assert isinstance(opened, Opened)
            found = self._known[deposit] = (opened.shop_id, opened.currency)
            if len(self._known) > SHOPS_REMEMBERED:
                self._known.popitem(last=False)
        return found


@router.get("/events", summary="Every event in commit order, after a position (for pollers)")
def events(
    request: Request,
    who: Annotated[Caller, Depends(requires(Action.FEED))],
    after: Annotated[int, Query(ge=0, le=2**62, description="The last position already seen (0: from the start).")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Response:
    """Each item is ``history --json``'s entry with its ``position`` and ``shop_id``; poll again with
    ``after`` = ``next_after``."""
    shops: _Shops = request.app.state.feed_shops

    def page(ledger: DepositLedger) -> list[dict[str, Any]]:
        items = []
        for notification in ledger.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False):
            event = ledger.mapper.to_domain_event(notification)
            assert isinstance(event, DepositEvent)
            shop_id, currency = shops.of(ledger, event.originator_id)
            items.append({"position": notification.id, "shop_id": shop_id, **event_json(event, currency)})
        return items

    items = service_of(request).read(page)
    return json_response({"items": items, "next_after": items[-1]["position"] if items else after})


def feed_shops() -> _Shops:
    """The feed's memory of deposits' shops, one per app."""
    return _Shops()
