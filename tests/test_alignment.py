"""The neutral scale-and-shift module: the one fit evaluation, the ensemble, video and geometry use."""

from __future__ import annotations

import numpy as np
import pytest

import primedepth.eval.alignment as eval_alignment
from primedepth import alignment
from primedepth.errors import InputError


def test_evaluation_re_exports_the_one_fit():
    for name in ("fit_scale_shift", "nearest_downsample", "align_disparity", "align_depth", "check_space", "SPACES"):
        assert getattr(eval_alignment, name) is getattr(alignment, name)


def test_weighted_fit_recovers_the_line_and_ignores_zero_weights():
    rng = np.random.default_rng(1)
    pred = rng.uniform(0.1, 2.0, 500)
    target = 3.0 * pred + 0.25
    weights = rng.uniform(0.5, 2.0, 500)
    target[:50] += 100.0  # outliers, weighted out below
    weights[:50] = 0.0
    assert alignment.weighted_scale_shift(pred, target, weights) == pytest.approx((3.0, 0.25))


def test_weighted_fit_with_unit_weights_is_the_protocol_fit():
    rng = np.random.default_rng(2)
    pred = rng.uniform(0, 1, (30, 40))
    target = 1.7 * pred - 0.4 + 0.05 * rng.standard_normal(pred.shape)
    mask = rng.uniform(0, 1, pred.shape) > 0.2
    weighted = alignment.weighted_scale_shift(pred.ravel(), target.ravel(), mask.ravel().astype(float))
    assert weighted == pytest.approx(alignment.fit_scale_shift(pred, target, mask), rel=1e-9)


@pytest.mark.parametrize("pred, weights", [([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]), ([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])])
def test_weighted_fit_is_nan_when_degenerate(pred, weights):
    scale, shift = alignment.weighted_scale_shift(np.array(pred), np.array([1.0, 2.0, 3.0]), np.array(weights))
    assert np.isnan(scale) and np.isnan(shift)


def test_align_in_space_picks_the_space_and_rejects_others():
    gt = np.array([[1.0, 2.0, 4.0, 5.0]])
    mask = np.ones_like(gt, bool)
    depth, scale, shift = alignment.align_in_space(2.0 * gt + 1.0, gt, mask, "depth")
    np.testing.assert_allclose(depth, gt)
    assert (scale, shift) == pytest.approx((0.5, -0.5))
    depth, scale, _ = alignment.align_in_space(4.0 / gt, gt, mask, "disparity")
    np.testing.assert_allclose(depth, gt)
    assert scale == pytest.approx(0.25)
    with pytest.raises(InputError, match="unknown alignment space 'log'"):
        alignment.align_in_space(gt, gt, mask, "log")


def test_protocol_alignment_clips_and_keeps_the_fit():
    gt = np.array([[1.0, 2.0, 4.0, 8.0]])
    mask = np.array([[True, True, True, False]])
    result = eval_alignment.align_with_fit(3.0 / gt, gt, mask, "disparity", 1e-3, 5.0)
    assert (result.scale, result.shift) == pytest.approx((1 / 3, 0.0), abs=1e-12)
    np.testing.assert_allclose(result.depth, [[1.0, 2.0, 4.0, 5.0]])
    depth, scale, shift = result  # still unpacks as the (depth, scale, shift) it was
    np.testing.assert_array_equal(eval_alignment.align(3.0 / gt, gt, mask, "disparity", 1e-3, 5.0), depth)
