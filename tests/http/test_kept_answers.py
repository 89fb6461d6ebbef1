"""An Idempotency-Key's answer to a write is kept in the transaction that saves the write's events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from ledger import DepositLedger
from ledger.faces.http.idempotency import IdempotencyKeys, Keeping, Remembered
from ledger.faces.http.writer import BATCH_ATTEMPTS, GroupWriter
from tests.http.conftest import opened

pytestmark = pytest.mark.anyio


def test_an_answer_commits_with_its_events_or_not_at_all(store_url: str) -> None:
    ledger = DepositLedger(store_url, actor="test")
    kept = IdempotencyKeys(ledger.store)
    try:
        ledger.open("S1", currency="CNY", required="10.00")
        saved = Keeping("finance", "K1", "digest-1")
        with ledger.batch():
            ledger.pay("S1", "5.00", channel="alipay", ref="A")
            ledger.record_alongside(saved.write_with_events(201, b"first answer"))
        assert saved.kept is True
        assert kept.find("finance", "K1") == Remembered("digest-1", 201, b"first answer")

        def crash(cursor: Any) -> None:
            raise RuntimeError("the process dies inside the commit")

        lost = Keeping("finance", "K2", "digest-2")
        with pytest.raises(RuntimeError, match="dies"), ledger.batch():
            ledger.pay("S1", "6.00", channel="alipay", ref="B")
            ledger.record_alongside(lost.write_with_events(201, b"never given"))
            ledger.record_alongside(crash)
        assert kept.find("finance", "K2") is None
        assert [event.trade_no for event in ledger.history("S1") if event.type_name == "Paid"] == ["A"]

        # A second answer to a key kept already does not replace the first.
        again = Keeping("finance", "K1", "digest-1")
        with ledger.batch():
            ledger.pay("S1", "7.00", channel="alipay", ref="C")
            ledger.record_alongside(again.write_with_events(201, b"second answer"))
        assert again.kept is False
        assert kept.find("finance", "K1") == Remembered("digest-1", 201, b"first answer")
    finally:
        kept.close()
        ledger.close()


async def test_a_keyed_write_is_kept_without_a_transaction_after_its_commit(
    api_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keeping an answer after the commit is what a crash could cut off: a write that
    # changed something must not need it.
    def cut_off(*_: Any) -> Remembered:
        raise RuntimeError("the process died after the commit")

    async with api_factory() as api:
        await opened(api)
        monkeypatch.setattr(IdempotencyKeys, "remember", cut_off)
        body = {"amount": "10.00", "channel": "alipay", "ref": "T1"}
        first = await api.post("/v1/shops/S1/payments", "finance", body, idempotency_key="k-1")
        assert first.status_code == 201
        replay = await api.post("/v1/shops/S1/payments", "finance", body, idempotency_key="k-1")
        assert (replay.status_code, replay.content) == (201, first.content)
        assert replay.headers["idempotent-replayed"] == "true"
        at = datetime.now(UTC).isoformat()
        lines = [{"op": "pay", "shop": "S1", "at": at, "amount": "1", "channel": "alipay", "ref": "T2"}]
        batch = await api.post("/v1/batch", "finance", lines, idempotency_key="k-2")
        assert batch.json()["results"][0]["status"] == 201
        replayed = await api.post("/v1/batch", "finance", lines, idempotency_key="k-2")
        assert replayed.content == batch.content


def test_a_command_decided_alone_after_collisions_keeps_its_answer_with_its_events(store_url: str) -> None:
    ledger = DepositLedger(store_url, actor="test")
    kept = IdempotencyKeys(ledger.store)
    writer = GroupWriter(ledger)
    keeping = Keeping("finance", "K1", "digest-1")
    tries = 0

    def colliding(led: DepositLedger) -> Any:
        # Another process saved the deposit first, every time the batch was decided together.
        nonlocal tries
        tries += 1
        if tries <= BATCH_ATTEMPTS:
            raise IntegrityError("another process saved this deposit first")
        result = led.pay("S1", "5.00", channel="alipay", ref="A")
        led.record_alongside(keeping.write_with_events(201, b"answer"))
        return result

    try:
        ledger.open("S1", currency="CNY", required="10.00")
        writer.start()
        assert writer.submit(colliding).result().state.paid_minor == 500
        assert tries == BATCH_ATTEMPTS + 1
        assert keeping.kept is True
        assert kept.find("finance", "K1") == Remembered("digest-1", 201, b"answer")
    finally:
        writer.stop()
        kept.close()
        ledger.close()
