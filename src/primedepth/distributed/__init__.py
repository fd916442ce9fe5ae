"""Scale-out batch inference on Ray Data: the local job engine, one model per actor.

- `predict_dataset(dataset, model, ...)`: a Ray Data step, ``ray.data.Dataset`` in and out,
  to chain into your own pipelines (read -> predict -> write);
- `run_ray_job(items, args, options)`: what ``primedepth predict --engine ray`` runs.

Each actor loads one pipeline and hands its batches to `primedepth.jobs.run_job` with the job's
own options, so outputs are those of the local engine for the same inputs and seed. Ray is an
optional extra: the names here are imported on first use, and without Ray they raise a
`PrimeDepthError` that says how to install it.

Modules: `storage` (URIs and output destinations), `rows` (input and result rows), `resume`
(what is finished), `parquet` (the Parquet output), `actor` (the per-batch work), `dataset`
(`predict_dataset`), `engine` (the CLI job).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from ..errors import PrimeDepthError

INSTALL_HINT = "pip install 'primedepth[ray]'"

_LAZY = {
    "predict_dataset": "dataset",
    "PoolSpec": "dataset",
    "run_ray_job": "engine",
    "collect_inputs": "engine",
    "ERRORS_FILE": "engine",
    "DepthPredictor": "actor",
    "WorkerSpec": "actor",
    "read_depth": "parquet",
    "read_raw_depth": "parquet",
    "read_labels": "parquet",
}

__all__ = sorted(_LAZY)


def require_ray() -> None:
    """Raise a `PrimeDepthError` with the install command when Ray Data is missing."""
    missing = [name for name in ("ray", "pyarrow") if importlib.util.find_spec(name) is None]
    if missing or importlib.util.find_spec("ray.data") is None:
        raise PrimeDepthError(f"the Ray engine needs Ray Data, which is not installed: {INSTALL_HINT}")


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (lazy: ray is an optional extra)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_ray()
    try:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
    except AttributeError as error:  # would read as "no attribute {name}" and hide the cause
        raise ImportError(f"cannot import {__name__}.{_LAZY[name]}: {error}") from error
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
