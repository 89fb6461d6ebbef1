"""The relay to the local NATS JetStream at 127.0.0.1:4222: every event once in the stream, restarts or not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ledger.app.service import DepositLedger
from ledger.faces.feeds.bus import subject_for
from ledger.faces.feeds.outbox import FeedBook
from ledger.faces.feeds.relay import Relay
from tests.cli.conftest import Run
from tests.faces.feeds.helpers import trade

NATS_URL = "nats://127.0.0.1:4222"


def nats_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not nats_answers(), reason="no NATS server answers at 127.0.0.1:4222")


async def _stream_call(name: str, call: str) -> Any:
    import nats

    connection = await nats.connect(NATS_URL, connect_timeout=5)
    try:
        jetstream = connection.jetstream()
        if call == "count":
            return (await jetstream.stream_info(name)).state.messages
        if call == "messages":
            info = await jetstream.stream_info(name)
            return [await jetstream.get_msg(name, seq) for seq in range(1, info.state.messages + 1)]
        await jetstream.delete_stream(name)
        return None
    finally:
        await connection.close()


class Stream:
    """A fresh stream and subject prefix for one test, deleted afterwards."""

    def __init__(self) -> None:
        token = uuid.uuid4().hex[:12]
        self.name = f"DEPOSITS_TEST_{token}"
        self.prefix = f"deposits_test_{token}"

    def count(self) -> int:
        return int(asyncio.run(_stream_call(self.name, "count")))

    def messages(self) -> list[Any]:
        return list(asyncio.run(_stream_call(self.name, "messages")))


@pytest.fixture
def stream() -> Iterator[Stream]:
    made = Stream()
    yield made
    with contextlib.suppress(Exception):  # the test may have failed before creating it
        asyncio.run(_stream_call(made.name, "delete"))


def nats_relay(ledger: DepositLedger, stream: Stream) -> Relay:
    from ledger.faces.feeds.nats_bus import NatsJetStreamBus

    bus = NatsJetStreamBus(NATS_URL, stream.name, subject_prefix=stream.prefix)
    return Relay(ledger, bus=bus, subject_prefix=stream.prefix)


class Killed(Exception):
    """The relay stopped between the broker's acknowledgement and the move of its position."""


def test_every_event_is_once_in_the_stream_after_restarts(
    ledger: DepositLedger, stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    trade(ledger, ["tea-house", "noodle.bar"], rounds=3)
    events = ledger.views.head()

    # Twice the relay dies after JetStream acknowledged a batch, before it wrote its position down.
    original = FeedBook.advance
    for _ in range(2):

        def die(self: FeedBook, target: str, read_from: int, to: int) -> bool:
            raise Killed

        monkeypatch.setattr(FeedBook, "advance", die)
        relay = nats_relay(ledger, stream)
        with pytest.raises(Killed):
            relay.run_once()
        assert relay.bus is not None
        relay.bus.close()
        relay.close()
    monkeypatch.setattr(FeedBook, "advance", original)

    relay = nats_relay(ledger, stream)
    relay.run_once()
    trade(ledger, ["late-shop"], rounds=1)
    relay.run_once()
    assert relay.bus is not None
    relay.bus.close()
    relay.close()

    total = events + 3
    assert stream.count() == total
    messages = stream.messages()
    first = messages[0]
    assert first.subject == subject_for("CN", "tea-house", "Opened", stream.prefix)
    opened = ledger.history("tea-house")[0]
    assert first.headers["Nats-Msg-Id"] == f"evt_{opened.originator_id.hex}_1"
    body = json.loads(first.data)
    assert body["type"] == "Opened" and body["data"]["position"] == 1
    assert any(message.subject.startswith(f"{stream.prefix}.CN.noodle%2Ebar.") for message in messages)
    assert [json.loads(message.data)["data"]["position"] for message in messages] == list(range(1, total + 1))


def test_the_command_line_relays_to_nats_and_again_adds_nothing(cli: Run, stream: Stream) -> None:
    cli("open tea-house --currency CNY --required 1000 --site CN")
    cli("pay tea-house 100 --channel alipay --ref t-1")
    args = f"relay --nats {NATS_URL} --stream {stream.name} --subject-prefix {stream.prefix}"
    assert "published 3 events" in cli(args).out
    assert "published 0 events" in cli(args).out
    assert stream.count() == 3


def test_an_unreachable_server_is_one_line_and_exit_2(cli: Run) -> None:
    outcome = cli("relay --nats nats://127.0.0.1:1 --stream DEPOSITS")
    assert outcome.code == 2 and len(outcome.err_lines) == 1
    assert outcome.err.startswith("deposit-ledger: cannot reach NATS at nats://127.0.0.1:1")
