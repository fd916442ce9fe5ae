"""Robust scale-and-shift fit of one frame's prediction to a reference, in disparity space.

Plain least squares (`primedepth.eval.alignment.fit_scale_shift`, the package's one fit) is
repeated on the pixels whose residual stays within three robust standard deviations (median
absolute residual), so that pixels where the scene really changed -- a moving object, a wrong
correspondence, a surface the camera approaches -- do not pull the fit. The final scale on
those pixels is the ratio of spreads (`symmetric_fit`), which does not shrink under noise.
"""

from __future__ import annotations

import numpy as np

from ..eval.alignment import fit_scale_shift

MIN_FIT_PIXELS = 32  # fewer trusted pixels than this: the fit is not trusted either
TRIM_SIGMAS = 3.0
MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation
ITERATIONS = 6
MIN_RESIDUAL = 0.005


def robust_fit(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float] | None:
    """(scale, shift) with ``scale * prediction + shift ~ target`` on the trusted pixels, or None
    when too few pixels are trusted, the prediction is flat there, or the scale comes out <= 0
    (disparity never flips sign between frames): the caller then keeps the previous fit."""
    valid = np.isfinite(prediction) & np.isfinite(target)
    if mask is not None:
        valid &= mask
    x = prediction[valid].astype(np.float64)
    y = target[valid].astype(np.float64)
    if x.size < MIN_FIT_PIXELS or np.ptp(x) <= 1e-9 * max(1.0, float(np.abs(x).max())):
        return None
    keep = np.ones(x.size, dtype=bool)
    # When most pixels share one value (a wall, the sky) the MAD is 0: residuals below this
    # fraction of the target's range are always trusted.
    low, high = np.percentile(y, [1.0, 99.0])
    floor = MIN_RESIDUAL * max(float(high - low), 1e-12)
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
    return (scale, shift) if scale > 0 and np.isfinite(scale) and np.isfinite(shift) else None


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
