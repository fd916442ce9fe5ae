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
    depth = align_disparity(pred, gt, np.ones_like(gt, bool))
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
    array = np.arange(shape[0] * shape[1], dtype=np.float64).reshape(shape)
    factor = min(max_res / shape[0], max_res / shape[1])
    reference = torch.nn.functional.interpolate(
        torch.as_tensor(array)[None, None], scale_factor=factor, mode="nearest"
    )[0, 0].numpy()
    np.testing.assert_array_equal(nearest_downsample(array, max_res), reference)
    assert max(nearest_downsample(array, max_res).shape) <= max_res


def test_downsample_is_a_no_op_when_small_and_fit_applies_at_full_res():
    array = np.ones((10, 12))
    assert nearest_downsample(array, 12) is array
    rng = np.random.default_rng(1)
    gt = rng.uniform(1, 5, (64, 96))
    pred = 1.0 / gt * 0.3 + 0.1
    mask = np.ones_like(gt, bool)
    depth = align(pred, gt, mask, "disparity", 1e-5, np.inf, max_res=16)
    np.testing.assert_allclose(depth, gt, rtol=1e-9)
    with pytest.raises(InputError, match="positive"):
        nearest_downsample(array, 0)


def test_too_few_pixels_is_a_clear_error():
    with pytest.raises(InputError, match="at least 2 valid pixels"):
        fit_scale_shift(np.ones((2, 2)), np.ones((2, 2)), np.eye(2, dtype=bool) & False)
