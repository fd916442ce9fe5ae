"""Global co-alignment: every frame's scale and shift solved jointly over the clip, shot by shot.

Pass 1 (`Correspondences.push`, streaming) compares each new frame with earlier frames of the
same shot, at a small working size (longer side `WORK_SIZE`):

- with OpenCV and frames (the default, `tracked=True`): pixels tracked by optical flow both ways
  (forward-backward consistent, colour matching) with the frames 1 and 2 back, and the same
  pixel where it stayed still (colour unchanged, flow below half a pixel) with the frames 1, 2
  and 4 back;
- without flow (no OpenCV, no frames, or `tracked=False`): the same pixel where its colour did
  not change, with the frames 1, 2 and 4 back;
- the pixels that stayed still in every frame in between, with the frames 8, 16, 32 and 64 back
  (from every 4th frame): long-range anchors for a still camera or a still part of the view;
- each pair gets a robust scale-and-shift fit between the two predictions (`fit.robust_fit_details`:
  a least-median start, then trimming, so moving objects, near occluders and wrong matches drop
  out) and only its summary is kept (`Pair`: log scale ratio, the trusted pixels' means and
  spread, a precision): a few numbers per pair, never the frames;
- a shot cut starts a new segment, and no pair crosses it: the colour histograms differ (half
  their L1 distance > `CUT_HISTOGRAM`), or the previous frame carried along the optical flow
  looks nothing like this one (median grey difference > `CUT_PHOTOMETRIC` and
  `CUT_PHOTOMETRIC_RATIO` times the shot's usual), or no earlier frame agrees with this one
  (no trusted pair: also how cuts are found without OpenCV or without frames).

The approach. A tracked point's disparity really changes when the camera comes nearer, and a
fit that makes tracked points agree takes that change for a change of scale (so did same-pixel
pairs on a moving camera): on the benchmark's camera walk the drift over 48 frames was 0.21 with
same-pixel pairs and 0.40 with plain tracked pairs. An image patch grows as its depth shrinks,
so the flow's local expansion tells how much nearer each tracked point came (`_looming`); the
pair's earlier values are corrected by it before the fit (`_approached`: the growth is fitted
across the pair as a line in disparity, whose crossing of 1 also says where the frame puts zero
disparity, which an affine-invariant model does not tell). With it the walk's drift is 0.10 and
its AbsRel 0.0545 instead of 0.0685 (benchmarks/video_stability.py, "global, no filter");
tracked pairs reach 2 frames back only: over 4 the flow at the working size failed too often
and the drift grew again. Same-pixel pairs then only use pixels that stayed still: on a moving
camera the same pixel shows a point whose disparity changed.

The solve (`solve`) works per segment on the summaries alone: the log scales first, then the
shifts, each a sparse linear least-squares problem over the pairs (preconditioned conjugate
gradients: time and memory grow with the number of frames, not their size), iteratively
re-weighted so that pairs which disagree with the rest lose their say (Cauchy). A weak prior per
frame -- its own normalisation: 10th..90th percentiles spanning `TARGET_SPREAD`, median at
`TARGET_CENTRE` -- fixes the gauge and holds long clips against drift: over tens of frames the
correspondences decide, over hundreds the frames' own ranges. Every segment gets the same
gauge, so the shots of a clip share one colour range.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .correspondence import COLOUR_TOLERANCE, FlowEstimator, block_factor, block_mean, flow_available, to_gray
from .fit import robust_fit_details

WORK_SIZE = 160  # longer side of the working copies (pixels)
SAME_PIXEL_GAPS = (1, 2, 4)  # pairs on the same pixel where the colour did not change, this many frames back
STILL_GAPS = (8, 16, 32, 64)  # pairs on the pixels that stayed still in every frame between (long-range anchors)
STILL_EVERY = 4  # long-range pairs start from every 4th frame only: anchors, not the chain
TRACKED_GAPS = (1, 2)  # pairs along optical flow (`tracked=True`), corrected for the approach
LOOMING_BLUR = 3.0  # pixels (working size): smoothing of the flow before its local expansion is taken
LOOMING_SIGNIFICANCE = 3.0  # the growth must rise with disparity by this many standard errors to be used
LOOMING_ZERO_RANGE = 2.0  # zero disparity at most this many frame ranges below the frame's 1st percentile
PAIR_POINTS = 4096  # the fit of a pair uses a regular subsample of about this many correspondences
MIN_PAIR_POINTS = 64
MIN_PAIR_FRACTION = 0.3  # a fit must trust at least this share of its correspondences ...
MAX_RELATIVE_RESIDUAL = 0.2  # ... and explain the pair to this share of the spread
FLOW_AGREEMENT = 1.0  # pixels: forward and backward flow must cancel to within this
STILL_MOTION = 0.5  # pixels: a same-pixel correspondence also needs a flow below this (when known)
HISTOGRAM_BINS = 8  # per colour channel
CUT_HISTOGRAM = 0.5  # half the L1 distance of colour histograms above this: a cut
# ... or the median grey difference along the flow above this and this many times the shot's usual
CUT_PHOTOMETRIC = 0.05
CUT_PHOTOMETRIC_RATIO = 2.5
# The prior's standard deviations: how far a frame's log scale may stray from its own
# normalisation, and its median (in aligned units: a frame spans about 1). Against pairs of
# precision ~0.005 they let the correspondences decide over tens of frames and the frames' own
# ranges over hundreds (measured on benchmarks/video_stability.py's clips).
PRIOR_LOG_SCALE = 0.15
PRIOR_CENTRE = 0.08
PAIR_FLOOR = 0.004  # the best precision a pair is credited with (log scale; share of the spread)
EFFECTIVE_POINTS = 256  # pixels' errors are correlated: more than this many add nothing
TARGET_SPREAD = 0.8  # a frame's 10th..90th percentiles span this much when the prior alone decides
TARGET_CENTRE = 0.5
REWEIGHTS = 4
CAUCHY = 3.0  # robust standard deviations


@dataclass(frozen=True, slots=True)
class Pair:
    """What frame `later` and frame `earlier` agree on: ``scale * raw_later + shift ~ raw_earlier``
    on the trusted correspondences (means `x_mean` of the later, `y_mean` of the earlier frame);
    `sigma` is the pair's relative precision; `flow`: found by optical flow."""

    earlier: int
    later: int
    log_scale: float
    x_mean: float
    y_mean: float
    y_spread: float
    sigma: float
    flow: bool


