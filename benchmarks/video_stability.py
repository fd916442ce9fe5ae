"""Temporal consistency of video depth: flicker and accuracy of none / align / flow, and speed.

    python benchmarks/video_stability.py                      # synthetic protocol + 720p throughput
    python benchmarks/video_stability.py --sweep              # also the window x smoothing grid
    python benchmarks/video_stability.py --frames 150 --size 96x128 --speed 0.02 --no-throughput  # drift
    python benchmarks/video_stability.py --clip my.mp4 --predictions out/my_frames [--depth gt/]

Synthetic protocol (`primedepth.video.synthetic`, `primedepth.video.metrics`): two clips with
known depth -- a camera walking through boxes ("moving camera") and a still camera watching a
box move ("moving object") -- whose per-frame predictions are simulated as a random scale and
shift per frame plus smooth and pixel noise on the true inverse depth. For each method:

- flicker: mean |frame t - frame t-1| on static pixels, of the frames as written (per-frame
  min/max for "per-frame", the one clip-wide range otherwise), in % of the depth range; for
  align and flow both the exact aligned frames ("16-bit data": the 16-bit PNGs) and their
  temporally smoothed copies ("display": colour frames and the depth video);
- AbsRel: of depth after one scale-and-shift fit (disparity space) for the whole clip;
- ms/frame: stabilisation alone at the clip's size.

Rows: "per-frame" is what video frames got before (each min/max normalised on its own), "none"
the raw predictions under one clip-wide range (no alignment), "align"/"flow" the two modes, and
"flow, flow-warped fit" fits each frame on flow-warped instead of same-pixel correspondences
(the measurement behind using flow for the display average only).

Throughput: frames/s of `Stabilizer.push` plus the clip range at 1280x720 on this CPU.

Own clip (real weights): predict raw per-frame depth first, then score it. `--depth` takes true
depth (.npy per frame, same names); without it only flicker is reported, on the pixels whose
colour does not change between frames (meaningful for a still camera):

    primedepth predict my.mp4 -o out --temporal none --outputs npy
    python benchmarks/video_stability.py --clip my.mp4 --predictions out/my_frames
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from primedepth.io import read_video_frames
from primedepth.video import ClipRange, Stabilizer, stabilize
from primedepth.video.correspondence import COLOUR_TOLERANCE, to_gray
from primedepth.video.metrics import clip_abs_rel, clip_normalized, flicker, per_frame_normalized, static_pixels
from primedepth.video.synthetic import moving_camera_clip, simulate_predictions, static_camera_clip

# (row label, mode or None for per-frame normalisation, extra `stabilize` arguments)
METHODS = (("per-frame", None, {}), ("none", "none", {}), ("align", "align", {}), ("flow", "flow", {}),
           ("flow, flow-warped fit", "flow", {"flow_fit": True}))


def _score(method: str | None, predictions: np.ndarray, frames: np.ndarray | None, static: np.ndarray,
           depth: np.ndarray | None, **settings: object) -> dict:
    """Flicker, AbsRel and stabilisation time of one method on one clip: of the exact aligned
    frames (16-bit PNG data) and, with a "display " prefix, of their smoothed copies (colour, video)."""
    started = time.perf_counter()
    if method is None:
        data = display = per_frame_normalized(list(predictions))
    else:
        result = stabilize(list(predictions), frames, mode=method, **settings)
        data, display = clip_normalized(result.depths), clip_normalized(result.display)
    seconds = time.perf_counter() - started
    scores = {"ms": 1000 * seconds / len(predictions)}
    for prefix, shown in (("", data), ("display ", display)):
        scores[prefix + "flicker"] = flicker(shown, static)
        scores[prefix + "abs_rel"] = None if depth is None else clip_abs_rel(shown, depth)
    return scores


def _split(row: dict) -> list[dict]:
    """One table row per output: data (16-bit PNG) and, when it differs, display (colour, video)."""
    data = {key: value for key, value in row.items() if not key.startswith("display ")}
    display = {**data, "method": f"{row['method']} (display)", "flicker": row["display flicker"],
               "abs_rel": row["display abs_rel"]}
    same = row["display flicker"] == row["flicker"]
    return [data] if same else [{**data, "method": f"{row['method']} (16-bit data)"}, display]


def _scenes(frames: int, size: tuple[int, int], speed: float | None) -> list[tuple[str, object]]:
    """The two synthetic clips; `speed`: the camera's step per frame (the object moves 4/3 as fast)."""
    moving = {} if speed is None else {"speed": speed}
    still = {} if speed is None else {"speed": 4 * speed / 3}
    return [("moving camera", moving_camera_clip(frames=frames, size=size, **moving)),
            ("moving object", static_camera_clip(frames=frames, size=size, **still))]


def synthetic_rows(frames: int, size: tuple[int, int], seeds: int, noise: tuple[float, float],
                   speed: float | None = None) -> list[dict]:
    """The protocol's table rows: each scene x method, averaged over `seeds` simulated runs."""
    rows = []
    for scene, clip in _scenes(frames, size, speed):
        static = static_pixels(clip.disparity, clip.moving)
        floor = flicker(clip_normalized(list(clip.disparity)), static)
        for name, method, settings in METHODS:
            scores = [_score(method, _simulated(clip.disparity, seed, noise), clip.frames, static, clip.depth, **settings)
                      for seed in range(seeds)]
            rows += _split({"scene": scene, "method": name, "truth": floor, **_mean(scores)})
    return rows


