"""Temporally consistent video depth from any per-frame affine-invariant disparity model.

    from primedepth.video import stabilize
    result = stabilize(depths, frames)                    # depths: (H, W) per frame, larger = closer
    result.depths, result.scales, result.shifts          # aligned ~ scale * raw + shift (then filtered)
    result.normalized()                                  # one colour range for the whole clip

The default mode, "global", solves every frame's scale and shift jointly (`coalign`) and then
filters the aligned frames over time along verified correspondences (`temporal_filter`; its
values are then no longer exactly scale * raw + shift: `result.raw`, `filter_radius=0` for the
exact ones); `GlobalStabilizer` does it in two streaming passes (observe, solve, apply_stream)
with memory bounded by a summary of a few numbers per frame and a window of frames. `Stabilizer` runs the window modes ("align", "flow")
one frame at a time; `ClipRange` gathers the clip-wide normalisation frame by frame. The job
engine (`primedepth predict` on a video) drives them through `passes.ClipPasses`, with one
prompt and one noise draw per clip.
"""

from __future__ import annotations

from .normalize import ClipRange, clip_range, normalize_to_range
from .stabilizer import (
    DEFAULT_SMOOTHING,
    DEFAULT_WINDOW,
    TEMPORAL_MODES,
    GlobalStabilizer,
    Stabilization,
    StabilizedFrame,
    Stabilizer,
    check_temporal,
    stabilize,
)
from .temporal_filter import DEFAULT_RADIUS, TemporalFilter

__all__ = [
    "DEFAULT_RADIUS",
    "DEFAULT_SMOOTHING",
    "DEFAULT_WINDOW",
    "TEMPORAL_MODES",
    "ClipRange",
    "GlobalStabilizer",
    "Stabilization",
    "StabilizedFrame",
    "Stabilizer",
    "TemporalFilter",
    "check_temporal",
    "clip_range",
    "normalize_to_range",
    "stabilize",
]
