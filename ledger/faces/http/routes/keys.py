"""``/v1/keys``: an admin lists the API keys and revokes one. Keys are created on the command line only
(``deposit-ledger keys create``), so that a secret never passes through an answer the service keeps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from ledger.faces.http.answers import idempotent, json_response
from ledger.faces.http.auth import Caller, requires, service_of
from ledger.faces.http.idempotency import Keeping
from ledger.faces.http.problems import problem_of
from ledger.faces.http.roles import Action

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get("", summary="Every API key with its role, creation and revocation times (never a secret)")
def list_keys(request: Request, who: Annotated[Caller, Depends(requires(Action.KEYS))]) -> Response:
    """As ``keys list --json``."""
    keys = service_of(request).keys
    assert keys is not None
    return json_response({"items": [key.as_json() for key in keys.all()]})


@router.post("/{name}/revocation", summary="Revoke a key: refused from now on by every server on this store")
async def revoke_key(
    request: Request,
    name: Annotated[str, Path(max_length=100)],
    who: Annotated[Caller, Depends(requires(Action.KEYS))],
) -> Response:
    """Revoking a revoked key changes nothing; an unknown name is 409, as ``keys revoke`` refuses it."""
    keys = service_of(request).keys
    assert keys is not None

    async def answer(_: Keeping | None) -> Response:
        # No ledger event to keep the answer with: it is kept after it is given.
        try:
            key = await run_in_threadpool(keys.revoke, name)
        except Exception as error:
            return problem_of(error).response()
        return json_response(key.as_json())

    return await idempotent(request, who, answer)
