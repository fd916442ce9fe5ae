"""The temporal filter of the aligned depth (`video.temporal_filter`): it removes per-frame noise
where the scene is still, does not smear what moves, never blends across a cut, holds a bounded
window, and keeps the raw prediction available wherever it changed the values."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.video import GlobalStabilizer, stabilize
from primedepth.video.temporal_filter import TemporalFilter

SHAPE = (32, 40)


def _filtered(depths: list[np.ndarray], frames: list[np.ndarray] | None = None, radius: int = 3,
              starts: tuple[int, ...] = ()) -> list[np.ndarray]:
    window = TemporalFilter(radius)
    out = []
    for index, depth in enumerate(depths):
        out += window.push(index, depth, None if frames is None else frames[index], new_segment=index in starts)
        assert len(window.window) <= 2 * radius + 1  # bounded, whatever the clip's length
    out += window.finish()
    assert [frame.index for frame in out] == list(range(len(depths)))
    return [frame.depth for frame in out]


def test_noise_on_a_still_scene_is_averaged_out():
    rng = np.random.default_rng(0)
    scene = np.linspace(0.2, 1.0, SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    noisy = [scene + rng.normal(0, 0.004, SHAPE).astype(np.float32) for _ in range(20)]
    filtered = _filtered(noisy)
    before = np.mean([np.abs(b - a).mean() for a, b in zip(noisy, noisy[1:])])
    after = np.mean([np.abs(b - a).mean() for a, b in zip(filtered, filtered[1:])])
    assert after < before / 3  # frame-to-frame change: a two-sided mean of 7 frames in the middle
    assert np.abs(np.stack(filtered) - scene).mean() < 0.6 * np.abs(np.stack(noisy) - scene).mean()


def test_a_moving_object_is_not_smeared_and_colour_changes_are_not_blended():
    rng = np.random.default_rng(1)
    depths, frames = [], []
    for t in range(12):
        depth = np.full(SHAPE, 0.3, np.float32) + rng.normal(0, 0.002, SHAPE).astype(np.float32)
        depth[8:20, 3 * t:3 * t + 8] = 0.9  # a near box moving right, 3 pixels a frame
        depths.append(depth)
        grey = np.where(depth > 0.6, 200, 60).astype(np.uint8)
        frames.append(np.stack([grey] * 3, axis=-1))
    for with_frames in (frames, None):  # by colour, and by depth disagreement alone
        filtered = _filtered(depths, with_frames)
        for depth, result in zip(depths, filtered):
            box = depth > 0.6
            assert np.abs(result[box] - 0.9).max() < 0.02  # the box keeps its depth ...
            assert np.abs(result[~box] - 0.3).max() < 0.02  # ... and leaves no trail behind


def test_no_neighbour_across_a_cut():
    scene = np.linspace(0.2, 1.0, SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    first, second = [scene] * 5, [scene + np.float32(0.005)] * 5  # close enough to be blended
    filtered = _filtered(first + second, starts=(5,))
    for result, given in zip(filtered, first + second):
        np.testing.assert_allclose(result, given, atol=1e-6)
    blended = _filtered(first + second)
    assert np.abs(blended[4] - scene).mean() > 1e-4  # without the cut the filter does blend them


def test_global_mode_filters_and_keeps_the_raw_prediction():
    rng = np.random.default_rng(2)
    scene = np.linspace(0.2, 1.0, SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    raw = [np.float32(rng.uniform(0.5, 2)) * scene + rng.normal(0, 0.01, SHAPE).astype(np.float32) for _ in range(10)]
    aligner = GlobalStabilizer(0.0)
    for depth in raw:
        aligner.observe(depth)
    aligner.solve()
    results = list(aligner.apply_stream((depth, None) for depth in raw))
    assert len(results) == 10 and all(result.filtered and result.neighbours > 1 for result in results)
    for result, depth in zip(results, raw):
        np.testing.assert_array_equal(result.raw, depth)
        affine = result.scale * depth + result.shift
        assert 0 < np.abs(result.depth - affine).max() < 0.1  # changed, by a little
    exact = stabilize(raw, filter_radius=0, smoothing=0.0)
    for depth, aligned, scale, shift in zip(raw, exact.depths, exact.scales, exact.shifts):
        np.testing.assert_allclose((aligned - shift) / scale, depth, rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="filter radius"):
        stabilize(raw, filter_radius=-1)
