"""Prometheus metrics of one server process: requests, latencies, group-commit batches, views' lag."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.views.runner import ViewStatus

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _ViewLag(Collector):
    # Read at scrape time: the lag is the store's, not something this process counts.
    def __init__(self, statuses: Callable[[], list[ViewStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily("deposit_ledger_view_lag_events", "Events a view has not applied yet", labels=["view"])
        for status in self._statuses():
            lag.add_metric([status.name], status.lag)
        yield lag


class ServiceMetrics:
    """The metrics, in a registry of their own (one per app, so that tests may build many)."""

    def __init__(self, statuses: Callable[[], list[ViewStatus]]) -> None:
        """``statuses`` reads the views' status when Prometheus scrapes."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deposit_ledger_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "deposit_ledger_http_request_seconds",
            "Time from a request's arrival to its answer, by route template and method",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.batch_commands = Histogram(
            "deposit_ledger_write_batch_commands",
            "Commands decided in one group-commit transaction",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "deposit_ledger_write_batch_seconds",
            "Time to decide and commit one group-commit batch",
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_ViewLag(statuses))

    def batch_written(self, commands: int, seconds: float) -> None:
        """Record one committed batch."""
        self.batch_commands.observe(commands)
        self.batch_seconds.observe(seconds)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
