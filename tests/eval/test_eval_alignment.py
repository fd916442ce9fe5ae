"""Least-squares alignment in depth and disparity space, clipping, and the downsampled fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from primedepth.errors import InputError
from primedepth.eval import align, fit_scale_shift, nearest_downsample
from primedepth.eval.alignment import ALIGNED_DISPARITY_MIN, align_disparity, clip_to_range


def test_fit_recovers_scale_and_shift_on_the_mask_only():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 1, (20, 30))
    target = 2.5 * pred - 1.0
    mask = np.ones_like(pred, bool)
    target[0, 0], mask[0, 0] = 1e6, False  # outlier outside the mask
    scale, shift = fit_scale_shift(pred, target, mask)
    assert scale == pytest.approx(2.5) and shift == pytest.approx(-1.0)


def test_disparity_fit_ignores_non_positive_prediction_and_truth():
    gt = np.array([[1.0, 2.0, 4.0, 0.0, 5.0]])
    pred = 2.0 / np.where(gt > 0, gt, 1.0) + 1.0
    pred[0, 4] = -3.0  # non-positive prediction: not fitted
    depth, scale, shift = align_disparity(pred, gt, np.ones_like(gt, bool))
    assert (scale, shift) == pytest.approx((0.5, -0.5))  # pred = 2 / gt + 1
    np.testing.assert_allclose(depth[0, :3], gt[0, :3])
    # pred = -3 maps to disparity (-3 - 1) / 2 < 0, clipped to 1e-3, i.e. 1000 m
    assert depth[0, 4] == pytest.approx(1.0 / ALIGNED_DISPARITY_MIN)


def test_clip_order_range_then_floor():
    depth = np.array([-1.0, 0.0, 5.0, 2000.0])
    np.testing.assert_array_equal(clip_to_range(depth, 0.6, 350.0), [0.6, 0.6, 5.0, 350.0])
    np.testing.assert_array_equal(clip_to_range(depth, 0.0, np.inf), [1e-6, 1e-6, 5.0, 2000.0])


def test_align_clips_to_dataset_range_in_both_spaces():
    gt = np.array([[1.0, 2.0, 3.0, 4.0]])
    mask = np.array([[True, True, True, False]])
    pred = gt.copy()
    pred[0, 3] = 40.0  # unmasked pixel far away
    assert align(pred, gt, mask, "depth", 1e-3, 10.0)[0, 3] == 10.0
    disp = 1.0 / gt
    disp[0, 3] = -5.0
    assert align(disp, gt, mask, "disparity", 1e-3, 10.0)[0, 3] == 10.0
    with pytest.raises(InputError, match="unknown alignment space"):
        align(pred, gt, mask, "log", 0, 1)


@pytest.mark.parametrize("shape, max_res", [((4032, 6048), 1024), ((100, 37), 20), ((375, 1242), 300), ((7, 9), 5)])
def test_nearest_downsample_matches_torch_nearest(shape, max_res):
    """Default ("width"): a 3-D tensor through torch's nearest Upsample, as the reference does: rows
    kept, columns thinned. "both": the 4-D behaviour, both sides thinned."""
    array = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
    factor = min(max_res / shape[0], max_res / shape[1])
    width_only = torch.nn.Upsample(scale_factor=factor, mode="nearest")(torch.as_tensor(array)[None])[0].numpy()
    both = torch.nn.functional.interpolate(torch.as_tensor(array)[None, None], scale_factor=factor, mode="nearest")[0, 0]
    np.testing.assert_array_equal(nearest_downsample(array, max_res), width_only)
    np.testing.assert_array_equal(nearest_downsample(array, max_res, "both"), both.numpy())
    with pytest.raises(InputError, match="unknown downsample mode"):
        nearest_downsample(array, max_res, "height")


# Scale and shift computed by the reference evaluation's own `align_depth_least_square` (Marigold,
# src/util/alignment.py @ b1dffaa, run outside this project on these generated arrays, float32).
REFERENCE_FITS = {
    "eth3d_like": ((62, 93), 32, (-6.5901947021484375, 7.409012317657471), (0.9741951823234558, 0.007315166760236025)),
    "wide": ((40, 130), 50, (-6.896522045135498, 7.419710159301758), (0.9722785949707031, 0.008587928488850594)),
    "tall": ((120, 45), 60, (-6.051357269287109, 7.221441745758057), (0.9779629707336426, 0.004956782329827547)),
}


def _reference_arrays(shape):
    rng = np.random.default_rng(sum(shape))
    gt = rng.uniform(0.5, 10.0, shape).astype(np.float32)
    valid = rng.uniform(0, 1, shape) > 0.3
    wave = 0.02 * np.sin(np.arange(shape[1]) / 3.0)[None, :]
    pred = (1.0 / gt + 0.05 * rng.standard_normal(shape) + wave).astype(np.float32)
    return gt, pred, valid


@pytest.mark.parametrize("name", sorted(REFERENCE_FITS))
def test_downsampled_fits_equal_the_reference_evaluation(name):
    shape, max_res, depth_fit, disparity_fit = REFERENCE_FITS[name]
    gt, pred, valid = _reference_arrays(shape)
    assert fit_scale_shift(pred, gt, valid, max_res) == pytest.approx(depth_fit, rel=2e-4)
    fit_mask = valid & (gt > 0) & (pred > 0)
    disparity = fit_scale_shift(pred, 1.0 / gt, fit_mask, max_res)
    assert disparity == pytest.approx(disparity_fit, rel=2e-4, abs=1e-6)
    # the two-sided variant fits on other pixels, hence another model
    assert fit_scale_shift(pred, gt, valid, max_res, "both") != pytest.approx(depth_fit, rel=2e-4)
