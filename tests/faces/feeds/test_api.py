"""``/v1/webhooks`` for admin keys: the same subscriptions as ``deposit-ledger webhooks``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.faces.feeds.receiver import SECRET
from tests.http.conftest import anyio_backend, api_factory

__all__ = ["anyio_backend", "api_factory"]

pytestmark = pytest.mark.anyio

HOOK = {"url": "https://erp.example.com/hooks", "events": "Paid,DepositShort", "secret": SECRET}


async def test_admin_keys_add_list_and_remove_subscriptions(api_factory: Any) -> None:
    async with api_factory() as api:
        added = await api.post("/v1/webhooks", "admin", HOOK)
        assert added.status_code == 201, added.text
        body = added.json()
        assert body["events"] == ["Paid", "DepositShort"] and body["secret"].endswith(SECRET[-4:])
        assert SECRET not in added.text
        again = await api.post("/v1/webhooks", "admin", {**HOOK, "events": ["Paid", "DepositShort"]})
        assert again.status_code == 200 and again.json()["duplicate"] is True
        other = await api.post("/v1/webhooks", "admin", {**HOOK, "events": "*"})
        assert other.status_code == 409

        listed = await api.get("/v1/webhooks", "admin")
        assert [entry["id"] for entry in listed.json()] == [body["id"]]
        assert (await api.get("/v1/webhooks/deliveries", "admin", failed=True)).json() == []

        headers = api.as_role("admin")
        assert (await api.client.delete(f"/v1/webhooks/{body['id']}", headers=headers)).status_code == 204
        assert (await api.client.delete(f"/v1/webhooks/{body['id']}", headers=headers)).status_code == 404
        assert (await api.get("/v1/webhooks", "admin")).json() == []


@pytest.mark.parametrize("role", ["auditor", "risk", "finance"])
async def test_other_roles_are_refused(api_factory: Any, role: str) -> None:
    async with api_factory() as api:
        assert (await api.post("/v1/webhooks", role, HOOK)).status_code == 403
        assert (await api.get("/v1/webhooks", role)).status_code == 403


async def test_a_malformed_subscription_is_a_problem_not_a_subscription(api_factory: Any) -> None:
    async with api_factory() as api:
        for bad in ({**HOOK, "events": "Nonsense"}, {**HOOK, "secret": "plain"}, {**HOOK, "url": "ftp://x/"}):
            response = await api.post("/v1/webhooks", "admin", bad)
            assert response.status_code == 422, response.text
            assert response.headers["content-type"].startswith("application/problem+json")
        assert (await api.get("/v1/webhooks", "admin")).json() == []
