"""Metric depth from an affine-invariant prediction and a few known depths.

PrimeDepth predicts inverse depth up to an unknown scale and shift, so the fit is done in
that space: ``1 / d_known ~ s * pred + t``. Known depths are often dirty (LiDAR returns from
glass, SfM points on the wrong surface, a typo in a tape measurement), so the fit is robust:

- ``"ransac"`` (default): MSAC over minimal pairs of points, scored on the relative depth
  error ``|(s * pred + t) * d - 1|`` truncated at `inlier_threshold`, followed by a weighted
  least-squares refit on the inliers, repeated until the inlier set is stable;
- ``"huber"``: iteratively reweighted least squares with Huber weights on the same relative
  residual (scale from the median absolute deviation).

RANSAC is the default because it stays unbiased when outliers are one-sided (all too near or
all too far, as with glass or sky) and when there are many. Measured by
``benchmarks/geometry_timing.py`` (500 known depths, prediction noise 0.2% of its range): at
20% one-sided outliers RANSAC's scale is off by 0.05% and Huber's by 0.25% (shift 0.05% vs
0.54%); at 40% one-sided outliers RANSAC is still within 0.07% while Huber is off by 39%.
Without outliers both give the least-squares answer. Both take 0.2-0.35 s on a 12 MP image,
nearly all of it applying the fit to every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..alignment import weighted_scale_shift
from ..errors import InputError
from .sparse import SparseDepth, sparse_from_map

METHODS = ("ransac", "huber")
DEFAULT_INLIER_THRESHOLD = 0.1  # relative depth error: the model's own error is a few percent
DEFAULT_MIN_DEPTH = 0.01  # metres: depths are clamped from below here
DEFAULT_MAX_DEPTH = 1000.0  # metres: non-positive or tiny aligned disparity becomes this depth
DEFAULT_MAX_INVALID_FRACTION = 0.25  # refuse when the fit sends more of the image past infinity
RANSAC_HYPOTHESES = 256
RANSAC_SCORING_POINTS = 5000
REFIT_ROUNDS = 5
HUBER_ROUNDS = 30
HUBER_K = 1.345  # the usual 95%-efficiency tuning constant, in units of the robust sigma


@dataclass
class AlignmentResult:
    """A fitted metric depth map and how well the known depths agree with it."""

    depth_m: np.ndarray  # (H, W) float32 metres, clamped to [min_depth, max_depth]
    valid: np.ndarray  # (H, W) bool: finite prediction with positive aligned disparity
    scale: float
    shift: float
    method: str
    points: int
    inliers: int
    residual_median_m: float  # over inliers, |aligned depth - known depth|
    residual_p90_m: float
    relative_median: float  # over inliers, |aligned / known - 1|
    nonpositive_pixels: int
    clamped_near_pixels: int
    warnings: list[str] = field(default_factory=list)

    def report(self) -> dict[str, object]:
        """The fit's numbers as plain values, for the job report and PNG text chunks."""
        return {
            "scale": self.scale, "shift": self.shift, "method": self.method,
            "points": self.points, "inliers": self.inliers,
            "residual_median_m": self.residual_median_m, "residual_p90_m": self.residual_p90_m,
            "relative_median": self.relative_median, "nonpositive_pixels": self.nonpositive_pixels,
            "clamped_near_pixels": self.clamped_near_pixels, "warnings": list(self.warnings),
        }