def _simulated(disparity: np.ndarray, seed: int, noise: tuple[float, float]) -> np.ndarray:
    return simulate_predictions(disparity, seed=seed, smooth_noise=noise[0], pixel_noise=noise[1])[0]


def _mean(scores: list[dict]) -> dict:
    return {key: None if scores[0][key] is None else float(np.mean([score[key] for score in scores])) for key in scores[0]}


def sweep_rows(frames: int, size: tuple[int, int], seeds: int, noise: tuple[float, float],
               speed: float | None = None) -> list[dict]:
    """align and flow over a grid of window x smoothing, on both scenes."""
    rows = []
    for scene, clip in _scenes(frames, size, speed):
        static = static_pixels(clip.disparity, clip.moving)
        for method in ("align", "flow"):
            for window in (1, 4, 8):
                for smoothing in (0.0, 0.8, 0.9, 0.95):
                    scores = [_score(method, _simulated(clip.disparity, seed, noise), clip.frames, static, clip.depth,
                                     window=window, smoothing=smoothing) for seed in range(seeds)]
                    rows += _split({"scene": scene, "method": f"{method} w={window} s={smoothing}", **_mean(scores)})
    return rows


def format_rows(rows: list[dict], title: str) -> str:
    """A markdown table; flicker reduction is against the scene's per-frame row."""
    baseline = {row["scene"]: row["flicker"] for row in rows if row["method"] == "per-frame"}
    baseline.update({row["scene"]: row["flicker"] for row in rows if row["method"].startswith("per-frame")})
    lines = [f"### {title}", "", "| scene | method | flicker % of range | reduction vs per-frame | AbsRel (one clip fit) | ms/frame |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        base = baseline.get(row["scene"])
        reduction = f"{base / row['flicker']:.1f}x" if base and row["flicker"] > 0 else "-"
        accuracy = "-" if row.get("abs_rel") is None else f"{row['abs_rel']:.4f}"
        lines.append(f"| {row['scene']} | {row['method']} | {100 * row['flicker']:.3f} | {reduction} | {accuracy} | {row['ms']:.1f} |")
    floors = {row["scene"]: row["truth"] for row in rows if "truth" in row}
    if floors:
        lines += ["", "flicker of the true depth itself (the floor): " + ", ".join(f"{s} {100 * f:.3f}%" for s, f in floors.items())]
    return "\n".join(lines)


def throughput(size: tuple[int, int] = (720, 1280), frames: int = 12) -> str:
    """Frames/s of stabilisation alone (push + clip range) per mode at `size`, as a table."""
    clip = moving_camera_clip(frames=frames, size=size)
    predictions = simulate_predictions(clip.disparity)[0]
    lines = [f"### Stabilisation alone at {size[1]}x{size[0]} on this CPU", "", "| mode | ms/frame | frames/s |", "|---|---:|---:|"]
    for mode in ("none", "align", "flow"):
        seconds = _timed(lambda: _push_all(mode, predictions, clip.frames))
        lines.append(f"| {mode} | {1000 * seconds / frames:.1f} | {frames / seconds:.1f} |")
    return "\n".join(lines)


def _push_all(mode: str, predictions: np.ndarray, frames: np.ndarray) -> None:
    stabilizer, values = Stabilizer(mode), ClipRange()
    for depth, frame in zip(predictions, frames):
        values.add(stabilizer.push(depth, frame).depth)


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
    raw = np.stack([np.load(path) for path in files])
    frames = np.stack([frame for _, frame in zip(files, read_video_frames(clip))])
    truth = None if depth is None else np.stack([np.load(depth / path.name) for path in files])
    if truth is not None:
        static = static_pixels(1.0 / np.where(truth > 0, truth, np.nan))
    else:
        gray = np.stack([to_gray(frame) for frame in frames])
        static = np.abs(np.diff(gray, axis=0)) <= COLOUR_TOLERANCE
    return [part for name, method, settings in METHODS
            for part in _split({"scene": clip.name, "method": name, **_score(method, raw, frames, static, truth, **settings)})]


def _size(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=_size, default=(192, 256), metavar="HxW")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, nargs=2, default=(0.01, 0.005), metavar=("SMOOTH", "PIXEL"),
                        help="simulated noise sigmas as fractions of the disparity range (default 0.01 0.005)")
    parser.add_argument("--speed", type=float, help="camera step per frame (default 0.06; 0.02 for long clips)")
    parser.add_argument("--sweep", action="store_true", help="also the window x smoothing grid")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--clip", type=Path, help="score your own clip instead (see the module docstring)")
    parser.add_argument("--predictions", type=Path)
    parser.add_argument("--depth", type=Path)
    args = parser.parse_args()
    if args.clip is not None:
        print(format_rows(own_clip_rows(args.clip, args.predictions, args.depth), f"{args.clip.name}"))
        return
    title = f"Synthetic clips, {args.frames} frames at {args.size[1]}x{args.size[0]}, {args.seeds} seeds, noise {args.noise}"
    print(format_rows(synthetic_rows(args.frames, args.size, args.seeds, tuple(args.noise), args.speed), title))
    if args.sweep:
        print()
        print(format_rows(sweep_rows(args.frames, args.size, args.seeds, tuple(args.noise), args.speed), "window x smoothing"))
    if not args.no_throughput:
        print()
        print(throughput())


if __name__ == "__main__":
    main()
