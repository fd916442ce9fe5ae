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


# How the fit's pixels are thinned at `alignment_max_res` (ETH3D's 1024):
# - "width" (default, the reference protocol): Marigold's evaluation passes the (1, H, W) arrays to
#   `torch.nn.Upsample(mode="nearest")`, which resamples only the last axis of a 3-D tensor, so
#   every row is kept and only the columns are thinned by the factor min(max_res / (H, W));
# - "both": both sides thinned by that factor (what the protocol's wording suggests); it fits on
#   a different pixel set, so scale and shift differ from the published numbers' fits.
DOWNSAMPLE_MODES = ("width", "both")


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

    The only scale-and-shift fit of the package: the ground-truth-free ensemble
    (`primedepth.ensemble.align_to_reference`) fits with it too, so what users run and what
    the benchmark scores cannot drift apart.
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
    """Disparity-space alignment: (depth from the aligned disparity, clipped then inverted; the
    disparity scale and shift)."""
    fit_mask = mask & (gt > 0) & (pred > 0)
    scale, shift = fit_scale_shift(pred, depth_to_disparity(gt), fit_mask, max_res)
    disparity = np.maximum(pred.astype(np.float64) * scale + shift, ALIGNED_DISPARITY_MIN)
    return 1.0 / disparity, scale, shift


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
    return align_with_fit(pred, gt, mask, space, min_depth, max_depth, max_res)[0]


def align_with_fit(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    space: str,
    min_depth: float,
    max_depth: float,
    max_res: int | None = None,
) -> tuple[np.ndarray, float, float]:
    """`align`, also returning the fitted scale and shift (in `space`)."""
    aligner = align_depth if check_space(space) == "depth" else align_disparity
    depth, scale, shift = aligner(pred, gt, mask, max_res)
    return clip_to_range(depth, min_depth, max_depth), scale, shift
