"""`primedepth.video`: alignment across frames, clip-wide normalisation, on synthetic clips."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.video import ClipRange, Stabilizer, check_temporal, clip_range, stabilize
from primedepth.video.correspondence import block_mean, resolve_temporal
from primedepth.video.fit import robust_fit
from primedepth.video.metrics import clip_abs_rel, clip_normalized, flicker, per_frame_normalized, static_pixels
from primedepth.video.synthetic import simulate_predictions, static_camera_clip

# The flow mode needs OpenCV, the optional extra primedepth[video].
needs_opencv = pytest.mark.requires_extra("cv2", "video")  # skips, or fails under CI=true (tests/extras.py)
MODES = ["align", pytest.param("flow", marks=needs_opencv)]

FRAMES, SIZE = 16, (48, 64)


@pytest.fixture(scope="module")
def still_clip():
    """A still camera watching a box move, and simulated per-frame predictions of it."""
    clip = static_camera_clip(frames=FRAMES, size=SIZE)
    predictions, scales, shifts = simulate_predictions(clip.disparity, seed=1)
    return clip, predictions, scales, shifts


@pytest.mark.parametrize("mode", MODES)
def test_flicker_drops_at_least_5x_and_accuracy_does_not_get_worse(still_clip, mode):
    clip, predictions, _, _ = still_clip
    static = static_pixels(clip.disparity, clip.moving)
    per_frame = per_frame_normalized(list(predictions))
    result = stabilize(list(predictions), clip.frames, mode=mode)
    shown = clip_normalized(result.display)
    assert flicker(per_frame, static) >= 5 * flicker(shown, static)
    assert clip_abs_rel(shown, clip.depth) <= clip_abs_rel(per_frame, clip.depth)
    # the exact aligned frames (16-bit data) flicker less than per-frame normalisation too
    assert flicker(clip_normalized(result.depths), static) < flicker(per_frame, static)


def test_alignment_undoes_the_per_frame_scale_and_shift(still_clip):
    clip, _, scales, shifts = still_clip
    exact = scales[:, None, None] * clip.disparity + shifts[:, None, None]  # no noise
    result = stabilize(list(exact), clip.frames, mode="align")
    effective = result.scales * scales  # aligned = effective * disparity + offset
    assert np.ptp(effective) / effective.mean() < 1e-3
    raw = (result.depths[5] - result.shifts[5]) / result.scales[5]
    np.testing.assert_allclose(raw, exact[5], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["none", *MODES])
def test_a_constant_clip_stays_constant_and_finite(mode):
    depths = [np.full(SIZE, 0.25, np.float32) for _ in range(5)]
    frames = [np.full((*SIZE, 3), 90, np.uint8) for _ in range(5)]
    result = stabilize(depths, frames, mode=mode)
    for depth, display in zip(result.depths, result.display):
        assert np.isfinite(depth).all() and np.isfinite(display).all()
        assert np.ptp(depth) == 0 and np.ptp(display) == 0
    assert np.ptp([depth[0, 0] for depth in result.depths]) < 1e-6
    assert all(np.isfinite(frame).all() for frame in result.normalized())


@pytest.mark.parametrize("mode", MODES)
def test_nan_free_on_noisy_unrelated_frames(mode):
    rng = np.random.default_rng(0)
    depths = [rng.random(SIZE, dtype=np.float32) for _ in range(6)]
    frames = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(6)]
    result = stabilize(depths, frames, mode=mode)
    assert all(np.isfinite(d).all() for d in result.depths + result.display)
    assert np.all(result.scales > 0) and np.isfinite(result.shifts).all()


def test_a_single_frame_is_normalised_to_the_gauge():
    depth = np.linspace(2.0, 3.0, SIZE[0] * SIZE[1], dtype=np.float32).reshape(SIZE)
    result = stabilize([depth], mode="align")
    assert len(result.depths) == 1 and result.fitted.all()
    assert result.depths[0].min() == pytest.approx(-0.0101, abs=1e-3)  # 1st..99th percentile -> 0..1
    assert result.range.low == pytest.approx(result.depths[0].min())


@needs_opencv
def test_streaming_gives_what_the_whole_clip_call_gives(still_clip):
    clip, predictions, _, _ = still_clip
    whole = stabilize(list(predictions[:6]), clip.frames[:6], mode="flow", window=2, smoothing=0.5)
    stream = Stabilizer("flow", window=2, smoothing=0.5)
    for index in range(6):
        frame = stream.push(predictions[index], clip.frames[index])
        np.testing.assert_array_equal(frame.depth, whole.depths[index])
        np.testing.assert_array_equal(frame.display, whole.display[index])


def test_without_smoothing_the_display_is_the_exact_aligned_frame(still_clip):
    clip, predictions, _, _ = still_clip
    result = stabilize(list(predictions[:4]), clip.frames[:4], mode="align", smoothing=0.0)
    assert all(display is depth for display, depth in zip(result.display, result.depths))


def test_depth_only_alignment_works_with_any_models_output(still_clip):
    """No frames: same-pixel alignment with the robust fit alone (e.g. Depth Anything output)."""
    clip, predictions, _, _ = still_clip
    static = static_pixels(clip.disparity, clip.moving)
    result = stabilize(list(predictions), mode="align")
    assert flicker(clip_normalized(result.display), static) < flicker(per_frame_normalized(list(predictions)), static)


def test_settings_are_checked():
    for mode, window, smoothing, message in [("wobble", 4, 0.5, "unknown temporal mode"),
                                             ("align", 0, 0.5, "window"), ("align", 4, 1.0, "smoothing")]:
        with pytest.raises(InputError, match=message):
            check_temporal(mode, window, smoothing)
    with pytest.raises(InputError, match="got 2 frames for 1"):
        stabilize([np.zeros(SIZE)], [np.zeros((*SIZE, 3))] * 2)


@needs_opencv
def test_flow_needs_the_frames():
    with pytest.raises(InputError, match="needs the video frames"):
        Stabilizer("flow").push(np.zeros(SIZE, np.float32))


def test_flow_without_opencv_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("no cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    with pytest.raises(InputError, match=r"primedepth\[video\]"):
        Stabilizer("flow")
    monkeypatch.setattr("primedepth.video.correspondence.flow_available", lambda: False)
    monkeypatch.setattr("primedepth.video.coalign.flow_available", lambda: False)
    assert resolve_temporal(None) == "global" and resolve_temporal("flow") == "flow"
    # the default mode still works, on the same pixel
    depths = [np.full(SIZE, 0.2, np.float32) + np.linspace(0, 1, SIZE[1], dtype=np.float32) * (1 + k) for k in range(3)]
    result = stabilize(depths, [np.full((*SIZE, 3), 90, np.uint8)] * 3, mode="global")
    assert np.ptp(result.scales * (1 + np.arange(3))) < 1e-3 * result.scales[0]


def test_robust_fit_ignores_a_changed_region_and_flat_majorities():
    rng = np.random.default_rng(0)
    target = np.where(rng.random(4000) < 0.6, 0.1, rng.random(4000))  # mostly one value (a far wall)
    prediction = (target - 0.3) / 2.0
    prediction[:300] = rng.random(300)  # a moving object
    scale, shift = robust_fit(prediction, target)
    assert scale == pytest.approx(2.0, rel=1e-3) and shift == pytest.approx(0.3, abs=1e-3)
    assert robust_fit(np.ones(100), target[:100]) is None  # flat prediction: no scale to find


def test_clip_range_grows_frame_by_frame_and_round_trips():
    frames = [np.linspace(0, 1, 1000).reshape(20, 50) + offset for offset in (0.0, 0.5)]
    values = ClipRange()
    for frame in frames:
        values.add(frame)
    assert (values.low, values.high) == (0.0, 1.5)
    assert values.display_low == pytest.approx(0.01, abs=1e-3) and values.display_high == pytest.approx(1.49, abs=1e-3)
    assert ClipRange.from_dict(values.as_dict()) == values == clip_range(frames)
    assert ClipRange().empty and not values.empty


def test_block_mean_keeps_whole_blocks():
    array = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    assert block_mean(array, 2).shape == (2, 3)
    assert block_mean(array, 2)[0, 0] == np.mean([0, 1, 7, 8])
