"""Depth metrics of the zero-shot benchmark protocol (Marigold protocol, anchors Part D.3).

Every metric is computed on one image over its valid pixels; a benchmark score is the plain
mean of the per-image values (not a mean over all pixels of the dataset). Inputs are metric
depths, already aligned and clipped, so that all values are strictly positive.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..errors import InputError

# Threshold accuracy: a pixel is correct at level k when max(p/g, g/p) < DELTA_BASE ** k.
DELTA_BASE = 1.25
# SILog is reported as 100 * sqrt(variance of the log error), as in the KITTI benchmark.
SILOG_SCALE = 100.0

# Metric names in report order; these are the keys of every metrics dict and CSV column.
METRIC_NAMES = (
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "delta1",
    "delta2",
    "delta3",
    "i_rmse",
    "silog",
)
# Metrics where lower is better (the deltas are accuracies, higher is better).
LOWER_IS_BETTER = frozenset(METRIC_NAMES) - {"delta1", "delta2", "delta3"}


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error relative to the ground truth."""
    return float(np.mean(np.abs(pred - gt) / gt))


def sq_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean squared error relative to the ground truth."""
    return float(np.mean((pred - gt) ** 2 / gt))


def rmse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Root mean squared error in metres."""
    return float(np.sqrt(np.mean((pred - gt) ** 2)))


def rmse_log(pred: np.ndarray, gt: np.ndarray) -> float:
    """Root mean squared error of the natural logarithms."""
    return float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2)))


def log10(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error of the base-10 logarithms."""
    return float(np.mean(np.abs(np.log10(pred) - np.log10(gt))))


def delta_accuracy(pred: np.ndarray, gt: np.ndarray, level: int) -> float:
    """Fraction of pixels whose ratio to the truth, either way round, is below 1.25**level."""
    ratio = np.maximum(pred / gt, gt / pred)
    return float(np.mean(ratio < DELTA_BASE**level))


def i_rmse(pred: np.ndarray, gt: np.ndarray) -> float:
    """Root mean squared error of the inverse depths (1/m)."""
    return float(np.sqrt(np.mean((1.0 / pred - 1.0 / gt) ** 2)))


def silog(pred: np.ndarray, gt: np.ndarray) -> float:
    """Scale-invariant log error: 100 * sqrt(mean(d^2) - mean(d)^2), d = log p - log g."""
    d = np.log(pred) - np.log(gt)
    variance = np.mean(d**2) - np.mean(d) ** 2
    # Rounding can leave a variance of about -1e-17 for a perfect prediction.
    return float(SILOG_SCALE * np.sqrt(max(variance, 0.0)))


def compute_metrics(pred: np.ndarray, gt: np.ndarray, valid_mask: np.ndarray) -> dict[str, float]:
    """All metrics of one image over `valid_mask`; NaN everywhere when no pixel is valid."""
    if not (pred.shape == gt.shape == valid_mask.shape):
        raise InputError(
            f"shape mismatch: prediction {pred.shape}, ground truth {gt.shape}, "
            f"mask {valid_mask.shape}"
        )
    p = pred[valid_mask].astype(np.float64)
    g = gt[valid_mask].astype(np.float64)
    if p.size == 0:
        return {name: math.nan for name in METRIC_NAMES}
    if np.any(p <= 0) or np.any(g <= 0):
        raise InputError("metrics need strictly positive depths on the valid pixels")
    return {
        "abs_rel": abs_rel(p, g),
        "sq_rel": sq_rel(p, g),
        "rmse": rmse(p, g),
        "rmse_log": rmse_log(p, g),
        "log10": log10(p, g),
        "delta1": delta_accuracy(p, g, 1),
        "delta2": delta_accuracy(p, g, 2),
        "delta3": delta_accuracy(p, g, 3),
        "i_rmse": i_rmse(p, g),
        "silog": silog(p, g),
    }


def average_metrics(per_image: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean over images of each metric; images without valid pixels (NaN) are left out."""
    rows = list(per_image)
    averaged: dict[str, float] = {}
    for name in METRIC_NAMES:
        values = [row[name] for row in rows if not math.isnan(row[name])]
        averaged[name] = float(np.mean(values)) if values else math.nan
    return averaged
