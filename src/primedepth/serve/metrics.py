"""Prometheus metrics of one server: answers by status, errors by kind, queue, batch sizes, latency.

Each server has its own registry (not prometheus-client's global one), so several servers in
one process (tests, the Ray replica next to a local one) never mix their numbers. Answers are
counted by `CountAnswers`, ASGI middleware around the whole app: every answer is counted by its
status, whoever wrote it (a handler, the authentication layer, the body limit, FastAPI's own
validation, an unhandled error).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ServeMetrics", "CountAnswers", "route_of", "CONTENT_TYPE_LATEST"]

PREFIX = "primedepth"
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DEPTH_PATH = "/v1/depth"
_ROUTES = {DEPTH_PATH: "depth", "/metrics": "metrics", "/healthz": "health", "/readyz": "health",
           "/docs": "docs", "/openapi.json": "docs", "/redoc": "docs", "/docs/oauth2-redirect": "docs",
           "/login": "login", "/logout": "login"}


def route_of(path: str, demo_path: str | None = None) -> str:
    """A bounded label for a path (never the raw path: clients choose paths)."""
    if path in _ROUTES:
        return _ROUTES[path]
    if path.startswith("/v1/"):
        return "api"
    if demo_path is not None and (demo_path == "/" or path == demo_path or path.startswith(demo_path.rstrip("/") + "/")):
        return "demo"
    return "other"


class ServeMetrics:
    """The server's counters, gauges and histograms, exported at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "HTTP answers, by status code and route group",
                                ["status", "route"], registry=self.registry)
        self.errors = Counter(f"{PREFIX}_errors", "Rejected or failed requests, by kind",
                              ["kind"], registry=self.registry)
        self.images = Counter(f"{PREFIX}_images", "Images predicted", registry=self.registry)
        self.queue_length = Gauge(f"{PREFIX}_queue_length", "Images waiting for or in prediction",
                                  registry=self.registry)
        self.queue_pixels = Gauge(f"{PREFIX}_queue_pixels", "Processing pixels of the images waiting or in prediction",
                                  registry=self.registry)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Images per forward pass (one batch of the worker)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram(f"{PREFIX}_batch_requests", "Distinct requests sharing one forward pass",
                                        buckets=BATCH_BUCKETS, registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_request_seconds", "Depth request latency, upload to answer (200 only)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.ready = Gauge(f"{PREFIX}_ready", "1 once the model is loaded and warmed up", registry=self.registry)

    def export(self) -> bytes:
        """The text exposition format Prometheus scrapes."""
        return generate_latest(self.registry)


class CountAnswers:
    """ASGI middleware counting every HTTP answer by status (and /v1/depth latency)."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, demo_path: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.demo_path = demo_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except Exception:
            status = status or 500  # the server's error handler answers 500 outside this middleware
            raise
        finally:
            if status is not None:
                route = route_of(scope["path"], self.demo_path)
                self.metrics.requests.labels(str(status), route).inc()
                if route == "depth" and status == 200:
                    self.metrics.latency.observe(time.perf_counter() - started)
