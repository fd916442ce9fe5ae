"""The evaluation protocol's per-image alignment (anchors Part D.2).

Affine-invariant models are only defined up to scale and shift, so before any metric the
prediction is fitted to the ground truth on the valid pixels, in the model's own space:

- depth-space models (Marigold): fit `s * pred + t ~ depth`;
- disparity-space models (PrimeDepth, Depth Anything): fit `s * pred + t ~ 1 / depth` on the
  pixels where the truth and the prediction are positive, clip the aligned disparity at
  `ALIGNED_DISPARITY_MIN` and invert it.

The fit itself is the package's one scale-and-shift fit (`primedepth.alignment`, re-exported
here); what is evaluation's own is clipping the aligned depth to the dataset's range.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np

from ..alignment import (
    ALIGNED_DISPARITY_MIN,
    DOWNSAMPLE_MODES,
    SPACES,
    Space,
    align_depth,
    align_disparity,
    align_in_space,
    check_space,
    depth_to_disparity,
    fit_scale_shift,
    nearest_downsample,
)

__all__ = [
    "ALIGNED_DISPARITY_MIN", "DEPTH_FLOOR", "DOWNSAMPLE_MODES", "SPACES", "ProtocolAlignment", "Space",
    "align", "align_depth", "align_disparity", "align_with_fit", "check_space", "clip_to_range",
    "depth_to_disparity", "fit_scale_shift", "nearest_downsample",
]

# After clipping to the dataset range, depth is clipped again to stay strictly positive.
DEPTH_FLOOR = 1e-6


class ProtocolAlignment(NamedTuple):
    """Aligned depth clipped to the dataset range, and the fit that made it (in the model's space)."""

    depth: np.ndarray
    scale: float
    shift: float


def clip_to_range(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Clip to the dataset's [min_depth, max_depth], then keep depth >= DEPTH_FLOOR."""
    return np.maximum(np.clip(depth, min_depth, max_depth), DEPTH_FLOOR)


def align_with_fit(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    space: str,
    min_depth: float,
    max_depth: float,
    max_res: int | None = None,
) -> ProtocolAlignment:
    """Full protocol alignment: fit in `space` (at `max_res`), depth clipped to the dataset range."""
    depth, scale, shift = align_in_space(pred, gt, mask, space, max_res)
    return ProtocolAlignment(clip_to_range(depth, min_depth, max_depth), scale, shift)


def align(*args: Any, **kwargs: Any) -> np.ndarray:
    """The aligned depth of `align_with_fit` (same arguments), without the fit."""
    return align_with_fit(*args, **kwargs).depth


# help() and IDEs show the arguments `align` passes on.
align.__signature__ = inspect.signature(align_with_fit).replace(return_annotation="np.ndarray")  # type: ignore[attr-defined]
