"""Serving PrimeDepth: an HTTP API (FastAPI on uvicorn), a browser demo (Gradio), Ray Serve.

All three are thin layers over one `DepthService` (`service`), which predicts with the
pipeline's own steps, each image with its own seed, prompt and max size (`forward`), so they
compute what the CLI computes. Modules:

- `settings`: `ServeSettings` (model, batching, limits, the key) and the bind-address rule;
- `auth`: the one authentication layer over every route (headers, or the login page's cookie);
- `service`: the loaded pipeline, its single worker thread, admission, readiness and metrics;
- `forward`: forward passes shared by images of one processed size, whatever their options;
- `batching`: dynamic batching of concurrent requests (a queue by bucket + the worker thread);
- `uploads`, `options`: checking uploads and request options (4xx JSON errors, `errors`);
- `encoding`, `responses`: response files written by `primedepth.io`'s own writers;
- `app`, `limits`, `metrics`: the FastAPI app, the body-size cap, Prometheus metrics (every
  answer counted by middleware);
- `server`: uvicorn in the foreground (CLI) or in a thread (tests, benchmarks);
- `demo`, `examples`: the Gradio demo; `ray_serve`: the same app as a Ray Serve deployment.

Needs the optional extra: ``pip install "primedepth[serve]"``. Names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ServeSettings": "settings",
    "DepthService": "service",
    "create_app": "app",
    "run_server": "server",
    "BackgroundServer": "server",
    "build_demo": "demo",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (lazy: fastapi and gradio are optional)."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'primedepth.serve' has no attribute {name!r}")
