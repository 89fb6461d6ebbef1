"""Webhook subscriptions: a URL, the event and notice types it wants, and the secret that signs for it.

A subscription's id is derived from its URL (``wh_`` and 12 hex digits), so adding
the same subscription twice changes nothing; adding the same URL with other types
or another secret is refused until the old one is removed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from domain import HISTORY_EVENTS, MalformedInput
from ledger.faces.feeds.notices import NOTICE_TYPES

EVENT_TYPES: tuple[str, ...] = tuple(event_type.__name__ for event_type in HISTORY_EVENTS)
"""The event types a subscription can name, in lifecycle order."""

ALL_TYPES = "*"
"""Every event type and every notice."""

SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
"""The Standard Webhooks bounds on a signing key's length."""

MAX_URL_LENGTH = 2000


@dataclass(frozen=True)
class Subscription:
    """Who gets which messages: ``types`` holds event and notice types, or ``*``."""

    id: str
    url: str
    types: tuple[str, ...]
    secret: str
    created_at: datetime

    def wants(self, message_type: str) -> bool:
        """Whether a message of this type goes to this subscription."""
        return ALL_TYPES in self.types or message_type in self.types

    @property
    def masked_secret(self) -> str:
        """The secret as lists show it: enough to tell two apart, never enough to sign."""
        return f"{SECRET_PREFIX}…{self.secret[-4:]}"


def subscription_id(url: str) -> str:
    """The id of the subscription of ``url``."""
    return "wh_" + hashlib.sha256(url.encode()).hexdigest()[:12]


def parse_url(url: str) -> str:
    """An ``http`` or ``https`` URL with a host, at most 2000 characters."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise MalformedInput(f"malformed webhook URL {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or len(text) > MAX_URL_LENGTH:
        raise MalformedInput(f"malformed webhook URL {url!r}: expected http:// or https://HOST/PATH")
    if any(character.isspace() for character in text):
        raise MalformedInput(f"malformed webhook URL {url!r}: it holds white space")
    return text


def parse_types(text: str) -> tuple[str, ...]:
    """``Paid,Deducted,DepositShort`` or ``*``: known names only, each once, in the order given."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise MalformedInput("--events needs event types (Paid,Deducted,...), notices (DepositShort,...) or *")
    if ALL_TYPES in names:
        return (ALL_TYPES,)
    known = set(EVENT_TYPES) | set(NOTICE_TYPES)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise MalformedInput(
            f"unknown event type(s) {', '.join(unknown)}: expected {', '.join(EVENT_TYPES + NOTICE_TYPES)} or *"
        )
    return tuple(dict.fromkeys(names))


def parse_secret(secret: str) -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 24 to 64 random bytes."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise MalformedInput("the secret must look like whsec_<base64 of 24 to 64 random bytes>")
    try:
        key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedInput("the secret after whsec_ is not base64") from None
    if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
        raise MalformedInput(f"the secret holds {len(key)} bytes: a signing key has 24 to 64")
    return text
