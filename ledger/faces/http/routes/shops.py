"""``/v1/shops``: open a deposit, list them, read one, and every command on it."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from domain import MalformedInput
from ledger.application import DepositLedger
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
from ledger.reports import audit_json, event_json, state_json

router = APIRouter(prefix="/v1/shops", tags=["shops"])

ShopPath = Annotated[str, Path(max_length=100, description="The shop's id.")]
CasePath = Annotated[str, Path(max_length=100, description="The case id.")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=400, description="From a previous page's next_cursor.")]


_Body = TypeVar("_Body")


def _body(body: _Body | None, default: _Body) -> _Body:
    return body if body is not None else default


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
        location=lambda result: f"/v1/shops/{result.state.shop_id}",
    )


@router.post("/{shop_id}/payments", summary="Record a payment", status_code=201)
async def pay(
    request: Request, shop_id: ShopPath, body: PaymentBody, who: Annotated[Caller, Depends(requires(Action.PAY))]
) -> Response:
    """Frozen at once, after settling what the shop owes; idempotent by channel and ref."""
    return await write(
        request,
        who,
        lambda ledger: ledger.pay(
            shop_id,
            body.amount,
            channel=body.channel,
            ref=body.ref,
            payer=body.payer,
            at=body.at,
            channel_time=body.channel_time,
            actor=who.name,
        ),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/deductions", summary="Deduct a penalty", status_code=201)
async def deduct(
    request: Request, shop_id: ShopPath, body: DeductionBody, who: Annotated[Caller, Depends(requires(Action.DEDUCT))]
) -> Response:
    """Given, or priced by the policy's catalogue; idempotent by case."""
    return await write(
        request,
        who,
        lambda ledger: ledger.deduct(
            shop_id,
            body.amount,
            reason=body.reason,
            case=body.case,
            note=body.note,
            order_value=body.order_value,
            at=body.at,
            actor=who.name,
        ),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/holds", summary="Hold part of the frozen balance for a case", status_code=201)
async def hold(
    request: Request, shop_id: ShopPath, body: HoldBody, who: Annotated[Caller, Depends(requires(Action.HOLD))]
) -> Response:
    """Held money cannot be refunded; idempotent by case."""
    return await write(
        request,
        who,
        lambda ledger: ledger.hold(shop_id, body.amount, case=body.case, note=body.note, at=body.at, actor=who.name),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/holds/{case}/release", summary="Release a case's hold", status_code=201)
async def release(
    request: Request,
    shop_id: ShopPath,
    case: CasePath,
    who: Annotated[Caller, Depends(requires(Action.RELEASE))],
    body: NoteBody | None = None,
) -> Response:
    """It settles what is owed; the rest is frozen again."""
    given = _body(body, NoteBody())
    return await write(
        request,
        who,
        lambda ledger: ledger.release(shop_id, case=case, note=given.note, at=given.at, actor=who.name),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/appeals", summary="The merchant appeals a deduction", status_code=201)
async def appeal(
    request: Request, shop_id: ShopPath, body: AppealBody, who: Annotated[Caller, Depends(requires(Action.APPEAL))]
) -> Response:
    """Within the policy's appeal window."""
    return await write(
        request,
        who,
        lambda ledger: ledger.appeal(shop_id, case=body.case, note=body.note, at=body.at, actor=who.name),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/appeals/{case}/resolution", summary="Record an appeal's outcome", status_code=201)
async def resolve_appeal(
    request: Request,
    shop_id: ShopPath,
    case: CasePath,
    body: ResolutionBody,
    who: Annotated[Caller, Depends(requires(Action.RESOLVE_APPEAL))],
) -> Response:
    """``upheld: true`` reverses the deduction; false lets it stand."""
    return await write(
        request,
        who,
        lambda ledger: ledger.resolve_appeal(
            shop_id, case=case, upheld=body.upheld, note=body.note, at=body.at, actor=who.name
        ),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/categories", summary="Change the shop's categories", status_code=201)
async def categories(
    request: Request,
    shop_id: ShopPath,
    body: CategoriesBody,
    who: Annotated[Caller, Depends(requires(Action.CATEGORIES))],
) -> Response:
    """The requirement becomes the highest of the new set."""
    return await write(
        request,
        who,
        lambda ledger: ledger.change_categories(shop_id, add=body.add, remove=body.remove, at=body.at, actor=who.name),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/apply-policy", summary="Bring the requirement in line with the policy", status_code=201)
async def apply_policy(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.APPLY_POLICY))],
    body: MomentBody | None = None,
) -> Response:
    """After a policy change."""
    given = _body(body, MomentBody())
    return await write(
        request, who, lambda ledger: ledger.apply_policy(shop_id, at=given.at, actor=who.name), shop_id=shop_id
    )


@router.post("/{shop_id}/refund-excess", summary="Refund the frozen money above the requirement", status_code=201)
async def refund_excess(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.REFUND_EXCESS))],
    body: MomentBody | None = None,
) -> Response:
    """Newest payment first; the shop stays open."""
    given = _body(body, MomentBody())
    return await write(
        request, who, lambda ledger: ledger.refund_excess(shop_id, at=given.at, actor=who.name), shop_id=shop_id
    )


@router.post("/{shop_id}/closure", summary="The merchant closes the shop", status_code=201)
async def close(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.CLOSE))],
    body: MomentBody | None = None,
) -> Response:
    """The refund waits for the settlement window."""
    given = _body(body, MomentBody())
    return await write(
        request, who, lambda ledger: ledger.close_shop(shop_id, at=given.at, actor=who.name), shop_id=shop_id
    )


@router.post("/{shop_id}/refund", summary="Refund what remains, once settlement is due", status_code=201)
async def refund(
    request: Request,
    shop_id: ShopPath,
    who: Annotated[Caller, Depends(requires(Action.REFUND))],
    body: MomentBody | None = None,
) -> Response:
    """To the channels the money came from."""
    given = _body(body, MomentBody())
    return await write(
        request, who, lambda ledger: ledger.refund(shop_id, at=given.at, actor=who.name), shop_id=shop_id
    )


@router.post("/{shop_id}/forced-closure", summary="The platform force-closes the shop", status_code=201)
async def force_close(
    request: Request,
    shop_id: ShopPath,
    body: ForcedClosureBody,
    who: Annotated[Caller, Depends(requires(Action.FORCE_CLOSE))],
) -> Response:
    """What remains is forfeited."""
    return await write(
        request,
        who,
        lambda ledger: ledger.force_close(shop_id, reason=body.reason, at=body.at, actor=who.name),
        shop_id=shop_id,
    )


@router.post("/{shop_id}/write-offs", summary="Write off what a closed shop still owes on a case", status_code=201)
async def write_off(
    request: Request,
    shop_id: ShopPath,
    body: WriteOffBody,
    who: Annotated[Caller, Depends(requires(Action.WRITE_OFF))],
) -> Response:
    """The debt becomes a recorded loss; idempotent by case."""
    return await write(
        request,
        who,
        lambda ledger: ledger.write_off(shop_id, case=body.case, reason=body.reason, at=body.at, actor=who.name),
        shop_id=shop_id,
    )
