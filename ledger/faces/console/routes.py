"""The console's pages and forms, under ``/console``.

Every page reads through the service's reading ledger and every form writes
through its group writer: the same application commands and queries the API
calls, with the same errors (a refusal is the API's 409, malformed input its
422), shown on the page instead of as a problem document. The actor of what a
form writes is the signed-in key's name, as in the API.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from domain import AppealFiled, AppealStage, DeductionReason, DepositEvent, HoldPlaced, MalformedInput, Phase, Status
from ledger.app.parse import parse_shop_id, parse_time
from ledger.app.service import CommandResult, DepositLedger
from ledger.faces.console import chart
from ledger.faces.console.display import money, when, words
from ledger.faces.console.session import CSRF_FIELD, Session, Sessions
from ledger.faces.http.auth import service_of
from ledger.faces.http.pages import decode_cursor, encode_cursor
from ledger.faces.http.problems import Problem, problem_of
from ledger.faces.http.roles import Action, Role, may
from ledger.faces.reports import event_json

router = APIRouter(prefix="/console", include_in_schema=False)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters["money"] = money
TEMPLATES.env.filters["when"] = when
TEMPLATES.env.filters["words"] = words

PAGE_ROWS = 50
"""Shops per page, and entries per list of the work queue."""

HISTORY_ROWS = 200
"""Events a deposit's page lists, the newest first (the chart draws more; exports have them all)."""

SORTS = {"shop": "shop id", "shortfall": "shortfall, largest first", "top_up_due": "top-up deadline, soonest first"}

FORMS: dict[str, Action] = {
    "payments": Action.PAY,
    "deductions": Action.DEDUCT,
    "holds": Action.HOLD,
    "releases": Action.RELEASE,
    "appeal-resolutions": Action.RESOLVE_APPEAL,
    "closure": Action.CLOSE,
    "refund": Action.REFUND,
}
"""Each form of a deposit's page, by the last step of the path it posts to, with the action it needs."""

DONE = {
    "payments": "Payment recorded.",
    "deductions": "Deduction recorded.",
    "holds": "Hold placed.",
    "releases": "Hold released.",
    "appeal-resolutions": "Appeal resolved.",
    "closure": "Closure requested.",
    "refund": "Refund recorded.",
}


class SignInFirst(Exception):
    """The request has no live session: the answer is the sign-in page."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """The signed-in key: its name (the actor of what it writes), its role, and its forms' CSRF token."""

    name: str
    role: Role
    session: Session
    csrf: str

    def may(self, action: str) -> bool:
        """Whether the role may do ``action`` (an :class:`Action` value): what it may not is not offered."""
        return may(self.role, Action(action))


def sessions_of(request: Request) -> Sessions:
    """The app's session signer."""
    found: Sessions = request.app.state.console_sessions
    return found


def _visitor(request: Request) -> Visitor | None:
    # Blocking: the key is looked up in the store, so that a revoked key's session ends at once.
    sessions = sessions_of(request)
    session = sessions.read(request)
    if session is None or session.name is None:
        return None
    keys = service_of(request).keys
    assert keys is not None
    role = keys.live_role(session.name)
    if role is None:
        return None
    return Visitor(session.name, role, session, sessions.token(session))


def signed_in(request: Request) -> Visitor:
    """A dependency: the signed-in visitor, else the sign-in page (:class:`SignInFirst`)."""
    found = _visitor(request)
    if found is None:
        raise SignInFirst
    return found


SignedIn = Annotated[Visitor, Depends(signed_in)]


