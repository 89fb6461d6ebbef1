"""The core scenario over HTTP, errors as problem details, ETag/If-Match, pagination, idempotency keys."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.faces.http.pages import encode_cursor
from tests.http.conftest import opened

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def test_core_scenario_stamps_each_event_with_its_key(api_factory: Any) -> None:
    async with api_factory() as api:
        response = await opened(api)
        assert response.headers["location"] == "/v1/shops/S1"
        assert response.json()["duplicate"] is False
        paid = await api.post(
            "/v1/shops/S1/payments", "finance", {"amount": "1200.00", "channel": "alipay", "ref": "T1"}
        )
        assert paid.status_code == 201
        assert paid.json()["frozen"] == "1200.00"
        again = await api.post(
            "/v1/shops/S1/payments", "finance", {"amount": "1200.00", "channel": "alipay", "ref": "T1"}
        )
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
        deducted = await api.post(
            "/v1/shops/S1/deductions", "risk", {"amount": "50.00", "reason": "fake_listing", "case": "C1"}
        )
        assert deducted.status_code == 201
        assert deducted.json()["deducted"] == "50.00"
        held = await api.post("/v1/shops/S1/holds", "risk", {"amount": "100.00", "case": "C2"})
        assert held.json()["held"] == "100.00"
        released = await api.post("/v1/shops/S1/holds/C2/release", "risk")
        assert released.status_code == 201
        assert released.json()["held"] == "0.00"
        appealed = await api.post("/v1/shops/S1/appeals", "finance", {"case": "C1"})
        assert appealed.status_code == 201
        upheld = await api.post("/v1/shops/S1/appeals/C1/resolution", "risk", {"upheld": True})
        assert upheld.json()["reversed"] == "50.00"
        excess = await api.post("/v1/shops/S1/refund-excess", "finance")
        assert excess.status_code == 201
        closed = await api.post("/v1/shops/S1/closure", "finance")
        assert closed.json()["status"] == "closing"

        shown = await api.get("/v1/shops/S1")
        assert shown.status_code == 200
        assert shown.headers["etag"] == f'"{shown.json()["version"]}"'
        balance = await api.get("/v1/shops/S1/balance")
        assert balance.json() == shown.json()
        history = (await api.get("/v1/shops/S1/history")).json()["items"]
        actors = {event["type"]: event["actor"] for event in history}
        assert actors["Opened"] == "finance"
        assert actors["Paid"] == "finance"
        assert actors["Deducted"] == "risk"
        assert actors["HoldPlaced"] == "risk"
        assert {event["actor"] for event in history} == {"finance", "risk"}
        replayed = await api.get("/v1/shops/S1/replay", version=3)
        assert replayed.json()["frozen"] == "1200.00"
        verified = await api.get("/v1/verify")
        assert verified.json()["ok"] is True
        checkpoint = await api.get("/v1/checkpoint")
        assert checkpoint.json()["position"] == len(history)
        feed = (await api.get("/v1/events", after=0, limit=1000)).json()
        assert [item["type"] for item in feed["items"]] == [event["type"] for event in history]
        assert {item["shop_id"] for item in feed["items"]} == {"S1"}
        assert feed["next_after"] == len(history)


async def test_the_client_cannot_choose_the_actor(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        sneaky = await api.post(
            "/v1/shops/S1/payments", "finance", {"amount": "1.00", "channel": "alipay", "ref": "T", "actor": "ceo"}
        )
        assert sneaky.status_code == 422
        line = {"op": "pay", "shop": "S1", "at": "2025-01-01T00:00:00Z", "amount": "1", "channel": "alipay"}
        batch = await api.post("/v1/batch", "finance", [{**line, "ref": "B", "actor": "ceo"}])
        assert batch.json()["results"][0]["status"] == 422


async def test_errors_are_problem_details(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        cases = [
            (await api.get("/v1/shops/NOPE"), 404),
            (
                await api.post(
                    "/v1/shops/S1/payments", "finance", {"amount": "1.001", "channel": "alipay", "ref": "x"}
                ),
                422,
            ),
            (await api.post("/v1/shops/S1/payments", "finance", {"amount": 1.5, "channel": "alipay", "ref": "x"}), 422),
            (await api.post("/v1/shops/S1/payments", "finance", {"amount": "1", "channel": "paypal", "ref": "x"}), 422),
            (await api.post("/v1/shops", "finance", {"shop_id": "S1", "currency": "CNY", "required": "1.00"}), 409),
            (await api.post("/v1/shops/S1/refund", "finance"), 409),
            (await api.client.get("/v1/shops/S1"), 401),
            (await api.client.get("/v1/shops/S1", headers={"Authorization": "Bearer dlk_wrong"}), 401),
            (await api.post("/v1/shops/S1/forced-closure", "finance", {"reason": "fraud"}), 403),
        ]
        for response, status in cases:
            assert response.status_code == status, response.text
            assert response.headers["content-type"] == PROBLEM
            problem = response.json()
            assert problem["status"] == status
            assert problem["type"].startswith("https://")
            assert problem["title"] and problem["detail"]


async def test_a_revoked_key_is_refused_at_once(api_factory: Any) -> None:
    async with api_factory() as api:
        headers = api.key("temp", "auditor")
        assert (await api.client.get("/v1/shops", headers=headers)).status_code == 200
        api.app.state.service.keys.revoke("temp")
        assert (await api.client.get("/v1/shops", headers=headers)).status_code == 401


async def test_if_match_must_name_the_current_version(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        etag = (await api.get("/v1/shops/S1")).headers["etag"]
        body = {"amount": "10.00", "channel": "alipay", "ref": "T1"}
        first = await api.post("/v1/shops/S1/payments", "finance", body, if_match=etag)
        assert first.status_code == 201
        assert first.headers["etag"] != etag
        stale = await api.post("/v1/shops/S1/payments", "finance", {**body, "ref": "T2"}, if_match=etag)
        assert stale.status_code == 412
        assert stale.headers["content-type"] == PROBLEM
        assert (await api.get("/v1/shops/S1")).json()["paid"] == "10.00"
        current = await api.post(
            "/v1/shops/S1/payments", "finance", {**body, "ref": "T2"}, if_match=first.headers["etag"]
        )
        assert current.status_code == 201


async def test_pages_of_shops_and_of_an_audit_trail(api_factory: Any) -> None:
    async with api_factory() as api:
        for number in range(7):
            await opened(api, f"S{number}")
        await api.post("/v1/shops/S3/payments", "finance", {"amount": "5.00", "channel": "alipay", "ref": "T"})
        await api.post("/v1/shops/S3/deductions", "risk", {"amount": "9.00", "reason": "other", "case": "C"})
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = (await api.get("/v1/shops", **params)).json()
            seen += [item["shop_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"S{number}" for number in range(7)]
        assert pages == 3
        owing = (await api.get("/v1/shops", owing="true")).json()["items"]
        assert [item["shop_id"] for item in owing] == ["S3"]
        first = (await api.get("/v1/shops/S3/audit", limit=2)).json()
        rest = (await api.get("/v1/shops/S3/audit", limit=100, cursor=first["next_cursor"])).json()
        history = (await api.get("/v1/shops/S3/history")).json()["items"]
        assert len(first["items"]) == 2
        assert len(first["items"]) + len(rest["items"]) == len(history)
        assert rest["next_cursor"] is None
        assert (await api.get("/v1/shops", cursor="!!")).status_code == 422


async def test_a_payment_s_channel_time_and_a_write_off(api_factory: Any) -> None:
    async with api_factory() as api:
        body = {"shop_id": "W1", "currency": "CNY", "required": "10.00", "at": "2025-01-01T00:00:00Z"}
        assert (await api.post("/v1/shops", "finance", body)).status_code == 201
        paid = await api.post(
            "/v1/shops/W1/payments",
            "finance",
            {
                "amount": "5.00",
                "channel": "alipay",
                "ref": "CT1",
                "at": "2025-01-03T00:00:00Z",
                "channel_time": "2025-01-02T23:59:00+08:00",
            },
        )
        assert paid.status_code == 201
        history = (await api.get("/v1/shops/W1/history")).json()["items"]
        assert [event.get("channel_time") for event in history if event["type"] == "Paid"] == ["2025-01-02T15:59:00Z"]
        late = {"amount": "1.00", "channel": "alipay", "ref": "CT2", "channel_time": "2099-01-01T00:00:00Z"}
        assert (await api.post("/v1/shops/W1/payments", "finance", late)).status_code == 422
        deducted = {"amount": "20.00", "reason": "other", "case": "D1", "at": "2025-01-06T00:00:00Z"}
        assert (await api.post("/v1/shops/W1/deductions", "risk", deducted)).json()["owed"] == "15.00"
        write_off = {"case": "D1", "reason": "uncollectable"}
        refused = await api.post("/v1/shops/W1/write-offs", "finance", write_off)
        assert refused.status_code == 409, "the shop is still open"
        assert (await api.post("/v1/shops/W1/forced-closure", "risk", {"reason": "fraud"})).status_code == 201
        written = await api.post("/v1/shops/W1/write-offs", "finance", write_off)
        assert written.status_code == 201, written.text
        assert (written.json()["owed"], written.json()["duplicate"]) == ("0.00", False)
        again = await api.post("/v1/shops/W1/write-offs", "finance", write_off)
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
        assert (await api.post("/v1/shops/W1/write-offs", "finance", {"case": "D1"})).status_code == 422


async def test_audit_pages_cut_between_a_refund_s_channel_shares_lose_no_row(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api, "S1", required="2.00")
        await api.post("/v1/shops/S1/payments", "finance", {"amount": "5.00", "channel": "alipay", "ref": "A"})
        await api.post("/v1/shops/S1/payments", "finance", {"amount": "5.00", "channel": "wechat_pay", "ref": "W"})
        await api.post("/v1/shops/S1/refund-excess", "finance")
        whole = (await api.get("/v1/shops/S1/audit")).json()["items"]
        assert [row["share"] for row in whole if row["type"] == "ExcessRefunded"] == [1, 2]
        walked: list[Any] = []
        cursor = None
        while True:
            page = (await api.get("/v1/shops/S1/audit", limit=1, **({"cursor": cursor} if cursor else {}))).json()
            walked += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == whole
        assert (await api.get("/v1/shops/S1/audit", cursor=encode_cursor("12"))).status_code == 422
        assert (await api.get("/v1/shops/S9/audit", cursor=encode_cursor("1.0"))).status_code == 404
        past = await api.get("/v1/shops/S1/audit", cursor=encode_cursor("999999.0"))
        assert past.json() == {"items": [], "next_cursor": None}


async def test_idempotency_key_replays_the_first_answer(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        body = {"amount": "10.00", "channel": "alipay", "ref": "T1"}
        first = await api.post("/v1/shops/S1/payments", "finance", body, idempotency_key="k-1")
        assert first.status_code == 201
        more = await api.post("/v1/shops/S1/payments", "finance", {**body, "ref": "T2"})
        assert more.status_code == 201
        replay = await api.post("/v1/shops/S1/payments", "finance", body, idempotency_key="k-1")
        assert replay.status_code == 201
        assert replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
        other = await api.post("/v1/shops/S1/payments", "finance", {**body, "amount": "11.00"}, idempotency_key="k-1")
        assert other.status_code == 422
        assert other.json()["type"].endswith("idempotency-key-reused")
        # Per API key: another key's same Idempotency-Key is its own.
        admin = await api.post("/v1/shops/S1/payments", "admin", {**body, "ref": "T3"}, idempotency_key="k-1")
        assert admin.status_code == 201
        # A refusal is an answer too: kept and replayed.
        refused = await api.post("/v1/shops/S1/refund", "finance", idempotency_key="k-2")
        assert refused.status_code == 409
        assert (await api.post("/v1/shops/S1/refund", "finance", idempotency_key="k-2")).content == refused.content
        assert (await api.get("/v1/shops/S1")).json()["paid"] == "30.00"


async def test_idempotency_keys_survive_a_restart(api_factory: Any) -> None:
    body = {"amount": "10.00", "channel": "alipay", "ref": "T1"}
    async with api_factory() as api:
        await opened(api)
        first = await api.post("/v1/shops/S1/payments", "finance", body, idempotency_key="k-1")
        secret = api.secrets["finance"]
    async with api_factory(role_keys=False) as api:
        response = await api.client.post(
            "/v1/shops/S1/payments",
            json=body,
            headers={"Authorization": f"Bearer {secret}", "Idempotency-Key": "k-1"},
        )
        assert response.status_code == 201
        assert response.content == first.content


async def test_batch_answers_each_line_on_its_own(api_factory: Any) -> None:
    async with api_factory() as api:
        at = "2025-01-06T09:00:00+08:00"
        lines = [
            {"op": "open", "shop": "B1", "at": at, "currency": "CNY", "required": "100"},
            {"op": "pay", "shop": "B1", "at": at, "amount": 60, "channel": "alipay", "ref": "P1"},
            {"op": "pay", "shop": "B1", "at": at, "amount": 60, "channel": "alipay", "ref": "P1"},
            {"op": "pay", "shop": "NOPE", "at": at, "amount": "1", "channel": "alipay", "ref": "P2"},
            {"op": "deduct", "shop": "B1", "at": at, "amount": "1", "reason": "other", "case": "C"},
            {"op": "pay", "shop": "B1", "at": at, "amount": "0.005", "channel": "alipay", "ref": "P3"},
            {"op": "fly", "shop": "B1", "at": at},
            {"op": "categories", "shop": "B1", "at": at, "add": [1.5]},
        ]
        response = await api.post("/v1/batch", "finance", lines)
        assert response.status_code == 200
        results = response.json()["results"]
        assert [result["status"] for result in results] == [201, 201, 200, 404, 403, 422, 422, 422]
        assert results[1]["state"]["frozen"] == "60.00"
        assert results[2]["state"]["duplicate"] is True
        assert (await api.get("/v1/shops/B1")).json()["paid"] == "60.00"


async def test_batch_reads_amounts_from_the_json_text_as_import_does(api_factory: Any) -> None:
    # Exponent forms are refused, as import refuses them; plain numbers are exact, never floats.
    async with api_factory() as api:
        at = "2025-01-06T09:00:00+08:00"
        body = (
            "["
            f'{{"op": "open", "shop": "N1", "at": "{at}", "currency": "CNY", "required": 1}},'
            f'{{"op": "pay", "shop": "N1", "at": "{at}", "amount": 2e-1, "channel": "alipay", "ref": "E1"}},'
            f'{{"op": "pay", "shop": "N1", "at": "{at}", "amount": 0.1e1, "channel": "alipay", "ref": "E2"}},'
            f'{{"op": "pay", "shop": "N1", "at": "{at}", "amount": 0.30000000000000004, "channel": "alipay", '
            '"ref": "E3"},'
            f'{{"op": "pay", "shop": "N1", "at": "{at}", "amount": 0.1, "channel": "alipay", "ref": 7.5}},'
            f'{{"op": "pay", "shop": "N1", "at": "{at}", "amount": 0.1, "channel": "alipay", "ref": "E4"}}'
            "]"
        )
        response = await api.client.post(
            "/v1/batch", content=body, headers={**api.as_role("finance"), "Content-Type": "application/json"}
        )
        results = response.json()["results"]
        assert [result["status"] for result in results] == [201, 422, 422, 422, 422, 201], results
        assert "2e-1" in results[1]["problem"]["detail"]
        assert "'ref' must be a string" in results[4]["problem"]["detail"]
        assert results[5]["state"]["paid"] == "0.10"
        single = await api.post("/v1/shops/N1/payments", "finance", {"amount": 0.2, "channel": "alipay", "ref": "E5"})
        assert single.status_code == 422
        assert (await api.get("/v1/shops/N1")).json()["paid"] == "0.10"


async def test_probes_and_metrics(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        assert (await api.client.get("/healthz")).json() == {"status": "ok"}
        ready = (await api.client.get("/readyz")).json()
        assert {view["name"]: view["lag"] for view in ready["views"]} == {"balances": 0, "audit_trail": 0}
        metrics = (await api.client.get("/metrics")).text
        assert 'deposit_ledger_http_requests_total{method="POST",route="/v1/shops",status="201"} 1.0' in metrics
        assert "deposit_ledger_write_batch_commands_count 1.0" in metrics
        assert 'deposit_ledger_view_lag_events{view="balances"} 0.0' in metrics
        assert "deposit_ledger_http_request_seconds_bucket" in metrics
        document = (await api.client.get("/openapi.json")).json()
        assert "/v1/shops/{shop_id}/payments" in document["paths"]
        assert (await api.client.get("/docs")).status_code == 200


async def test_bodies_are_bounded(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api)
        huge = b'{"amount": "1", "channel": "alipay", "ref": "' + b"x" * (1 << 20) + b'"}'
        response = await api.client.post(
            "/v1/shops/S1/payments",
            content=huge,
            headers={**api.as_role("finance"), "content-type": "application/json"},
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM


async def test_opening_a_shop_whose_id_is_not_ascii_answers_its_location_percent_encoded(api_factory: Any) -> None:
    async with api_factory() as api:
        response = await api.post("/v1/shops", "finance", {"shop_id": "茶馆", "currency": "CNY", "required": "100"})
        assert response.status_code == 201, response.text
        assert response.headers["location"] == "/v1/shops/%E8%8C%B6%E9%A6%86"
        assert (await api.get(response.headers["location"])).json()["shop_id"] == "茶馆"
