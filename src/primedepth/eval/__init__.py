"""Zero-shot depth benchmark: the Marigold evaluation protocol, for any model.

Quick use on your own data::

    from primedepth.eval import evaluate_prediction
    metrics, aligned = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10, space="disparity")

Benchmark runs: `primedepth eval --dataset nyu --data-dir DATA --model MODEL`, or
`run_benchmark(adapter, ["nyu"], data_dir, output_dir)` with any adapter (see `primedepth.adapters`).
"""

import importlib
import warnings
from typing import Any

# Public names -> their module, imported on first use (lazy: importing one evaluation module, e.g.
# `metrics` from the video benchmark, must not load every model adapter).
_LAZY = {
    "ALIGNED_DISPARITY_MIN": "alignment", "DEPTH_FLOOR": "alignment", "align": "alignment",
    "fit_scale_shift": "alignment", "nearest_downsample": "alignment",
    "BASELINE_NAMES": "baselines", "build_adapter": "baselines",
    "crop_mask": "crops", "kb_crop": "crops",
    "BENCHMARK_DATASETS": "datasets", "DATASETS": "datasets", "DatasetSpec": "datasets",
    "EvalDataset": "datasets", "get_spec": "datasets",
    "evaluate_prediction": "evaluate", "resize_prediction": "evaluate",
    "METRIC_NAMES": "metrics", "average_metrics": "metrics", "compute_metrics": "metrics",
    "DatasetResult": "runner", "format_table": "runner", "run_benchmark": "runner", "run_dataset": "runner",
}

__all__ = sorted(_LAZY)

# Adapters moved to `primedepth.adapters` in 0.2; the old names work for one release.
_MOVED = ("CallableAdapter", "DepthAdapter", "DepthAnythingAdapter", "DepthAnythingV2Adapter", "MarigoldAdapter", "PrimeDepthAdapter",
          "load_user_adapter")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _MOVED:
        warnings.warn(f"primedepth.eval.{name} moved to primedepth.adapters.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module("primedepth.adapters"), name)
    raise AttributeError(f"module 'primedepth.eval' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