def page(request: Request, template: str, visitor: Visitor | None, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the console, with the layout's context."""
    return TEMPLATES.TemplateResponse(
        request, template, {"visitor": visitor, "actions": Action, **context}, status_code=status
    )


def to_sign_in(request: Request) -> RedirectResponse:
    """The answer to a request without a session: the sign-in page (303, so a POST becomes a GET)."""
    return RedirectResponse("/console/login", status_code=303)


# ----------------------------------------------------------------- sign-in


@router.get("", response_class=HTMLResponse)
def home() -> RedirectResponse:
    """The console starts at its list of shops."""
    return RedirectResponse("/console/shops", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    """The sign-in form: an API key, exchanged for a session."""
    if _visitor(request) is not None:
        return RedirectResponse("/console/shops", status_code=303)
    return _login_page(request)


def _login_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    sessions = sessions_of(request)
    session = sessions.read(request)
    if session is None or session.signed_in:
        session = sessions.anonymous()
    response = page(request, "login.html", None, status, csrf=sessions.token(session), error=error)
    sessions.write(response, request, session)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the form's token and the key; a live key starts a new session."""
    sessions = sessions_of(request)
    form = await request.form()
    if not sessions.token_matches(sessions.read(request), form.get(CSRF_FIELD)):
        return _login_page(request, 403, "The sign-in form had expired. Sign in again.")
    key = form.get("key")
    keys = service_of(request).keys
    assert keys is not None
    found = await run_in_threadpool(keys.authenticate, key.strip()) if isinstance(key, str) else None
    if found is None:
        return _login_page(request, 401, "That key is unknown or revoked.")
    name, role = found
    response = RedirectResponse("/console/shops", status_code=303)
    sessions.write(response, request, sessions.signed_in(name, role.value))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the form's token must match, so no other site can sign anyone out)."""
    sessions = sessions_of(request)
    form = await request.form()
    if not sessions.token_matches(sessions.read(request), form.get(CSRF_FIELD)):
        return _refused_form(request, await run_in_threadpool(_visitor, request))
    response = RedirectResponse("/console/login", status_code=303)
    sessions.forget(response, request)
    return response


# ------------------------------------------------------------------- shops


@router.get("/shops", response_class=HTMLResponse)
def shops(
    request: Request,
    visitor: SignedIn,
    status: Annotated[str | None, Query(max_length=40)] = None,
    site: Annotated[str | None, Query(max_length=40)] = None,
    underfunded: Annotated[str | None, Query(max_length=10)] = None,
    owing: Annotated[str | None, Query(max_length=10)] = None,
    overdue: Annotated[str | None, Query(max_length=10)] = None,
    sort: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> HTMLResponse:
    """Deposits filtered and sorted, a page at a time, with the totals per currency of all that match."""
    chosen: dict[str, Any] = {
        "status": status or None,
        "site": site or None,
        "underfunded": _ticked(underfunded),
        "owing": _ticked(owing),
        "overdue": _ticked(overdue),
    }
    order = sort or "shop"
    context: dict[str, Any] = {
        "filters": chosen,
        "sort": order,
        "sorts": SORTS,
        "statuses": [status.value for status in Status],
        "items": [],
        "totals": [],
        "next_url": None,
        "first_url": None,
    }
    try:
        after = _page_key(cursor, order)

        def read(ledger: DepositLedger) -> tuple[Any, ...]:
            states, next_key = ledger.shops_page(order=order, after=after, limit=PAGE_ROWS, **chosen)
            return states, next_key, ledger.shop_totals(**chosen)

        states, next_key, totals = service_of(request).read(read)
    except (MalformedInput, Problem) as error:
        problem = problem_of(error)
        return page(request, "shops.html", visitor, problem.status, error=problem.detail, **context)
    query = {name: ("1" if value is True else value) for name, value in chosen.items() if value}
    query["sort"] = order
    context.update(
        items=states,
        totals=totals,
        next_url=f"/console/shops?{urlencode({**query, 'cursor': _cursor(order, next_key)})}" if next_key else None,
        first_url=f"/console/shops?{urlencode(query)}" if cursor else None,
    )
    return page(request, "shops.html", visitor, **context)


def _ticked(value: str | None) -> bool:
    # A checkbox sends "1" (or "on"); a link may say true. Anything else leaves the filter off.
    return value is not None and value.strip().lower() in {"1", "on", "true", "yes"}


def _cursor(order: str, key: tuple[Any, ...]) -> str:
    return encode_cursor(json.dumps([order, *key], ensure_ascii=False))


def _page_key(cursor: str | None, order: str) -> tuple[Any, ...] | None:
    after = decode_cursor(cursor)
    if after is None:
        return None
    try:
        decoded = json.loads(after)
    except ValueError:
        decoded = None
    if not isinstance(decoded, list) or len(decoded) < 2 or decoded[0] != order:
        raise MalformedInput("cursor: not a cursor of this list (change the sort, start from the first page)")
    if not all(isinstance(part, str | int) and not isinstance(part, bool) for part in decoded[1:]):
        raise MalformedInput("cursor: not a cursor this service gave")
    return tuple(decoded[1:])


# -------------------------------------------------------------- one deposit


@router.get("/shops/{shop_id}", response_class=HTMLResponse)
def shop(request: Request, shop_id: str, visitor: SignedIn, done: str | None = None) -> HTMLResponse:
    """One deposit: figures, timeline chart, open cases, history, and the forms the role allows."""
    return _shop_page(request, visitor, shop_id, notice=DONE.get(done or ""))


def _shop_page(
    request: Request,
    visitor: Visitor,
    shop_id: str,
    *,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
    form: str | None = None,
) -> HTMLResponse:
    try:
        found = service_of(request).read(lambda ledger: _deposit_view(ledger, shop_id))
    except Exception as failure:
        problem = problem_of(failure)
        if problem.status >= 500:
            raise
        return page(request, "missing.html", visitor, problem.status, shop_id=shop_id, error=problem.detail)
    return page(
        request,
        "shop.html",
        visitor,
        status,
        notice=notice,
        error=error,
        failed_form=form,
        channels=["alipay", "wechat_pay"],
        reasons=[reason.value for reason in DeductionReason],
        path=f"/console/shops/{quote(found['state'].shop_id, safe='')}",
        **found,
    )


def _deposit_view(ledger: DepositLedger, shop_id: str) -> dict[str, Any]:
    # Everything a deposit's page shows, read in one go on the reading ledger.
    deposit = ledger.deposit(shop_id)
    state = ledger.show(shop_id)
    events = ledger.history(shop_id)
    currency = state.currency
    placed = {event.case_id: event.effective_at for event in events if isinstance(event, HoldPlaced)}
    holds = [
        {"case": case, "held_minor": hold.held_minor, "since": placed.get(case)}
        for case, hold in deposit.holds.items()
        if hold.held_minor
    ]
    filed = {event.case_id: event for event in events if isinstance(event, AppealFiled)}
    appeals = [
        {
            "case": case,
            "reason": item.reason.value,
            "amount_minor": item.amount_minor,
            "filed": filed[case].effective_at if case in filed else None,
        }
        for case, item in deposit.cases.items()
        if item.appeal is AppealStage.PENDING
    ]
    points = chart.timeline(events, currency)
    return {
        "state": state,
        "open": deposit.phase in (Phase.OPEN, Phase.CLOSING),
        "holds": holds,
        "appeals": appeals,
        "chart": chart.svg(points, currency, ledger.clock(), state.top_up_due),
        "chart_summary": chart.summary(points, currency) if points else "",
        "history": [_history_row(event, currency) for event in reversed(events[-HISTORY_ROWS:])],
        "history_total": len(events),
    }


def _history_row(event: DepositEvent, currency: str) -> dict[str, Any]:
    entry = event_json(event, currency)
    # The envelope has columns of its own; the currency is the deposit's; a false flag says nothing.
    details = {
        key: value
        for key, value in entry.items()
        if key not in {"type", "version", "effective_at", "recorded_at", "actor", "currency"}
        and value not in (None, "", [], False)
    }
    return {
        "type": event.type_name,
        "version": event.originator_version,
        "actor": event.actor,
        "effective_at": event.effective_at,
        "recorded_at": event.recorded_at,
        "details": "; ".join(f"{key.replace('_', ' ')} {_detail(value)}" for key, value in details.items()),
    }


def _detail(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_detail(item) for item in value)
    if isinstance(value, dict):
        return " ".join(str(item) for item in value.values())
    return str(value)


# ------------------------------------------------------------------- forms


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _optional(form: FormData, name: str) -> str | None:
    value = _field(form, name).strip()
    return value or None


LedgerCommand = Callable[[DepositLedger], CommandResult]


def _command(kind: str, shop_id: str, form: FormData, actor: str) -> LedgerCommand:
    # The form's fields, as the API's bodies name them, handed to the same ledger command the API calls.
    at = _optional(form, "at")
    note = _field(form, "note")
    if kind == "payments":
        return lambda ledger: ledger.pay(
            shop_id,
            _field(form, "amount"),
            channel=_field(form, "channel"),
            ref=_field(form, "ref"),
            payer=_optional(form, "payer"),
            at=at,
            actor=actor,
        )
    if kind == "deductions":
        return lambda ledger: ledger.deduct(
            shop_id,
            _optional(form, "amount"),
            reason=_field(form, "reason"),
            case=_field(form, "case"),
            note=note,
            order_value=_optional(form, "order_value"),
            at=at,
            actor=actor,
        )
    if kind == "holds":
        return lambda ledger: ledger.hold(
            shop_id, _field(form, "amount"), case=_field(form, "case"), note=note, at=at, actor=actor
        )
    if kind == "releases":
        return lambda ledger: ledger.release(shop_id, case=_field(form, "case"), note=note, at=at, actor=actor)
    if kind == "appeal-resolutions":
        upheld = _field(form, "upheld")
        if upheld not in {"true", "false"}:
            raise MalformedInput("upheld: choose upheld or rejected")
        return lambda ledger: ledger.resolve_appeal(
            shop_id, case=_field(form, "case"), upheld=upheld == "true", note=note, at=at, actor=actor
        )
    if kind == "closure":
        return lambda ledger: ledger.close_shop(shop_id, at=at, actor=actor)
    assert kind == "refund"
    return lambda ledger: ledger.refund(shop_id, at=at, actor=actor)


def _refused_form(request: Request, visitor: Visitor | None) -> HTMLResponse:
    return page(
        request,
        "refused.html",
        visitor,
        403,
        error="The form was stale or did not come from this console (its security token did not match). "
        "Reload the page and send it again.",
    )


@router.post("/shops/{shop_id}/{kind}", response_class=HTMLResponse)
async def shop_form(request: Request, shop_id: str, kind: str) -> Response:
    """A deposit's form: session, CSRF token and role checked, then the API's command, as the signed-in key."""
    if kind not in FORMS:
        return page(request, "refused.html", None, 404, error=f"There is no form {kind!r}.")
    visitor = await run_in_threadpool(_visitor, request)
    if visitor is None:
        return to_sign_in(request)
    form = await request.form()
    if not sessions_of(request).token_matches(visitor.session, form.get(CSRF_FIELD)):
        return _refused_form(request, visitor)
    action = FORMS[kind]
    if not may(visitor.role, action):
        return page(
            request,
            "refused.html",
            visitor,
            403,
            error=f"Role {visitor.role} may not {action.value} (key {visitor.name}).",
        )
    try:
        await service_of(request).write(_command(kind, shop_id, form, visitor.name))
    except Exception as failure:
        problem = problem_of(failure)
        if problem.status >= 500:
            raise
        return await run_in_threadpool(
            _shop_page, request, visitor, shop_id, status=problem.status, error=problem.detail, form=kind
        )
    return RedirectResponse(f"/console/shops/{quote(shop_id, safe='')}?done={kind}", status_code=303)


# -------------------------------------------------------------- work queue


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, visitor: SignedIn) -> HTMLResponse:
    """What waits for someone, the oldest first: open holds, appeals, refunds due, overdue top-ups."""
    found = service_of(request).read(lambda ledger: ledger.work_queue(limit=PAGE_ROWS))
    return page(request, "queue.html", visitor, queue=found, limit=PAGE_ROWS)


# ------------------------------------------------------------------- audit


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, visitor: SignedIn) -> HTMLResponse:
    """The latest checkpoint, verification on demand, and exports of the audit trail."""
    return _audit_page(request, visitor, "audit.html")


@router.get("/audit/verify", response_class=HTMLResponse)
def verify(request: Request, visitor: SignedIn, fragment: bool = False) -> HTMLResponse:
    """Verify the whole store now (it reads every event: seconds on a large store)."""
    if not visitor.may(Action.VERIFY.value):
        return page(request, "refused.html", visitor, 403, error=f"Role {visitor.role} may not verify.")
    return _audit_page(request, visitor, "verify_result.html" if fragment else "audit.html", verify=True)


def _audit_page(request: Request, visitor: Visitor, template: str, *, verify: bool = False) -> HTMLResponse:
    # The checkpoint (and the verification) of an auditor; a store whose chain key is not at hand says so here.
    if not visitor.may(Action.VERIFY.value):
        return page(request, template, visitor, checkpoint=None, report=None)

    def read(ledger: DepositLedger) -> dict[str, Any]:
        auditor = ledger.auditor()
        report = auditor.verify().as_json() if verify else None
        return {"checkpoint": auditor.checkpoint(), "report": report, "verified_at": ledger.clock()}

    try:
        found = service_of(request).read(read)
    except Exception as failure:
        problem = problem_of(failure)
        if problem.status >= 500:
            raise
        return page(request, template, visitor, problem.status, checkpoint=None, report=None, error=problem.detail)
    return page(request, template, visitor, **found)


@router.get("/audit/export")
def export(
    request: Request,
    visitor: SignedIn,
    format: Annotated[str, Query(max_length=10)] = "csv",
    shop: Annotated[str | None, Query(max_length=200)] = None,
    start: Annotated[str | None, Query(max_length=60)] = None,
    end: Annotated[str | None, Query(max_length=60)] = None,
) -> Response:
    """The audit trail with its chain hashes, as CSV or JSON lines: one shop's, or every shop's in a period."""
    try:
        if format not in {"csv", "jsonl"}:
            raise MalformedInput("format: csv or jsonl")
        shop_id = parse_shop_id(shop) if shop else None
        # A shop's trail is what the API lets every role read; the whole ledger's is the feed's (auditors).
        needed = Action.READ if shop_id is not None else Action.FEED
        if not may(visitor.role, needed):
            raise Problem(403, "forbidden", f"role {visitor.role} may export one shop's trail, not the whole ledger's")
        first = parse_time(start) if start else None
        last = parse_time(end) if end else None
        spooled = service_of(request).read(lambda ledger: _spool(ledger, format, shop_id, first, last))
    except Exception as failure:
        problem = problem_of(failure)
        if problem.status >= 500:
            raise
        return page(request, "audit.html", visitor, problem.status, checkpoint=None, report=None, error=problem.detail)
    name = f"audit-{shop_id or 'ledger'}.{format}"
    media = "text/csv; charset=utf-8" if format == "csv" else "application/jsonl; charset=utf-8"
    return StreamingResponse(
        _chunks(spooled),
        media_type=media,
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"},
    )


SPOOL_BYTES = 4 << 20
"""An export is kept in memory up to this size, then in a temporary file: memory stays bounded."""


def _spool(
    ledger: DepositLedger, file_format: str, shop_id: str | None, start: datetime | None, end: datetime | None
) -> IO[str]:
    deposit = ledger.deposit(shop_id).id if shop_id is not None else None
    # Returned open: the response streams it and closes it (_chunks).
    out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+", encoding="utf-8", newline="")  # noqa: SIM115
    ledger.auditor().export_audit(out, file_format=file_format, deposit=deposit, start=start, end=end)
    out.seek(0)
    return out


def _chunks(spooled: IO[str]) -> Iterator[bytes]:
    with spooled:
        while chunk := spooled.read(1 << 16):
            yield chunk.encode()
