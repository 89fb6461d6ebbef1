"""Cursor pagination: opaque cursors and a bounded ``limit``."""

from __future__ import annotations

import base64
import binascii

from ledger.faces.http.problems import Problem

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_cursor(after: str) -> str:
    """An opaque cursor that resumes after ``after`` (a shop id, a position)."""
    return base64.urlsafe_b64encode(after.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """What a cursor resumes after; 422 for one this service did not give."""
    if cursor is None:
        return None
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(422, "malformed-input", "cursor: not a cursor this service gave") from None
