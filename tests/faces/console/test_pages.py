"""Every page and form of the console over plain HTTP: sessions, CSRF, roles, and the API's commands and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ledger.faces.console import routes
from ledger.faces.console.session import COOKIE_NAME, SESSION_S
from tests.conftest import FakeClock
from tests.faces.console.conftest import ROLES, Console, csrf_of

pytestmark = pytest.mark.anyio

PAGES = [
    "/console/shops",
    "/console/shops/S1",
    "/console/queue",
    "/console/audit",
    "/console/audit/verify",
    "/console/audit/export?shop=S1",
]

FORM_FIELDS: dict[str, dict[str, str]] = {
    "payments": {"amount": "100.00", "channel": "alipay", "ref": "T-form"},
    "deductions": {"case": "C-form", "reason": "late_shipment", "amount": "10.00"},
    "holds": {"case": "H-form", "amount": "5.00"},
    "releases": {"case": "H1"},
    "appeal-resolutions": {"case": "C1", "upheld": "false"},
    "closure": {},
    "refund": {},
}
"""A valid body of each form, on the deposit :func:`story` leaves (refund is refused by a rule, not a role)."""

ALLOWED = {
    "auditor": set(),
    "risk": {"deductions", "holds", "releases", "appeal-resolutions"},
    "finance": {"payments", "closure", "refund"},
    "admin": set(FORM_FIELDS),
}


async def story(console: Console, shop: str = "S1") -> None:
    """A deposit with a payment, an open hold (H1) and a deduction under appeal (C1)."""
    api = console.api
    assert (await api.post("/v1/shops", "finance", {"shop_id": shop, "currency": "CNY", "required": "1000"})).is_success
    pay = {"amount": "1000.00", "channel": "alipay", "ref": f"{shop.encode().hex()}-T1"}
    assert (await api.post(f"/v1/shops/{shop}/payments", "finance", pay)).is_success
    assert (await api.post(f"/v1/shops/{shop}/holds", "risk", {"amount": "100", "case": "H1"})).is_success
    deduct = {"amount": "50", "reason": "late_shipment", "case": "C1"}
    assert (await api.post(f"/v1/shops/{shop}/deductions", "risk", deduct)).is_success
    assert (await api.post(f"/v1/shops/{shop}/appeals", "finance", {"case": "C1"})).is_success


# ------------------------------------------------------------------ sessions


@pytest.mark.parametrize("path", PAGES)
async def test_a_page_without_a_session_sends_to_sign_in(console_factory: Callable[..., Any], path: str) -> None:
    async with console_factory() as console, console.visitor() as client:
        answer = await client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/login"


@pytest.mark.parametrize("kind", list(FORM_FIELDS))
async def test_a_form_without_a_session_sends_to_sign_in(console_factory: Callable[..., Any], kind: str) -> None:
    async with console_factory() as console:
        await story(console)
        before = await console.version("S1")
        async with console.visitor() as client:
            answer = await client.post(f"/console/shops/S1/{kind}", data=FORM_FIELDS[kind])
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
        assert await console.version("S1") == before


async def test_sign_in_sets_a_signed_strict_http_only_cookie_with_an_expiry(
    console_factory: Callable[..., Any],
) -> None:
    async with console_factory() as console, console.visitor() as client:
        answer = await console.sign_in(client, "risk")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/shops"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes
        assert "samesite=strict" in cookie.lower()
        assert f"max-age={SESSION_S}" in cookie.lower()
        assert console.api.secrets["risk"] not in cookie  # the key itself never travels in the cookie
        page = await client.get("/console/shops")
        assert page.status_code == 200
        assert "risk" in page.text


async def test_sign_in_refuses_an_unknown_key_and_a_missing_token(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console, console.visitor() as client:
        form = await client.get("/console/login")
        assert form.status_code == 200 and 'name="key"' in form.text
        wrong = await client.post("/console/login", data={"key": "dlk_nothing", "csrf_token": csrf_of(form)})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        no_token = await client.post("/console/login", data={"key": console.api.secrets["admin"]})
        assert no_token.status_code == 403
        assert (await client.get("/console/shops")).status_code == 303


async def test_a_forged_or_altered_cookie_is_no_session(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console, console.signed_in("auditor") as client:
        value = client.cookies[COOKIE_NAME]
        client.cookies.clear()
        client.cookies.set(COOKIE_NAME, value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/console")
        assert (await client.get("/console/shops")).status_code == 303


async def test_a_session_expires(console_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    async with console_factory() as console, console.signed_in("auditor") as client:
        assert (await client.get("/console/shops")).status_code == 200
        real = __import__("time").time
        monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real() + SESSION_S + 5)
        assert (await client.get("/console/shops")).status_code == 303


async def test_revoking_the_key_ends_its_session_at_once(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console, console.signed_in("risk") as client:
        assert (await client.get("/console/queue")).status_code == 200
        console.api.app.state.service.keys.revoke("risk")
        assert (await client.get("/console/queue")).status_code == 303


async def test_sign_out_needs_the_token_and_ends_the_session(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console, console.signed_in("finance") as client:
        assert (await client.post("/console/logout")).status_code == 403
        assert (await client.get("/console/shops")).status_code == 200
        page = await client.get("/console/shops")
        out = await client.post("/console/logout", data={"csrf_token": csrf_of(page)})
        assert out.status_code == 303 and out.headers["location"] == "/console/login"
        assert (await client.get("/console/shops")).status_code == 303


# ---------------------------------------------------------------------- CSRF


@pytest.mark.parametrize("kind", list(FORM_FIELDS))
async def test_every_form_is_refused_without_its_token(console_factory: Callable[..., Any], kind: str) -> None:
    async with console_factory() as console:
        await story(console)
        before = await console.version("S1")
        async with console.signed_in("admin") as client:
            missing = await client.post(f"/console/shops/S1/{kind}", data=FORM_FIELDS[kind])
            assert missing.status_code == 403 and "security token" in missing.text
            forged = await client.post(f"/console/shops/S1/{kind}", data={**FORM_FIELDS[kind], "csrf_token": "x.y.z"})
            assert forged.status_code == 403
        async with console.signed_in("risk") as other:
            # Another session's token is not this one's.
            foreign = csrf_of(await other.get("/console/shops/S1"))
        async with console.signed_in("admin") as client:
            stolen = await client.post(f"/console/shops/S1/{kind}", data={**FORM_FIELDS[kind], "csrf_token": foreign})
            assert stolen.status_code == 403
        assert await console.version("S1") == before


# --------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_is_offered_only_its_forms_and_refused_the_others(
    console_factory: Callable[..., Any], role: str
) -> None:
    async with console_factory() as console:
        await story(console)
        async with console.signed_in(role) as client:
            page = await client.get("/console/shops/S1")
            assert page.status_code == 200
            offered = {kind for kind in FORM_FIELDS if f'id="form-{kind}"' in page.text}
            # Refund is offered once the shop is closing; the story's shop is open.
            assert offered == ALLOWED[role] - {"refund"}
            token = csrf_of(page)
            for kind in sorted(set(FORM_FIELDS) - ALLOWED[role]):
                before = await console.version("S1")
                refused = await client.post(
                    f"/console/shops/S1/{kind}", data={**FORM_FIELDS[kind], "csrf_token": token}
                )
                assert refused.status_code == 403, (kind, refused.text)
                assert f"may not {routes.FORMS[kind].value}" in refused.text
                assert await console.version("S1") == before


@pytest.mark.parametrize("kind", [kind for kind in FORM_FIELDS if kind != "refund"])
async def test_each_form_runs_the_api_command_as_the_signed_in_key(
    console_factory: Callable[..., Any], kind: str
) -> None:
    role = "risk" if kind in ALLOWED["risk"] else "finance"
    async with console_factory() as console:
        await story(console)
        before = await console.version("S1")
        async with console.signed_in(role) as client:
            token = csrf_of(await client.get("/console/shops/S1"))
            done = await client.post(f"/console/shops/S1/{kind}", data={**FORM_FIELDS[kind], "csrf_token": token})
            assert done.status_code == 303, done.text
            assert done.headers["location"] == f"/console/shops/S1?done={kind}"
            shown = await client.get(done.headers["location"])
            assert routes.DONE[kind] in shown.text
        assert await console.version("S1") > before
        history = (await console.api.get("/v1/shops/S1/history")).json()["items"]
        assert {event["actor"] for event in history if event["version"] > before} == {role}


async def test_a_refused_command_shows_the_api_s_error_and_changes_nothing(
    console_factory: Callable[..., Any], clock: FakeClock
) -> None:
    async with console_factory() as console:
        await story(console)
        before = await console.version("S1")
        async with console.signed_in("finance") as client:
            token = csrf_of(await client.get("/console/shops/S1"))
            # The API says 409 for the refund of an open shop, and so does the page, with the same words.
            api_answer = await console.api.post("/v1/shops/S1/refund", "finance")
            page = await client.post("/console/shops/S1/refund", data={"csrf_token": token})
            assert page.status_code == api_answer.status_code == 409
            assert api_answer.json()["detail"] in page.text.replace("&#39;", "'")
            malformed = await client.post(
                "/console/shops/S1/payments",
                data={"amount": "1.234", "channel": "alipay", "ref": "T9", "csrf_token": token},
            )
            assert malformed.status_code == 422
        assert await console.version("S1") == before


async def test_closing_then_refunding_through_the_forms(console_factory: Callable[..., Any], clock: FakeClock) -> None:
    async with console_factory() as console:
        api = console.api
        assert (
            await api.post("/v1/shops", "finance", {"shop_id": "S2", "currency": "CNY", "required": "100"})
        ).is_success
        pay = {"amount": "100", "channel": "wechat_pay", "ref": "S2-T1"}
        assert (await api.post("/v1/shops/S2/payments", "finance", pay)).is_success
        async with console.signed_in("finance") as client:
            token = csrf_of(await client.get("/console/shops/S2"))
            assert (await client.post("/console/shops/S2/closure", data={"csrf_token": token})).status_code == 303
            clock.advance(days=91)
            page = await client.get("/console/shops/S2")
            assert 'id="form-refund"' in page.text
            assert (await client.post("/console/shops/S2/refund", data={"csrf_token": token})).status_code == 303
        assert (await api.get("/v1/shops/S2")).json()["status"] == "closed"


# --------------------------------------------------------------------- pages


async def test_the_shop_page_shows_figures_chart_cases_and_history(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console:
        await story(console, "茶馆")
        async with console.signed_in("auditor") as client:
            page = await client.get("/console/shops/%E8%8C%B6%E9%A6%86")
        assert page.status_code == 200
        text = page.text
        assert "<h1>Shop 茶馆" in text
        assert '<svg class="timeline"' in text and 'class="mark payment"' in text and 'class="mark deduction"' in text
        assert "H1" in text and "C1" in text  # the open hold and the pending appeal
        assert "HoldPlaced" in text and "AppealFiled" in text
        assert '<td class="num">1,000.00</td>' in text  # required, in the currency's digits
        assert "<time datetime=" in text and "UTC" in text


async def test_an_unknown_shop_is_a_404_page(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console, console.signed_in("auditor") as client:
        page = await client.get("/console/shops/nowhere")
        assert page.status_code == 404 and "nowhere" in page.text


async def test_shops_filter_sort_paginate_and_total_per_currency(
    console_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "PAGE_ROWS", 2)
    async with console_factory() as console:
        api = console.api
        for number, (currency, paid) in enumerate([("CNY", "100"), ("CNY", "40"), ("USD", "10"), ("CNY", "0")]):
            shop = f"P{number}"
            body = {
                "shop_id": shop,
                "currency": currency,
                "required": "100",
                "site": "US" if currency == "USD" else "CN",
            }
            assert (await api.post("/v1/shops", "finance", body)).is_success
            if paid != "0":
                payment = {"amount": paid, "channel": "alipay", "ref": f"{shop}-T"}
                assert (await api.post(f"/v1/shops/{shop}/payments", "finance", payment)).is_success
        async with console.signed_in("risk") as client:
            first = await client.get("/console/shops")
            assert first.status_code == 200
            assert _shops(first.text) == ["P0", "P1"]
            assert "Next page" in first.text
            second = await client.get(_next_url(first.text))
            assert _shops(second.text) == ["P2", "P3"]
            assert "Next page" not in second.text
            totals = _totals(first.text)
            assert totals == {"CNY": ["3", "140.00", "0.00", "0.00"], "USD": ["1", "10.00", "0.00", "0.00"]}
            by_shortfall = await client.get("/console/shops", params={"sort": "shortfall"})
            assert _shops(by_shortfall.text) == ["P3", "P2"]
            rest = await client.get(_next_url(by_shortfall.text))
            assert _shops(rest.text) == ["P1", "P0"]
            underfunded = await client.get("/console/shops", params={"underfunded": "1", "site": "cn"})
            assert _shops(underfunded.text) == ["P1", "P3"]
            assert _totals(underfunded.text) == {"CNY": ["2", "40.00", "0.00", "0.00"]}
            waiting = await client.get("/console/shops", params={"status": "awaiting_payment"})
            assert _shops(waiting.text) == ["P3"]
            bad = await client.get("/console/shops", params={"status": "sleeping"})
            assert bad.status_code == 422 and "status" in bad.text
            foreign = await client.get(_next_url(first.text).replace("sort=shop", "sort=shortfall"))
            assert foreign.status_code == 422


async def test_the_work_queue_lists_what_waits_oldest_first(
    console_factory: Callable[..., Any], clock: FakeClock
) -> None:
    async with console_factory() as console:
        await story(console, "Q-old")
        clock.advance(days=1)
        await story(console, "Q-new")
        api = console.api
        assert (
            await api.post("/v1/shops", "finance", {"shop_id": "Q-short", "currency": "CNY", "required": "100"})
        ).is_success
        pay = {"amount": "100", "channel": "alipay", "ref": "Q-short-T"}
        assert (await api.post("/v1/shops/Q-short/payments", "finance", pay)).is_success
        deduct = {"amount": "60", "reason": "late_shipment", "case": "QC"}
        assert (await api.post("/v1/shops/Q-short/deductions", "risk", deduct)).is_success
        assert (
            await api.post("/v1/shops", "finance", {"shop_id": "Q-closing", "currency": "CNY", "required": "100"})
        ).is_success
        assert (await api.post("/v1/shops/Q-closing/closure", "finance")).is_success
        clock.advance(days=100)
        async with console.signed_in("risk") as client:
            page = await client.get("/console/queue")
        assert page.status_code == 200
        sections = {
            name: page.text.split(f'id="q-{name}"')[1].split("</section>")[0]
            for name in ("topups", "appeals", "holds", "refunds")
        }
        assert "Q-short" in sections["topups"]
        assert sections["appeals"].index("Q-old") < sections["appeals"].index("Q-new")
        assert sections["holds"].index("Q-old") < sections["holds"].index("Q-new") and "H1" in sections["holds"]
        assert "Q-closing" in sections["refunds"]


async def test_the_audit_page_verifies_and_exports_by_role(console_factory: Callable[..., Any]) -> None:
    async with console_factory() as console:
        await story(console)
        async with console.signed_in("auditor") as client:
            page = await client.get("/console/audit")
            assert page.status_code == 200 and "Latest checkpoint" in page.text and "Verify now" in page.text
            verified = await client.get("/console/audit/verify", params={"fragment": "true"})
            assert verified.status_code == 200 and "agree with the events" in verified.text
            csv_rows = (
                await client.get("/console/audit/export", params={"shop": "S1", "format": "csv"})
            ).text.splitlines()
            assert csv_rows[0].startswith("position,shop_id,type") and len(csv_rows) > 3
            lines = (await client.get("/console/audit/export", params={"format": "jsonl"})).text.splitlines()
            assert {json.loads(line)["shop_id"] for line in lines} == {"S1"}
            unknown = await client.get("/console/audit/export", params={"shop": "nowhere"})
            assert unknown.status_code == 404
        async with console.signed_in("risk") as client:
            page = await client.get("/console/audit")
            assert page.status_code == 200 and "Verify now" not in page.text
            assert (await client.get("/console/audit/verify")).status_code == 403
            assert (await client.get("/console/audit/export", params={"shop": "S1"})).status_code == 200
            assert (await client.get("/console/audit/export", params={"format": "csv"})).status_code == 403


def _shops(text: str) -> list[str]:
    body = text.split('<table class="shops">')[1].split("</table>")[0]
    return [part.split('">')[1].split("</a>")[0] for part in body.split('<th scope="row"><a href="')[1:]]


def _next_url(text: str) -> str:
    return text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")


def _totals(text: str) -> dict[str, list[str]]:
    body = text.split('<table class="totals">')[1].split("</table>")[0].split("<tbody>")[1]
    totals = {}
    for row in body.split("<tr>")[1:]:
        cells = [cell.split(">", 1)[1].split("<")[0] for cell in row.split("<t")[1:] if cell[:1] in "dh"]
        if len(cells) == 5:
            totals[cells[0]] = cells[1:]
    return totals
