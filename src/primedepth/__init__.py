"""PrimeDepth on diffusers: zero-shot monocular depth from a single frozen Stable Diffusion step.

Public API (imported lazily, so that `import primedepth` and the CLI's help stay fast):
`predict` (the one-call job API), `load_pipeline`, `PrimeDepthPipeline`, `PrimeDepthOutput`,
`RawPrediction`, `PrimeDepthRefiner`, `LabelHead`, `convert_checkpoint`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "predict": "engine",
    "load_pipeline": "loading",
    "convert_checkpoint": "loading",
    "PrimeDepthPipeline": "pipeline",
    "PrimeDepthOutput": "pipeline",
    "RawPrediction": "model.forward",
    "PrimeDepthRefiner": "model.refiner",
    "LabelHead": "model.heads",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (lazy: start-up speed)."""
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'primedepth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
