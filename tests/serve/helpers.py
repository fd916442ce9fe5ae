"""Helpers of the serving tests: images, live servers, a slow pipeline, optional packages.

Servers run the real app on uvicorn at 127.0.0.1 on an ephemeral port (loopback only). The
optional serving packages are required under CI=true; locally a missing one skips the tests.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ..extras import require_extra


def require(module: str, why: str, extra: str = "serve") -> Any:
    """Import `module` for `why`, or skip (fail under CI=true): `tests.extras.require_extra`."""
    return require_extra(module, extra, purpose=why)


require("fastapi", "the HTTP API")
require("uvicorn", "the HTTP API")
require("httpx", "the API tests")
require("prometheus_client", "the metrics")

import httpx  # noqa: E402

from primedepth.serve.app import create_app  # noqa: E402
from primedepth.serve.server import BackgroundServer  # noqa: E402
from primedepth.serve.service import DepthService  # noqa: E402
from primedepth.serve.settings import ServeSettings  # noqa: E402

READY_TIMEOUT_S = 60.0

# One client for all tests: a new httpx client costs about 0.1 s (its TLS context) per request.
http = httpx.Client(timeout=60)


def random_image(seed: int, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    """A distinct uint8 RGB image per seed: smooth enough to have structure, noisy enough to differ."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size[0] // 8 + 1, size[1] // 8 + 1, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((size[1], size[0]), Image.BILINEAR))
    return np.clip(image.astype(np.int16) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray | Image.Image, **save: Any) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def wait_ready(url: str, timeout: float = READY_TIMEOUT_S) -> dict:
    """Poll /readyz until the model is warm; fail with the server's reason otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get(f"{url}/readyz")
        if answer.status_code == 200:
            return answer.json()
        if answer.json().get("status") == "failed" or time.monotonic() > deadline:
            pytest.fail(f"server not ready: {answer.json()}")
        time.sleep(0.05)


class SlowPipeline:
    """A pipeline whose forward passes take `delay` seconds longer: makes queues fill deterministically.
    `calls` counts its forward passes (the server's `predict_raw`, the engine's `__call__`)."""

    def __init__(self, pipeline: Any, delay: float) -> None:
        self._pipeline = pipeline
        self._delay = delay
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        self.calls += 1
        return self._pipeline(*args, **kwargs)

    def predict_raw(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self._delay)
        self.calls += 1
        return self._pipeline.predict_raw(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


def start_server(tiny_model: Path, pipeline: Any = None, api: bool = True, demo_path: str | None = None,
                 **settings: Any) -> BackgroundServer:
    """A live server on the tiny model (or `pipeline`), ready; stop it with `server.__exit__`."""
    options = {"model": str(tiny_model), "device": "cpu", **settings}
    service = DepthService(ServeSettings(**options), pipeline=pipeline)
    server = BackgroundServer(create_app(service, api=api, demo_path=demo_path)).__enter__()
    server.service = service  # type: ignore[attr-defined]
    try:
        wait_ready(server.url)
    except BaseException:
        server.__exit__(None, None, None)
        raise
    return server


@pytest.fixture
def live_server(tiny_model: Path) -> Iterator[Callable[..., BackgroundServer]]:
    """Start servers with given settings (and optionally a pipeline); all stop after the test."""
    started: list[BackgroundServer] = []

    def start(**options: Any) -> BackgroundServer:
        started.append(start_server(tiny_model, **options))
        return started[-1]

    yield start
    for server in reversed(started):
        server.__exit__(None, None, None)
