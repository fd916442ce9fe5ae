"""Per-image least-squares scale and shift alignment (anchors Part D.2).

Affine-invariant models are only defined up to scale and shift, so before any metric the
prediction is fitted to the ground truth on the valid pixels:

- depth-space models (Marigold): fit `s * pred + t ~ depth`;
- disparity-space models (PrimeDepth, Depth Anything): fit `s * pred + t ~ 1 / depth` on the
  pixels where the truth and the prediction are positive, clip the aligned disparity at
  `ALIGNED_DISPARITY_MIN` and invert it.

Aligning a disparity model in depth space is the most common reason for published numbers
not being reproduced, so the space is always explicit.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ..errors import InputError

Space = Literal["depth", "disparity"]
SPACES: tuple[str, ...] = ("depth", "disparity")

# Aligned disparity is clipped from below before inversion, so depth stays <= 1000.
ALIGNED_DISPARITY_MIN = 1e-3
# After clipping to the dataset range, depth is clipped again to stay strictly positive.
DEPTH_FLOOR = 1e-6


def check_space(space: str) -> Space:
    """Reject unknown alignment spaces with a message that lists the valid ones."""
    if space not in SPACES:
        raise InputError(f"unknown alignment space {space!r}; expected one of {', '.join(SPACES)}")
    return space  # type: ignore[return-value]


def nearest_downsample(array: np.ndarray, max_res: int | None) -> np.ndarray:
    """Nearest-neighbour copy whose longer side is at most `max_res` (no-op when it fits).

    Indices follow torch's `interpolate(mode="nearest", scale_factor=f)`: the output size is
    floor(size * f) and output index i reads input index floor(i / f). Upstream Marigold
    passes a 3-D tensor there, which only shrinks the width; we shrink both sides, as the
    protocol describes. Only the pixels used for the fit differ, never the fitted model.
    """
    if max_res is None:
        return array
    if max_res <= 0:
        raise InputError(f"alignment_max_res must be positive, got {max_res}")
    height, width = array.shape[-2:]
    factor = min(max_res / height, max_res / width)
    if factor >= 1:
        return array
    rows = _nearest_indices(height, factor)
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
    pred: np.ndarray, target: np.ndarray, mask: np.ndarray, max_res: int | None = None
) -> tuple[float, float]:
    """Least-squares (scale, shift) with `scale * pred + shift ~ target` on `mask`.

    The only scale-and-shift fit of the package: the ground-truth-free ensemble
    (`primedepth.ensemble.align_to_reference`) fits with it too, so what users run and what
    the benchmark scores cannot drift apart.
    """
    pred_fit = nearest_downsample(pred, max_res)
    target_fit = nearest_downsample(target, max_res)
    mask_fit = nearest_downsample(mask, max_res)
    x = pred_fit[mask_fit].astype(np.float64)
    y = target_fit[mask_fit].astype(np.float64)
    if x.size < 2:
        raise InputError(f"alignment needs at least 2 valid pixels, got {x.size}")
    design = np.stack([x, np.ones_like(x)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(scale), float(shift)


def depth_to_disparity(depth: np.ndarray) -> np.ndarray:
    """1 / depth where depth > 0, and 0 elsewhere (invalid pixels stay invalid)."""
    disparity = np.zeros(depth.shape, dtype=np.float64)
    positive = depth > 0
    disparity[positive] = 1.0 / depth[positive]
    return disparity


def align_depth(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, max_res: int | None = None
) -> np.ndarray:
    """Depth-space alignment: the fitted affine map applied to the full prediction."""
    scale, shift = fit_scale_shift(pred, gt, mask, max_res)
    return pred.astype(np.float64) * scale + shift


def align_disparity(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, max_res: int | None = None
) -> np.ndarray:
    """Disparity-space alignment, returned as depth (aligned disparity clipped, then inverted)."""
    fit_mask = mask & (gt > 0) & (pred > 0)
    scale, shift = fit_scale_shift(pred, depth_to_disparity(gt), fit_mask, max_res)
    disparity = np.maximum(pred.astype(np.float64) * scale + shift, ALIGNED_DISPARITY_MIN)
    return 1.0 / disparity


def clip_to_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Clip to the dataset's [min_depth, max_depth], then keep depth >= DEPTH_FLOOR."""
    return np.maximum(np.clip(depth, min_depth, max_depth), DEPTH_FLOOR)


def align(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    space: str,
    min_depth: float,
    max_depth: float,
    max_res: int | None = None,
) -> np.ndarray:
    """Full protocol alignment: fit in `space`, return depth clipped to the dataset range."""
    aligner = align_depth if check_space(space) == "depth" else align_disparity
    return clip_to_range(aligner(pred, gt, mask, max_res), min_depth, max_depth)
