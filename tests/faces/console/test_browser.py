"""The console in a real browser: Playwright driving Chromium against a started ``deposit-ledger serve``.

A risk operator signs in, finds the most overdue shop, opens it, sees why on the
chart and records a deduction; an auditor is offered no such form and is refused
when posting one anyway. Each page is photographed on the way: into a temporary
folder, or into the folder ``DEPOSIT_LEDGER_CONSOLE_SCREENSHOTS`` names (the
images of docs/console.md are made with ``=docs/console-images``).

The browser is Debian's Chromium (``apt-get install chromium``), launched by path:
Playwright's own browser download cannot be reached from every machine. Without
Chromium or the ``playwright`` package the test is skipped, saying which is missing.
One backend is enough here: the pages are the same on both, and the plain HTTP
tests run every page and form on both.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger import DepositLedger
from ledger.faces.http.keys import ApiKeys
from ledger.store.urls import resolve_store
from tests.ledger.processes import Children, eventually

SCREENSHOTS_ENV_VAR = "DEPOSIT_LEDGER_CONSOLE_SCREENSHOTS"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.sqlite_only("a browser test: the pages are the same on both backends (the HTTP tests run both)"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (test extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _seed(store_url: str) -> dict[str, str]:
    """A small book of shops with months of history; the keys of a risk operator and an auditor."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=200)

    def day(number: float) -> str:
        return (start + timedelta(days=number)).isoformat()

    ledger = DepositLedger(store_url, actor="seed")
    try:
        for number in range(1, 9):
            shop = f"shop-{number:02d}"
            ledger.open(shop, currency="CNY", required="2000", site="CN", at=day(0))
            ledger.pay(shop, "2000", channel="alipay", ref=f"{shop}-P1", at=day(1))
        ledger.open("茶馆-杭州", currency="CNY", required="5000", site="CN", at=day(0))
        ledger.pay("茶馆-杭州", "3000", channel="wechat_pay", ref="tea-P1", at=day(2))
        ledger.pay("茶馆-杭州", "2000", channel="alipay", ref="tea-P2", at=day(20))
        ledger.deduct("茶馆-杭州", "800", reason="late_shipment", case="LATE-001", note="未按时发货", at=day(60))
        ledger.appeal("茶馆-杭州", case="LATE-001", note="物流延误，附凭证", at=day(70))
        # The most overdue: deducted twice long ago, never topped up.
        ledger.deduct("shop-03", "1500", reason="order_brushing", case="B-17", at=day(30))
        ledger.pay("shop-03", "500", channel="alipay", ref="shop-03-P2", at=day(45))
        ledger.hold("shop-03", "400", case="D-9", note="buyer dispute", at=day(80))
        ledger.deduct("shop-05", "700", reason="fake_listing", case="F-2", at=day(120))
        ledger.open("shop-us", currency="USD", required="1500", site="US", at=day(0))
        ledger.pay("shop-us", "1500", channel="alipay", ref="us-P1", at=day(3))
        ledger.close_shop("shop-us", at=day(10))
        ledger.refund("shop-us", at=day(101))
    finally:
        ledger.close()
    keys = ApiKeys(resolve_store(store_url))
    try:
        return {role: keys.create(role, role)[1] for role in ("risk", "auditor")}
    finally:
        keys.close()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to drive: apt-get install chromium (.ci/run does)")
def test_a_risk_operator_finds_the_most_overdue_shop_and_deducts_and_an_auditor_cannot(
    children: Children, store_url: str, tmp_path: Path
) -> None:
    secrets = _seed(store_url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = children.ledger("--db", store_url, "serve", "--port", str(port), name="server")

    def up() -> bool:
        assert server.process.poll() is None, server.stderr()
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    eventually(up, "the server to answer /healthz")
    shots = Path(os.environ.get(SCREENSHOTS_ENV_VAR) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            risk = browser.new_context(
                viewport={"width": 1280, "height": 900}, timezone_id="Asia/Shanghai", locale="en-GB"
            )
            _risk_operator(risk.new_page(), base, secrets["risk"], shots)
            auditor = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/London")
            _auditor(auditor.new_page(), base, secrets["auditor"], shots)
        finally:
            browser.close()
    assert server.process.poll() is None, server.stderr()


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/console/shops")
    assert page.url.endswith("/console/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/shops$"))


def _risk_operator(page: Any, base: str, key: str, shots: Path) -> None:
    page.goto(f"{base}/console/login")
    page.screenshot(path=str(shots / "login.png"))
    _sign_in(page, base, key)
    assert page.get_by_role("link", name="茶馆-杭州").is_visible()  # Chinese shop ids shown as they are
    page.screenshot(path=str(shots / "shops.png"), full_page=True)

    # Find the most overdue shop without reading any docs: the filter and the sort say it.
    page.get_by_label("overdue top-up").check()
    page.get_by_label("Sort by").select_option("top_up_due")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"overdue=1"))
    rows = page.locator("table.shops tbody tr")
    assert rows.first.locator("th a").inner_text() == "shop-03"
    assert "restricted" in rows.first.inner_text()
    shown = rows.first.locator("time").first
    assert "UTC" in (shown.get_attribute("title") or "") and "UTC" not in shown.inner_text()  # the viewer's zone
    page.screenshot(path=str(shots / "shops-overdue.png"), full_page=True)

    rows.first.locator("th a").click()
    page.wait_for_url(re.compile(r"/console/shops/shop-03$"))
    chart = page.locator("svg.timeline")
    assert chart.is_visible()
    assert chart.locator("g.mark.deduction").count() == 1 and chart.locator("g.mark.payment").count() == 2
    assert "requirement of 2,000.00 CNY" in page.locator("figure.chart figcaption").inner_text()
    page.screenshot(path=str(shots / "shop.png"), full_page=True)

    form = page.locator("#form-deductions")
    form.get_by_label("Case").fill("LATE-42")
    form.get_by_label("Reason").select_option("late_shipment")
    form.get_by_label(re.compile(r"^Amount")).fill("100")
    form.get_by_label("Note").fill("shipped 5 days late")
    form.get_by_role("button", name="Deduct").click()
    page.wait_for_url(re.compile(r"done=deductions"))
    assert page.get_by_role("status").inner_text() == "Deduction recorded."
    newest = page.locator("table.history tbody tr").first.inner_text()
    assert "Deducted" in newest and "risk" in newest and "LATE-42" in newest
    assert page.locator("svg.timeline g.mark.deduction").count() == 2

    page.get_by_role("link", name="Work queue").click()
    page.wait_for_url(re.compile(r"/console/queue$"))
    assert "D-9" in page.locator("section", has=page.locator("#q-holds")).inner_text()
    assert "茶馆-杭州" in page.locator("section", has=page.locator("#q-appeals")).inner_text()
    page.screenshot(path=str(shots / "queue.png"), full_page=True)


def _auditor(page: Any, base: str, key: str, shots: Path) -> None:
    _sign_in(page, base, key)
    page.goto(f"{base}/console/shops/shop-03")
    assert page.locator("#form-deductions").count() == 0  # not offered
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    refused = page.request.post(
        f"{base}/console/shops/shop-03/deductions",
        form={"case": "AUD-1", "reason": "other", "amount": "1", "csrf_token": token},
    )
    assert refused.status == 403 and "may not deduct" in refused.text()
    page.reload()
    assert "AUD-1" not in page.content()

    page.get_by_role("link", name="Audit").click()
    page.get_by_role("link", name="Verify now").click()
    page.locator("#verify-result .ok").wait_for()
    assert "agree with the events" in page.locator("#verify-result").inner_text()
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
