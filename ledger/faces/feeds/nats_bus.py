"""The NATS JetStream bus: events on ``deposits.<site>.<shop_id>.<EventType>``, deduplicated by ``Nats-Msg-Id``.

The stream is created on first use if it is missing, capturing ``<prefix>.>``, with
a duplicate window of ``DUPLICATE_WINDOW_S``: a relay restarted within that time
republishes its last unacknowledged batch and JetStream keeps one copy of each event.
The client is asyncio; this bus runs it on an event loop of its own, so that the
relay stays a plain blocking worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import nats
from nats.js.errors import NotFoundError

from domain import MalformedInput
from ledger.faces.feeds.bus import SUBJECT_PREFIX, BusMessage, BusUnavailable

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for the NATS server to answer."""

ACK_TIMEOUT_S = 30.0
"""How long to wait for JetStream to acknowledge a batch."""

DUPLICATE_WINDOW_S = 3600.0
"""How long JetStream remembers a message id (the stream is created with it)."""

STREAM_NAME_MAX = 64


def parse_nats_url(url: str) -> str:
    """``nats://HOST[:PORT]`` (or ``tls://``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("nats", "tls") or not parts.hostname:
        raise MalformedInput(f"malformed NATS URL {url!r}: expected nats://HOST:4222")
    return url.strip()


def parse_stream_name(name: str) -> str:
    """A JetStream stream name: letters, digits, ``-`` and ``_``, at most 64."""
    if not name or len(name) > STREAM_NAME_MAX or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise MalformedInput(f"malformed stream name {name!r}: letters, digits, - and _, at most 64")
    return name


class NatsJetStreamBus:
    """Publishes to one JetStream stream through one connection."""

    def __init__(self, url: str, stream: str, *, subject_prefix: str = SUBJECT_PREFIX) -> None:
        """Connect, and create the stream if it is missing; :class:`BusUnavailable` if the server does not answer."""
        self.url = parse_nats_url(url)
        self.stream = parse_stream_name(stream)
        self.subject_prefix = subject_prefix
        self._runner = asyncio.Runner()
        self._connection: Any = None
        try:
            self._runner.run(self._open())
        except BusUnavailable:
            self.close()
            raise

    @property
    def target(self) -> str:
        """``nats:<stream>``: the name the relay keeps this bus's position under."""
        return f"nats:{self.stream}"

    async def _open(self) -> None:
        errors: list[BaseException] = []

        async def keep(error: Exception) -> None:
            # The client reports each failed try here (by default as a traceback on stderr).
            errors.append(error)

        try:
            # One try: reconnecting is the relay worker's job, with its own backoff.
            self._connection = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    error_cb=keep,
                ),
                timeout=2 * CONNECT_TIMEOUT_S,
            )
        except Exception as error:
            reason = _reason(errors[-1] if errors else error)
            raise BusUnavailable(f"cannot reach NATS at {self.url}: {reason}") from None
        jetstream = self._connection.jetstream(timeout=ACK_TIMEOUT_S)
        try:
            await jetstream.stream_info(self.stream)
        except NotFoundError:
            await jetstream.add_stream(
                name=self.stream, subjects=[f"{self.subject_prefix}.>"], duplicate_window=DUPLICATE_WINDOW_S
            )
        except Exception as error:
            raise BusUnavailable(f"JetStream at {self.url} did not answer: {_reason(error)}") from None
        self._jetstream = jetstream

    def publish(self, messages: list[BusMessage]) -> None:
        """Publish in order, then wait for every acknowledgement."""
        if messages:
            self._runner.run(self._publish(messages))

    async def _publish(self, messages: list[BusMessage]) -> None:
        try:
            # Written to the one connection in order, acknowledged together: the stream keeps
            # the order of the writes.
            acks = [
                await self._jetstream.publish_async(
                    message.subject, message.body, headers={"Nats-Msg-Id": message.id}, stream=self.stream
                )
                for message in messages
            ]
            await asyncio.wait_for(asyncio.gather(*acks), timeout=ACK_TIMEOUT_S)
        except Exception as error:
            raise BusUnavailable(f"JetStream did not acknowledge: {_reason(error)}") from None

    def close(self) -> None:
        """Drain nothing (every batch was acknowledged or failed), close the connection and the loop."""
        if self._connection is not None and not self._connection.is_closed:
            with contextlib.suppress(Exception):  # a connection that already broke
                self._runner.run(self._connection.close())
        self._runner.close()


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__