def _relative_residual(scale: float, shift: float, p: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``|(s * p + t) * d - 1|``: about the relative depth error, the same at every distance."""
    return np.abs((scale * p + shift) * depth - 1.0)


def _sample_hypotheses(p: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(s, t) of lines through random pairs with distinct predictions; positive scales only."""
    first = rng.integers(0, p.size, RANSAC_HYPOTHESES)
    second = rng.integers(0, p.size, RANSAC_HYPOTHESES)
    dp = p[first] - p[second]
    usable = np.abs(dp) > 1e-12 * max(np.abs(p).max(), 1e-30)
    scale = (z[first] - z[second])[usable] / dp[usable]
    shift = z[first][usable] - scale * p[first][usable]
    keep = scale > 0
    return np.stack([scale[keep], shift[keep]], axis=1)


def _ransac(p: np.ndarray, z: np.ndarray, depth: np.ndarray, w: np.ndarray,
            threshold: float, rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """MSAC hypothesis search, then least-squares refits on the inliers until they settle."""
    models = _sample_hypotheses(p, z, rng)
    if models.size == 0:
        raise InputError(_NO_POSITIVE_FIT)
    pick = rng.choice(p.size, RANSAC_SCORING_POINTS, replace=False) if p.size > RANSAC_SCORING_POINTS else slice(None)
    residual = np.abs((models[:, :1] * p[pick] + models[:, 1:]) * depth[pick] - 1.0)
    cost = (w[pick] * np.minimum(residual, threshold) ** 2).sum(axis=1)
    scale, shift = models[int(np.argmin(cost))]
    inliers = _relative_residual(scale, shift, p, depth) < threshold
    for _ in range(REFIT_ROUNDS):
        new_scale, new_shift = weighted_scale_shift(p[inliers], z[inliers], w[inliers])
        if not np.isfinite(new_scale) or new_scale <= 0:
            break
        scale, shift = new_scale, new_shift
        refreshed = _relative_residual(scale, shift, p, depth) < threshold
        if refreshed.sum() < 2 or np.array_equal(refreshed, inliers):
            inliers = refreshed if refreshed.sum() >= 2 else inliers
            break
        inliers = refreshed
    return float(scale), float(shift), inliers


def _huber(p: np.ndarray, z: np.ndarray, depth: np.ndarray, w: np.ndarray,
           threshold: float) -> tuple[float, float, np.ndarray]:
    """IRLS with Huber weights on the relative residual; inliers are those under `threshold`."""
    scale, shift = weighted_scale_shift(p, z, w)
    for _ in range(HUBER_ROUNDS):
        signed = (scale * p + shift) * depth - 1.0
        sigma = 1.4826 * np.median(np.abs(signed - np.median(signed))) + 1e-12
        robust = np.minimum(1.0, HUBER_K * sigma / np.maximum(np.abs(signed), 1e-300))
        # the residual is d times the disparity residual: weight d^2 keeps it relative
        new_scale, new_shift = weighted_scale_shift(p, z, w * robust * depth * depth)
        if not np.isfinite(new_scale):
            break
        done = abs(new_scale - scale) <= 1e-10 * abs(scale) and abs(new_shift - shift) <= 1e-10 * abs(scale)
        scale, shift = new_scale, new_shift
        if done:
            break
    if not scale > 0:
        raise InputError(_NO_POSITIVE_FIT)
    return float(scale), float(shift), _relative_residual(scale, shift, p, depth) < threshold


_NO_POSITIVE_FIT = (
    "no fit with a positive scale: the known depths get farther where the prediction says "
    "closer; check that the sparse depth belongs to this image, is in metres, and is not flipped"
)


def _fit_inputs(prediction: np.ndarray, sparse: SparseDepth,
                weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prediction, known depth and weight at the usable known points, with the refusals."""
    if tuple(sparse.shape) != prediction.shape:
        raise InputError(f"{sparse.source}: made for a {sparse.shape[1]}x{sparse.shape[0]} image, "
                         f"the prediction is {prediction.shape[1]}x{prediction.shape[0]}")
    p = prediction[sparse.y, sparse.x].astype(np.float64)
    depth = np.asarray(sparse.depth_m, dtype=np.float64)
    w = np.ones_like(depth) if sparse.weight is None else np.asarray(sparse.weight, np.float64)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.size != depth.size:
            raise InputError(f"{weights.size} weights for {depth.size} known depths")
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise InputError("weights must be finite and not negative")
        w = w * weights
    usable = np.isfinite(p) & np.isfinite(depth) & (depth > 0) & (w > 0)
    p, depth, w = p[usable], depth[usable], w[usable]
    pixels = sparse.y[usable].astype(np.int64) * prediction.shape[1] + sparse.x[usable]
    distinct = min(pixels.size, 1 if pixels.size and (pixels == pixels[0]).all() else 2)
    if distinct < 2:
        raise InputError(f"{sparse.source}: alignment needs known depths at 2 or more distinct pixels "
                         f"with a valid prediction, got {distinct}")
    if np.ptp(depth) <= 1e-9 * depth.max():
        raise InputError(f"{sparse.source}: all {depth.size} known depths are equal ({depth[0]:.4g} m), "
                         "so scale and shift cannot both be fitted; add points at other distances")
    if np.ptp(p) <= 1e-12 * max(np.abs(p).max(), 1e-30):
        raise InputError(f"{sparse.source}: the prediction has the same value at all {p.size} known "
                         "points, so scale and shift cannot both be fitted")
    return p, depth, w


def _metric_map(prediction: np.ndarray, scale: float, shift: float, min_depth: float,
                max_depth: float, max_invalid_fraction: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Aligned depth, valid mask and the counts of pixels clamped far and near, or a refusal."""
    disparity = scale * prediction.astype(np.float64) + shift
    finite = np.isfinite(disparity)
    valid = finite & (disparity > 0)
    nonpositive = int((finite & ~valid).sum())
    if nonpositive > max_invalid_fraction * prediction.size:
        raise InputError(
            f"the fit (scale {scale:.4g}, shift {shift:.4g}) gives non-positive disparity, i.e. "
            f"depth at or beyond infinity, at {nonpositive} of {prediction.size} pixels "
            f"({nonpositive / prediction.size:.1%}, more than the allowed {max_invalid_fraction:.0%}); "
            "the known depths probably cover too little of the scene or contain many outliers"
        )
    depth = np.full(prediction.shape, max_depth, dtype=np.float64)
    np.divide(1.0, disparity, out=depth, where=valid)
    near = int((valid & (depth < min_depth)).sum())
    np.clip(depth, min_depth, max_depth, out=depth)
    return depth.astype(np.float32), valid, nonpositive, near


def align_to_sparse(
    prediction: np.ndarray,
    sparse: SparseDepth | np.ndarray,
    *,
    weights: np.ndarray | None = None,
    method: str = "ransac",
    inlier_threshold: float = DEFAULT_INLIER_THRESHOLD,
    min_depth: float = DEFAULT_MIN_DEPTH,
    max_depth: float = DEFAULT_MAX_DEPTH,
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION,
    seed: int = 0,
) -> AlignmentResult:
    """Fit ``1 / d ~ s * pred + t`` to the known depths robustly and return metric depth.

    `sparse`: a `SparseDepth`, or a depth map in metres of the prediction's size with 0/NaN
    for unknown. `weights` (one per known point) multiply the points' own weights.
    `inlier_threshold` is the relative depth error above which a point is an outlier.
    Aligned disparity that is non-positive (depth at or past infinity) is set to `max_depth`
    (and marked invalid); more than `max_invalid_fraction` of the image so is refused. Depths
    below `min_depth` are raised to it. Raises `InputError` with the reason for unusable input.
    """
    prediction = np.asarray(prediction)
    if prediction.ndim != 2:
        raise InputError(f"the prediction must be one (H, W) map, got shape {prediction.shape}")
    _check_settings(method, inlier_threshold, min_depth, max_depth, max_invalid_fraction)
    if not isinstance(sparse, SparseDepth):
        sparse = sparse_from_map(sparse, prediction.shape)
    p, depth, w = _fit_inputs(prediction, sparse, weights)
    if method == "ransac":
        scale, shift, inliers = _ransac(p, 1.0 / depth, depth, w, inlier_threshold, np.random.default_rng(seed))
    else:
        scale, shift, inliers = _huber(p, 1.0 / depth, depth, w, inlier_threshold)
    depth_m, valid, nonpositive, near = _metric_map(prediction, scale, shift, min_depth, max_depth,
                                                    max_invalid_fraction)
    return _result(depth_m, valid, scale, shift, method, p, depth, inliers, nonpositive, near, sparse)


def _check_settings(method: str, threshold: float, min_depth: float, max_depth: float, fraction: float) -> None:
    """Refuse settings that make no sense, before any work."""
    if method not in METHODS:
        raise InputError(f"unknown alignment method {method!r}; use one of {', '.join(METHODS)}")
    if not threshold > 0:
        raise InputError(f"the inlier threshold must be positive, got {threshold}")
    if not 0 < min_depth < max_depth:
        raise InputError(f"need 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
    if not 0 <= fraction <= 1:
        raise InputError(f"the allowed invalid fraction must be in [0, 1], got {fraction}")


def _result(depth_m: np.ndarray, valid: np.ndarray, scale: float, shift: float, method: str,
            p: np.ndarray, depth: np.ndarray, inliers: np.ndarray, nonpositive: int, near: int,
            sparse: SparseDepth) -> AlignmentResult:
    """Residuals in metres over the inliers, plus the warnings worth telling the user."""
    disparity = scale * p[inliers] + shift
    aligned = 1.0 / np.maximum(disparity, 1e-300)
    error = np.abs(aligned - depth[inliers])
    warnings = list(sparse.notes)
    if inliers.sum() < 0.5 * p.size:
        warnings.append(f"only {int(inliers.sum())} of {p.size} known depths agree with the fit "
                        "(inliers): check the sparse depth")
    if nonpositive:
        warnings.append(f"{nonpositive} pixels have non-positive aligned disparity (beyond infinity) "
                        f"and were set to the maximum depth")
    if near:
        warnings.append(f"{near} pixels were nearer than the minimum depth and were clamped to it")
    return AlignmentResult(
        depth_m=depth_m, valid=valid, scale=scale, shift=shift, method=method, points=int(p.size),
        inliers=int(inliers.sum()), residual_median_m=float(np.median(error)),
        residual_p90_m=float(np.percentile(error, 90)),
        relative_median=float(np.median(error / depth[inliers])), nonpositive_pixels=nonpositive,
        clamped_near_pixels=near, warnings=warnings,
    )


def pseudo_depth(prediction: np.ndarray, near: float = 1.0, far: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Depth of arbitrary scale for an unaligned prediction, and its valid mask.

    The prediction is read as disparity up to scale and shift and mapped linearly so that
    its largest finite value (the nearest pixel) becomes depth `near` and its smallest (the
    farthest valid pixel) depth `far`: the far/near ratio (10 by default) is an assumption,
    and the scale is arbitrary, which every file written from it says.
    """
    if not 0 < near < far:
        raise InputError(f"pseudo-depth needs 0 < near < far, got {near} and {far}")
    prediction = np.asarray(prediction, dtype=np.float64)
    valid = np.isfinite(prediction)
    if not valid.any():
        raise InputError("the prediction has no finite values")
    low, high = prediction[valid].min(), prediction[valid].max()
    span = high - low if high > low else 1.0
    unit = np.where(valid, (prediction - low) / span, 0.0)
    disparity = 1.0 / far + unit * (1.0 / near - 1.0 / far)
    return (1.0 / disparity).astype(np.float32), valid
