"""How a write is answered: the deposit's state and ``duplicate``, its ETag, If-Match, Idempotency-Key."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from ledger.app.service import CommandResult, DepositLedger
from ledger.faces.http.auth import Caller, service_of
from ledger.faces.http.idempotency import HEADER, MAX_KEY_CHARS, Keeping, Remembered, request_digest
from ledger.faces.http.problems import PROBLEM_MEDIA_TYPE, Problem, problem_of
from ledger.faces.reports import state_json

JSON_MEDIA_TYPE = "application/json"
REPLAYED_HEADER = "Idempotent-Replayed"

LedgerCommand = Callable[[DepositLedger], CommandResult]


def etag(version: int) -> str:
    """The ETag of a deposit at ``version``."""
    return f'"{version}"'


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, UTF-8, as compact as the CLI's is readable."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=JSON_MEDIA_TYPE, headers=headers)


def expected_version(request: Request) -> int | None:
    """The version ``If-Match`` names (None without one); ``*`` matches any existing deposit."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdecimal() or len(tag) > 18:
        raise Problem(412, "precondition-failed", f"If-Match {value!r} is not an ETag this service gave")
    return int(tag)


def guarded(request: Request, shop_id: str | None, command: LedgerCommand) -> LedgerCommand:
    """``command``, run only if the deposit is at the version ``If-Match`` names (checked in the same batch)."""
    expected = expected_version(request) if shop_id is not None else None
    if expected is None or shop_id is None:
        return command

    def checked(ledger: DepositLedger) -> CommandResult:
        current = ledger.show(shop_id).version
        if current != expected:
            raise Problem(
                412, "precondition-failed", f"shop {shop_id} is at version {current}, not {expected} (If-Match)"
            )
        return command(ledger)

    return checked


def result_response(result: CommandResult, *, created_location: str | None = None) -> Response:
    """A write's answer: 201 with the new state when it changed something, 200 for a duplicate."""
    data = state_json(result.state)
    data["duplicate"] = result.duplicate
    headers = {"ETag": etag(result.state.version)}
    if created_location is not None and not result.duplicate:
        headers["Location"] = created_location
    return json_response(data, 200 if result.duplicate else 201, headers)


async def write(
    request: Request,
    who: Caller,
    command: LedgerCommand,
    *,
    shop_id: str | None = None,
    location: Callable[[CommandResult], str] | None = None,
) -> Response:
    """Run a ledger command through the group writer and answer it, honouring If-Match and Idempotency-Key."""
    checked = guarded(request, shop_id, command)

    async def answer(keeping: Keeping | None) -> Response:
        def decided(ledger: DepositLedger) -> Response:
            result = checked(ledger)
            response = result_response(result, created_location=location(result) if location else None)
            keep_with_events(ledger, keeping, response)
            return response

        try:
            response: Response = await service_of(request).write(decided)
        except Exception as error:
            return problem_of(error).response()
        return response

    return await idempotent(request, who, answer)


def keep_with_events(ledger: DepositLedger, keeping: Keeping | None, response: Response) -> None:
    """Inside the writer's batch: keep ``response`` for its Idempotency-Key in the transaction that saves the events."""
    if keeping is not None:
        ledger.record_alongside(keeping.write_with_events(response.status_code, bytes(response.body)))


Answer = Callable[[Keeping | None], Awaitable[Response]]
"""Answers a request; given a :class:`Keeping` when the request has an Idempotency-Key."""


async def idempotent(request: Request, who: Caller, answer: Answer) -> Response:
    """The first answer to this request's Idempotency-Key again, or a fresh answer kept for next time."""
    key = request.headers.get(HEADER)
    if key is None:
        return await answer(None)
    if not key.strip() or len(key) > MAX_KEY_CHARS or not key.isprintable():
        raise Problem(422, "malformed-idempotency-key", f"{HEADER} must be 1 to {MAX_KEY_CHARS} printable characters")
    kept = service_of(request).idempotency
    assert kept is not None
    digest = request_digest(request.method, request.url.path, await request.body())
    found = await run_in_threadpool(kept.find, who.name, key)
    if found is None:
        in_flight: set[tuple[str, str]] = request.app.state.idempotency_in_flight
        if (who.name, key) in in_flight:
            raise Problem(409, "idempotency-key-in-use", f"a request with {HEADER} {key!r} is still being answered")
        in_flight.add((who.name, key))
        try:
            keeping = Keeping(who.name, key, digest)
            response = await answer(keeping)
            if response.status_code >= 500:
                return response  # not an answer to keep: the request may be tried again
            if keeping.kept:
                return response  # kept with the command's events
            if keeping.kept is None:  # nothing was saved with it: keep it now
                found = await run_in_threadpool(
                    kept.remember, who.name, key, Remembered(digest, response.status_code, bytes(response.body))
                )
            else:  # another process kept an answer to this key first: that one stands
                found = await run_in_threadpool(kept.find, who.name, key)
                assert found is not None, f"the first answer to {HEADER} {key!r} is gone"
        finally:
            in_flight.discard((who.name, key))
        if found.request_digest == digest and found.body == bytes(response.body):
            return response
    if found.request_digest != digest:
        raise Problem(
            422, "idempotency-key-reused", f"{HEADER} {key!r} was used for another request; use a new key for this one"
        )
    media = PROBLEM_MEDIA_TYPE if found.status >= 400 else JSON_MEDIA_TYPE
    headers = {REPLAYED_HEADER: "true"}
    if found.status < 400:
        version = json.loads(found.body).get("version")
        if isinstance(version, int):
            headers["ETag"] = etag(version)
    return Response(found.body, status_code=found.status, media_type=media, headers=headers)
