"""Robust scale-and-shift fit of one frame's prediction to a reference, in disparity space.

Plain least squares (`primedepth.alignment.fit_scale_shift`, the package's one fit) is
repeated on the pixels whose residual stays within three robust standard deviations (median
absolute residual), so that pixels where the scene really changed -- a moving object, a wrong
correspondence, a surface the camera approaches -- do not pull the fit. The final scale on
those pixels is the ratio of spreads (`symmetric_fit`), which does not shrink under noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..alignment import fit_scale_shift

MIN_FIT_PIXELS = 32  # fewer trusted pixels than this: the fit is not trusted either
TRIM_SIGMAS = 3.0
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation
ITERATIONS = 6
MIN_RESIDUAL = 0.005
SAMPLES = 64  # two-pixel lines tried for the least-median start


@dataclass(frozen=True)
class FitDetails:
    """A robust fit and what it rests on: ``scale * x + shift ~ y`` on `count` trusted pixels
    (`fraction` of the valid ones) whose means are `x_mean`/`y_mean`; `residual` is the standard
    deviation of the trusted residuals and `y_spread` that of the trusted targets."""

    scale: float
    shift: float
    count: int
    fraction: float
    x_mean: float
    y_mean: float
    residual: float
    y_spread: float

    @property
    def relative_residual(self) -> float:
        """Residual as a share of the target's spread: how well one scale and shift explains the pair."""
        return self.residual / self.y_spread if self.y_spread > 0 else np.inf


def robust_fit(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float] | None:
    """(scale, shift) with ``scale * prediction + shift ~ target`` on the trusted pixels, or None
    when too few pixels are trusted, the prediction is flat there, or the scale comes out <= 0
    (disparity never flips sign between frames): the caller then keeps the previous fit."""
    details = robust_fit_details(prediction, target, mask)
    return None if details is None else (details.scale, details.shift)


def robust_fit_details(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> FitDetails | None:
    """`robust_fit` with the trusted pixels' statistics, which the global co-alignment keeps
    instead of the pixels themselves (`coalign`)."""
    valid = np.isfinite(prediction) & np.isfinite(target)
    if mask is not None:
        valid &= mask
    x = prediction[valid].astype(np.float64)
    y = target[valid].astype(np.float64)
    if x.size < MIN_FIT_PIXELS or np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())):
        return None
    # When most pixels share one value (a wall, the sky) the MAD is 0: residuals below this
    # fraction of the target's range are always trusted.
    low, high = np.percentile(y, [1.0, 99.0])
    floor = MIN_RESIDUAL * max(float(high - low), 1e-12)
    # Two starts: least squares on all pixels (right when most pixels share one value, where a
    # two-pixel line can settle on the flat majority), and the least-median line (right when a
    # large region is far off, e.g. a near occluder, and drags least squares). The second wins
    # only when its median residual over all pixels is clearly the smaller.
    keep, scale, shift = _trimmed(x, y, np.ones(x.size, dtype=bool), floor)
    other = _trimmed(x, y, _least_median_start(x, y, floor), floor)
    if _median_residual(x, y, other[1], other[2]) < 0.5 * _median_residual(x, y, scale, shift):
        keep, scale, shift = other
    if not (scale > 0 and np.isfinite(scale) and np.isfinite(shift)):
        return None
    kept_x, kept_y = x[keep], y[keep]
    return FitDetails(scale, shift, int(kept_x.size), kept_x.size / x.size, float(kept_x.mean()), float(kept_y.mean()),
                      float(np.std(scale * kept_x + shift - kept_y)), float(np.std(kept_y)))


def _trimmed(x: np.ndarray, y: np.ndarray, keep: np.ndarray, floor: float) -> tuple[np.ndarray, float, float]:
    """Least squares repeated on the pixels within `TRIM_SIGMAS` robust standard deviations, from
    the pixels `keep`; then the ratio-of-spreads scale on those. Returns (trusted pixels, scale, shift)."""
    for _ in range(ITERATIONS):
        scale, shift = fit_scale_shift(x, y, keep)
        residual = scale * x + shift - y
        # The spread about zero, not about the median: when most pixels share one value (a far
        # wall) and a first fit misses them, their common residual must not count as no spread.
        spread = float(np.median(np.abs(residual))) * MAD_TO_SIGMA
        trusted = np.abs(residual) <= max(TRIM_SIGMAS * spread, floor)
        if np.count_nonzero(trusted) < MIN_FIT_PIXELS or np.array_equal(trusted, keep):
            break
        if np.std(x[trusted]) < 0.01 * np.std(x):  # what is left is too flat to fix a scale
            break
        keep = trusted
    scale, shift = symmetric_fit(x[keep], y[keep], scale)
    return keep, scale, shift


def _median_residual(x: np.ndarray, y: np.ndarray, scale: float, shift: float) -> float:
    return float(np.median(np.abs(scale * x + shift - y)))


def _least_median_start(x: np.ndarray, y: np.ndarray, floor: float) -> np.ndarray:
    """The pixels to start the trimmed fit from: the inliers of the line through two pixels with
    the least median residual (of `SAMPLES` drawn, always the same). A least-squares start on all
    pixels can be dragged so far by a large moving region (a near occluder entering) that the
    trimming keeps the region and drops the scene."""
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, x.size, (2, SAMPLES))
    dx, dy = x[first] - x[second], y[first] - y[second]
    usable = (np.abs(dx) > 0.05 * np.std(x)) & (dy * dx > 0)
    if not usable.any():
        return np.ones(x.size, dtype=bool)
    scales = dy[usable] / dx[usable]
    shifts = y[first[usable]] - scales * x[first[usable]]
    step = max(1, x.size // 256)  # the medians are taken on a subsample
    residuals = np.abs(scales[:, None] * x[None, ::step] + shifts[:, None] - y[None, ::step])
    medians = np.median(residuals, axis=1)
    best = int(np.argmin(medians))
    residual = np.abs(scales[best] * x + shifts[best] - y)
    keep = residual <= max(TRIM_SIGMAS * MAD_TO_SIGMA * float(medians[best]), floor)
    return keep if np.count_nonzero(keep) >= MIN_FIT_PIXELS else np.ones(x.size, dtype=bool)


def symmetric_fit(x: np.ndarray, y: np.ndarray, least_squares_scale: float) -> tuple[float, float]:
    """Scale and shift by the ratio of spreads (reduced major axis) instead of least squares.

    Least squares of a noisy prediction on a reference shrinks the scale by the share of noise
    in the prediction's spread (regression dilution); chained over a clip, frame after frame, that
    shrinkage compounds and the depth range collapses. Both sides here are predictions of the
    same model with alike noise, for which the ratio of spreads is unbiased.
    """
    spread_x, spread_y = float(np.std(x)), float(np.std(y))
    if spread_x <= 0 or least_squares_scale <= 0:
        return least_squares_scale, float(np.mean(y) - least_squares_scale * np.mean(x))
    scale = spread_y / spread_x
    return scale, float(np.mean(y) - scale * np.mean(x))


def first_frame_fit(prediction: np.ndarray) -> tuple[float, float]:
    """The gauge of a clip: the first frame's 1st..99th percentiles map to 0..1 (a flat first
    frame is kept as it is)."""
    finite = prediction[np.isfinite(prediction)]
    if finite.size == 0:
        return 1.0, 0.0
    low, high = np.percentile(finite, [1.0, 99.0])
    if high - low <= 1e-9 * max(1.0, abs(float(high))):
        return 1.0, 0.0
    scale = 1.0 / float(high - low)
    return scale, -float(low) * scale
