"""Temporal alignment of per-frame affine-invariant disparity: the window modes and the global mode.

Each frame's prediction is mapped by its own scale and shift onto a common scale for the clip
(``aligned = scale * raw + shift``):

- "global" (`GlobalStabilizer`, the default): every frame's scale and shift solved jointly over
  the clip from pairwise correspondences, shot by shot (`coalign`); two passes, because the
  solve needs the whole clip. Pass 2 (`apply_stream`) then filters the aligned frames over time
  (`temporal_filter`: a mean over `filter_radius` frames on each side along verified
  correspondences), which removes per-frame error that no scale and shift can, so the values
  change: raw = (depth - shift) / scale holds only approximately, and each frame carries its
  raw prediction (`StabilizedFrame.raw`). `apply`, or ``filter_radius=0``, gives the exact affine frames;
- "align" / "flow" (`Stabilizer`, streaming, one frame in, one frame out): a robust fit of each
  frame to the last `window` aligned frames on the same pixels where the colour did not change
  (`correspondence`, `fit`); the first frame sets the gauge (its 1st..99th percentiles become 0..1).
  Exact: raw = (depth - shift) / scale.

With `smoothing` > 0 a display copy is also made: a running average along the correspondences
(weight `smoothing` on the history) wherever the history agrees with the new frame within the
frame-to-frame noise (`AGREEMENT_SIGMAS`), so per-frame noise that no scale and shift can remove
stops shimmering, while moving things and real changes are taken as they come. "flow" and
"global" with OpenCV carry that history along optical flow, so moving pixels are averaged too;
"align" averages pixels that stay put. The global mode restarts the average at every cut, and
averages the filtered frames.

Memory: the window modes keep `window` maps at the working size plus, when smoothing, two
full-size maps; the global mode keeps 64 working-size maps in pass 1, a summary of about
1.5 kB per frame between the passes, whatever the frame size (benchmarks/video_stability.py),
and `2 * filter_radius + 1` full-size frames in pass 2.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .coalign import ClipSummary, Correspondences, Solution, solve
from .correspondence import DEFAULT_FLOW, FlowEstimator, block_factor, block_mean, stable_pixels, to_gray, upsample_flow
from .fit import first_frame_fit, robust_fit
from .normalize import ClipRange, clip_range, normalize_to_range
from .temporal_filter import DEFAULT_RADIUS, FilteredFrame, TemporalFilter

TEMPORAL_MODES = ("none", "global", "align", "flow")
STREAMING_MODES = ("none", "align", "flow")  # what `Stabilizer` does one frame at a time
DEFAULT_WINDOW = 4
DEFAULT_SMOOTHING = 0.9
WORK_SIZE = 256  # longer side of the working copies (pixels)
FIT_PIXELS = 24576  # the fit uses a regular subsample of about this many correspondences
# History that differs from the new frame by less than this many robust standard deviations of
# their difference (the frame-to-frame noise) is averaged in, fading out smoothly towards it;
# larger differences are real changes and are taken as they come.
AGREEMENT_SIGMAS = 8.0


@dataclass
class StabilizedFrame:
    """One aligned frame: ``depth = scale * raw + shift`` exactly, unless `filtered` (then `depth`
    is that, averaged with its neighbours by the temporal filter, and `raw` is the prediction
    as given); `display` is its temporally smoothed copy (the same array without smoothing);
    `fitted` is False when too few pixels were trusted and the previous frame's scale and shift
    were kept; `neighbours`: how many neighbouring frames the filter blended per pixel (mean)."""

    depth: np.ndarray
    scale: float
    shift: float
    fitted: bool = True
    display: np.ndarray | None = None
    raw: np.ndarray | None = None
    filtered: bool = False
    neighbours: float = 0.0

    def __post_init__(self) -> None:
        if self.display is None:
            self.display = self.depth


def check_temporal(mode: str, window: int, smoothing: float) -> None:
    """Refuse settings the stabiliser cannot use, before any work starts."""
    if mode not in TEMPORAL_MODES:
        raise InputError(f"unknown temporal mode {mode!r}; choose from {', '.join(TEMPORAL_MODES)}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise InputError(f"temporal window must be a whole number >= 1, got {window!r}")
    if not 0.0 <= smoothing < 1.0:
        raise InputError(f"temporal smoothing must be in [0, 1), got {smoothing!r}")


def check_filter(radius: int) -> None:
    """Refuse a temporal filter radius that is not a whole number >= 0."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise InputError(f"temporal filter radius must be a whole number >= 0 (0: off), got {radius!r}")


