"""``/v1/shops``: open a deposit, list them, read one, and every command on it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from domain import MalformedInput
from ledger.app.service import DepositLedger
from ledger.faces.http.answers import etag, json_response, write
from ledger.faces.http.auth import Caller, requires, service_of
from ledger.faces.http.bodies import (
    AppealBody,
    CategoriesBody,
    DeductionBody,
    ForcedClosureBody,
    HoldBody,
    MomentBody,
    NoteBody,
    OpenBody,
    PaymentBody,
    ResolutionBody,
    WriteOffBody,
)
from ledger.faces.http.pages import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from ledger.faces.http.roles import Action
from ledger.faces.reports import audit_json, event_json, state_json

router = APIRouter(prefix="/v1/shops", tags=["shops"])

ShopPath = Annotated[str, Path(max_length=100, description="The shop's id.")]
CasePath = Annotated[str, Path(max_length=100, description="The case id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=400, description="From a previous page's next_cursor.")]


# ------------------------------------------------------------------- reads


@router.get("", summary="List deposits (from the balances view), by shop id")
def list_shops(
    request: Request,
    who: Annotated[Caller, Depends(requires(Action.READ))],
    status: Annotated[str | None, Query(max_length=40)] = None,
    site: Annotated[str | None, Query(max_length=40)] = None,
    underfunded: bool = False,
    owing: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Deposits by shop id, a page at a time; ``next_cursor`` is null on the last page."""
    after = decode_cursor(cursor)
    # One more than the page: whether it exists says whether there is a next page.
    states = service_of(request).read(
        lambda ledger: ledger.shops(
            status=status, site=site, underfunded=underfunded, owing=owing, after=after, limit=limit + 1
        )
    )
    page = states[:limit]
    return json_response(
        {
            "items": [state_json(state) for state in page],
            "next_cursor": encode_cursor(page[-1].shop_id) if len(states) > limit else None,
        }
    )


@router.get("/{shop_id}", summary="A deposit's state, replayed from its events")
def show_shop(request: Request, shop_id: ShopPath, who: Annotated[Caller, Depends(requires(Action.READ))]) -> Response:
    """The same keys as ``show --json``; the ETag is the deposit's version, for ``If-Match``."""
    state = service_of(request).read(lambda ledger: ledger.show(shop_id))
    return json_response(state_json(state), headers={"ETag": etag(state.version)})


@router.get("/{shop_id}/balance", summary="A deposit's row in the balances view")
def shop_balance(
    request: Request, shop_id: ShopPath, who: Annotated[Caller, Depends(requires(Action.READ))]
) -> Response:
    """The same figures as the state, from one indexed row."""
    state = service_of(request).read(lambda ledger: ledger.balance(shop_id))
    return json_response(state_json(state), headers={"ETag": etag(state.version)})


@router.get("/{shop_id}/history", summary="A deposit's events, oldest first")
def shop_history(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.READ))],
    as_of: Annotated[str | None, Query(max_length=60, description="Only events effective by then.")] = None,
) -> Response:
    """As ``history --json``."""

    def history(ledger: DepositLedger) -> list[dict[str, object]]:
        events = ledger.history(shop_id, as_of=as_of)
        currency = ledger.show(shop_id).currency
        return [event_json(event, currency) for event in events]

    return json_response({"items": service_of(request).read(history)})


@router.get("/{shop_id}/audit", summary="A deposit's audit trail, a page at a time")
def shop_audit(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.READ))],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """As ``audit --json``, by position (and share, for a refund's channel shares)."""
    after = _audit_place(decode_cursor(cursor))
    rows = service_of(request).read(lambda ledger: ledger.audit(shop_id, after=after, limit=limit + 1))
    page = rows[:limit]
    return json_response(
        {
            "items": [audit_json(row) for row in page],
            "next_cursor": encode_cursor(f"{page[-1].position}.{page[-1].share}") if len(rows) > limit else None,
        }
    )


def _audit_place(after: str | None) -> tuple[int, int] | None:
    # An audit cursor holds "position.share" of the last row given.
    if after is None:
        return None
    position, dot, share = after.partition(".")
    digits = after.isascii() and position.isdecimal() and share.isdecimal()
    if not (dot and digits and len(position) <= 19 and len(share) <= 9):
        raise MalformedInput("cursor: not a cursor this service gave")
    return int(position), int(share)


@router.get("/{shop_id}/replay", summary="A deposit as it stood at a moment or version")
def shop_replay(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.READ))],
    as_of: Annotated[str | None, Query(max_length=60)] = None,
    version: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """Replayed from the events, never from the views."""
    if as_of is None and version is None:
        raise MalformedInput("replay needs as_of=TIME or version=N")
    state = service_of(request).read(lambda ledger: ledger.replay(shop_id, as_of=as_of, version=version))
    return json_response(state_json(state))


# ------------------------------------------------------------------ writes


@router.post("", summary="Open a shop's deposit", status_code=201)
async def open_shop(
    request: Request, body: OpenBody, who: Annotated[Caller, Depends(requires(Action.OPEN))]
) -> Response:
    """The required amount as given, or derived by the policy from the site and the categories."""
    return await write(
        request,
        who,
        lambda ledger: ledger.open(
            body.shop_id,
            currency=body.currency,
            required=body.required,
            site=body.site,
            categories=body.categories,
            at=body.at,
            actor=who.name,
        ),
        location=lambda result: f"/v1/shops/{quote(result.state.shop_id, safe='')}",
    )


