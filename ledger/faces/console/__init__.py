"""The back-office console: server-rendered pages for risk, finance and auditors, under ``/console``.

Sign in with an API key (its role decides what is offered), then: the shops, one
deposit with its timeline chart and forms, the work queue, the audit page. Every
asset is in the package (htmx is vendored under ``static/``): the console works
without the internet. :func:`mount` adds it to the HTTP service's app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ledger.faces.console.routes import SignInFirst, router
from ledger.faces.console.session import Sessions, console_secret

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI, secret: str | None = None) -> None:
    """Serve the console from ``app``: its pages, its static files, its session signer (``secret``, else
    :func:`~ledger.faces.console.session.console_secret`)."""
    app.state.console_sessions = Sessions(secret if secret is not None else console_secret())
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    async def sign_in_first(request: Request, error: Exception) -> RedirectResponse:
        return RedirectResponse("/console/login", status_code=303)

    app.add_exception_handler(SignInFirst, sign_in_first)


__all__ = ["mount"]
