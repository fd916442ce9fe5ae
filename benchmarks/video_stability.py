"""Temporal consistency of video depth on hard clips: flicker, accuracy and drift of each mode, and speed.

    python benchmarks/video_stability.py                    # the protocol (48 frames, 3 seeds) + 720p speed + solve latency
    python benchmarks/video_stability.py --pessimistic      # per-frame errors that change on every frame
    python benchmarks/video_stability.py --frames 24 --size 48x64 --seeds 1 --no-throughput   # smoke run
    python benchmarks/video_stability.py --clip my.mp4 --predictions out/my_frames [--depth gt/]

Clips (`primedepth.video.synthetic`, ray-cast, so the true depth of every pixel is known): a still
camera watching a box move ("moving object"), a camera walking forwards and sideways while
turning ("camera walk": rotation and translation), a slowly panning camera with a near box
crossing the whole view ("occluder"), and two shots with a hard cut, the second with a near box
entering ("hard cut").

Per-frame predictions (`synthetic.model_like_predictions`) are NOT of the stabiliser's form
(one scale and shift per frame plus noise): the true disparity times a fixed and a slowly
changing low-frequency error field, local blobs that come and go, the model's own per-frame
normalisation (2nd..98th percentiles: a near object entering squeezes everything else), then a
random scale and shift per frame and pixel noise. By default the changing errors move on in
proportion to how much of the view changed (a model run with one noise draw per clip is
deterministic); `--pessimistic` makes them change fully on every frame.

Columns (for each method; the 16-bit data are the exact aligned frames of the 16-bit PNGs, the
display their temporally smoothed copies of the colour frames and the depth video):

- flicker: mean |frame t - frame t-1| on static pixels (true disparity changed < 0.5% of the range,
  not on a moving object), frames shown by the clip's range, in % of it; "x" is per-frame / method;
- AbsRel: of depth after ONE scale-and-shift fit (disparity space) for the whole clip -- per shot
  for the hard cut, whose shots share no geometry (the single fit over both is printed below);
- drift: |scale at the end / scale at the start - 1| of the aligned frames against the truth (4
  frames each end, per shot);
- ms/frame: the stabiliser alone at the clip's size, both passes.

Rows: "per-frame" normalises each frame on its own min/max (what frames got before); "per-frame
fit to truth" fits each frame to its true disparity: the floor of any per-frame scale and shift;
"none" keeps the raw predictions under one range; "align" and "flow" fit each frame to the previous
4 frames (same pixel / optical flow); "global" (the default) solves all frames jointly
(`primedepth.video.coalign`, pairs along optical flow corrected for the approach, and same-pixel
pairs on still pixels) and then filters the aligned depth over time (`primedepth.video.temporal_filter`,
4 frames each side); "global, no filter" is the same without the filter (exact scale and shift per
frame); "global, same-pixel pairs, no filter" is the earlier solve (same-pixel pairs only).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from primedepth.alignment import fit_scale_shift
from primedepth.io import read_video_frames
from primedepth.video import ClipRange, GlobalStabilizer, Stabilizer, stabilize
from primedepth.video.coalign import SAME_PIXEL_GAPS, STILL_EVERY, STILL_GAPS, ClipSummary, Pair, solve
from primedepth.video.correspondence import COLOUR_TOLERANCE, to_gray
from primedepth.video.metrics import (
    clip_abs_rel,
    clip_normalized,
    drift,
    flicker,
    per_frame_normalized,
    static_pixels,
)
from primedepth.video.synthetic import HARD_CLIPS, model_like_predictions, moving_camera_clip

# (row label, mode: None per-frame normalisation, "truth" per-frame fit to the truth; `stabilize` arguments)
METHODS = (("per-frame", None, {}), ("per-frame fit to truth", "truth", {}), ("none", "none", {}),
           ("align", "align", {}), ("flow", "flow", {}), ("global", "global", {}),
           ("global, no filter", "global", {"filter_radius": 0}),
           ("global, same-pixel pairs, no filter", "global", {"flow_fit": False, "filter_radius": 0}))


def _frames(method: str | None, predictions: np.ndarray, frames: np.ndarray | None, depth: np.ndarray | None,
            settings: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(16-bit data, display) frames of one method, each as shown: by the clip's range or per frame."""
    if method is None:
        shown = per_frame_normalized(list(predictions))
        return shown, shown
    if method == "truth":
        fitted = []
        for prediction, truth in zip(predictions, depth):
            scale, shift = fit_scale_shift(prediction, 1.0 / truth, np.isfinite(prediction))
            fitted.append((scale * prediction + shift).astype(np.float32))
        return clip_normalized(fitted), clip_normalized(fitted)
    result = stabilize(list(predictions), frames, mode=method, **settings)
    return clip_normalized(result.depths), clip_normalized(result.display)


