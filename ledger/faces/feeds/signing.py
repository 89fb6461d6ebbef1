"""Standard Webhooks signatures: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signature is ``v1,`` and the base64 of HMAC-SHA256, keyed with the secret's
bytes (the base64 after ``whsec_``), over ``<webhook-id>.<webhook-timestamp>.<body>``.
The ``standardwebhooks`` package computes it, so receivers verifying with the same
package (or by hand, docs/feeds.md) agree with us byte for byte.
"""

from __future__ import annotations

from datetime import datetime
from math import floor

from standardwebhooks.webhooks import Webhook

CONTENT_TYPE = "application/json"


def signed_headers(secret: str, message_id: str, sent_at: datetime, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the message's id, the attempt's time, their signature with the body."""
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": message_id,
        "webhook-timestamp": str(floor(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body),
    }
