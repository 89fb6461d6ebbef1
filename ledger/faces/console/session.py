"""The console's session: a signed cookie naming the key that signed in, and the CSRF token of its forms.

Signing is itsdangerous's (HMAC-SHA1 over a derived key, with a timestamp), the
library Starlette's own session middleware uses; nothing here is hand-made crypto.
The cookie holds no secret: the key's name, its role when it signed in, a random
nonce, and the time it was signed (the expiry is checked against it). It is
HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it)
and Secure over HTTPS. Every page looks the key up again, so a revoked key's
session ends at once, as the key does in the API.

CSRF: each form carries a token that is the session's nonce, signed with another
salt (the synchronizer-token pattern). A page that is not signed in still has an
anonymous session with a nonce, so that the sign-in form is protected too;
signing in starts a new session with a fresh nonce (no session fixation).
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

COOKIE_NAME = "deposit_ledger_console"
SESSION_S = 8 * 60 * 60
"""A session ends this long after sign-in (a working day); the key must sign in again."""

SECRET_ENV_VAR = "DEPOSIT_LEDGER_CONSOLE_SECRET"
"""The secret that signs sessions; the same on every server process behind one load balancer."""

MIN_SECRET_CHARS = 32
CSRF_FIELD = "csrf_token"
MAX_COOKIE_CHARS = 1000
"""A cookie longer than this is not one the console gave: refused without verifying it."""


@dataclass(frozen=True, slots=True)
class Session:
    """What the cookie says: the nonce of its forms, and the key (name and role) signed in, if any."""

    nonce: str
    name: str | None = None
    role: str | None = None

    @property
    def signed_in(self) -> bool:
        """Whether a key signed in to this session."""
        return self.name is not None


def console_secret(environ: dict[str, str] | None = None) -> str:
    """The signing secret: ``DEPOSIT_LEDGER_CONSOLE_SECRET``, or a random one for this process alone.

    Without the variable, sessions end when the process stops and are not
    honoured by other processes: one server needs nothing, several share it.
    """
    given = (os.environ if environ is None else environ).get(SECRET_ENV_VAR)
    if given is None:
        return secrets.token_urlsafe(32)
    if len(given) < MIN_SECRET_CHARS:
        raise ValueError(f"{SECRET_ENV_VAR} must be at least {MIN_SECRET_CHARS} characters")
    return given


class Sessions:
    """Reads and writes the session cookie, and makes and checks CSRF tokens, with one secret."""

    def __init__(self, secret: str) -> None:
        """Sign with ``secret`` (see :func:`console_secret`)."""
        self._cookies = URLSafeTimedSerializer(secret, salt="deposit-ledger-console-session")
        self._tokens = URLSafeTimedSerializer(secret, salt="deposit-ledger-console-csrf")

    def read(self, request: Request) -> Session | None:
        """The request's session, or None when it has none, or one that is forged or expired."""
        cookie = request.cookies.get(COOKIE_NAME)
        if cookie is None or len(cookie) > MAX_COOKIE_CHARS:
            return None
        try:
            data = self._cookies.loads(cookie, max_age=SESSION_S)
        except BadSignature:  # forged, altered or expired (SignatureExpired is a BadSignature)
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        name, role = data.get("k"), data.get("r")
        if not (isinstance(name, str) and isinstance(role, str)):
            return Session(nonce=data["n"])
        return Session(nonce=data["n"], name=name, role=role)

    def anonymous(self) -> Session:
        """A session for a visitor who has not signed in: only a nonce, for the sign-in form."""
        return Session(nonce=secrets.token_urlsafe(16))

    def signed_in(self, name: str, role: str) -> Session:
        """A new session for a key that has just signed in (a fresh nonce)."""
        return Session(nonce=secrets.token_urlsafe(16), name=name, role=role)

    def write(self, response: Response, request: Request, session: Session) -> None:
        """Set the cookie of ``session`` on ``response``."""
        data: dict[str, str] = {"n": session.nonce}
        if session.name is not None and session.role is not None:
            data |= {"k": session.name, "r": session.role}
        response.set_cookie(
            COOKIE_NAME,
            self._cookies.dumps(data),
            max_age=SESSION_S,
            path="/console",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def forget(response: Response, request: Request) -> None:
        """Remove the cookie (sign-out)."""
        response.delete_cookie(
            COOKIE_NAME, path="/console", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )

    def token(self, session: Session) -> str:
        """The CSRF token of the forms of ``session``."""
        return str(self._tokens.dumps(session.nonce))

    def token_matches(self, session: Session | None, token: object) -> bool:
        """Whether ``token`` is the CSRF token of ``session`` (and not older than a session lives)."""
        if session is None or not isinstance(token, str) or not token or len(token) > MAX_COOKIE_CHARS:
            return False
        try:
            nonce = self._tokens.loads(token, max_age=SESSION_S)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce, session.nonce)
