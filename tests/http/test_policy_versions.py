"""A back-dated deduction over the HTTP API is priced by the policy version in force at its time."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_policy_versions_cli import TWO_VERSIONS
from tests.http.conftest import running_api
from tests.ledger.checks import assert_views_are_a_rebuild_and_verify_clean

pytestmark = pytest.mark.anyio


async def test_the_api_prices_a_back_dated_deduction_by_the_version_in_force_then(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(TWO_VERSIONS, encoding="utf-8")
    async with running_api(store_url, policy=str(path)) as api:
        opened = {"shop_id": "S1", "site": "CN", "categories": ["general"], "at": "2025-01-06T01:00:00Z"}
        response = await api.post("/v1/shops", "finance", opened)
        assert response.status_code == 201, response.text
        paid = {"amount": "5000", "channel": "alipay", "ref": "H-A1", "at": "2025-01-06T02:00:00Z"}
        response = await api.post("/v1/shops/S1/payments", "finance", paid)
        assert response.status_code == 201, response.text
        for case, moment in (("H-1", "2025-01-20T01:00:00Z"), ("H-2", "2025-02-20T01:00:00Z")):
            body = {"reason": "late_shipment", "case": case, "order_value": "500", "at": moment}
            response = await api.post("/v1/shops/S1/deductions", "risk", body)
            assert response.status_code == 201, response.text
        history = (await api.get("/v1/shops/S1/history")).json()
    events = history["items"] if isinstance(history, dict) else history
    assert [
        (event["case_id"], event["amount_collected"], event["policy_version"])
        for event in events
        if event["type"] == "Deducted"
    ] == [
        ("H-1", "50.00", "v1"),
        ("H-2", "100.00", "v2"),
    ]
    assert_views_are_a_rebuild_and_verify_clean(store_url)
