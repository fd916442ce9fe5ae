"""Evaluate one prediction against one ground truth: the single code path of every benchmark run.

Users with their own data call `evaluate_prediction` directly (with `dataset="nyu"` etc. for a
benchmark's ranges, crop and mask rule); the dataset runner calls the same function with the
protocol settings of each dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .alignment import align_with_fit, check_space
from .crops import KB_CROP_HEIGHT, KB_CROP_WIDTH, Crop, crop_mask, kb_crop
from .datasets import get_spec
from .metrics import METRIC_NAMES, compute_metrics

# Every number the package reports is under this protocol; the paper's tables are too. Numbers
# published under other protocols (metric depth, median scaling, other crops) are not comparable.
PROTOCOL = "Marigold affine-invariant protocol (per-image least-squares scale and shift)"

# Default valid range when the caller gives none: the smallest protocol minimum, no maximum.
DEFAULT_MIN_DEPTH = 1e-5
DEFAULT_MAX_DEPTH = float("inf")


def _as_2d(array: np.ndarray, what: str) -> np.ndarray:
    """Squeeze singleton axes so (1, H, W) and (H, W, 1) maps are accepted as (H, W)."""
    array = np.asarray(array)
    squeezed = array.squeeze() if array.ndim > 2 else array
    if squeezed.ndim != 2:
        raise InputError(f"{what} must be a 2-D (H, W) map, got shape {array.shape}")
    return squeezed


def valid_pixels(
    gt: np.ndarray,
    valid_mask: np.ndarray | None,
    min_depth: float,
    max_depth: float,
    crop: Crop | None,
) -> np.ndarray:
    """Pixels that are scored: the given mask (or min < gt < max), inside the crop.

    A given mask is taken as the whole definition of validity, as for DIODE whose released
    mask is used without a range test; pixels without a positive finite truth are always out.
    """
    with np.errstate(invalid="ignore"):
        if valid_mask is None:
            valid = (gt > min_depth) & (gt < max_depth)
        else:
            valid = _as_2d(valid_mask, "valid_mask").astype(bool) & (gt > 0) & np.isfinite(gt)
    if valid.shape != gt.shape:
        raise InputError(f"valid_mask shape {valid.shape} does not match ground truth {gt.shape}")
    return valid & crop_mask(crop, gt.shape)


@dataclass
class Evaluation:
    """The score of one prediction: `metrics` (every metric of `METRIC_NAMES`, NaN when no pixel
    is valid), `aligned` depth (float32, metres), the fitted `scale` and `shift` (in `space`), and
    the `protocol` they follow. Unpacks as `metrics, aligned = evaluation` (the form before 0.2)."""

    metrics: dict[str, float]
    aligned: np.ndarray
    scale: float
    shift: float
    space: str
    protocol: str = PROTOCOL

    def __iter__(self) -> Iterator[Any]:
        return iter((self.metrics, self.aligned))

    def __getitem__(self, index: int) -> Any:
        return (self.metrics, self.aligned)[index]


def _dataset_settings(dataset: str, gt: np.ndarray, pred: np.ndarray, valid_mask: np.ndarray | None) -> tuple:
    """A benchmark's range, crop and max fit size; KITTI maps at full size get the benchmark crop."""
    spec = get_spec(dataset)
    if spec.kb_crop and gt.shape != (KB_CROP_HEIGHT, KB_CROP_WIDTH):
        gt, pred = kb_crop(gt), kb_crop(pred) if pred.shape == gt.shape else pred
        valid_mask = None if valid_mask is None else kb_crop(_as_2d(valid_mask, "valid_mask"))
    return gt, pred, valid_mask, spec.min_depth, spec.max_depth, spec.eval_crop, spec.alignment_max_res


