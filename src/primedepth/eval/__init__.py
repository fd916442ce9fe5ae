"""Zero-shot depth benchmark: the Marigold evaluation protocol, for any model.

Quick use on your own data::

    from primedepth.eval import evaluate_prediction
    metrics, aligned = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10, space="disparity")

Benchmark runs: `primedepth eval --dataset nyu --data-dir DATA --model MODEL`, or
`run_benchmark(adapter, ["nyu"], data_dir, output_dir)` with any adapter (see `baselines`).
"""

from .alignment import ALIGNED_DISPARITY_MIN, DEPTH_FLOOR, align, fit_scale_shift, nearest_downsample
from .baselines import (
    CallableAdapter,
    DepthAdapter,
    DepthAnythingV2Adapter,
    MarigoldAdapter,
    PrimeDepthAdapter,
    build_adapter,
    load_user_adapter,
)
from .crops import crop_mask, kb_crop
from .datasets import BENCHMARK_DATASETS, DATASETS, DatasetSpec, EvalDataset, get_spec
from .evaluate import evaluate_prediction, resize_prediction
from .metrics import METRIC_NAMES, average_metrics, compute_metrics
from .runner import DatasetResult, format_table, run_benchmark, run_dataset

__all__ = [
    "ALIGNED_DISPARITY_MIN",
    "BENCHMARK_DATASETS",
    "CallableAdapter",
    "DATASETS",
    "DEPTH_FLOOR",
    "DatasetResult",
    "DatasetSpec",
    "DepthAdapter",
    "DepthAnythingV2Adapter",
    "EvalDataset",
    "METRIC_NAMES",
    "MarigoldAdapter",
    "PrimeDepthAdapter",
    "align",
    "average_metrics",
    "build_adapter",
    "compute_metrics",
    "crop_mask",
    "evaluate_prediction",
    "fit_scale_shift",
    "format_table",
    "get_spec",
    "kb_crop",
    "load_user_adapter",
    "nearest_downsample",
    "resize_prediction",
    "run_benchmark",
    "run_dataset",
]
