"""RFC 9457 problem details: every error the service answers, as ``application/problem+json``.

A ledger error keeps its one-line message as the ``detail``; the status says what
kind of failure it is: malformed input 422, an unknown shop 404, a deposit rule's
refusal 409, a missing or bad key 401, a role without the right 403, a stale
``If-Match`` 412, a store out of reach 503.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from domain import LedgerError, MalformedInput, ShopNotFound
from ledger.app.unit_of_work import ConcurrencyExhausted
from ledger.store.urls import UNAVAILABLE

PROBLEM_TYPE_BASE = "https://deposit-ledger.dev/problems/"
"""Problem types are named under this base; the names are stable, the pages need not exist."""

PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Refused",
    412: "Precondition failed",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Malformed input",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error to answer as a problem document: status, a stable type name and one line of detail."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = " ".join(detail.split())
        self.headers = headers or {}

    def document(self) -> dict[str, Any]:
        """The problem's JSON object."""
        return {
            "type": PROBLEM_TYPE_BASE + self.kind,
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }

    def response(self) -> JSONResponse:
        """The problem as a response."""
        return JSONResponse(
            self.document(), status_code=self.status, media_type=PROBLEM_MEDIA_TYPE, headers=self.headers
        )


def problem_of(error: BaseException) -> Problem:
    """The problem an exception raised while serving a request stands for."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, MalformedInput):
        return Problem(422, "malformed-input", str(error))
    if isinstance(error, ShopNotFound):
        return Problem(404, "shop-not-found", str(error))
    if isinstance(error, ConcurrencyExhausted):
        return Problem(503, "contention", str(error), {"Retry-After": "1"})
    if isinstance(error, (*UNAVAILABLE, PersistenceError)):
        return Problem(503, "store-unavailable", f"store unavailable: {str(error).strip() or type(error).__name__}")
    if isinstance(error, LedgerError):
        return Problem(409, "refused", str(error))
    if isinstance(error, ValidationError | ValueError):
        return Problem(422, "malformed-input", str(error).splitlines()[0] if str(error) else type(error).__name__)
    return Problem(500, "internal-error", "the service failed to answer; the request may be retried")


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(step) for step in item.get("loc", ()) if step != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid")))
    return "; ".join(parts) or "the request is malformed"


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error the app meets as a problem document, never as a traceback."""

    async def on_problem(_: Request, error: Exception) -> JSONResponse:
        return problem_of(error).response()

    async def on_validation(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return Problem(422, "malformed-input", _validation_detail(error)).response()

    async def on_http(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        kind = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        return Problem(error.status_code, kind, str(error.detail), dict(error.headers or {})).response()

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    # Anything else is the guard middleware's: a 500 problem, never a traceback to the client.
    for known in (Problem, LedgerError, ValidationError, PersistenceError, *UNAVAILABLE):
        app.add_exception_handler(known, on_problem)
