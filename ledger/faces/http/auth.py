"""Bearer authentication and the role check, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
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


def caller(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Caller:
    """The caller named by a live key, or a 401 problem."""
    challenge = {"WWW-Authenticate": 'Bearer realm="deposit-ledger"'}
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "send an API key: Authorization: Bearer KEY", challenge)
    keys = service_of(request).keys
    assert keys is not None
    found = keys.authenticate(credentials.credentials)
    if found is None:
        raise Problem(401, "unauthorized", "the API key is unknown or revoked", challenge)
    return Caller(*found)


def allowed(caller: Caller, action: Action) -> None:
    """Refuse (403) an action the caller's role does not have."""
    if not may(caller.role, action):
        raise Problem(403, "forbidden", f"role {caller.role} may not {action.value} (key {caller.name})")


def requires(action: Action) -> Callable[..., Caller]:
    """A dependency: the caller, provided its role may do ``action``."""

    def dependency(who: Annotated[Caller, Depends(caller)]) -> Caller:
        allowed(who, action)
        return who

    return dependency