def _score(method: str | None, predictions: np.ndarray, frames: np.ndarray | None, static: np.ndarray,
           depth: np.ndarray | None, shots: list[tuple[int, int]], settings: dict) -> dict:
    """Flicker (16-bit data and display), AbsRel (per shot), drift and time of one method on one clip."""
    if method == "truth" and depth is None:
        return {}
    started = time.perf_counter()
    data, display = _frames(method, predictions, frames, depth, settings)
    scores = {"ms": 1000 * (time.perf_counter() - started) / len(predictions),
              "flicker": flicker(data, static), "display flicker": flicker(display, static)}
    if depth is not None:
        scores["abs_rel"] = max(clip_abs_rel(data[a:b], depth[a:b]) for a, b in shots)
        scores["abs_rel one fit"] = clip_abs_rel(data, depth)
        scores["drift"] = drift(data, depth, [a for a, _ in shots])
    return scores


def synthetic_rows(frames: int, size: tuple[int, int], seeds: int, content_driven: bool) -> list[dict]:
    """The protocol's rows: each clip type x method, averaged over `seeds` simulated runs."""
    rows = []
    for scene, make in HARD_CLIPS.items():
        clip = make(frames=frames, size=size)
        static = static_pixels(clip.disparity, clip.moving)
        shots = [(0, frames)]
        if scene == "hard cut":
            shots = [(0, frames // 2), (frames // 2, frames)]
            static[frames // 2 - 1] = False  # nothing is static across the cut
        floor = flicker(clip_normalized(list(clip.disparity)), static)
        runs = [model_like_predictions(clip.disparity, seed=seed, content_driven=content_driven) for seed in range(seeds)]
        for name, method, settings in METHODS:
            scores = [_score(method, run, clip.frames, static, clip.depth, shots, settings) for run in runs]
            rows.append({"scene": scene, "method": name, "truth": floor, **_mean(scores)})
    return rows


def _mean(scores: list[dict]) -> dict:
    return {key: float(np.mean([score[key] for score in scores])) for key in scores[0]}


def format_rows(rows: list[dict], title: str) -> str:
    """A markdown table; reductions are against the scene's per-frame row."""
    baseline = {row["scene"]: row["flicker"] for row in rows if row["method"] == "per-frame"}
    lines = [f"### {title}", "",
             "| scene | method | flicker 16-bit % | x | flicker display % | x | AbsRel | drift | ms/frame |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        base = baseline.get(row["scene"])
        cells = [row["scene"], row["method"]]
        for key in ("flicker", "display flicker"):
            cells += [f"{100 * row[key]:.3f}", f"{base / row[key]:.1f}x" if base and row[key] > 0 else "-"]
        cells += [f"{row[key]:.4f}" if key in row else "-" for key in ("abs_rel",)]
        cells += [f"{row['drift']:.3f}" if "drift" in row else "-", f"{row['ms']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    single = {row["method"]: row["abs_rel one fit"] for row in rows
              if row["scene"] == "hard cut" and "abs_rel one fit" in row}
    if single:
        lines += ["", "hard cut, AbsRel of ONE fit over both shots (which share no geometry: the gauge each shot "
                  "gets decides it): " + ", ".join(f"{name} {value:.4f}" for name, value in single.items())]
    floors = {row["scene"]: row["truth"] for row in rows if "truth" in row}
    truth = ", ".join(f"{scene} {100 * value:.3f}%" for scene, value in floors.items())
    lines += ["", f"flicker of the true depth on the static pixels: {truth}"]
    return "\n".join(lines)


def throughput(size: tuple[int, int] = (720, 1280), frames: int = 12) -> str:
    """Milliseconds per frame of the stabiliser alone (both passes, clip range included) at `size`."""
    clip = moving_camera_clip(frames=frames, size=size)
    predictions = model_like_predictions(clip.disparity)
    lines = [f"### Stabilisation alone at {size[1]}x{size[0]} on this CPU (both passes)", "",
             "| mode | ms/frame | frames/s |", "|---|---:|---:|"]
    for mode in ("none", "align", "flow", "global"):
        seconds = _timed(lambda: _run_mode(mode, predictions, clip.frames))
        lines.append(f"| {mode} | {1000 * seconds / frames:.1f} | {frames / seconds:.1f} |")
    return "\n".join(lines)


def _run_mode(mode: str, predictions: np.ndarray, frames: np.ndarray) -> None:
    """What a video job does per mode: pass 1 (gather), then pass 2 (aligned frames and display)."""
    if mode == "global":
        aligner = GlobalStabilizer()
        for depth, frame in zip(predictions, frames):
            aligner.observe(depth, frame)
        aligner.clip_range()
        for _ in aligner.apply_stream(zip(predictions, frames)):
            pass
        return
    gather, values = Stabilizer("align" if mode != "none" else "none", smoothing=0.0), ClipRange()
    for depth, frame in zip(predictions, frames):
        values.add(gather.push(depth, frame).depth)
    writer = Stabilizer(mode)
    for depth, frame in zip(predictions, frames):
        writer.push(depth, frame)


def solve_latency(lengths: tuple[int, ...] = (1000, 10000)) -> str:
    """Seconds of the joint solve alone for clips of `lengths` frames (pairs as pass 1 makes them,
    from random relations): what the end of pass 1 waits for before the first frame is written."""
    rng = np.random.default_rng(0)
    lines = ["### The joint solve alone (between the passes)", "", "| frames | pairs | seconds | summary MB (traced) |",
             "|---:|---:|---:|---:|"]
    for count in lengths:
        tracemalloc.start()
        summary = ClipSummary(spreads=list(rng.uniform(0.5, 1.5, count)), centres=list(rng.normal(0, 0.1, count)),
                              ranges=[(0.0, 1.0, 0.01, 0.99)] * count, segment_starts=[0])
        for later in range(1, count):
            gaps = list(SAME_PIXEL_GAPS) + (list(STILL_GAPS) if later % STILL_EVERY == 0 else [])
            for gap in gaps:
                if later - gap >= 0:
                    summary.pairs.append(Pair(later - gap, later, float(rng.normal(0, 0.2)), 0.5, 0.5, 0.3, 0.005, False))
        size = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        started = time.perf_counter()
        solve(summary)
        seconds = time.perf_counter() - started
        lines.append(f"| {count} | {len(summary.pairs)} | {seconds:.2f} | {size:.1f} |")
    return "\n".join(lines)


def _timed(work: Callable[[], None], repeats: int = 2) -> float:
    """The fastest of `repeats` runs (the machine is shared; the minimum is the least disturbed)."""
    best = np.inf
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def own_clip_rows(clip: Path, predictions: Path, depth: Path | None) -> list[dict]:
    """The protocol on a real clip: per-frame ``*_depth.npy`` predictions, optional true depth."""
    files = sorted(predictions.glob("*_depth.npy"))
    if not files:
        raise SystemExit(f"error: no *_depth.npy files in {predictions}")
    raw = np.stack([np.load(path) for path in files])
    frames = np.stack([frame for _, frame in zip(files, read_video_frames(clip))])
    truth = None if depth is None else np.stack([np.load(depth / path.name) for path in files])
    if truth is not None:
        static = static_pixels(1.0 / np.where(truth > 0, truth, np.nan))
    else:
        gray = np.stack([to_gray(frame) for frame in frames])
        static = np.abs(np.diff(gray, axis=0)) <= COLOUR_TOLERANCE
    shots = [(0, len(files))]
    return [{"scene": clip.name, "method": name, **scores} for name, method, settings in METHODS
            if (scores := _score(method, raw, frames, static, truth, shots, settings))]


def _size(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=_size, default=(96, 128), metavar="HxW")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pessimistic", action="store_true",
                        help="per-frame errors change fully on every frame, however little the view changed")
    parser.add_argument("--no-throughput", action="store_true", help="skip the 720p speed and solve-latency tables")
    parser.add_argument("--clip", type=Path, help="score your own clip instead (see the module docstring)")
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--depth", type=Path)
    args = parser.parse_args()
    if args.clip is not None:
        if args.predictions is None:
            parser.error("--clip needs --predictions (a folder of *_depth.npy)")
        print(format_rows(own_clip_rows(args.clip, args.predictions, args.depth), f"{args.clip.name}"))
        return
    errors = "pessimistic (change every frame)" if args.pessimistic else "content-driven"
    title = (f"Hard clips, {args.frames} frames at {args.size[1]}x{args.size[0]}, {args.seeds} seeds, "
             f"model-like per-frame errors ({errors})")
    print(format_rows(synthetic_rows(args.frames, args.size, args.seeds, not args.pessimistic), title))
    if not args.no_throughput:
        print()
        print(throughput())
        print()
        print(solve_latency())


if __name__ == "__main__":
    main()
