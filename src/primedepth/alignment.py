"""Least-squares scale and shift: the package's one fit of a prediction to a reference.

PrimeDepth and the models it is compared with predict depth or disparity up to an unknown scale
and shift. Evaluation (the benchmark protocol), the ground-truth-free ensemble, video
stabilisation and metric alignment in `primedepth.geometry` all fit
`scale * pred + shift ~ target` with the functions here, so what users run and what the
benchmark scores cannot drift apart. The module imports nothing from the rest of the package
but its errors, so every layer may use it.

- `fit_scale_shift`: the evaluation protocol's plain fit on masked pixels, optionally on a
  thinned pixel set (`nearest_downsample`);
- `weighted_scale_shift`: the closed-form weighted fit that robust estimators (RANSAC refits,
  IRLS) call many times;
- `align_depth` / `align_disparity`: a prediction brought onto a depth map, fitting in the
  prediction's own space (the space is always explicit: aligning a disparity model in depth
  space is the most common reason published numbers are not reproduced).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import InputError

Space = Literal["depth", "disparity"]
SPACES: tuple[str, ...] = ("depth", "disparity")

# Aligned disparity is clipped from below before inversion, so depth stays <= 1000.
ALIGNED_DISPARITY_MIN = 1e-3

# How the fit's pixels are thinned at `max_res` (ETH3D's 1024 in the evaluation protocol):
# - "width" (default, the reference protocol): Marigold's evaluation passes the (1, H, W) arrays to
#   `torch.nn.Upsample(mode="nearest")`, which resamples only the last axis of a 3-D tensor, so
#   every row is kept and only the columns are thinned by the factor min(max_res / (H, W));
# - "both": both sides thinned by that factor (what the protocol's wording suggests); it fits on
#   a different pixel set, so scale and shift differ from the published numbers' fits.
DOWNSAMPLE_MODES = ("width", "both")


def check_space(space: str) -> Space:
    """Reject unknown alignment spaces with a message that lists the valid ones."""
    if space not in SPACES:
        raise InputError(f"unknown alignment space {space!r}; expected one of {', '.join(SPACES)}")
    return space  # type: ignore[return-value]


def nearest_downsample(array: np.ndarray, max_res: int | None, mode: str = "width") -> np.ndarray:
    """The pixels the fit uses at `max_res` (no-op when both sides fit); see `DOWNSAMPLE_MODES`.

    Indices follow torch's `interpolate(mode="nearest", scale_factor=f)`: the output size is
    floor(size * f) and output index i reads input index floor(i / f).
    """
    if max_res is None:
        return array
    if max_res <= 0:
        raise InputError(f"alignment_max_res must be positive, got {max_res}")
    if mode not in DOWNSAMPLE_MODES:
        raise InputError(f"unknown downsample mode {mode!r}; expected one of {', '.join(DOWNSAMPLE_MODES)}")
    height, width = array.shape[-2:]
    factor = min(max_res / height, max_res / width)
    if factor >= 1:
        return array
    rows = _nearest_indices(height, factor) if mode == "both" else np.arange(height)
    cols = _nearest_indices(width, factor)
    return array[..., rows[:, None], cols[None, :]]


def _nearest_indices(size: int, factor: float) -> np.ndarray:
    """Source indices of torch-style nearest resampling of one axis by `factor`."""
    out_size = int(np.floor(size * factor))
    # torch multiplies in float32; doing the same keeps the index at exact boundaries identical.
    positions = np.arange(out_size, dtype=np.float32) * np.float32(1.0 / factor)
    indices = np.floor(positions).astype(np.int64)
    return np.minimum(indices, size - 1)


def fit_scale_shift(
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, max_res: int | None = None, downsample: str = "width"
) -> tuple[float, float]:
    """Least-squares (scale, shift) with `scale * pred + shift ~ target` on `mask`.

    A constant prediction is tolerated (the fit then predicts the mean), as the protocol does;
    callers for which that carries no information refuse it themselves.
    """
    pred_fit = nearest_downsample(pred, max_res, downsample)
    target_fit = nearest_downsample(target, max_res, downsample)
    mask_fit = nearest_downsample(mask, max_res, downsample)
    x = pred_fit[mask_fit].astype(np.float64)
    y = target_fit[mask_fit].astype(np.float64)
    if x.size < 2:
        raise InputError(f"alignment needs at least 2 valid pixels, got {x.size}")
    design = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(scale), float(shift)


def weighted_scale_shift(pred: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Weighted least-squares (scale, shift) of `target ~ scale * pred + shift` on 1-D arrays.

    Closed form, because robust fits call it in loops; (NaN, NaN) when the weights sum to zero
    or the weighted prediction is constant, so a loop can stop instead of catching errors.
    """
    total = weights.sum()
    if total <= 0:
        return float("nan"), float("nan")
    mean_pred, mean_target = (weights * pred).sum() / total, (weights * target).sum() / total
    spread = (weights * (pred - mean_pred) ** 2).sum()
    if spread <= 0:
        return float("nan"), float("nan")
    scale = (weights * (pred - mean_pred) * (target - mean_target)).sum() / spread
    return float(scale), float(mean_target - scale * mean_pred)


def depth_to_disparity(depth: np.ndarray) -> np.ndarray:
    """1 / depth where depth > 0, and 0 elsewhere (invalid pixels stay invalid)."""
    disparity = np.zeros(depth.shape, dtype=np.float64)
    positive = depth > 0
    disparity[positive] = 1.0 / depth[positive]
    return disparity


def align_depth(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, max_res: int | None = None
) -> tuple[np.ndarray, float, float]:
    """Depth-space alignment: (the fitted affine map applied to the full prediction, scale, shift)."""
    scale, shift = fit_scale_shift(pred, gt, mask, max_res)
    return pred.astype(np.float64) * scale + shift, scale, shift


def align_disparity(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, max_res: int | None = None
) -> tuple[np.ndarray, float, float]:
    """Disparity-space alignment: (depth from the aligned disparity, clipped at
    `ALIGNED_DISPARITY_MIN` then inverted; the disparity scale and shift). The fit uses the
    pixels of `mask` where the truth and the prediction are positive."""
    fit_mask = mask & (gt > 0) & (pred > 0)
    scale, shift = fit_scale_shift(pred, depth_to_disparity(gt), fit_mask, max_res)
    disparity = np.maximum(pred.astype(np.float64) * scale + shift, ALIGNED_DISPARITY_MIN)
    return 1.0 / disparity, scale, shift


def align_in_space(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, space: str, max_res: int | None = None
) -> tuple[np.ndarray, float, float]:
    """`align_depth` or `align_disparity` by the prediction's `space`, which is checked."""
    aligner = align_depth if check_space(space) == "depth" else align_disparity
    return aligner(pred, gt, mask, max_res)