class Stabilizer:
    """Aligns the frames of one clip as they come (streaming: constant memory, no look-ahead)."""

    def __init__(self, mode: str = "align", window: int = DEFAULT_WINDOW, smoothing: float = DEFAULT_SMOOTHING,
                 flow: str = DEFAULT_FLOW, work_size: int = WORK_SIZE, flow_fit: bool = False) -> None:
        check_temporal(mode, window, smoothing)
        if mode not in STREAMING_MODES:
            raise InputError(f"temporal mode {mode!r} needs the whole clip: use GlobalStabilizer or stabilize()")
        self.mode, self.smoothing, self.work_size = mode, smoothing, work_size
        self.flow_fit = flow_fit  # fit on flow-warped references (measured worse than same pixel: see the docstring)
        self.flow = FlowEstimator(flow) if mode == "flow" else None
        self.references: deque[np.ndarray] = deque(maxlen=window)
        self.previous_gray: np.ndarray | None = None
        self.last: tuple[float, float] | None = None
        self.factor: int | None = None
        self.smoother = _Smoother(smoothing, self.flow) if smoothing > 0 and mode != "none" else None

    def push(self, depth: np.ndarray, frame: np.ndarray | None = None) -> StabilizedFrame:
        """Align the next frame's prediction (H, W); `frame` is its (H, W, 3) image, needed for flow."""
        depth = np.asarray(depth, dtype=np.float32)
        if self.mode == "none":
            return StabilizedFrame(depth, 1.0, 0.0)
        if self.mode == "flow" and frame is None:
            raise InputError("--temporal flow needs the video frames, not only the depth maps")
        if frame is not None and np.asarray(frame).shape[:2] != depth.shape[:2]:
            raise InputError(f"frame of {np.asarray(frame).shape[:2]} pixels does not match its depth map {depth.shape}")
        if self.factor is None:
            self.factor = block_factor(*depth.shape[:2], self.work_size)
        small = block_mean(depth, self.factor)
        if self.references and self.references[-1].shape != small.shape:  # the frame size changed
            self.references.clear()  # go on with the last scale and shift, and start over from here
            self.previous_gray, self.smoother = None, _Smoother(self.smoothing, self.flow) if self.smoother else None
        full_gray = None if frame is None else to_gray(frame)
        gray = None if full_gray is None else block_mean(full_gray, self.factor)
        flow, _ = self._follow(gray)
        fit = self._fit(small)
        scale, shift = fit if fit is not None else (self.last or first_frame_fit(small))
        self.last = (scale, shift)
        self.references.append((scale * small + shift).astype(np.float32))
        self.previous_gray = gray
        aligned = np.asarray(np.float32(scale) * depth + np.float32(shift), dtype=np.float32)
        display = None if self.smoother is None else self.smoother.push(aligned, full_gray, flow, self.factor)
        return StabilizedFrame(aligned, float(scale), float(shift), fit is not None, display)

    def _follow(self, gray: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Carry the references into the current frame's pixels and forget, in each, the pixels
        whose colour does not match their correspondence. Returns (flow or None, those pixels)."""
        flow = None
        if self.flow is not None and gray is not None and self.previous_gray is not None:
            flow = self.flow(gray, self.previous_gray)
        if flow is not None and self.flow_fit:
            seen = self.flow.warp(self.previous_gray, flow)
            moved = [self.flow.warp(reference, flow) for reference in self.references]
            self.references = deque(moved, maxlen=self.references.maxlen)
        else:
            seen = self.previous_gray
        stable = stable_pixels(gray, seen)
        if stable is not None:
            for reference in self.references:
                reference[~stable] = np.nan
        return flow, stable

    def _fit(self, small: np.ndarray) -> tuple[float, float] | None:
        """Robust fit against all references together; the first frame sets the gauge."""
        if not self.references:
            return first_frame_fit(small) if self.last is None else None
        step = max(1, small.size * len(self.references) // FIT_PIXELS)
        prediction = np.concatenate([small.ravel()] * len(self.references))[::step]
        target = np.concatenate([reference.ravel() for reference in self.references])[::step]
        return robust_fit(prediction, target)


class _Smoother:
    """The display copy: a running average of aligned frames along the correspondences."""

    def __init__(self, weight: float, flow: FlowEstimator | None) -> None:
        self.weight, self.flow = weight, flow
        self.history: np.ndarray | None = None
        self.previous_gray: np.ndarray | None = None

    def push(self, aligned: np.ndarray, gray: np.ndarray | None, flow: np.ndarray | None, factor: int) -> np.ndarray:
        """The display copy of an aligned frame, given its grey image and the working-size flow."""
        history, seen = self.history, self.previous_gray
        if history is not None and flow is not None and self.flow is not None:
            full_flow = upsample_flow(flow, factor, aligned.shape)
            history = self.flow.warp(history, full_flow)
            seen = None if seen is None else self.flow.warp(seen, full_flow)
        display = aligned
        if history is not None:
            weight = self.weight * _agreement_weight(aligned - history)
            colour = stable_pixels(gray, seen)
            if colour is not None:
                weight = np.where(colour, weight, 0.0)
            display = aligned + weight * (np.nan_to_num(history) - aligned)
        self.history, self.previous_gray = display, gray
        return display


def _agreement_weight(difference: np.ndarray) -> np.ndarray:
    """1 where history and new frame agree, fading to 0 at `AGREEMENT_SIGMAS` robust standard
    deviations of their difference (a biweight: no hard edge between smoothed and raw pixels);
    0 where the history is unknown (NaN)."""
    sample = difference.ravel()[:: max(1, difference.size // FIT_PIXELS)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros(difference.shape, dtype=np.float32)
    spread = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    limit = np.float32(max(AGREEMENT_SIGMAS * spread, 1e-12))
    with np.errstate(invalid="ignore"):
        closeness = np.maximum(1.0 - np.square(difference / limit), 0.0)  # NaN stays NaN here
    return np.nan_to_num(np.square(closeness), nan=0.0)


class GlobalStabilizer:
    """Global co-alignment of one clip (`coalign`) in two streaming passes: `observe` every frame
    (raw prediction and image), `solve`, then `apply` the frames again in the same order. Memory
    between the passes is the clip's summary (a few dozen numbers per frame), not the frames."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, flow: str = DEFAULT_FLOW, use_flow: bool | None = None,
                 work_size: int = WORK_SIZE, flow_fit: bool = True, filter_radius: int = DEFAULT_RADIUS) -> None:
        check_temporal("global", 1, smoothing)
        check_filter(filter_radius)
        self.filter_radius = filter_radius  # the temporal filter of `apply_stream` (0: off)
        # flow_fit: pairs along optical flow, corrected for the approach (see `coalign`); False: same pixel only
        self.correspondences = Correspondences(use_flow, flow_method=flow, tracked=flow_fit)
        self.flow = self.correspondences.flow  # the display average follows the flow too, when there is one
        self.smoothing, self.work_size = smoothing, work_size
        self.solution: Solution | None = None
        self.applied = 0
        self.smoother: _Smoother | None = None
        self.previous_gray: np.ndarray | None = None
        self.factor: int | None = None

    @property
    def summary(self) -> ClipSummary:
        return self.correspondences.summary

    def observe(self, depth: np.ndarray, frame: np.ndarray | None = None) -> None:
        """Pass 1: the next frame's raw prediction (H, W) and, when known, its image (H, W, 3)."""
        if frame is not None and np.asarray(frame).shape[:2] != np.asarray(depth).shape[:2]:
            raise InputError(f"frame of {np.asarray(frame).shape[:2]} pixels does not match its depth map {np.shape(depth)}")
        self.correspondences.push(depth, frame)

    def solve(self) -> Solution:
        """Every observed frame's scale and shift, jointly (call between the passes)."""
        self.solution = solve(self.summary)
        return self.solution

    def clip_range(self) -> ClipRange:
        """The clip's ranges of the aligned frames, from the stored raw statistics (no second look
        at the frames: a positive scale keeps minimum, maximum and percentiles in place)."""
        solution = self.solution or self.solve()
        values = np.asarray(self.summary.ranges, dtype=np.float64).reshape(-1, 4)
        aligned = solution.scales[:, None] * values + solution.shifts[:, None]
        finite = np.isfinite(aligned).all(axis=1)
        if not finite.any():
            return ClipRange()
        aligned = aligned[finite]
        return ClipRange(float(aligned[:, 0].min()), float(aligned[:, 1].max()), float(aligned[:, 2].min()),
                         float(aligned[:, 3].max()))

    def apply_stream(self, items: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> Iterator[StabilizedFrame]:
        """Pass 2 with the temporal filter (`temporal_filter`): the (raw prediction, image) of every
        observed frame in order in, the aligned and filtered frames in the same order out, each
        once the `filter_radius` frames after it are in (a window of that many frames is held).
        Without the filter (radius 0) the same as `apply` frame by frame."""
        if self.filter_radius == 0:
            for depth, frame in items:
                yield self.apply(depth, frame)
            return
        solution = self.solution or self.solve()
        window = TemporalFilter(self.filter_radius, self.flow)
        waiting: dict[int, tuple[StabilizedFrame, np.ndarray | None]] = {}
        starts = set(solution.segment_starts)
        for depth, frame in items:
            index = self.applied
            result = self._align(depth)
            waiting[index] = (result, frame)
            for done in window.push(index, result.depth, frame, new_segment=index in starts):
                yield self._filtered(waiting.pop(done.index), done)
        for done in window.finish():
            yield self._filtered(waiting.pop(done.index), done)

    def _filtered(self, held: tuple[StabilizedFrame, np.ndarray | None], done: FilteredFrame) -> StabilizedFrame:
        """A frame out of the filter, with its display copy (made in order, as `apply` makes it)."""
        result, frame = held
        result.depth, result.filtered, result.neighbours = done.depth, True, done.neighbours
        result.display = self._display(done.index, result.depth, frame) if self.smoothing > 0 else result.depth
        return result

    def apply(self, depth: np.ndarray, frame: np.ndarray | None = None) -> StabilizedFrame:
        """Pass 2 without the temporal filter: the next frame, aligned by the solved scale and
        shift (exactly: raw = (depth - shift) / scale), and its display copy."""
        index = self.applied
        result = self._align(depth)
        if self.smoothing > 0:
            result.display = self._display(index, result.depth, frame)
        return result

    def _align(self, depth: np.ndarray) -> StabilizedFrame:
        """The next frame by its solved scale and shift (no display copy yet)."""
        solution = self.solution or self.solve()
        index = self.applied
        if index >= len(solution.scales):
            raise InputError(f"frame {index} was not observed in the first pass ({len(solution.scales)} were)")
        self.applied += 1
        depth = np.asarray(depth, dtype=np.float32)
        scale, shift = float(solution.scales[index]), float(solution.shifts[index])
        aligned = np.asarray(np.float32(scale) * depth + np.float32(shift), dtype=np.float32)
        return StabilizedFrame(aligned, scale, shift, bool(solution.fitted[index]), raw=depth)

    def _display(self, index: int, aligned: np.ndarray, frame: np.ndarray | None) -> np.ndarray:
        """The running average along the correspondences, started afresh at every cut."""
        if self.factor is None or index in self.solution.segment_starts or self.smoother is None:
            self.factor = block_factor(*aligned.shape[:2], self.work_size)
            self.smoother, self.previous_gray = _Smoother(self.smoothing, self.flow), None
        full_gray = None if frame is None else to_gray(frame)
        gray = None if full_gray is None else block_mean(full_gray, self.factor)
        flow = None
        known = gray is not None and self.previous_gray is not None
        if known and gray.shape != self.previous_gray.shape:  # the frame size changed: start over
            self.smoother = _Smoother(self.smoothing, self.flow)
        elif known and self.flow is not None:
            flow = self.flow(gray, self.previous_gray)
        self.previous_gray = gray
        return self.smoother.push(aligned, full_gray, flow, self.factor)


@dataclass
class Stabilization:
    """A whole clip, aligned: frames, each frame's scale and shift, and the clip's value ranges."""

    depths: list[np.ndarray]
    display: list[np.ndarray]
    scales: np.ndarray
    shifts: np.ndarray
    fitted: np.ndarray
    range: ClipRange

    def normalized(self, display: bool = True) -> list[np.ndarray]:
        """Every frame in [0, 1] by the one clip-wide range: the smoothed display frames by the
        display percentiles, or (`display=False`) the exact aligned frames by the clip's min/max."""
        if display:
            return [normalize_to_range(depth, self.range.display_low, self.range.display_high) for depth in self.display]
        return [normalize_to_range(depth, self.range.low, self.range.high) for depth in self.depths]


def stabilize(depths: Sequence[np.ndarray] | np.ndarray, frames: Sequence[np.ndarray] | np.ndarray | None = None,
              mode: str = "global", window: int = DEFAULT_WINDOW, smoothing: float = DEFAULT_SMOOTHING,
              flow: str = DEFAULT_FLOW, flow_fit: bool | None = None, use_flow: bool | None = None,
              filter_radius: int = DEFAULT_RADIUS) -> Stabilization:
    """Align the per-frame predictions of any affine-invariant disparity model (PrimeDepth, Depth
    Anything, ...) across a clip, and give its clip-wide normalisation.

    `depths`: (H, W) inverse depth per frame (larger = closer); `frames`: the (H, W, 3) images,
    which "flow" needs and "align" uses to leave out pixels that changed. Mode "none" keeps
    the predictions as they are. `window`: how many previous frames each frame is fitted to;
    `smoothing`: weight of the history in the display copy (0: none); `flow_fit`: the global
    mode's pairs along optical flow, corrected for the approach (default on; off: same pixel
    only), the window modes' fit on flow-warped references (default off); `filter_radius`: the
    global mode's temporal filter of the aligned frames, neighbours on each side (0: off, and
    then ``aligned = scale * raw + shift`` exactly). Returns the aligned frames, their display
    copies, each frame's scale and shift, and the clip's ranges.
    """
    if frames is not None and len(frames) != len(depths):
        raise InputError(f"got {len(frames)} frames for {len(depths)} depth maps")
    check_temporal(mode, window, smoothing)
    if mode == "global":
        aligner = GlobalStabilizer(smoothing, flow, use_flow=use_flow if frames is not None else False,
                                   flow_fit=flow_fit is not False, filter_radius=filter_radius)
        for index, depth in enumerate(depths):
            aligner.observe(depth, None if frames is None else frames[index])
        aligner.solve()
        results = list(aligner.apply_stream((depth, None if frames is None else frames[index])
                                            for index, depth in enumerate(depths)))
    else:
        stabilizer = Stabilizer(mode, window, smoothing, flow, flow_fit=bool(flow_fit))
        results = [stabilizer.push(depth, None if frames is None else frames[index]) for index, depth in enumerate(depths)]
    aligned = [result.depth for result in results]
    return Stabilization(
        depths=aligned,
        display=[result.display for result in results],
        scales=np.array([result.scale for result in results]),
        shifts=np.array([result.shift for result in results]),
        fitted=np.array([result.fitted for result in results]),
        range=clip_range(aligned, [result.display for result in results]),
    )
