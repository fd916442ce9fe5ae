"""Prometheus metrics of one server: requests, errors by kind, queue, batch sizes, latency.

Each server has its own registry (not prometheus-client's global one), so several servers in
one process (tests, the Ray replica next to a local one) never mix their numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["ServeMetrics", "CONTENT_TYPE_LATEST"]

PREFIX = "primedepth"
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ServeMetrics:
    """The server's counters, gauges and histograms, exported at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests to the depth API, by status code",
                                ["status"], registry=self.registry)
        self.errors = Counter(f"{PREFIX}_errors", "Rejected or failed depth requests, by kind",
                              ["kind"], registry=self.registry)
        self.images = Counter(f"{PREFIX}_images", "Images predicted", registry=self.registry)
        self.queue_length = Gauge(f"{PREFIX}_queue_length", "Images waiting for or in prediction",
                                  registry=self.registry)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Images per batch handed to the job engine",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "Depth request latency, upload to answer",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the model is loaded and warmed up", registry=self.registry)

    def export(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)
