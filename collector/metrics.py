"""Prometheus metrics of one collector app, in its own registry (no process-global state, so several
apps in one process, as in tests, keep separate counts). Labels never carry a client address."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from protocol import Batch

from .storage import StoreResult

# From a second (an agent online) to 30 days (the oldest we accept): how long data waited on devices.
LAG_BUCKETS = (1, 10, 60, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "vantage_ingest_batches",
            "Uploaded batches accepted, by result (stored or duplicate).",
            ["result"],
            registry=self.registry,
        )
        self.measurements = Counter(
            "vantage_ingest_measurements",
            "Measurements in accepted batches, by result (stored or duplicate).",
            ["result"],
            registry=self.registry,
        )
        self.rejects = Counter(
            "vantage_ingest_rejects",
            "Requests refused with a 4xx, by route and reason code.",
            ["route", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "vantage_http_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vantage_http_request_duration_seconds",
            "Time to answer a request, by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.spool_lag = Histogram(
            "vantage_ingest_spool_lag_seconds",
            "Receipt time minus measurement time, per stored measurement.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def accepted(self, batch: Batch, result: StoreResult, received_at: datetime) -> None:
        self.batches.labels("duplicate" if result.duplicate_batch else "stored").inc()
        self.measurements.labels("stored").inc(result.stored)
        self.measurements.labels("duplicate").inc(result.duplicates)
        if not result.duplicate_batch:
            for m in batch.measurements:
                self.spool_lag.observe(max(0.0, (received_at - m.measured_at).total_seconds()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
