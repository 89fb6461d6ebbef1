"""``create_app``: the HTTP API of the ledger, as an ASGI app.

Routers are plain FastAPI ``APIRouter`` objects: another face (webhooks, a
console) adds its own with ``app.include_router`` and uses the same keys through
:func:`ledger.faces.http.auth.requires`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from ledger.faces import console
from ledger.faces.feeds import api as webhooks
from ledger.faces.http.guard import Guard
from ledger.faces.http.problems import install_problem_handlers
from ledger.faces.http.routes import batch, books, health, keys, shops
from ledger.faces.http.service import Service
from ledger.store.urls import Store

API_VERSION = "1"

DESCRIPTION = """An event-sourced ledger of merchant shops' security deposits (保证金), over HTTP.

Send `Authorization: Bearer KEY` (keys: `deposit-ledger keys create NAME --role ROLE`); every event
written through the API carries the key's name as its actor. Amounts are decimal strings in major
units; times are ISO-8601 with a zone. Errors are RFC 9457 problem details. Every POST takes an
`Idempotency-Key`. See docs/service.md.
"""

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    shops.router,
    batch.router,
    books.router,
    keys.router,
    webhooks.router,
)
"""The service's own routers, in the order the OpenAPI document lists them."""


def create_app(
    store: Store | str | None = None,
    *,
    routers: Iterable[APIRouter] = (),
    **service_options: Any,
) -> FastAPI:
    """The API on ``store`` (default: ``DEPOSIT_LEDGER_DB``, else ``deposits.db``).

    ``routers`` are mounted after the service's own, then the console (``/console``); ``service_options`` go to
    :class:`Service` (``max_batch``, ``max_wait_s``, and the ledger's ``policy``,
    ``clock``...). The store is opened when the app starts (its lifespan), and the
    writer finishes its batch in flight when it stops.
    """
    service = Service(store, **service_options)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="deposit-ledger",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.idempotency_in_flight = set()
    app.state.feed_shops = books.feed_shops()
    install_problem_handlers(app)
    for router in (*ROUTERS, *routers):
        app.include_router(router)
    console.mount(app)
    app.add_middleware(Guard, metrics=service.metrics)
    return app
