"""Global co-alignment (`--temporal global`) on clips whose per-frame errors are NOT a scale and
shift plus noise (`synthetic.model_like_predictions`: error fields, blobs, the model's own
normalisation), with cuts, occluders, rotation and translation; memory on a long clip."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from primedepth.alignment import fit_scale_shift
from primedepth.errors import InputError
from primedepth.video import GlobalStabilizer, Stabilizer, clip_range, stabilize
from primedepth.video.coalign import Correspondences, _chain_least_squares, _robust_chain, solve
from primedepth.video.fit import robust_fit
from primedepth.video.metrics import (
    clip_abs_rel,
    clip_normalized,
    flicker,
    per_frame_abs_rel,
    per_frame_normalized,
    static_pixels,
)
from primedepth.video.synthetic import HARD_CLIPS, cut_clip, model_like_predictions, static_camera_clip

FRAMES, SIZE = 24, (48, 64)
CUT = FRAMES // 2  # cut_clip's second shot starts here


def _per_frame_floor(predictions: np.ndarray, depth: np.ndarray) -> list[np.ndarray]:
    """Each frame fitted to its own true disparity: the least flicker any per-frame scale and shift can reach."""
    frames = []
    for prediction, truth in zip(predictions, depth):
        scale, shift = fit_scale_shift(prediction, 1.0 / truth, np.isfinite(prediction))
        frames.append((scale * prediction + shift).astype(np.float32))
    return frames


@pytest.fixture(scope="module", params=sorted(HARD_CLIPS))
def scored(request):
    """One clip type: its scores for per-frame normalisation, the per-frame floor and the global mode."""
    name = request.param
    clip = HARD_CLIPS[name](frames=FRAMES, size=SIZE)
    predictions = model_like_predictions(clip.disparity, seed=0)
    static = static_pixels(clip.disparity, clip.moving)
    shots = [(0, FRAMES)]
    if name == "hard cut":  # two shots: scored one fit per shot, nothing static across the cut
        static[CUT - 1] = False
        shots = [(0, CUT), (CUT, FRAMES)]
    result = stabilize(list(predictions), clip.frames)  # the default mode: global

    def abs_rel(frames):
        return max(clip_abs_rel(frames[start:stop], clip.depth[start:stop]) for start, stop in shots)

    per_frame = per_frame_normalized(list(predictions))
    return {
        "name": name,
        "abs_rel": abs_rel(clip_normalized(result.depths)),
        "per_frame_abs_rel": abs_rel(per_frame),
        "oracle_abs_rel": per_frame_abs_rel(list(predictions), clip.depth),
        "flicker": flicker(clip_normalized(result.depths), static),
        "display_flicker": flicker(clip_normalized(result.display), static),
        "per_frame_flicker": flicker(per_frame, static),
        "floor_flicker": flicker(clip_normalized(_per_frame_floor(predictions, clip.depth)), static),
    }


def test_accuracy_beats_per_frame_and_stays_near_the_per_frame_fit(scored):
    # never worse than per-frame normalisation, within the bound of the per-frame fit to the truth
    assert scored["abs_rel"] < scored["per_frame_abs_rel"]
    assert scored["abs_rel"] <= scored["oracle_abs_rel"] + 0.01
    if scored["name"] != "moving object":  # there per-frame normalisation is itself at the floor
        assert scored["abs_rel"] <= scored["per_frame_abs_rel"] - 0.02


def test_16bit_flicker_is_cut_3x_on_every_clip_and_below_any_per_frame_fit(scored):
    # the bound, on the exact 16-bit data of every clip type (the temporal filter changes
    # values, so it goes below the floor of any per-frame scale and shift) ...
    assert scored["per_frame_flicker"] >= 3 * scored["flicker"]
    assert scored["flicker"] < scored["floor_flicker"]
    # ... and the display copies (a running average of the filtered frames) add none to speak of
    assert scored["display_flicker"] <= 1.15 * scored["flicker"]


def test_a_cut_resets_the_alignment():
    clip = cut_clip(frames=FRAMES, size=SIZE)
    predictions = model_like_predictions(clip.disparity, seed=1)
    whole = GlobalStabilizer(0.0)
    for depth, frame in zip(predictions, clip.frames):
        whole.observe(depth, frame)
    solution = whole.solve()
    assert solution.segment_starts == [0, CUT]
    assert not any(pair.earlier < CUT <= pair.later for pair in whole.summary.pairs)  # nothing crosses it
    second = stabilize(list(predictions[CUT:]), clip.frames[CUT:], smoothing=0.0)
    np.testing.assert_allclose(solution.scales[CUT:], second.scales, rtol=1e-9)
    np.testing.assert_allclose(solution.shifts[CUT:], second.shifts, rtol=1e-9, atol=1e-12)


def test_without_opencv_or_frames_the_same_pixel_still_aligns():
    clip = static_camera_clip(frames=FRAMES, size=SIZE)
    predictions = model_like_predictions(clip.disparity, seed=2)
    static = static_pixels(clip.disparity, clip.moving)
    baseline = flicker(per_frame_normalized(list(predictions)), static)
    for frames, use_flow in ((clip.frames, False), (None, None)):
        result = stabilize(list(predictions), frames, use_flow=use_flow)
        assert flicker(clip_normalized(result.depths), static) < baseline
        accuracy = clip_abs_rel(clip_normalized(result.depths), clip.depth)
        assert accuracy < per_frame_abs_rel(list(predictions), clip.depth) + 0.01


def test_raw_values_recoverable_and_ranges_from_the_summary():
    clip = static_camera_clip(frames=8, size=SIZE)
    predictions = model_like_predictions(clip.disparity, seed=3)
    aligner = GlobalStabilizer(0.0)
    for depth, frame in zip(predictions, clip.frames):
        aligner.observe(depth, frame)
    aligner.solve()
    frames = [aligner.apply(depth, frame) for depth, frame in zip(predictions, clip.frames)]
    for frame, raw in zip(frames, predictions):
        np.testing.assert_allclose((frame.depth - frame.shift) / frame.scale, raw, rtol=1e-4, atol=1e-5)
    exact = clip_range([frame.depth for frame in frames])
    from_summary = aligner.clip_range()
    assert from_summary.low == pytest.approx(exact.low, abs=1e-5) and from_summary.high == pytest.approx(exact.high, abs=1e-5)
    assert from_summary.display_low == pytest.approx(exact.display_low, abs=1e-4)
    with pytest.raises(InputError, match="not observed"):
        aligner.apply(predictions[0], clip.frames[0])


def test_the_joint_solve_is_the_least_squares_solution_and_ignores_a_wrong_pair():
    rng = np.random.default_rng(0)
    count = 30
    truth = np.cumsum(rng.normal(0, 0.1, count))
    earlier = np.concatenate([np.arange(count - gap) for gap in (1, 2, 4)])
    later = np.concatenate([np.arange(gap, count) for gap in (1, 2, 4)])
    differences = truth[later] - truth[earlier] + rng.normal(0, 1e-3, later.size)
    differences[5] += 2.0  # one pair across an undetected cut
    weights = np.full(later.size, 1e6)
    prior = truth + rng.normal(0, 0.2, count)
    solution = _robust_chain(count, earlier, later, differences, weights, prior, np.full(count, 1.0))
    assert np.abs((solution - solution.mean()) - (truth - truth.mean())).max() < 0.01
    # without the wrong pair, the same solve matches the dense normal equations
    keep = np.arange(later.size) != 5
    dense = np.diag(np.full(count, 1.0))
    rhs = prior.copy()
    for i, j, d, w in zip(earlier[keep], later[keep], differences[keep], weights[keep]):
        dense[[i, j], [i, j]] += w
        dense[i, j] -= w
        dense[j, i] -= w
        rhs[j] += w * d
        rhs[i] -= w * d
    iterative = _chain_least_squares(count, earlier[keep], later[keep], differences[keep], weights[keep], prior,
                                     np.full(count, 1.0), prior.copy())
    np.testing.assert_allclose(iterative, np.linalg.solve(dense, rhs), atol=1e-7)


def test_robust_fit_survives_a_near_occluder_that_drags_least_squares():
    rng = np.random.default_rng(1)
    target = rng.random(5000)
    prediction = (target - 0.2) / 3.0
    prediction[:1500] = 2.0 + rng.random(1500)  # 30%: a near object, far from everything else
    scale, shift = robust_fit(prediction, target)
    assert scale == pytest.approx(3.0, rel=1e-3) and shift == pytest.approx(0.2, abs=1e-3)


def test_memory_stays_bounded_on_a_long_clip():
    """2,000 frames: pass 1 keeps a few working-size frames and a few numbers per frame and pair."""
    rng = np.random.default_rng(0)
    base = np.linspace(0.2, 1.0, 16 * 24, dtype=np.float32).reshape(16, 24)
    frame = (np.stack([base] * 3, axis=-1) * 255).astype(np.uint8)
    correspondences = Correspondences(use_flow=False)
    scales = np.exp(rng.normal(0, 0.2, 2000))
    try:
        for index, scale in enumerate(scales):
            if index == 1500:  # traced from here: what the last 500 frames leave behind, and their peak
                tracemalloc.start()
            shift = rng.normal(0, 0.1)
            correspondences.push(scale * base + shift + rng.normal(0, 0.002, base.shape).astype(np.float32), frame)
        grown, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    summary = correspondences.summary
    assert summary.frames == 2000 and len(summary.pairs) > 2000 * 3
    # the summary grows by about 1.5 kB a frame, whatever the frame size (a 720p frame is 3.7 MB)
    assert grown / 500 < 2500 and peak < 4e6
    solution = solve(summary)
    effective = np.log(solution.scales * scales)  # the aligned frames' scale against the truth
    assert np.ptp(effective) < 0.01  # one scale for the whole clip: no drift over 2,000 frames


def test_the_streaming_stabiliser_refuses_the_global_mode_clearly():
    with pytest.raises(InputError, match="needs the whole clip"):
        Stabilizer("global")
