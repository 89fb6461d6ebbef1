"""``POST /v1/batch``: journal lines (``docs/journal.md``), each decided and answered on its own."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from domain import MalformedInput
from ledger.application import DepositLedger
from ledger.faces.http.answers import idempotent, json_response
from ledger.faces.http.auth import Caller, allowed, caller, service_of
from ledger.faces.http.problems import Problem, problem_of
from ledger.faces.http.roles import JOURNAL_ACTIONS
from ledger.journal import JournalLine, LineResult, apply_line, json_array_lines
from ledger.reports import state_json

router = APIRouter(prefix="/v1", tags=["batch"])

MAX_BATCH_LINES = 1000
"""Lines one request may carry; a longer journal is ``import``'s job, or several requests."""


def _lines(raw: bytes) -> list[JournalLine]:
    # Each object is read as import reads a JSON line: numbers exactly as written, never as floats.
    lines = json_array_lines(raw)
    if len(lines) > MAX_BATCH_LINES:
        raise MalformedInput(f"a batch holds at most {MAX_BATCH_LINES} lines")
    return lines


def _refused_line(line: JournalLine, who: Caller) -> Problem | None:
    # What refuses a line before the ledger sees it: the caller's role, or an actor it cannot choose.
    if line.error is not None:
        return Problem(422, "malformed-input", line.error)
    if "actor" in line.fields:
        return Problem(422, "malformed-input", "field 'actor' is the API key's name: leave it out")
    action = JOURNAL_ACTIONS.get(line.fields.get("op", "").strip().lower())
    if action is not None:
        try:
            allowed(who, action)
        except Problem as refused:
            return refused
    return None


def _decide(line: JournalLine, who: Caller) -> Any:
    fields = {**line.fields, "actor": who.name}
    stamped = JournalLine(line.number, line.raw, fields)

    def command(ledger: DepositLedger) -> dict[str, Any]:
        result = apply_line(ledger, stamped)
        return _answer(ledger, result)

    return command


def _answer(ledger: DepositLedger, result: LineResult) -> dict[str, Any]:
    if result.outcome == "rejected":
        if result.error is not None:
            problem = problem_of(result.error)
        else:
            problem = Problem(422, "malformed-input", result.reason or "malformed line")
        return {
            "line": result.line.number,
            "outcome": "rejected",
            "status": problem.status,
            "problem": problem.document(),
        }
    state = state_json(ledger.show(result.line.fields["shop"]))
    state["duplicate"] = result.outcome == "duplicate"
    return {
        "line": result.line.number,
        "outcome": result.outcome,
        "status": 200 if result.outcome == "duplicate" else 201,
        "state": state,
    }


@router.post(
    "/batch",
    summary="Apply journal lines in order, each answered on its own",
    responses={200: {"description": "One result per line, in order: its outcome, status, and state or problem."}},
)
async def batch(
    request: Request,
    who: Annotated[Caller, Depends(caller)],
    lines: Annotated[list[dict[str, Any]], Body(description="Journal lines, as in docs/journal.md.")],
) -> Response:
    """Each line needs the right its ``op`` names; a refused line does not stop the others."""

    async def answer() -> Response:
        parsed = _lines(await request.body())
        service = service_of(request)
        pending: list[Any] = []
        for line in parsed:
            refused = _refused_line(line, who)
            if refused is not None:
                pending.append(
                    {
                        "line": line.number,
                        "outcome": "rejected",
                        "status": refused.status,
                        "problem": refused.document(),
                    }
                )
            else:
                pending.append(asyncio.ensure_future(service.write(_decide(line, who))))
        results = []
        for item in pending:
            if isinstance(item, dict):
                results.append(item)
                continue
            try:
                results.append(await item)
            except Exception as error:  # the line's own failure; its neighbours have their answers
                problem = problem_of(error)
                results.append({"outcome": "rejected", "status": problem.status, "problem": problem.document()})
        return json_response({"results": results})

    return await idempotent(request, who, answer)
