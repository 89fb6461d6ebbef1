"""Group commit: concurrent requests share transactions, each decided on its own, nothing lost or doubled."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from domain import DuplicateConflict
from ledger import DepositLedger
from ledger.faces.http.writer import GroupWriter
from tests.http.conftest import opened

pytestmark = pytest.mark.anyio

CLIENTS = 32
PAYMENTS_EACH = 8


async def test_32_clients_paying_one_shop_lose_nothing(api_factory: Any) -> None:
    async with api_factory() as api:
        await opened(api, required="1.00")
        accepted: list[Decimal] = []

        async def client(number: int) -> None:
            for payment in range(PAYMENTS_EACH):
                amount = Decimal(number + 1) + Decimal(payment) / 100
                body = {"amount": str(amount), "channel": "wechat_pay", "ref": f"C{number}-{payment}"}
                response = await api.post(
                    "/v1/shops/S1/payments", "finance", body, idempotency_key=f"{number}-{payment}"
                )
                assert response.status_code == 201, response.text
                accepted.append(amount)

        await asyncio.gather(*(client(number) for number in range(CLIENTS)))
        assert len(accepted) == CLIENTS * PAYMENTS_EACH
        total = f"{sum(accepted):.2f}"
        shown = (await api.get("/v1/shops/S1")).json()
        balance = (await api.get("/v1/shops/S1/balance")).json()
        replayed = (await api.get("/v1/shops/S1/replay", version=shown["version"])).json()
        assert shown["paid"] == shown["frozen"] == total
        assert balance == shown
        assert replayed["frozen"] == total
        history = (await api.get("/v1/shops/S1/history")).json()["items"]
        assert sum(1 for event in history if event["type"] == "Paid") == CLIENTS * PAYMENTS_EACH
        assert (await api.get("/v1/verify")).json()["ok"] is True


def test_a_refused_command_does_not_fail_its_neighbours(store_url: str) -> None:
    # Three commands in one batch, decided in order: the refused middle one leaves no trace.
    ledger = DepositLedger(store_url, actor="test")
    sizes: list[int] = []
    writer = GroupWriter(ledger, on_batch=lambda size, _: sizes.append(size))
    try:
        ledger.open("S1", currency="CNY", required="10.00")
        answers = [
            writer.submit(lambda led: led.pay("S1", "5.00", channel="alipay", ref="A")),
            writer.submit(lambda led: led.pay("S1", "6.00", channel="alipay", ref="A")),
            writer.submit(lambda led: led.pay("S1", "7.00", channel="alipay", ref="B")),
        ]
        writer.start()  # only now: all three are queued, so they are one batch
        assert answers[0].result().state.paid_minor == 500
        with pytest.raises(DuplicateConflict):
            answers[1].result()
        assert answers[2].result().state.paid_minor == 1200
        assert sizes == [3]
    finally:
        writer.stop()
        ledger.close()
    reopened = DepositLedger(store_url, actor="test")
    try:
        assert reopened.show("S1").paid_minor == 1200
        assert reopened.auditor().verify().ok
    finally:
        reopened.close()


def test_stopping_answers_every_queued_command(store_url: str) -> None:
    # What a graceful shutdown relies on: the batch in flight and everything queued behind it are decided.
    ledger = DepositLedger(store_url, actor="test")
    writer = GroupWriter(ledger, max_batch=4)
    try:
        ledger.open("S1", currency="CNY", required="10.00")
        answers = [
            writer.submit(lambda led, number=number: led.pay("S1", "1.00", channel="alipay", ref=f"R{number}"))
            for number in range(10)
        ]
        writer.start()
        writer.stop()
        assert all(answer.done() for answer in answers)
        assert [answer.result().state.paid_minor for answer in answers] == [100 * (n + 1) for n in range(10)]
        with pytest.raises(RuntimeError, match="stopping"):
            writer.submit(lambda led: led.show("S1"))
    finally:
        ledger.close()
