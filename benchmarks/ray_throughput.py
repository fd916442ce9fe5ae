"""Images per second of `primedepth predict`: the local engine vs the Ray engine with 1 and 2
actors, on this machine's CPUs, and what Ray costs per image. Prints a markdown table.

    python benchmarks/ray_throughput.py                      # tiny model, 512x512 images (minutes)
    python benchmarks/ray_throughput.py --scale full --images 4   # full-size random weights (long)

Each run writes the ``npy`` output of every image, as a job does. Measured per run:
- wall: the whole job, model loading (and for Ray: actor start-up) included;
- first result: seconds until the first batch of 2 images is written and reported;
- steady: images per second after that, the rate a long job converges to;
  ``s/img over local`` is Ray's steady cost per image minus the local one.
With ``--rounds R`` the runs are repeated R times, in reversed order every other round, and each
column shows the median over the rounds (a shared machine's load changes between runs).

The model is built with random weights (speed does not depend on them): the tiny test model,
or the released architecture (``--scale full``, about 5 GiB written to a temporary folder,
5.8 GiB of memory per process). On a machine with N cores, Ray's actors share those cores
(N threads for 1 actor, N/2 each for 2), so 2 actors cannot beat 1 here: the benchmark
measures Ray's overhead, not its scaling, which comes from more machines and GPUs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.data
import torch
from PIL import Image
from primedepth_bench.builders import build_primedepth, build_text_encoder  # the package beside this script

from primedepth.distributed import predict_dataset
from primedepth.jobs import JobOptions, collect_items, run_job
from primedepth.loading import load_pipeline
from primedepth.pipeline import PrimeDepthPipeline
from primedepth.testing import save_tiny_model, tiny_tokenizer


FIRST_BATCH = 2  # images of the first result; the steady rate is measured after it


@dataclass
class Run:
    """One measured job."""

    engine: str
    actors: int | None
    images: int
    wall: float
    first: float
    steady: float  # images per second after the first result


def make_images(folder: Path, count: int, size: int) -> Path:
    """`count` random RGB PNGs of size x size."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")
    return folder


def full_size_model(folder: Path) -> Path:
    """The released architecture with random weights, saved as a model folder."""
    cpu = torch.device("cpu")
    built = build_primedepth("full", torch.float32, cpu, segmentation=False,
                             text_encoder=build_text_encoder("full", cpu))
    pipeline = PrimeDepthPipeline(vae=built.vae, unet=built.unet, refiner=built.refiner, depth_head=built.depth_head,
                                  scheduler=built.scheduler, text_encoder=built.text_encoder,
                                  tokenizer=tiny_tokenizer(), default_prompt="")
    return pipeline.save_model_folder(folder)


def run_local(images: Path, model: Path, out: Path, threads: int) -> Run:
    """The local engine: the model load and the first batch of 2 images (the first result),
    then the rest with the same pipeline (the steady rate, measured as for Ray)."""
    torch.set_num_threads(threads)
    items = collect_items([str(images)], output_dir=out)
    options = JobOptions(output_dir=out, outputs=("npy",), seed=0, prompt="", keep_results=False)
    pipelines: list[object] = []

    def get_pipeline() -> object:
        pipelines.append(pipelines[0] if pipelines else load_pipeline(model, device="cpu"))
        return pipelines[-1]

    started = time.perf_counter()
    first = run_job(items[:FIRST_BATCH], get_pipeline, options)
    first_seconds = time.perf_counter() - started
    rest = run_job(items[FIRST_BATCH:], get_pipeline, options)
    wall = time.perf_counter() - started
    steady = rest.done / (wall - first_seconds) if rest.done else 0.0
    return Run("local", None, first.done + rest.done, wall, first_seconds, steady)


