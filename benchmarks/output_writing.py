"""Time and peak memory of writing the outputs of one large image (24 megapixels by default).

    python benchmarks/output_writing.py [--height 4000 --width 6000]

Prints one table: per output kind, seconds and the growth of the peak resident memory while
writing it (each row runs in a forked child, so torch's allocations count too). The segmentation row also times the label path of the
pipeline's post-processing (argmax at the processing size, labels resized nearest), against
resizing 150-class logits to full resolution first, which the job engine no longer does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from primedepth.io import outputs
from primedepth.processing import PreparedImage, PrimeDepthImageProcessor

SEGMENTATION_CLASSES = 150
PROCESSING_SIDE = 1024


def _child(work: Callable[[], object], results: multiprocessing.Queue) -> None:
    before = _resident_mib()
    started = time.perf_counter()
    work()
    results.put((time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before))


def _resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def measure(work: Callable[[], object]) -> tuple[float, float]:
    """(seconds, peak resident MiB above the start) of one call, in a forked child (Linux)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_child, args=(work, results))
    child.start()
    outcome = results.get()
    child.join()
    return outcome


def synthetic_depth(height: int, width: int) -> np.ndarray:
    """A smooth scene with fine noise, so compression has realistic work to do."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = np.random.default_rng(0).standard_normal((height, width)).astype(np.float32)
    return np.sin(cols / 300) + np.cos(rows / 200) + 0.01 * noise


def label_rows(height: int, width: int) -> list[tuple[str, Callable[[], object]]]:
    """Post-processing of a segmentation at the processing size up to the input size."""
    processed = (PROCESSING_SIDE * height // max(height, width), PROCESSING_SIDE * width // max(height, width))
    logits = torch.randn(1, SEGMENTATION_CLASSES, *processed)
    raw = SimpleNamespace(depth=torch.randn(1, 3, *processed), segmentation=logits)
    prepared = PreparedImage(pixel_values=torch.zeros(1, 3, *processed), input_size=(height, width))
    processor = PrimeDepthImageProcessor()
    return [
        ("seg labels (argmax, then nearest)", lambda: processor.postprocess(raw, 0, prepared, labels=True)),
        ("seg logits at full size", lambda: processor.postprocess(raw, 0, prepared, labels=False)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--skip-logits", action="store_true", help="skip the full-size logits row (needs ~15 GB)")
    args = parser.parse_args()
    depth = synthetic_depth(args.height, args.width)
    labels = np.random.default_rng(1).integers(0, SEGMENTATION_CLASSES, depth.shape).astype(np.int16)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        rows = [
            ("png16", lambda: outputs.save_depth_png16(out / "d.png", depth)),
            ("color", lambda: outputs.save_color(out / "c.png", depth)),
            ("npy", lambda: outputs.save_depth_npy(out / "d.npy", depth)),
            ("seg png (labels)", lambda: outputs.save_segmentation(out / "s.png", labels)),
            *label_rows(args.height, args.width)[: 1 if args.skip_logits else 2],
        ]
        print(f"outputs of one {args.width}x{args.height} image ({args.width * args.height / 1e6:.0f} MP)")
        print(f"{'step':<36} {'seconds':>8} {'peak MiB':>9}")
        for name, work in rows:
            seconds, peak = measure(work)
            print(f"{name:<36} {seconds:>8.2f} {peak:>9.0f}")


if __name__ == "__main__":
    main()