def evaluate_prediction(
    pred: np.ndarray,
    gt: np.ndarray,
    valid_mask: np.ndarray | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    space: str = "disparity",
    crop: Crop | None = None,
    alignment_max_res: int | None = None,
    dataset: str | None = None,
) -> Evaluation:
    """Align an affine-invariant prediction to metric ground truth and score it (see `PROTOCOL`).

    Args:
        pred: (H, W) prediction at the ground-truth resolution, in `space` (relative depth or
            disparity, any scale and shift). Use `resize_prediction` first if it is smaller.
        gt: (H, W) ground-truth depth in metres; 0, negative, NaN or inf mean "no measurement".
        valid_mask: optional boolean (H, W) mask. A given mask REPLACES the range test (as for
            DIODE, whose released mask is used as it is); pixels without a positive finite
            truth are always out. When None: min_depth < gt < max_depth.
        min_depth, max_depth: range of valid truth; the aligned depth is clipped to it
            (default: the dataset's, else 1e-5 and no maximum).
        space: "disparity" for inverse-depth models (PrimeDepth, Depth Anything), "depth" for
            depth models (Marigold). Aligning in the wrong space inflates the error a lot.
        crop: evaluation crop ("nyu_eigen", "kitti_eigen", "kitti_garg" or pixel bounds
            (top, bottom, left, right)); pixels outside are not scored (default: the dataset's).
        alignment_max_res: fit on the pixels of a nearest-downsampled copy (the reference's
            width-only rule, see `alignment.DOWNSAMPLE_MODES`); the fit is applied at full
            resolution (default: the dataset's, e.g. 1024 for ETH3D).
        dataset: a benchmark name ("nyu", "kitti", "eth3d", "scannet", "diode", ...) whose
            protocol settings fill every argument left None; full-size KITTI maps get the
            benchmark (KB) crop first.

    Returns:
        An `Evaluation` (metrics, aligned depth, scale, shift, protocol).
    """
    check_space(space)
    gt, pred = _as_2d(gt, "ground truth"), _as_2d(pred, "prediction")
    if dataset is not None:
        gt, pred, valid_mask, *defaults = _dataset_settings(dataset, gt, pred, valid_mask)
        min_depth, max_depth, crop, alignment_max_res = (
            given if given is not None else default
            for given, default in zip((min_depth, max_depth, crop, alignment_max_res), defaults)
        )
    min_depth = DEFAULT_MIN_DEPTH if min_depth is None else min_depth
    max_depth = DEFAULT_MAX_DEPTH if max_depth is None else max_depth
    _check_inputs(pred, gt, min_depth, max_depth)
    gt = gt.astype(np.float64)
    valid = valid_pixels(gt, valid_mask, min_depth, max_depth, crop)
    if np.count_nonzero(valid) < 2:
        nan_metrics = {name: float("nan") for name in METRIC_NAMES}
        return Evaluation(nan_metrics, np.full(gt.shape, np.nan, dtype=np.float32), float("nan"), float("nan"), space)
    aligned, scale, shift = align_with_fit(pred.astype(np.float64), gt, valid, space, min_depth, max_depth,
                                           alignment_max_res)
    return Evaluation(compute_metrics(aligned, gt, valid), aligned.astype(np.float32), scale, shift, space)


def _check_inputs(pred: np.ndarray, gt: np.ndarray, min_depth: float, max_depth: float) -> None:
    if pred.shape != gt.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from ground truth {gt.shape}; "
            "resize it first with primedepth.eval.resize_prediction"
        )
    if not np.all(np.isfinite(pred)):
        raise InputError("prediction contains NaN or infinite values")
    if min_depth >= max_depth:
        raise InputError(f"min_depth ({min_depth}) must be below max_depth ({max_depth})")


def resize_prediction(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, no antialiasing) of a (H, W) map to `shape`.

    This matches how the protocol brings a prediction made at the processing resolution back
    to the ground-truth resolution.
    """
    pred = _as_2d(pred, "prediction")
    if tuple(pred.shape) == tuple(shape):
        return pred.astype(np.float32)
    tensor = torch.from_numpy(np.array(pred, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()