def run_ray(images: Path, model: Path, out: Path, actors: int, threads: int) -> Run:
    """`predict_dataset` on a running Ray instance, timing each result batch as it arrives."""
    rows = [{"path": str(path), "name": path.stem} for path in sorted(images.glob("*.png"))]
    started = time.perf_counter()
    results = predict_dataset(ray.data.from_items(rows), model, output_dir=out, outputs=("npy",), seed=0,
                              prompt="", actors=actors, threads_per_actor=threads, rows_per_batch=FIRST_BATCH)
    arrivals: list[tuple[float, int]] = []
    for batch in results.iter_batches(batch_format="numpy", batch_size=None):
        arrivals.append((time.perf_counter() - started, int((batch["status"] == "done").sum())))
    wall = time.perf_counter() - started
    first, _ = arrivals[0]
    after_first = sum(count for _, count in arrivals[1:])
    steady = after_first / (arrivals[-1][0] - first) if after_first else 0.0
    return Run("ray", actors, sum(count for _, count in arrivals), wall, first, steady)


def table(runs: list[Run], scale: str, size: int, threads: int | None, rounds: int) -> str:
    """The markdown table, with each Ray run's steady cost per image over the local engine."""
    local = next((run for run in runs if run.engine == "local"), None)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [f"model: {scale}, images {size}x{size}, CPU cores: {os.cpu_count()}, load average now {load} "
             f"(other work on the machine slows every run), threads per process: {threads or 'cores / actors'}, "
             f"medians of {rounds} round(s), "
             f"torch {torch.__version__}, ray {ray.__version__}", "",
             "| engine | actors | images | wall s | img/s (wall) | first result s | img/s (steady) | s/img over local |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        over = ""
        if run.engine == "ray" and local is not None and run.steady and local.steady:
            over = f"{1 / run.steady - 1 / local.steady:+.3f}"
        lines.append(f"| {run.engine} | {run.actors or '-'} | {run.images} | {run.wall:.1f} | "
                     f"{run.images / run.wall:.2f} | {run.first:.1f} | {run.steady:.2f} | {over} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--images", type=int, default=None, help="images per run (default: 24 tiny, 4 full)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default: 512)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="Ray runs (default: 1 2)")
    parser.add_argument("--model", type=Path, help="an existing model folder instead of random weights")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the local run and of each Ray actor (default: the cores, "
                        "shared out among the actors); 1 is the robust choice on a busy machine")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every run, medians reported (default: 1)")
    parser.add_argument("--no-local", action="store_true", help="skip the local engine run")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, model: Path, images: Path, root: Path) -> list[Run]:
    """Every run of every round, reversing the order every other round."""
    cores = os.cpu_count() or 1
    plan: list[int | None] = ([] if args.no_local else [None]) + list(args.actors)
    runs = []
    for round_index in range(args.rounds):
        for actors in plan if round_index % 2 == 0 else plan[::-1]:
            out = root / f"out-{round_index}-{actors or 'local'}"
            if actors is None:
                runs.append(run_local(images, model, out, args.threads or cores))
            else:
                runs.append(run_ray(images, model, out, actors, args.threads or max(1, cores // actors)))
    return runs


def medians(runs: list[Run]) -> list[Run]:
    """One run per configuration, each number the median over its rounds."""
    keys = list(dict.fromkeys((run.engine, run.actors) for run in runs))
    merged = []
    for engine, actors in keys:
        same = [run for run in runs if (run.engine, run.actors) == (engine, actors)]
        merged.append(Run(engine, actors, same[0].images, *(float(np.median([getattr(run, name) for run in same]))
                                                            for name in ("wall", "first", "steady"))))
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    count = args.images or (24 if args.scale == "tiny" else 4)
    with tempfile.TemporaryDirectory(prefix="primedepth-ray-bench-") as scratch:
        root = Path(scratch)
        model = args.model or (save_tiny_model(root / "model") if args.scale == "tiny" else full_size_model(root / "model"))
        images = make_images(root / "images", count, args.size)
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            runs = measure(args, model, images, root)
        finally:
            ray.shutdown()
    print(table(medians(runs), args.scale, args.size, args.threads, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
