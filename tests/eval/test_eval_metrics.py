"""Metrics by hand, per-image averaging, and exact affine predictions through evaluate_prediction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.eval import METRIC_NAMES, average_metrics, compute_metrics, evaluate_prediction

LN2 = math.log(2.0)


def _metrics(pred, gt):
    pred, gt = np.array([pred], float), np.array([gt], float)
    return compute_metrics(pred, gt, np.ones_like(gt, dtype=bool))


def test_each_metric_by_hand():
    m = _metrics([1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    assert m["abs_rel"] == pytest.approx(2 / 3)
    assert m["sq_rel"] == pytest.approx(1.0)  # (0 + 1/1 + 4/2) / 3
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert m["rmse_log"] == pytest.approx(LN2 * math.sqrt(2 / 3))
    assert m["log10"] == pytest.approx(2 / 3 * math.log10(2.0))
    assert m["i_rmse"] == pytest.approx(math.sqrt((0.25 + 0.0625) / 3))
    # d = [0, ln2, ln2]: variance = 2/3 ln2^2 - (2/3 ln2)^2 = 2/9 ln2^2
    assert m["silog"] == pytest.approx(100 * math.sqrt(2 / 9) * LN2)
    assert list(m) == list(METRIC_NAMES)


def test_delta_thresholds_both_directions():
    # ratios 1, 1.2, 1.5, 1.9, 2.5, each way round: thresholds 1.25, 1.5625, 1.953125
    gt = [1.0] * 10
    pred = [1.0, 1.2, 1.5, 1.9, 2.5, 1.0, 1 / 1.2, 1 / 1.5, 1 / 1.9, 1 / 2.5]
    m = _metrics(pred, gt)
    assert m["delta1"] == pytest.approx(4 / 10)
    assert m["delta2"] == pytest.approx(6 / 10)
    assert m["delta3"] == pytest.approx(8 / 10)


def test_silog_is_zero_for_a_pure_scale():
    m = _metrics([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert m["silog"] == pytest.approx(0.0, abs=1e-9)
    assert m["rmse_log"] == pytest.approx(LN2)


def test_mask_excludes_pixels():
    pred = np.array([[1.0, 100.0]])
    gt = np.array([[1.0, 0.0]])
    m = compute_metrics(pred, gt, np.array([[True, False]]))
    assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0


def test_empty_mask_gives_nan_and_is_left_out_of_the_mean():
    empty = compute_metrics(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2), bool))
    assert all(math.isnan(v) for v in empty.values())
    good = _metrics([1.0], [1.0])
    assert average_metrics([good, empty])["abs_rel"] == 0.0


def test_average_is_over_images_not_pixels():
    big = compute_metrics(np.ones((10, 10)), np.ones((10, 10)), np.ones((10, 10), bool))
    small = _metrics([2.0], [1.0])  # abs_rel 1 on a single pixel
    assert average_metrics([big, small])["abs_rel"] == pytest.approx(0.5)


def _scene(seed=0, shape=(30, 40)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 8.0, shape)
    gt[:3] = 0.0  # invalid rows
    return gt


def test_exact_affine_disparity_scores_perfectly():
    gt = _scene()
    with np.errstate(divide="ignore"):
        pred = np.where(gt > 0, 0.37 / gt + 2.0, 5.0)
    metrics, aligned = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10, space="disparity")
    assert metrics["abs_rel"] < 1e-6 and metrics["delta1"] == 1.0
    valid = gt > 0
    np.testing.assert_allclose(aligned[valid], gt[valid], rtol=1e-5)
    assert aligned.dtype == np.float32 and aligned.shape == gt.shape


def test_exact_affine_depth_scores_perfectly_and_wrong_space_does_not():
    gt = _scene(1)
    pred = 4.0 * gt - 1.5
    metrics, _ = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10, space="depth")
    assert metrics["abs_rel"] < 1e-6 and metrics["delta1"] == 1.0
    wrong, _ = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10, space="disparity")
    assert wrong["abs_rel"] > 0.05


def test_given_mask_replaces_the_range_test_and_crop_applies():
    gt = np.full((480, 640), 2.0)
    pred = np.full((480, 640), 0.5)
    pred[::2, ::3] = 0.25  # two levels so the fit is determined
    gt[::2, ::3] = 4.0
    pred[44, :] = 9.0  # outside the Eigen crop: ignored
    metrics, _ = evaluate_prediction(pred, gt, space="disparity", crop="nyu_eigen")
    assert metrics["abs_rel"] < 1e-9
    pred[45, 100] = 9.0  # inside: scored
    metrics, _ = evaluate_prediction(pred, gt, space="disparity", crop="nyu_eigen")
    assert metrics["abs_rel"] > 1e-4


def test_given_mask_replaces_the_range_test():
    gt = np.array([[1.0, 2.0, 4.0, 50.0]])
    pred = 1.0 / gt  # exact disparity, but 50 m is beyond max_depth
    by_range, _ = evaluate_prediction(pred, gt, max_depth=10.0)
    assert by_range["abs_rel"] < 1e-9  # the 50 m pixel is not scored
    by_mask, aligned = evaluate_prediction(pred, gt, valid_mask=np.ones_like(gt, bool), max_depth=10.0)
    assert by_mask["abs_rel"] == pytest.approx((50 - 10) / 50 / 4, rel=1e-6)  # scored, clipped
    assert aligned[0, 3] == 10.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pred": np.ones((4, 5))}, "differs from ground truth"),
        ({"space": "inverse"}, "unknown alignment space"),
        ({"pred": np.full((4, 4), np.nan)}, "NaN"),
        ({"crop": "kitti_foo"}, "unknown crop"),
        ({"min_depth": 5.0, "max_depth": 1.0}, "must be below"),
    ],
)
def test_bad_input_errors(kwargs, message):
    args = {"pred": np.ones((4, 4)), "gt": np.ones((4, 4))}
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        evaluate_prediction(**args)


def test_dataset_name_brings_the_protocol_settings_and_the_fit_is_reported():
    """`dataset="nyu"`: NYU's range and Eigen crop; the result has the fitted scale and shift."""
    rng = np.random.default_rng(3)
    gt = rng.uniform(0.5, 9.0, (480, 640))
    gt[0:40, :] = 20.0  # beyond NYU's 10 m and outside the Eigen crop
    pred = 2.0 / gt + 0.3
    result = evaluate_prediction(pred, gt, dataset="nyu")
    assert result.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert (result.scale, result.shift) == pytest.approx((0.5, -0.15))
    assert "Marigold" in result.protocol and result.space == "disparity"
    by_hand = evaluate_prediction(pred, gt, min_depth=1e-3, max_depth=10.0, crop="nyu_eigen")
    assert by_hand.metrics == result.metrics
    metrics, aligned = result  # the two-value form of earlier releases still unpacks
    assert aligned.shape == gt.shape and metrics is result.metrics


def test_full_size_kitti_maps_get_the_benchmark_crop():
    rng = np.random.default_rng(4)
    gt = rng.uniform(1.0, 70.0, (375, 1242))
    pred = 1.0 / gt
    pred[:23, :] = 99.0  # rows above the KB crop (375 - 352 = 23) are not evaluated
    result = evaluate_prediction(pred, gt, dataset="kitti")
    assert result.aligned.shape == (352, 1216) and result.metrics["delta1"] == 1.0
    with pytest.raises(InputError, match="unknown dataset"):
        evaluate_prediction(pred, gt, dataset="nyu2")
