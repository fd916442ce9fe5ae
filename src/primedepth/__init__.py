"""PrimeDepth on diffusers: zero-shot monocular depth from a single frozen Stable Diffusion step.

Public API (imported lazily, so that `import primedepth` and the CLI's help stay fast):
`predict`, `PrimeDepthPipeline`, `PrimeDepthOutput`, `PrimeDepthRefiner`, `LabelHead`,
`convert_checkpoint`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from .predict import predict  # noqa: E402  (light: numpy and PIL only; models load on call)

_LAZY = {
    "PrimeDepthPipeline": "pipeline",
    "PrimeDepthOutput": "pipeline",
    "RawPrediction": "pipeline",
    "PrimeDepthRefiner": "refiner",
    "LabelHead": "heads",
    "convert_checkpoint": "convert",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'primedepth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
