"""Temporal filter of the aligned depth: per-frame error that no scale and shift removes.

Co-alignment (`coalign`) gives every frame one scale and shift, so the aligned frames keep
whatever per-frame error is not affine -- pixel noise, a slowly changing error field, blobs --
and flicker by as much where the scene is still. This filter changes values: each aligned
frame becomes a weighted mean of itself and its neighbours up to `radius` frames before AND after
(two-sided: a linear change over time, such as a surface the camera approaches, cancels out),
read at the same scene point:

- with optical flow (OpenCV): the neighbour warped along the flow from this frame to it, chained
  from the flows between consecutive frames (small motions, found reliably), on pixels where
  every link's flow there and back agrees (`FLOW_AGREEMENT` pixels) and the colour matches;
- without it: the same pixel, where the colour matches (or everywhere when no frames are known);
- and only where the neighbour's depth agrees with this frame's: the difference (from the pair's
  median difference) is weighed by a biweight that falls to zero at `AGREEMENT_SIGMAS` robust
  standard deviations of that pair's differences (between `MIN_DIFFERENCE` and `MAX_DIFFERENCE` of the frame's span), so moving
  objects, occluders, edges and changes the flow missed are not blended (no smear), while noise is.

The values change, so ``raw = (depth - shift) / scale`` holds only approximately afterwards: the
job keeps the raw prediction (``.npy`` outputs, `Prediction.raw_depth`) and says so in the PNGs.

Memory: `2 * radius + 1` aligned frames, their grey images and the flows between them -- a
window, whatever the clip's length; the output lags `radius` frames behind the input. Segments
(shots) are filtered apart: no neighbour across a cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .correspondence import COLOUR_TOLERANCE, FlowEstimator, block_factor, block_mean, to_gray

DEFAULT_RADIUS = 4  # neighbours on each side (0: off)
WORK_SIZE = 160  # longer side of the grey copies the flow is computed on (as `coalign`'s)
FLOW_AGREEMENT = 1.0  # pixels (working size): forward and backward flow must cancel to within this
AGREEMENT_SIGMAS = 6.0  # biweight limit, in robust standard deviations of a pair's depth differences
MAX_DIFFERENCE = 0.08  # ... and never beyond this share of the frame's 10th..90th percentile span
MIN_DIFFERENCE = 0.01  # ... nor below this share (noise-free input: a pair whose spread is 0)
SAMPLE_PIXELS = 16384  # the pair's spread is measured on a regular subsample of about this many pixels


@dataclass
class FilteredFrame:
    """One frame out of the filter: its index, the filtered depth, and the mean number of
    neighbours blended per pixel (0: the frame is unchanged)."""

    index: int
    depth: np.ndarray
    neighbours: float


@dataclass
class _Entry:
    index: int
    depth: np.ndarray  # aligned, full size
    gray: np.ndarray | None  # full size
    small: np.ndarray | None  # working size, for the flow


class TemporalFilter:
    """Streams aligned frames in and filtered frames out (see the module docstring)."""

    def __init__(self, radius: int = DEFAULT_RADIUS, flow: FlowEstimator | None = None, work_size: int = WORK_SIZE) -> None:
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
            raise InputError(f"temporal filter radius must be a whole number >= 0 (0: off), got {radius!r}")
        self.radius, self.flow, self.work_size = radius, flow, work_size
        self.window: deque[_Entry] = deque()
        # (from, to) of consecutive frames -> the flow at the working size and where it is consistent
        self.flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.pending = 0  # the first frame of the window not yet given out
        self.factor: int | None = None

    def push(self, index: int, depth: np.ndarray, frame: np.ndarray | None = None,
             new_segment: bool = False) -> list[FilteredFrame]:
        """Take the next aligned frame; give out the frames whose neighbours are now all known."""
        out: list[FilteredFrame] = []
        depth = np.asarray(depth, dtype=np.float32)
        if self.window and (new_segment or self.window[-1].depth.shape != depth.shape):
            out = self.finish()
        gray = None if frame is None else to_gray(frame)
        if self.factor is None or not self.window:
            self.factor = block_factor(*depth.shape[:2], self.work_size)
        small = None if gray is None or self.flow is None else block_mean(gray, self.factor)
        self.window.append(_Entry(index, depth, gray, small))
        while self.pending < len(self.window) and len(self.window) - 1 - self.pending >= self.radius:
            out.append(self._filter(self.pending))
            self.pending += 1
            self._forget()
        return out

    def finish(self) -> list[FilteredFrame]:
        """The frames still waiting (the end of a clip or a segment); the window starts empty."""
        out = [self._filter(position) for position in range(self.pending, len(self.window))]
        self.window.clear()
        self.flows.clear()
        self.pending = 0
        return out

    def _forget(self) -> None:
        """Drop what no frame still to come needs: frames more than `radius` before the next output."""
        while self.pending > self.radius:
            gone = self.window.popleft()
            self.pending -= 1
            self.flows = {key: value for key, value in self.flows.items() if gone.index not in key}

    def _filter(self, position: int) -> FilteredFrame:
        """The weighted mean of frame `position` and its neighbours on each side."""
        target = self.window[position]
        total = np.nan_to_num(target.depth).astype(np.float32)
        weights = np.ones(target.depth.shape, dtype=np.float32)
        weights[~np.isfinite(target.depth)] = 0.0
        total *= weights
        used = np.zeros(target.depth.shape, dtype=np.float32)
        span = _span(target.depth)
        low, high = max(0, position - self.radius), min(len(self.window), position + self.radius + 1)
        for other in range(low, high):
            if other == position:
                continue
            seen, weight = self._neighbour(target, self.window[other], span)
            total += weight * seen
            weights += weight
            used += weight
        with np.errstate(invalid="ignore", divide="ignore"):
            depth = np.where(weights > 0, total / np.maximum(weights, 1e-12), target.depth).astype(np.float32)
        return FilteredFrame(target.index, depth, float(used.mean()))

    def _neighbour(self, target: _Entry, other: _Entry, span: float) -> tuple[np.ndarray, np.ndarray]:
        """`other`'s depth at `target`'s scene points and the weight each pixel gets."""
        seen, seen_gray, trusted = other.depth, other.gray, np.ones(target.depth.shape, dtype=bool)
        if target.small is not None and other.small is not None:
            flow, consistent = self._chain(target, other)
            full = _full_flow(self.flow.cv2, flow, target.depth.shape)
            seen = self.flow.warp(other.depth, full)
            seen_gray = self.flow.warp(other.gray, full)
            trusted = _full_mask(self.flow.cv2, consistent, target.depth.shape)
        if target.gray is not None and seen_gray is not None:
            with np.errstate(invalid="ignore"):
                trusted &= np.abs(target.gray - seen_gray) <= COLOUR_TOLERANCE
        difference = seen - target.depth
        trusted &= np.isfinite(difference)
        return np.where(trusted, seen, np.float32(0.0)), _agreement(difference, trusted, span)

    def _chain(self, target: _Entry, other: _Entry) -> tuple[np.ndarray, np.ndarray]:
        """Flow from `target` to `other` (working size) composed of the flows between consecutive
        frames -- each small, so found reliably -- and where every link passed its check."""
        positions = {entry.index: position for position, entry in enumerate(self.window)}
        start, stop = positions[target.index], positions[other.index]
        step = 1 if stop > start else -1
        flow, trusted = self._link(self.window[start], self.window[start + step])
        for position in range(start + step, stop, step):
            following, good = self._link(self.window[position], self.window[position + step])
            moved = np.stack([self.flow.warp(following[..., 0], flow), self.flow.warp(following[..., 1], flow)], axis=-1)
            with np.errstate(invalid="ignore"):
                trusted = trusted & (self.flow.warp(good.astype(np.float32), flow) > 0.99)
            flow = flow + np.nan_to_num(moved)
            trusted &= np.isfinite(moved).all(axis=-1)
        return flow, trusted

    def _link(self, source: _Entry, destination: _Entry) -> tuple[np.ndarray, np.ndarray]:
        """Flow between consecutive frames and where it agrees with the flow back (cached)."""
        key = (source.index, destination.index)
        if key not in self.flows:
            there = self.flow(source.small, destination.small)
            back = self.flow(destination.small, source.small)
            self.flows[key] = there, _consistent(self.flow, there, back)
        return self.flows[key]


def _consistent(flow: FlowEstimator, backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels where following `backward` and then `forward` comes back to within `FLOW_AGREEMENT`."""
    returned = np.stack([flow.warp(forward[..., 0], backward), flow.warp(forward[..., 1], backward)], axis=-1)
    with np.errstate(invalid="ignore"):
        return np.hypot(*(backward + returned).transpose(2, 0, 1)) <= FLOW_AGREEMENT


