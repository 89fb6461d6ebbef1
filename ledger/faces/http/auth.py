"""Bearer authentication and the role check, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ledger.faces.http.problems import Problem
from ledger.faces.http.roles import Action, Role, may
from ledger.faces.http.service import Service

_bearer = HTTPBearer(auto_error=False, description="An API key: `deposit-ledger keys create NAME --role ROLE`.")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the key's name (the actor of what it writes) and its role."""

    name: str
    role: Role


def service_of(request: Request) -> Service:
    """The service of the app that answers ``request``."""
    service: Service = request.app.state.service
    return service


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The caller named by a live key, or a 401 problem.

    The key is looked up at every request, so that a revocation counts at once. On SQLite
    the lookup (one indexed read of a local file) runs on the event loop: handing it to a
    worker thread cost more than the read. A PostgreSQL lookup is a round trip: a worker
    thread waits for it.
    """
    challenge = {"WWW-Authenticate": 'Bearer realm="deposit-ledger"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "send an API key: Authorization: Bearer KEY", challenge)
    keys = service_of(request).keys
    assert keys is not None
    if keys.store.kind == "sqlite":
        found = keys.authenticate(credentials.credentials)
    else:
        found = await run_in_threadpool(keys.authenticate, credentials.credentials)
    if found is None:
        raise Problem(401, "unauthorized", "the API key is unknown or revoked", challenge)
    return Caller(*found)


def allowed(caller: Caller, action: Action) -> None:
    """Refuse (403) an action the caller's role does not have."""
    if not may(caller.role, action):
        raise Problem(403, "forbidden", f"role {caller.role} may not {action.value} (key {caller.name})")


def requires(action: Action) -> Callable[..., Awaitable[Caller]]:
    """A dependency: the caller, provided its role may do ``action``."""

    # A coroutine, so that FastAPI runs it on the event loop rather than in a worker thread.
    async def dependency(who: Annotated[Caller, Depends(caller)]) -> Caller:
        allowed(who, action)
        return who

    return dependency
