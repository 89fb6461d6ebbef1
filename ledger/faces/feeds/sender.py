"""Sending webhooks over HTTP, and when to try again.

An attempt succeeds on any 2xx answer; anything else (another status, a refused
connection, no answer within ``TIMEOUT_S``) is a failure, retried after an
exponential backoff with jitter: ``BACKOFF_FIRST_S`` doubled after each failure up
to ``BACKOFF_MAX_S``, each wait drawn between half and all of that, for at most
``MAX_ATTEMPTS`` attempts (about 2.5 hours in all). Then the delivery is parked:
it stays visible in ``webhooks deliveries --failed`` and ``webhooks retry`` sends
it again. Redirects are not followed: a moved endpoint should be subscribed anew.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from ledger.faces.feeds.signing import signed_headers

TIMEOUT_S = 10.0
"""How long one attempt waits for the receiver's answer."""

MAX_ATTEMPTS = 12
"""Attempts at one delivery before it is parked."""

BACKOFF_FIRST_S = 5.0
"""The wait after the first failure (before jitter)."""

BACKOFF_MAX_S = 3600.0
"""The longest wait between two attempts (before jitter)."""

USER_AGENT = "deposit-ledger-relay"


def retry_delay(failed_attempts: int, draw: Callable[[], float]) -> timedelta | None:
    """How long to wait after the ``failed_attempts``-th failure; None when it was the last attempt.

    ``draw`` returns a number in [0, 1): the jitter, so that receivers coming back
    up are not hit by every waiting delivery at the same moment.
    """
    assert failed_attempts >= 1
    if failed_attempts >= MAX_ATTEMPTS:
        return None
    ceiling_s = min(BACKOFF_FIRST_S * 2 ** (failed_attempts - 1), BACKOFF_MAX_S)
    return timedelta(seconds=ceiling_s * (0.5 + draw() / 2))


def retry_schedule() -> list[tuple[float, float]]:
    """The range of each wait, in seconds (for docs and tests): [(shortest, longest), ...]."""
    schedule = []
    for failed in range(1, MAX_ATTEMPTS):
        low, high = retry_delay(failed, lambda: 0.0), retry_delay(failed, lambda: 1.0)
        assert low is not None and high is not None
        schedule.append((low.total_seconds(), high.total_seconds()))
    return schedule


class WebhookSender:
    """Posts signed messages to receivers over one pooled HTTP client (safe to share between threads)."""

    def __init__(self, *, timeout_s: float = TIMEOUT_S, transport: httpx.BaseTransport | None = None) -> None:
        """``transport`` replaces the network (for tests); by default real HTTP with keep-alive."""
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={"user-agent": USER_AGENT},
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def send(self, url: str, secret: str, message_id: str, body: bytes, sent_at: datetime) -> str | None:
        """Post one message; None on success, else why it failed (one line)."""
        try:
            response = self._client.post(url, content=body, headers=signed_headers(secret, message_id, sent_at, body))
        except httpx.TimeoutException:
            return "timed out"
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}".splitlines()[0]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code} {response.reason_phrase}".strip()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


def system_draw() -> float:
    """A jitter draw from the system's randomness."""
    return random.random()