def _full_flow(cv2: Any, flow: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A working-size flow at full size, in full-size pixels."""
    height, width = shape[:2]
    if flow.shape[:2] == (height, width):
        return flow
    full = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    full[..., 0] *= width / flow.shape[1]
    full[..., 1] *= height / flow.shape[0]
    return full


def _full_mask(cv2: Any, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A working-size mask at full size (nearest block)."""
    if mask.shape == tuple(shape[:2]):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _span(depth: np.ndarray) -> float:
    """The 10th..90th percentile span of a frame (on a subsample): its scale for `MAX_DIFFERENCE`."""
    values = depth.ravel()[:: max(1, depth.size // SAMPLE_PIXELS)]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    low, high = np.percentile(values, [10.0, 90.0])
    return float(high - low)


def _agreement(difference: np.ndarray, trusted: np.ndarray, span: float) -> np.ndarray:
    """Biweight of the depth difference on the trusted pixels: 1 for agreement (with the pair's
    median difference), 0 beyond `AGREEMENT_SIGMAS` robust standard deviations of this pair's
    differences (on a regular subsample), kept between `MIN_DIFFERENCE` and `MAX_DIFFERENCE` of
    the frame's span."""
    step = max(1, difference.size // SAMPLE_PIXELS)
    sample = difference.ravel()[::step][trusted.ravel()[::step]]
    if sample.size < 16:
        return np.zeros(difference.shape, dtype=np.float32)
    centre = float(np.median(sample))
    spread = 1.4826 * float(np.median(np.abs(sample - centre)))
    limit = np.float32(max(min(max(AGREEMENT_SIGMAS * spread, MIN_DIFFERENCE * span), MAX_DIFFERENCE * span), 1e-12))
    # measured from the pair's median difference: a neighbour whose alignment is off by a little
    # still counts (and that offset is averaged out); untrusted pixels get weight 0
    scaled = np.where(trusted, difference - np.float32(centre), limit + abs(centre)) / limit
    weight = np.maximum(np.float32(1.0) - scaled * scaled, np.float32(0.0))
    return (weight * weight).astype(np.float32, copy=False)
