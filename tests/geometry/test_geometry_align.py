"""Robust metric alignment (primedepth.geometry.align) on scenes of known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.geometry import SparseDepth, align_to_sparse, pseudo_depth

from .scenes import SCENES, affine_prediction, known_depths, render

TRUE_SCALE, TRUE_SHIFT = 0.4, 0.12


@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("one_sided", [False, True])
def test_ransac_recovers_metric_depth_despite_20_percent_outliers(scene, one_sided):
    depth, _ = render(SCENES[scene])
    prediction = affine_prediction(depth, TRUE_SCALE, TRUE_SHIFT, noise=0.002)
    result = align_to_sparse(prediction, known_depths(depth, 400, 0.2, one_sided))
    relative_error = np.abs(result.depth_m - depth) / depth
    assert np.median(relative_error) < 0.01
    assert result.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    assert result.shift == pytest.approx(TRUE_SHIFT, rel=0.01)
    assert 0.7 * 400 < result.inliers < 0.9 * 400  # the 20% outliers are found
    assert result.residual_median_m < 0.01 * np.median(depth)
    assert result.residual_p90_m >= result.residual_median_m
    assert result.valid.all() and result.nonpositive_pixels == 0


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_huber_also_meets_the_bar_on_symmetric_outliers(scene):
    depth, _ = render(SCENES[scene])
    prediction = affine_prediction(depth, TRUE_SCALE, TRUE_SHIFT, noise=0.002)
    result = align_to_sparse(prediction, known_depths(depth, 400, 0.2, one_sided=False), method="huber")
    assert np.median(np.abs(result.depth_m - depth) / depth) < 0.01
    assert result.scale == pytest.approx(TRUE_SCALE, rel=0.01)
    assert result.shift == pytest.approx(TRUE_SHIFT, rel=0.01)


def test_exact_data_gives_the_exact_fit_and_a_dense_map_is_accepted():
    depth, _ = render(SCENES["boxes"])
    prediction = affine_prediction(depth, TRUE_SCALE, TRUE_SHIFT)
    sparse_map = np.zeros_like(depth)
    sparse_map[::7, ::9] = depth[::7, ::9]
    sparse_map[3, 3] = np.nan  # NaN = unknown
    result = align_to_sparse(prediction, sparse_map)
    assert result.scale == pytest.approx(TRUE_SCALE, rel=1e-5)
    assert result.shift == pytest.approx(TRUE_SHIFT, rel=1e-5)
    np.testing.assert_allclose(result.depth_m, depth, rtol=1e-4)
    assert result.inliers == result.points


def test_weights_switch_points_off():
    depth, _ = render(SCENES["tilted_plane"])
    prediction = affine_prediction(depth, TRUE_SCALE, TRUE_SHIFT)
    sparse = known_depths(depth, 50, 0.0, False)
    sparse.depth_m = depth[sparse.y, sparse.x].copy()
    sparse.depth_m[:10] *= 2.0
    weights = np.ones(50)
    weights[:10] = 0.0
    result = align_to_sparse(prediction, sparse, weights=weights, method="huber")
    assert result.scale == pytest.approx(TRUE_SCALE, rel=1e-4)
    assert result.points == 40


def _points(xs, ys, depths, shape=(10, 12)) -> SparseDepth:
    return SparseDepth(x=np.array(xs), y=np.array(ys), depth_m=np.array(depths, dtype=float),
                       shape=shape, source="pts.csv")


def test_refuses_fewer_than_two_distinct_points():
    prediction = np.linspace(0.0, 1.0, 120).reshape(10, 12)
    with pytest.raises(InputError, match="2 or more distinct pixels.*got 1"):
        align_to_sparse(prediction, _points([3, 3], [2, 2], [1.0, 2.0]))


def test_refuses_all_points_at_one_depth():
    prediction = np.linspace(0.0, 1.0, 120).reshape(10, 12)
    with pytest.raises(InputError, match="all 3 known depths are equal"):
        align_to_sparse(prediction, _points([1, 5, 9], [1, 4, 8], [2.0, 2.0, 2.0]))


def test_refuses_a_flat_prediction_at_the_points():
    prediction = np.ones((10, 12))
    with pytest.raises(InputError, match="same value at all 3 known points"):
        align_to_sparse(prediction, _points([1, 5, 9], [1, 4, 8], [1.0, 2.0, 3.0]))


def test_refuses_a_reversed_ordering():
    prediction = np.linspace(0.0, 1.0, 120).reshape(10, 12)
    # larger prediction = closer, but these depths grow with the prediction
    sparse = _points([0, 6, 11], [0, 5, 9], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="positive scale"):
        align_to_sparse(prediction, sparse)


def test_refuses_when_too_much_of_the_image_goes_past_infinity_and_clamps_otherwise():
    prediction = np.linspace(-1.0, 1.0, 120).reshape(10, 12)
    # 1/d = prediction exactly: the half of the image with prediction <= 0 has no depth
    sparse = _points([6, 11, 8], [9, 9, 8], 1.0 / prediction[[9, 9, 8], [6, 11, 8]])
    with pytest.raises(InputError, match=r"non-positive disparity.* at 60 of 120 pixels \(50.0%"):
        align_to_sparse(prediction, sparse)
    result = align_to_sparse(prediction, sparse, max_invalid_fraction=0.6, max_depth=50.0, min_depth=1.5)
    assert result.nonpositive_pixels == 60
    assert not result.valid[prediction <= 0].any()
    assert (result.depth_m[prediction <= 0] == 50.0).all()
    assert result.depth_m.min() == pytest.approx(1.5)
    assert result.clamped_near_pixels == int(((1.0 / prediction) < 1.5)[prediction > 0].sum())
    assert any("beyond infinity" in warning for warning in result.warnings)


def test_bad_settings_and_mismatched_shapes_are_refused():
    prediction = np.linspace(0.0, 1.0, 120).reshape(10, 12)
    sparse = _points([1, 5], [1, 4], [1.0, 2.0])
    with pytest.raises(InputError, match="unknown alignment method"):
        align_to_sparse(prediction, sparse, method="lsq")
    with pytest.raises(InputError, match="min_depth < max_depth"):
        align_to_sparse(prediction, sparse, min_depth=5.0, max_depth=1.0)
    with pytest.raises(InputError, match="made for a 12x10 image"):
        align_to_sparse(prediction[:, :11], sparse)


def test_pseudo_depth_puts_the_extremes_at_near_and_far():
    prediction = np.array([[2.0, 1.0], [0.5, np.nan]])
    depth, valid = pseudo_depth(prediction, near=1.0, far=10.0)
    assert depth[0, 0] == pytest.approx(1.0)
    assert depth[1, 0] == pytest.approx(10.0)
    assert 1.0 < depth[0, 1] < 10.0
    assert valid.tolist() == [[True, True], [True, False]]
