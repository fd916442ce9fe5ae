"""Evaluate one prediction against one ground truth: the single code path of every benchmark run.

Users with their own data call `evaluate_prediction` directly; the dataset runner calls the
same function with the protocol settings of each dataset.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .alignment import align, check_space
from .crops import Crop, crop_mask
from .metrics import METRIC_NAMES, compute_metrics

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


def evaluate_prediction(
    pred: np.ndarray,
    gt: np.ndarray,
    valid_mask: np.ndarray | None = None,
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
    space: str = "disparity",
    crop: Crop | None = None,
    alignment_max_res: int | None = None,
) -> tuple[dict[str, float], np.ndarray]:
    """Align an affine-invariant prediction to metric ground truth and score it.

    Args:
        pred: (H, W) prediction at the ground-truth resolution, in `space` (relative depth or
            disparity, any scale and shift). Use `resize_prediction` first if it is smaller.
        gt: (H, W) ground-truth depth in metres; 0, negative, NaN or inf mean "no measurement".
        valid_mask: optional boolean (H, W) mask; when None, min_depth < gt < max_depth.
        min_depth, max_depth: dataset range; the aligned depth is clipped to it.
        space: "disparity" for inverse-depth models (PrimeDepth, Depth Anything), "depth" for
            depth models (Marigold). Aligning in the wrong space inflates the error a lot.
        crop: evaluation crop ("nyu_eigen", "kitti_eigen", "kitti_garg" or pixel bounds
            (top, bottom, left, right)); pixels outside are not scored.
        alignment_max_res: fit the scale and shift on a nearest-downsampled copy whose longer
            side is at most this (ETH3D uses 1024); the fit is applied at full resolution.

    Returns:
        (metrics, aligned): every metric of `METRIC_NAMES` (NaN when no pixel is valid) and the
        aligned, clipped depth map (float32, H x W, metres).
    """
    check_space(space)
    gt = _as_2d(gt, "ground truth").astype(np.float64)
    pred = _as_2d(pred, "prediction")
    if pred.shape != gt.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from ground truth {gt.shape}; "
            "resize it first with primedepth.eval.resize_prediction"
        )
    if not np.all(np.isfinite(pred)):
        raise InputError("prediction contains NaN or infinite values")
    if min_depth >= max_depth:
        raise InputError(f"min_depth ({min_depth}) must be below max_depth ({max_depth})")
    valid = valid_pixels(gt, valid_mask, min_depth, max_depth, crop)
    pred = pred.astype(np.float64)
    if np.count_nonzero(valid) < 2:
        nan_metrics = {name: float("nan") for name in METRIC_NAMES}
        return nan_metrics, np.full(gt.shape, np.nan, dtype=np.float32)
    aligned = align(pred, gt, valid, space, min_depth, max_depth, alignment_max_res)
    return compute_metrics(aligned, gt, valid), aligned.astype(np.float32)


def resize_prediction(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, no antialiasing) of a (H, W) map to `shape`.

    This matches how the protocol brings a prediction made at the processing resolution back
    to the ground-truth resolution.
    """
    import torch
    import torch.nn.functional as F

    pred = _as_2d(pred, "prediction")
    if tuple(pred.shape) == tuple(shape):
        return pred.astype(np.float32)
    tensor = torch.from_numpy(np.array(pred, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=tuple(shape), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy()
