"""Segregation of duties: each role is refused (403) every action the matrix does not give it, and may do the rest."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from ledger import DepositLedger
from ledger.faces.http.roles import Action, Role, matrix, may
from ledger.faces.http.routes.shops import SHOP_COMMANDS
from tests.http.conftest import Api, opened

pytestmark = pytest.mark.anyio

AT = "2025-01-06T09:00:00+08:00"

REQUESTS: dict[Action, tuple[str, str, Any]] = {
    Action.READ: ("GET", "/v1/shops/S1", None),
    Action.VERIFY: ("GET", "/v1/verify", None),
    Action.FEED: ("GET", "/v1/events", None),
    Action.OPEN: ("POST", "/v1/shops", {"shop_id": "S2", "currency": "CNY", "required": "1.00"}),
    Action.PAY: ("POST", "/v1/shops/S1/payments", {"amount": "1.00", "channel": "alipay", "ref": "T"}),
    Action.DEDUCT: ("POST", "/v1/shops/S1/deductions", {"amount": "1.00", "reason": "other", "case": "C"}),
    Action.HOLD: ("POST", "/v1/shops/S1/holds", {"amount": "1.00", "case": "H"}),
    Action.RELEASE: ("POST", "/v1/shops/S1/holds/H/release", None),
    Action.APPEAL: ("POST", "/v1/shops/S1/appeals", {"case": "C"}),
    Action.RESOLVE_APPEAL: ("POST", "/v1/shops/S1/appeals/C/resolution", {"upheld": False}),
    Action.CATEGORIES: ("POST", "/v1/shops/S1/categories", {"add": ["apparel"]}),
    Action.APPLY_POLICY: ("POST", "/v1/shops/S1/apply-policy", None),
    Action.REFUND_EXCESS: ("POST", "/v1/shops/S1/refund-excess", None),
    Action.CLOSE: ("POST", "/v1/shops/S1/closure", None),
    Action.REFUND: ("POST", "/v1/shops/S1/refund", None),
    Action.FORCE_CLOSE: ("POST", "/v1/shops/S1/forced-closure", {"reason": "fraud"}),
    Action.WRITE_OFF: ("POST", "/v1/shops/S1/write-offs", {"case": "C1", "reason": "uncollectable"}),
    Action.KEYS: ("GET", "/v1/keys", None),
}


async def _send(api: Api, role: Role, action: Action) -> int:
    method, path, body = REQUESTS[action]
    response = await api.client.request(method, path, json=body, headers=api.as_role(role.value))
    return response.status_code


def test_the_matrix_is_as_documented() -> None:
    assert matrix() == {
        "read": ["auditor", "risk", "finance", "admin"],
        "verify": ["auditor", "admin"],
        "feed": ["auditor", "admin"],
        "open": ["finance", "admin"],
        "pay": ["finance", "admin"],
        "deduct": ["risk", "admin"],
        "hold": ["risk", "admin"],
        "release": ["risk", "admin"],
        "appeal": ["finance", "admin"],
        "resolve-appeal": ["risk", "admin"],
        "categories": ["finance", "admin"],
        "apply-policy": ["finance", "admin"],
        "refund-excess": ["finance", "admin"],
        "close": ["finance", "admin"],
        "refund": ["finance", "admin"],
        "force-close": ["risk", "admin"],
        "write-off": ["finance", "admin"],
        "keys": ["admin"],
        "webhooks": ["admin"],
    }


@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
async def test_each_role_is_refused_what_it_may_not_do(api_factory: Any, role: Role) -> None:
    async with api_factory() as api:
        await opened(api)
        before = (await api.get("/v1/shops/S1")).json()
        for action in REQUESTS:
            status = await _send(api, role, action)
            if may(role, action):
                assert status != 403, (role, action)
            else:
                assert status == 403, (role, action, status)
        if role is Role.AUDITOR:
            assert (await api.get("/v1/shops/S1")).json() == before


async def test_an_admin_lists_and_revokes_keys(api_factory: Any) -> None:
    async with api_factory() as api:
        listed = (await api.get("/v1/keys", "admin")).json()["items"]
        assert [key["name"] for key in listed] == sorted(role.value for role in Role)
        assert "dlk_" not in str(listed)
        assert (await api.post("/v1/keys/risk/revocation", "finance")).status_code == 403
        revoked = await api.post("/v1/keys/risk/revocation", "admin")
        assert revoked.status_code == 200
        assert revoked.json()["revoked_at"] is not None
        assert (await api.get("/v1/shops", "risk")).status_code == 401
        assert (await api.post("/v1/keys/nobody/revocation", "admin")).status_code == 409


async def test_batch_lines_need_their_own_right(api_factory: Any) -> None:
    # The pay line is finance's, the hold line risk's: a line refused for its role is 403, its neighbours go on.
    async with api_factory() as api:
        body = {"shop_id": "S1", "currency": "CNY", "required": "10.00", "at": "2025-01-01T00:00:00Z"}
        assert (await api.post("/v1/shops", "finance", body)).status_code == 201
        lines = [
            {"op": "pay", "shop": "S1", "at": AT, "amount": "1", "channel": "alipay", "ref": "T"},
            {"op": "hold", "shop": "S1", "at": AT, "amount": "1", "case": "H"},
            {"op": "write-off", "shop": "S1", "at": AT, "case": "H", "reason": "uncollectable"},
        ]
        # The write-off is finance's, refused by the rules here (the shop is open), and by role to the others.
        for role, expected in (("finance", [201, 403, 409]), ("risk", [403, 201, 403]), ("auditor", [403, 403, 403])):
            results = (await api.post("/v1/batch", role, lines)).json()["results"]
            assert [result["status"] for result in results] == expected


def test_each_shop_route_s_fields_are_its_command_s_arguments() -> None:
    # The routes call the ledger with the body's fields by name: a renamed argument must fail here, not at run time.
    for route in SHOP_COMMANDS:
        accepted = set(inspect.signature(getattr(DepositLedger, route.command)).parameters)
        given = set(route.body.model_fields) | ({"case"} if "{case}" in route.path else set()) | {"shop_id", "actor"}
        assert given <= accepted, (route.path, given - accepted)
        assert route.action in REQUESTS, f"{route.path} has no request in the role test"
