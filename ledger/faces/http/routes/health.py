"""Probes and metrics: ``/healthz``, ``/readyz``, ``/metrics``.

No key needed: load balancers and Prometheus call them.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.faces.http.answers import json_response
from ledger.faces.http.auth import service_of
from ledger.faces.http.problems import problem_of
from ledger.store.urls import UNAVAILABLE

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> Response:
    """Always ``{"status": "ok"}`` while the process answers."""
    return json_response({"status": "ok"})


@router.get("/readyz", summary="The store is reachable; the views' lag")
def readyz(request: Request) -> Response:
    """200 with each view's lag when the store answers; a 503 problem when it does not."""
    try:
        statuses = service_of(request).view_status()
    except UNAVAILABLE as error:
        return problem_of(error).response()
    return json_response(
        {
            "status": "ok",
            "views": [{"name": status.name, "position": status.position, "lag": status.lag} for status in statuses],
        }
    )


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Requests by route and status, latency histograms, group-commit batch sizes, views' lag."""
    return Response(generate_latest(service_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