@dataclass
class ClipSummary:
    """All the joint solve needs, for any clip length: per frame a few statistics of its raw
    prediction, the pairs, and where the segments (shots) start."""

    spreads: list[float] = field(default_factory=list)  # 10th..90th percentile span of the raw frame
    centres: list[float] = field(default_factory=list)  # its median
    ranges: list[tuple[float, float, float, float]] = field(default_factory=list)  # min, max, 1st, 99th pct
    pairs: list[Pair] = field(default_factory=list)
    segment_starts: list[int] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.spreads)


@dataclass
class _Small:
    """The working-size copy of one frame (what later frames are compared with)."""

    index: int
    depth: np.ndarray
    gray: np.ndarray | None
    histogram: np.ndarray | None
    still: np.ndarray | None = None  # per pixel: for how many frames it has not moved (same colour, no flow)


class Correspondences:
    """Pass 1: summarises each frame and its pairs with earlier frames of the same shot.

    Memory: the working-size copies of the last `max(STILL_GAPS)` frames plus the summary (a few
    dozen numbers per frame), whatever the clip's length."""

    def __init__(self, use_flow: bool | None = None, work_size: int = WORK_SIZE, flow_method: str = "farneback",
                 tracked: bool = True) -> None:
        use_flow = flow_available() if use_flow is None else use_flow
        self.flow = FlowEstimator(flow_method) if use_flow else None
        self.tracked = tracked and self.flow is not None
        self.work_size = work_size
        self.summary = ClipSummary()
        self.history: deque[_Small] = deque(maxlen=max((*SAME_PIXEL_GAPS, *STILL_GAPS, *TRACKED_GAPS)))
        self.factor: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.photometric: deque[float] = deque(maxlen=16)  # the shot's recent photometric errors

    def push(self, depth: np.ndarray, frame: np.ndarray | None = None) -> None:
        """Take the next frame's raw prediction (H, W) and, when known, its image (H, W, 3)."""
        depth = np.asarray(depth, dtype=np.float32)
        index = self.summary.frames
        if self.factor is None or depth.shape != self.shape:
            self.factor, self.shape = block_factor(*depth.shape[:2], self.work_size), depth.shape
            self.history.clear()
        small = _Small(index, block_mean(depth, self.factor), None, None)
        if frame is not None:
            image = np.asarray(frame)
            colour = block_mean(image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0), self.factor)
            small.gray, small.histogram = to_gray(colour), _histogram(colour)
        self._frame_statistics(depth, small.depth)
        pairs = self._pairs(small)
        if not self.history or pairs is None:
            self.summary.segment_starts.append(index)
            self.history.clear()
            self.photometric.clear()
            pairs = []
        self.summary.pairs.extend(pairs)
        self.history.append(small)

    def _frame_statistics(self, depth: np.ndarray, small: np.ndarray) -> None:
        finite = small[np.isfinite(small)]
        low, median, high = np.percentile(finite, [10.0, 50.0, 90.0]) if finite.size else (0.0, 0.0, 1.0)
        self.summary.spreads.append(float(high - low))
        self.summary.centres.append(float(median))
        full = depth[np.isfinite(depth)]
        if full.size == 0:
            self.summary.ranges.append((np.nan,) * 4)
            return
        sample = full[:: max(1, full.size // 65536)]
        p_low, p_high = np.percentile(sample, [1.0, 99.0])
        self.summary.ranges.append((float(full.min()), float(full.max()), float(p_low), float(p_high)))

    def _pairs(self, current: _Small) -> list[Pair] | None:
        """The pairs of `current` with the frames before it, or None when it starts a new shot:
        its colours differ from the previous frame's, the flow finds nothing that looks alike
        (photometric error far above the shot's usual), or no earlier frame agrees with it."""
        if not self.history:
            return []
        previous = self.history[-1]
        if _histogram_distance(previous, current) > CUT_HISTOGRAM:
            return None
        backward = None
        if self.flow is not None and current.gray is not None and previous.gray is not None:
            backward = self.flow(current.gray, previous.gray)
            if self._photometric_cut(current, previous, backward):
                return None
        current.still = _still_run(previous, current, backward)
        pairs: list[Pair] = []
        by_index = {small.index: small for small in self.history}
        for gap in sorted(set(SAME_PIXEL_GAPS) | set(STILL_GAPS) | set(TRACKED_GAPS)):
            earlier = by_index.get(current.index - gap)
            if earlier is None:
                continue
            # the same pixel: where its colour did not change; with tracked pairs, only where it also stayed still
            kinds = [(False, gap if self.tracked else 0)] if gap in SAME_PIXEL_GAPS else []
            kinds += [(False, gap)] if gap in STILL_GAPS and current.index % STILL_EVERY == 0 else []  # still all along
            kinds += [(True, gap)] if self.tracked and backward is not None and gap in TRACKED_GAPS else []
            for use_flow, still in kinds:
                found = self._pair(earlier, current, use_flow, still, backward if gap == 1 else None)
                if found is not None:
                    pairs.append(found)
        return pairs or None

    def _photometric_cut(self, current: _Small, previous: _Small, backward: np.ndarray) -> bool:
        """Whether the previous frame, carried along the flow, looks nothing like this one."""
        with np.errstate(invalid="ignore"):
            error = float(np.nanmedian(np.abs(current.gray - self.flow.warp(previous.gray, backward))))
        usual = float(np.median(self.photometric)) if self.photometric else 0.0
        if error > CUT_PHOTOMETRIC and error > CUT_PHOTOMETRIC_RATIO * usual:
            return True
        self.photometric.append(error)
        return False

    def _pair(self, earlier: _Small, current: _Small, use_flow: bool, still: int,
              backward: np.ndarray | None = None) -> Pair | None:
        """One pair's robust fit, or None when it is not trusted."""
        x, y, looming = _correspondences(earlier, current, self.flow if use_flow else None, still, backward)
        step = max(1, x.size // PAIR_POINTS)
        x, y = x[::step], y[::step]
        if looming is not None:
            y = _approached(y, looming[::step])
        details = robust_fit_details(x, y)
        if (details is None or details.count < MIN_PAIR_POINTS or details.fraction < MIN_PAIR_FRACTION
                or details.relative_residual > MAX_RELATIVE_RESIDUAL):
            return None
        sigma = float(np.hypot(details.relative_residual / np.sqrt(min(details.count, EFFECTIVE_POINTS)), PAIR_FLOOR))
        return Pair(earlier.index, current.index, float(np.log(details.scale)), details.x_mean, details.y_mean,
                    details.y_spread, sigma, use_flow)


def _correspondences(earlier: _Small, current: _Small, flow: FlowEstimator | None, still_for: int,
                     backward: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(values of `current`, values of `earlier` at the same scene points).

    The same pixel where its colour did not change, and (`still_for` > 0) that stayed still in each
    of the last `still_for` frames (`_still_run`); with `flow`, also the pixels tracked by optical
    flow both ways (`backward`: the flow from `current` to `earlier`, if already known)."""
    still = np.ones(current.depth.shape, dtype=bool)
    if current.still is not None and still_for > 0:
        still = current.still >= still_for
    if current.gray is not None and earlier.gray is not None:
        with np.errstate(invalid="ignore"):
            still &= np.abs(current.gray - earlier.gray) <= COLOUR_TOLERANCE
    if flow is None or current.gray is None or earlier.gray is None:
        return current.depth[still], earlier.depth[still], None
    if backward is None:
        backward = flow(current.gray, earlier.gray)  # current pixel -> earlier pixel
    forward = flow(earlier.gray, current.gray)
    with np.errstate(invalid="ignore"):
        agree = np.hypot(*(backward + _warp_vectors(flow, forward, backward)).transpose(2, 0, 1)) <= FLOW_AGREEMENT
        seen_gray = flow.warp(earlier.gray, backward)
        tracked = agree & (np.abs(current.gray - seen_gray) <= COLOUR_TOLERANCE)
    seen_depth = flow.warp(earlier.depth, backward)
    tracked &= np.isfinite(seen_depth)
    # Where the flow failed its check but the pixel stayed put and kept its colour: the same pixel.
    still &= ~tracked
    x = np.concatenate([current.depth[tracked], current.depth[still]])
    y = np.concatenate([seen_depth[tracked], earlier.depth[still]])
    growth = _looming(backward, flow.cv2)
    return x, y, np.concatenate([growth[tracked], np.ones(int(still.sum()), dtype=np.float32)])


def _looming(backward: np.ndarray, cv2: Any) -> np.ndarray:
    """Per pixel, how much nearer the scene point came, from the flow's local expansion: an image
    patch grows as 1 / depth, so disparity(now) / disparity(then) = 1 / sqrt(det(I + grad flow))
    (the flow smoothed first: its derivatives are noisy pixel by pixel)."""
    fx = cv2.GaussianBlur(np.nan_to_num(backward[..., 0]), (0, 0), LOOMING_BLUR)
    fy = cv2.GaussianBlur(np.nan_to_num(backward[..., 1]), (0, 0), LOOMING_BLUR)
    area = (1.0 + np.gradient(fx, axis=1)) * (1.0 + np.gradient(fy, axis=0))
    area -= np.gradient(fx, axis=0) * np.gradient(fy, axis=1)
    return (1.0 / np.sqrt(np.clip(area, 0.25, 4.0))).astype(np.float32)


def _approached(y: np.ndarray, growth: np.ndarray) -> np.ndarray:
    """The earlier frame's values as they would be had its scene points come as near as they are
    now: ``c + growth * (y - c)``, where c is the value the earlier frame gives zero disparity
    (unknown to an affine-invariant model). The growth is fitted across the pair as a line in y
    (least squares, once trimmed: the flow's derivatives are noisy), ``growth = 1 + m * y + q``,
    which crosses 1 at zero disparity (c = -q / m), because a point's disparity grows by the
    distance walked over its depth; c is kept below the frame's values (zero disparity is farther
    than anything seen), at most `LOOMING_ZERO_RANGE` frame ranges. When the line's slope is not
    significant (no approach), y is kept as it is. (Pooling c over a shot's pairs, a median, was
    measured worse on the walk: AbsRel 0.062 against 0.0545.)"""
    valid = np.isfinite(y) & np.isfinite(growth)
    if valid.sum() < MIN_PAIR_POINTS:
        return y
    values = y[valid]
    design = np.stack([values, np.ones(values.size)], axis=1)
    target = growth[valid] - 1.0
    keep = np.ones(target.size, dtype=bool)
    for _ in range(2):
        (m, q), *_ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
        residual = target - design @ np.array([m, q])
        keep = np.abs(residual) <= 3.0 * 1.4826 * max(float(np.median(np.abs(residual[keep]))), 1e-12)
    if keep.sum() < MIN_PAIR_POINTS:
        return y
    spread = float(np.std(values[keep]))
    error = float(np.std(residual[keep])) / max(spread * np.sqrt(min(int(keep.sum()), EFFECTIVE_POINTS)), 1e-12)
    if abs(m) <= LOOMING_SIGNIFICANCE * error:
        return y
    low, high = np.percentile(values, [1.0, 99.0])
    zero = float(np.clip(-q / m, low - LOOMING_ZERO_RANGE * (high - low), low))
    return (zero + (1.0 + m * y + q) * (y - zero)).astype(np.float32)


def _still_run(previous: _Small, current: _Small, backward: np.ndarray | None) -> np.ndarray | None:
    """For how many frames each pixel of `current` has shown the same thing: its colour stayed
    within `COLOUR_TOLERANCE` of the previous frame's and (with OpenCV) the flow there is below
    `STILL_MOTION`; None without frames (every pixel then counts as still)."""
    if current.gray is None or previous.gray is None:
        return None
    with np.errstate(invalid="ignore"):
        still = np.abs(current.gray - previous.gray) <= COLOUR_TOLERANCE
    if backward is not None:
        still &= np.hypot(backward[..., 0], backward[..., 1]) <= STILL_MOTION
    before = previous.still if previous.still is not None else np.zeros(still.shape, dtype=np.int32)
    return np.where(still, np.minimum(before, max(STILL_GAPS)) + 1, 0).astype(np.int32)


def _warp_vectors(flow: FlowEstimator, vectors: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """The (H, W, 2) field `vectors` (in the earlier frame's pixels) read at where `backward` points."""
    return np.stack([flow.warp(vectors[..., 0], backward), flow.warp(vectors[..., 1], backward)], axis=-1)


def _histogram(colour: np.ndarray) -> np.ndarray:
    """Normalised per-channel colour histogram of a working-size frame (values in [0, 1])."""
    values = np.clip(colour.reshape(-1, colour.shape[-1] if colour.ndim == 3 else 1), 0.0, 1.0)
    bins = np.minimum((values * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    counts = np.stack([np.bincount(bins[:, c], minlength=HISTOGRAM_BINS) for c in range(values.shape[1])])
    return counts.astype(np.float64) / max(1, values.shape[0])


def _histogram_distance(a: _Small, b: _Small) -> float:
    """Half the L1 distance of two frames' colour histograms, averaged over channels (0: alike, 1: disjoint)."""
    if a.histogram is None or b.histogram is None or a.histogram.shape != b.histogram.shape:
        return 0.0
    return float(np.abs(a.histogram - b.histogram).sum(axis=1).mean() / 2.0)


# ---------------------------------------------------------------------------------------- the solve


@dataclass
class Solution:
    """Per frame ``aligned = scales * raw + shifts``; `fitted` marks frames with at least one
    trusted pair; `segment_starts` the first frame of each shot."""

    scales: np.ndarray
    shifts: np.ndarray
    fitted: np.ndarray
    segment_starts: list[int]


def solve(summary: ClipSummary) -> Solution:
    """Every frame's scale and shift, each segment solved on its own (see the module docstring)."""
    count = summary.frames
    scales, shifts = np.ones(count), np.zeros(count)
    fitted = np.zeros(count, dtype=bool)
    bounds = [*summary.segment_starts, count]
    spreads = np.maximum(np.asarray(summary.spreads, dtype=np.float64), 1e-12)
    centres = np.asarray(summary.centres, dtype=np.float64)
    by_segment: dict[int, list[Pair]] = {}
    starts = np.asarray(summary.segment_starts)
    for pair in summary.pairs:
        by_segment.setdefault(int(starts[np.searchsorted(starts, pair.later, side="right") - 1]), []).append(pair)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        pairs = by_segment.get(start, [])
        a, b = _solve_segment(pairs, start, spreads[start:stop], centres[start:stop])
        scales[start:stop], shifts[start:stop] = a, b
        for pair in pairs:
            fitted[pair.later] = fitted[pair.earlier] = True
        fitted[start] = True  # a shot's first frame is fitted by the prior alone
    return Solution(scales, shifts, fitted, list(summary.segment_starts))


def _solve_segment(pairs: list[Pair], start: int, spreads: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scales and shifts of one segment: log scales, then shifts, each with a prior per frame."""
    count = len(spreads)
    prior_log = np.log(TARGET_SPREAD / spreads)
    if not pairs:
        scales = np.exp(prior_log)
        return scales, TARGET_CENTRE - scales * centres
    earlier = np.array([p.earlier - start for p in pairs])
    later = np.array([p.later - start for p in pairs])
    sigma = np.array([p.sigma for p in pairs])
    # log a_later - log a_earlier = log(pair scale): a_later * raw_later = a_earlier * (scale * raw_later + ...)
    log_scale = np.array([p.log_scale for p in pairs])
    logs = _robust_chain(count, earlier, later, log_scale, 1.0 / sigma**2, prior_log, np.full(count, PRIOR_LOG_SCALE**-2))
    scales = np.exp(logs)
    # b_later - b_earlier = a_earlier * y_mean - a_later * x_mean (the pair's means align)
    offsets = scales[earlier] * np.array([p.y_mean for p in pairs]) - scales[later] * np.array([p.x_mean for p in pairs])
    spread = scales[earlier] * np.array([p.y_spread for p in pairs])
    shift_sigma = np.maximum(sigma * spread, 1e-12)
    prior_shift = TARGET_CENTRE - scales * centres
    shifts = _robust_chain(count, earlier, later, offsets, 1.0 / shift_sigma**2, prior_shift,
                           np.full(count, PRIOR_CENTRE**-2))
    return scales, shifts


def _robust_chain(count: int, earlier: np.ndarray, later: np.ndarray, differences: np.ndarray, weights: np.ndarray,
                  prior: np.ndarray, prior_weights: np.ndarray) -> np.ndarray:
    """argmin_x sum_k w_k (x[later_k] - x[earlier_k] - d_k)^2 + sum_t p_t (x_t - prior_t)^2, with
    the pairs re-weighted (Cauchy) by how far they disagree with the solution."""
    robust = np.ones_like(weights)
    solution = prior.copy()
    for _ in range(REWEIGHTS):
        solution = _chain_least_squares(count, earlier, later, differences, weights * robust, prior, prior_weights, solution)
        normalised = (solution[later] - solution[earlier] - differences) * np.sqrt(weights)
        scale = max(1.4826 * float(np.median(np.abs(normalised))), 1.0)
        robust = 1.0 / (1.0 + (normalised / (CAUCHY * scale)) ** 2)
    return solution


def _chain_least_squares(count: int, earlier: np.ndarray, later: np.ndarray, differences: np.ndarray,
                         weights: np.ndarray, prior: np.ndarray, prior_weights: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The weighted least-squares problem of `_robust_chain` by preconditioned conjugate gradients
    (the normal matrix is a graph Laplacian plus a diagonal: sparse, positive definite)."""

    def apply(x: np.ndarray) -> np.ndarray:
        flux = weights * (x[later] - x[earlier])
        return prior_weights * x + np.bincount(later, flux, count) - np.bincount(earlier, flux, count)

    pulls = weights * differences
    rhs = prior_weights * prior + np.bincount(later, pulls, count) - np.bincount(earlier, pulls, count)
    diagonal = prior_weights + np.bincount(later, weights, count) + np.bincount(earlier, weights, count)
    x = start.astype(np.float64).copy()
    residual = rhs - apply(x)
    z = residual / diagonal
    direction = z.copy()
    rz = float(residual @ z)
    tolerance = 1e-20 * max(float(rhs @ (rhs / diagonal)), 1e-300)
    for _ in range(10 * count + 100):
        if rz <= tolerance:
            break
        step = apply(direction)
        alpha = rz / float(direction @ step)
        x += alpha * direction
        residual -= alpha * step
        z = residual / diagonal
        rz_next = float(residual @ z)
        direction = z + (rz_next / rz) * direction
        rz = rz_next
    return x
