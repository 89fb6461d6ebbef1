"""``POST /v1/batch``: journal lines (``docs/journal.md``), each decided and answered on its own."""

from __future__ import annotations

from typing import Annotated, Any

from eventsourcing.persistence import IntegrityError
from fastapi import APIRouter, Body, Depends, Request, Response

from domain import MalformedInput
from ledger.app.service import DepositLedger
from ledger.faces.http.answers import idempotent, json_response, keep_with_events
from ledger.faces.http.auth import Caller, allowed, caller, service_of
from ledger.faces.http.idempotency import Keeping
from ledger.faces.http.problems import Problem, problem_of
from ledger.faces.http.roles import JOURNAL_ACTIONS
from ledger.faces.reports import state_json
from ledger.tools.journal import JournalLine, LineResult, apply_line, json_array_lines

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


def _decided(line: JournalLine, who: Caller, ledger: DepositLedger) -> dict[str, Any]:
    # One line, inside the writer's batch; its failure is its own, its neighbours go on.
    try:
        stamped = JournalLine(line.number, line.raw, {**line.fields, "actor": who.name})
        return _answer(ledger, apply_line(ledger, stamped))
    except IntegrityError:
        raise  # another process saved a deposit of the batch first: the writer decides the batch again
    except Exception as error:
        return _rejected(line.number, problem_of(error))


def _rejected(number: int, problem: Problem) -> dict[str, Any]:
    return {"line": number, "outcome": "rejected", "status": problem.status, "problem": problem.document()}


def _answer(ledger: DepositLedger, result: LineResult) -> dict[str, Any]:
    if result.outcome == "rejected":
        if result.error is not None:
            return _rejected(result.line.number, problem_of(result.error))
        return _rejected(result.line.number, Problem(422, "malformed-input", result.reason or "malformed line"))
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
    """Each line needs the right its ``op`` names; a refused line does not stop the others.

    The lines are decided in one command of the group writer, so they commit together,
    with the answer kept for an Idempotency-Key.
    """
    parsed = _lines(await request.body())

    async def answer(keeping: Keeping | None) -> Response:
        refusals = {line.number: _refused_line(line, who) for line in parsed}

        def decided(ledger: DepositLedger) -> Response:
            results = []
            for line in parsed:
                refused = refusals[line.number]
                results.append(_rejected(line.number, refused) if refused else _decided(line, who, ledger))
            response = json_response({"results": results})
            keep_with_events(ledger, keeping, response)
            return response

        try:
            response: Response = await service_of(request).write(decided, weight=max(len(parsed), 1))
        except Exception as error:
            return problem_of(error).response()
        return response

    return await idempotent(request, who, answer)
