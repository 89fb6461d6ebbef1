"""The console's plain HTTP tests: httpx against the app (its lifespan run as a server runs it), on each backend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from ledger.faces.http.roles import Role
from tests.conftest import FakeClock
from tests.http.conftest import BASE_URL, Api, anyio_backend, running_api

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a page's forms."""
    found = _TOKEN.search(page.text)
    assert found is not None, f"no form token in {page.url}"
    return found.group(1)


class Console:
    """The API (its keys, one per role, named after the role) and browsers-without-a-browser on its console."""

    def __init__(self, api: Api) -> None:
        self.api = api

    @asynccontextmanager
    async def visitor(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client with a cookie jar of its own, not signed in."""
        transport = httpx.ASGITransport(app=self.api.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client

    async def sign_in(self, client: httpx.AsyncClient, role: str) -> httpx.Response:
        """Sign ``client`` in with the key of ``role``, through the sign-in form."""
        form = await client.get("/console/login")
        return await client.post("/console/login", data={"key": self.api.secrets[role], "csrf_token": csrf_of(form)})

    @asynccontextmanager
    async def signed_in(self, role: str) -> AsyncIterator[httpx.AsyncClient]:
        """A client signed in as ``role``."""
        async with self.visitor() as client:
            answer = await self.sign_in(client, role)
            assert answer.status_code == 303, answer.text
            yield client

    async def version(self, shop: str) -> int:
        """The deposit's version, read through the API."""
        answer = await self.api.get(f"/v1/shops/{shop}")
        assert answer.status_code == 200, answer.text
        version: int = answer.json()["version"]
        return version


@pytest.fixture
def console_factory(store_url: str, clock: FakeClock) -> Callable[..., Any]:
    """``async with console_factory() as console``: the app on this test's store, with the test's clock."""

    @asynccontextmanager
    async def running(**options: Any) -> AsyncIterator[Console]:
        async with running_api(store_url, clock=clock, **options) as api:
            yield Console(api)

    return running


ROLES = [role.value for role in Role]

__all__ = ["ROLES", "Console", "anyio_backend", "console_factory", "csrf_of"]
