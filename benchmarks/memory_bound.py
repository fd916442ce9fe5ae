"""Peak memory of long videos through the job engine: results in memory and in Parquet.

A 20-frame and a 2,000-frame 320x240 clip go through `primedepth.predict(..., stream=True)`
(results in memory, consumed one frame at a time) and through the Parquet sink
(`primedepth.distributed.parquet.ParquetSink`), each run in its own process on the tiny random
model, so each peak RSS (`ru_maxrss`) belongs to one run alone. The model runs at `--max-size`
(default 64 pixels, for speed: depth, alignment and results are at the clip's 320x240 anyway). The engine keeps memory bounded
when the 2,000-frame peak stays within 300 MB of the 20-frame peak (issue 20).

    python benchmarks/memory_bound.py [--frames 20 2000] [--modes memory parquet] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

SIZE = (240, 320)  # height, width
LIMIT_MB = 300.0
MODES = ("memory", "parquet")


def write_clip(path: Path, frames: int, fps: int = 25) -> Path:
    """An H.264 clip of a gradient sliding sideways (content that changes, cheap to encode)."""
    import av

    height, width = SIZE
    base = np.linspace(0, 255, 2 * width, dtype=np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(frames):
            shift = index % width
            row = base[shift : shift + width]
            pixels = np.broadcast_to(row[None, :, None], (height, width, 3)).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def run_one(mode: str, clip: Path, work: Path, max_size: int) -> dict:
    """One run in this process; returns frames seen, seconds and peak RSS in MB."""
    import torch

    from primedepth import predict
    from primedepth.engine import JobOptions, collect_items, run_job
    from primedepth.testing import tiny_pipeline

    torch.set_num_threads(1)
    pipeline = tiny_pipeline(segmentation=False)
    started = time.perf_counter()
    if mode == "memory":
        frames = sum(1 for prediction in predict(str(clip), model=pipeline, stream=True, batch_size=4,
                                                        max_size=max_size)
                     if prediction.depth is not None)
    else:
        import pyarrow.parquet as pq

        from primedepth.distributed.parquet import ParquetSink
        from primedepth.distributed.storage import Destination

        sink = ParquetSink(Destination.of(work / "depth"))
        options = JobOptions(outputs=("png16",), batch_size=4, max_size=max_size, keep_results=False)
        run_job(collect_items([str(clip)]), lambda: pipeline, options, sink)
        frames = sum(pq.ParquetFile(part).metadata.num_rows for part in (work / "depth").glob("part-*.parquet"))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"mode": mode, "frames": frames, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb, 1)}


def measure(mode: str, frames: int, folder: Path, max_size: int) -> dict:
    """`run_one` in a fresh process (peak RSS of that run only)."""
    clip = folder / f"clip_{frames}.mp4"
    if not clip.exists():
        write_clip(clip, frames)
    work = folder / f"{mode}_{frames}"
    work.mkdir()
    command = [sys.executable, __file__, "--child", mode, str(clip), str(work), str(max_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs=2, default=(20, 2000), metavar=("SHORT", "LONG"))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    parser.add_argument("--max-size", type=int, default=64, help="the model's processing size (default: 64)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, clip, work, max_size = args.child
        print(json.dumps(run_one(mode, Path(clip), Path(work), int(max_size))))
        return 0
    results, ok = [], True
    with tempfile.TemporaryDirectory(prefix="primedepth-memory-") as folder:
        for mode in args.modes:
            short, long = (measure(mode, count, Path(folder), args.max_size) for count in args.frames)
            growth = long["peak_rss_mb"] - short["peak_rss_mb"]
            ok = ok and growth <= LIMIT_MB and long["frames"] == args.frames[1]
            results.append({"mode": mode, "short": short, "long": long, "growth_mb": round(growth, 1)})
            print(f"{mode:8s} {short['frames']:5d} frames: peak RSS {short['peak_rss_mb']:7.1f} MB "
                  f"({short['seconds']:.1f} s) | {long['frames']:5d} frames: {long['peak_rss_mb']:7.1f} MB "
                  f"({long['seconds']:.1f} s) | growth {growth:+.1f} MB (limit {LIMIT_MB:.0f})", flush=True)
    print("bounded: yes" if ok else "bounded: NO")
    if args.json:
        args.json.write_text(json.dumps({"cpu": os.cpu_count(), "results": results}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
