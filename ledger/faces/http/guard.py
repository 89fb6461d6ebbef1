"""The outermost layer of the service: bounded bodies, slow clients cut off, every request counted and timed,
and a problem document (never a traceback) for anything unforeseen."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.faces.http.metrics import ServiceMetrics
from ledger.faces.http.problems import Problem

MAX_BODY_BYTES = 1 << 20
"""A request body larger than 1 MiB is refused (413): no command needs a fraction of it."""

BODY_TIMEOUT_S = 10.0
"""A client that takes longer than this to send its body is answered 408 and dropped."""

_log = logging.getLogger("deposit_ledger.http")


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


class Guard:
    """ASGI middleware around the whole app."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False
        refused: list[Exception] = []
        """What cut the body off (too large, too slow), once it has: the guard answers then, not the app."""

        async def sending(message: Message) -> None:
            nonlocal status, response_started
            if refused and not response_started:
                return  # the app's own answer to a body it could not read (FastAPI's 400) is not sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        declared = _content_length(scope)
        try:
            if declared is not None and declared > MAX_BODY_BYTES:
                raise _BodyTooLarge
            await self.app(scope, _bounded(receive, refused), sending)
            if refused and not response_started:
                # The framework caught the cut-off while reading the body and answered for itself.
                raise refused[0]
        except Exception as error:
            if response_started:
                raise
            problem = _problem_for(error)
            if problem.status == 500:
                _log.exception("unforeseen error answering %s %s", scope.get("method"), scope.get("path"))
            refused.clear()
            await problem.response()(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.answered(template, str(scope.get("method", "")), status, time.perf_counter() - started)


def _problem_for(error: Exception) -> Problem:
    # The rest of a cut-off body is never read: the connection closes after the answer.
    if isinstance(error, _BodyTooLarge):
        return Problem(
            413, "content-too-large", f"request bodies are limited to {MAX_BODY_BYTES} bytes", {"Connection": "close"}
        )
    if isinstance(error, _BodyTooSlow):
        return Problem(
            408,
            "request-timeout",
            f"the request body did not arrive within {BODY_TIMEOUT_S:g} s",
            {"Connection": "close"},
        )
    return Problem(500, "internal-error", "the service failed to answer; the request may be retried")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _bounded(receive: Receive, refused: list[Exception]) -> Receive:
    # Count the body as it arrives (a chunked body declares no length) and give a slow sender a deadline;
    # what cuts it off is raised, and noted in ``refused`` in case the app catches it.
    received = 0
    deadline: float | None = None
    complete = False

    async def bounded_receive() -> Message:
        nonlocal received, deadline, complete
        if complete:  # the body is in: what follows (a disconnect) may take as long as the answer does
            return await receive()
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + BODY_TIMEOUT_S
        try:
            message: dict[str, Any] = dict(await asyncio.wait_for(receive(), max(0.0, deadline - loop.time())))
        except TimeoutError:
            refused.append(_BodyTooSlow())
            raise refused[-1] from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                refused.append(_BodyTooLarge())
                raise refused[-1]
            complete = not message.get("more_body", False)
        return message

    return bounded_receive
