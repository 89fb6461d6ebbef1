"""The HTTP API's tests: httpx against the ASGI app (its lifespan run as a server runs it), on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ledger.faces.http import create_app
from ledger.faces.http.roles import Role

BASE_URL = "http://ledger.test"


class Api:
    """A running app, a client on it, and one key of each role (named after the role)."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.secrets: dict[str, str] = {}

    def key(self, name: str, role: str) -> dict[str, str]:
        """Create a key; the headers that send it."""
        _, secret = self.app.state.service.keys.create(name, role)
        self.secrets[name] = secret
        return {"Authorization": f"Bearer {secret}"}

    def as_role(self, role: str) -> dict[str, str]:
        """The headers of the test's key of ``role``."""
        return {"Authorization": f"Bearer {self.secrets[role]}"}

    async def post(self, path: str, role: str = "admin", body: Any = None, **headers: str) -> httpx.Response:
        """POST ``body`` as JSON with the key of ``role``; extra headers by keyword (underscores for dashes)."""
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        return await self.client.post(path, json=body, headers={**self.as_role(role), **extra})

    async def get(self, path: str, role: str = "auditor", **params: Any) -> httpx.Response:
        """GET with the key of ``role``."""
        return await self.client.get(path, params=params, headers=self.as_role(role))


@asynccontextmanager
async def running_api(store_url: str, *, role_keys: bool = True, **options: Any) -> AsyncIterator[Api]:
    """The app on ``store_url``, started and stopped as uvicorn would, with a key per role (unless told not)."""
    app = create_app(store_url, **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            api = Api(app, client)
            for role in Role if role_keys else ():
                api.key(role.value, role.value)
            yield api


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_factory(store_url: str) -> Callable[..., Any]:
    """``async with api_factory(**options) as api``: the app on this test's store."""
    return lambda **options: running_api(store_url, **options)


async def opened(api: Api, shop: str = "S1", required: str = "1000.00") -> httpx.Response:
    """Open a CNY deposit as finance; assert it was created."""
    response = await api.post("/v1/shops", "finance", {"shop_id": shop, "currency": "CNY", "required": required})
    assert response.status_code == 201, response.text
    return response
