"""The temporal-consistency protocol: flicker and clip-wide accuracy of a clip's depth frames.

- flicker: the mean absolute frame-to-frame difference, on static pixels, of the frames as a
  viewer sees them (each method's own normalisation), as a fraction of the depth range;
- accuracy: AbsRel of depth after ONE scale-and-shift fit in disparity space for the whole clip
  (`primedepth.alignment`), so a method that shows frames on different scales pays for it.

`benchmarks/video_stability.py` runs it on synthetic clips and on a user's own clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..alignment import align_disparity
from .normalize import clip_range

# A pixel of a moving-camera clip counts as static when its true disparity changes by less than
# this fraction of the clip's disparity range from one frame to the next.
STATIC_CHANGE = 0.005


def _abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error relative to the truth (the evaluation protocol's AbsRel; written here
    so that video, below evaluation in the layers, does not import it)."""
    return float(np.mean(np.abs(pred - gt) / gt))


def per_frame_normalized(depths: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each frame min/max-normalised on its own: what per-frame outputs show (the baseline)."""
    result = []
    for depth in depths:
        low, high = float(np.nanmin(depth)), float(np.nanmax(depth))
        result.append(((depth - low) / (high - low if high > low else 1.0)).astype(np.float32))
    return result


def clip_normalized(depths: Sequence[np.ndarray]) -> list[np.ndarray]:
    """All frames normalised by the clip's display range (not clipped, so differences survive)."""
    values = clip_range(depths)
    span = values.display_high - values.display_low
    span = span if span > 0 else 1.0
    return [((depth - values.display_low) / span).astype(np.float32) for depth in depths]


def static_pixels(disparity: np.ndarray, moving: np.ndarray | None = None) -> np.ndarray:
    """(T-1, H, W): pixels static between frames t-1 and t, from the true disparity (T, H, W):
    not on a moving object in either frame, and a disparity change below `STATIC_CHANGE`."""
    span = float(np.ptp(disparity)) or 1.0
    static = np.abs(np.diff(disparity, axis=0)) <= STATIC_CHANGE * span
    if moving is not None:
        static &= ~moving[1:] & ~moving[:-1]
    return static


def flicker(normalized: Sequence[np.ndarray], static: np.ndarray) -> float:
    """Mean |frame t - frame t-1| over the static pixels (a fraction of the range for [0, 1] frames)."""
    if len(normalized) < 2 or not static.any():
        return 0.0
    frames = np.stack(normalized).astype(np.float64)
    return float(np.abs(np.diff(frames, axis=0))[static].mean())


def clip_abs_rel(normalized: Sequence[np.ndarray], depth: np.ndarray) -> float:
    """AbsRel of the frames against true depth (T, H, W) after one clip-wide disparity fit."""
    prediction = np.stack(normalized).astype(np.float64)
    valid = np.isfinite(prediction) & (depth > 0)
    aligned, _, _ = align_disparity(prediction, depth, valid)
    return _abs_rel(aligned[valid], depth[valid])


def per_frame_abs_rel(frames: Sequence[np.ndarray], depth: np.ndarray) -> float:
    """AbsRel when every frame gets its own scale-and-shift fit to the truth (in disparity): the
    best any per-frame alignment can do, and the floor of a clip-wide fit of per-frame-affine output."""
    errors, counts = 0.0, 0
    for prediction, truth in zip(frames, depth):
        prediction = np.asarray(prediction, dtype=np.float64)
        valid = np.isfinite(prediction) & (truth > 0)
        aligned, _, _ = align_disparity(prediction, truth, valid)
        errors += _abs_rel(aligned[valid], truth[valid]) * int(valid.sum())
        counts += int(valid.sum())
    return errors / max(counts, 1)


def frame_scales(frames: Sequence[np.ndarray], depth: np.ndarray) -> np.ndarray:
    """Per frame, the scale k of the least-squares fit ``frame ~ k * true disparity + c``: how the
    frame's scale relates to the truth (constant for a drift-free clip)."""
    scales = []
    for prediction, truth in zip(frames, depth):
        valid = np.isfinite(prediction) & (truth > 0)
        disparity = 1.0 / truth[valid].astype(np.float64)
        design = np.stack([disparity, np.ones_like(disparity)], axis=1)
        (scale, _), *_ = np.linalg.lstsq(design, np.asarray(prediction, dtype=np.float64)[valid], rcond=None)
        scales.append(scale)
    return np.asarray(scales)


def drift(frames: Sequence[np.ndarray], depth: np.ndarray, segments: Sequence[int] = (0,), ends: int = 4) -> float:
    """The largest relative change of scale (against the truth) from the start of a shot to its
    end, over the shots starting at `segments`: mean of the last `ends` frames over the first `ends`."""
    scales = frame_scales(frames, depth)
    bounds = [*segments, len(scales)]
    worst = 0.0
    for start, stop in zip(bounds[:-1], bounds[1:]):
        head, tail = scales[start:min(start + ends, stop)], scales[max(stop - ends, start):stop]
        if len(head) and np.mean(head) > 0:
            worst = max(worst, abs(float(np.mean(tail) / np.mean(head)) - 1.0))
    return worst