@dataclass(frozen=True)
class ShopCommand:
    """One write route on a shop: ``POST /v1/shops/{shop_id}PATH``, answered by one ledger command.

    The body's fields (and the path's ``case``) are the ledger command's keyword
    arguments by the same names; the actor is always the caller's key.
    """

    path: str
    command: str
    """The :class:`DepositLedger` method that decides it."""
    action: Action
    body: type[BaseModel]
    summary: str
    description: str
    body_optional: bool = False
    """True: the body may be left out (every field of it has a default)."""
    name: str = ""
    """The endpoint's name, where it is not the command's (the OpenAPI operation id starts with it)."""


SHOP_COMMANDS = (
    ShopCommand(
        path="/payments",
        command="pay",
        action=Action.PAY,
        body=PaymentBody,
        summary="Record a payment",
        description="Frozen at once, after settling what the shop owes; idempotent by channel and ref.",
    ),
    ShopCommand(
        path="/deductions",
        command="deduct",
        action=Action.DEDUCT,
        body=DeductionBody,
        summary="Deduct a penalty",
        description="Given, or priced by the policy's catalogue; idempotent by case.",
    ),
    ShopCommand(
        path="/holds",
        command="hold",
        action=Action.HOLD,
        body=HoldBody,
        summary="Hold part of the frozen balance for a case",
        description="Held money cannot be refunded; idempotent by case.",
    ),
    ShopCommand(
        path="/holds/{case}/release",
        command="release",
        action=Action.RELEASE,
        body=NoteBody,
        body_optional=True,
        summary="Release a case's hold",
        description="It settles what is owed; the rest is frozen again.",
    ),
    ShopCommand(
        path="/appeals",
        command="appeal",
        action=Action.APPEAL,
        body=AppealBody,
        summary="The merchant appeals a deduction",
        description="Within the policy's appeal window.",
    ),
    ShopCommand(
        path="/appeals/{case}/resolution",
        command="resolve_appeal",
        action=Action.RESOLVE_APPEAL,
        body=ResolutionBody,
        summary="Record an appeal's outcome",
        description="``upheld: true`` reverses the deduction; false lets it stand.",
    ),
    ShopCommand(
        path="/categories",
        command="change_categories",
        name="categories",
        action=Action.CATEGORIES,
        body=CategoriesBody,
        summary="Change the shop's categories",
        description="The requirement becomes the highest of the new set.",
    ),
    ShopCommand(
        path="/apply-policy",
        command="apply_policy",
        action=Action.APPLY_POLICY,
        body=MomentBody,
        body_optional=True,
        summary="Bring the requirement in line with the policy",
        description="After a policy change.",
    ),
    ShopCommand(
        path="/refund-excess",
        command="refund_excess",
        action=Action.REFUND_EXCESS,
        body=MomentBody,
        body_optional=True,
        summary="Refund the frozen money above the requirement",
        description="Newest payment first; the shop stays open.",
    ),
    ShopCommand(
        path="/closure",
        command="close_shop",
        name="close",
        action=Action.CLOSE,
        body=MomentBody,
        body_optional=True,
        summary="The merchant closes the shop",
        description="The refund waits for the settlement window.",
    ),
    ShopCommand(
        path="/refund",
        command="refund",
        action=Action.REFUND,
        body=MomentBody,
        body_optional=True,
        summary="Refund what remains, once settlement is due",
        description="To the channels the money came from.",
    ),
    ShopCommand(
        path="/forced-closure",
        command="force_close",
        action=Action.FORCE_CLOSE,
        body=ForcedClosureBody,
        summary="The platform force-closes the shop",
        description="What remains is forfeited.",
    ),
    ShopCommand(
        path="/write-offs",
        command="write_off",
        action=Action.WRITE_OFF,
        body=WriteOffBody,
        summary="Write off what a closed shop still owes on a case",
        description="The debt becomes a recorded loss; idempotent by case.",
    ),
)
"""Every write on an existing shop, in the order the OpenAPI document lists them."""


def _endpoint(route: ShopCommand) -> Callable[..., Awaitable[Response]]:
    # An endpoint whose signature FastAPI reads as it would a hand-written one: the request, the
    # path's parameters, the body (required ones before the caller, an optional one last), the caller.
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("shop_id", keyword, annotation=ShopPath),
    ]
    if "{case}" in route.path:
        parameters.append(inspect.Parameter("case", keyword, annotation=CasePath))
    who = inspect.Parameter("who", keyword, annotation=Annotated[Caller, Depends(requires(route.action))])
    if route.body_optional:
        parameters += [who, inspect.Parameter("body", keyword, annotation=route.body | None, default=None)]
    else:
        parameters += [inspect.Parameter("body", keyword, annotation=route.body), who]

    async def endpoint(
        request: Request, shop_id: str, who: Caller, body: BaseModel | None = None, **path: str
    ) -> Response:
        given = body if body is not None else route.body()
        arguments = {**path, **given.model_dump(), "actor": who.name}
        return await write(
            request, who, lambda ledger: getattr(ledger, route.command)(shop_id, **arguments), shop_id=shop_id
        )

    endpoint.__signature__ = inspect.Signature(parameters, return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = route.name or route.command
    endpoint.__doc__ = route.description
    return endpoint


for _route in SHOP_COMMANDS:
    router.post(f"/{{shop_id}}{_route.path}", summary=_route.summary, status_code=201)(_endpoint(_route))
