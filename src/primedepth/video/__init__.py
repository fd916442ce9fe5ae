"""Temporally consistent video depth from any per-frame affine-invariant disparity model.

    from primedepth.video import stabilize
    result = stabilize(depths, frames, mode="align")   # depths: (H, W) per frame, larger = closer
    result.depths, result.scales, result.shifts          # aligned = scale * raw + shift
    result.normalized()                                  # one colour range for the whole clip

`Stabilizer` does the same one frame at a time (streaming, constant memory); `ClipRange`
gathers the clip-wide normalisation frame by frame. The job engine (`primedepth predict` on a
video) uses both, with one prompt and one noise draw per clip.
"""

from __future__ import annotations

from .normalize import ClipRange, clip_range, normalize_to_range
from .stabilizer import (
    DEFAULT_SMOOTHING,
    DEFAULT_WINDOW,
    TEMPORAL_MODES,
    Stabilization,
    StabilizedFrame,
    Stabilizer,
    check_temporal,
    stabilize,
)

__all__ = [
    "DEFAULT_SMOOTHING",
    "DEFAULT_WINDOW",
    "TEMPORAL_MODES",
    "ClipRange",
    "Stabilization",
    "StabilizedFrame",
    "Stabilizer",
    "check_temporal",
    "clip_range",
    "normalize_to_range",
    "stabilize",
]
