"""Run the API on uvicorn: one process, one group writer; more processes go behind a load balancer."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import uvicorn

from ledger.faces.http.app import create_app
from ledger.store.urls import Store

KEEP_ALIVE_TIMEOUT_S = 15
"""An idle keep-alive connection is closed after this long."""

GRACEFUL_SHUTDOWN_S = 30
"""On SIGTERM, requests in flight get this long to be answered (the writer's batch included)."""


def serve(store: Store, *, host: str, port: int, **service_options: Any) -> None:
    """Serve until SIGTERM or SIGINT; then answer what is in flight and stop."""
    app = create_app(store, **service_options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        log_level="warning",
    )
    # uvicorn stops gracefully on SIGTERM and SIGINT, then raises the signal again, so that the process
    # ends as signalled. A stop asked for and carried out is a success: exit 0 (before uvicorn installs
    # its own handlers too: a signal during startup ends the process at once, cleanly).
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stopped)
    uvicorn.Server(config).run()


def _stopped(number: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
