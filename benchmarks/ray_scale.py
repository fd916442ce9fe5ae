"""Does the Ray engine's driver stay flat as the input count grows? `primedepth predict --engine ray`
on 1,000 / 10,000 / 100,000 tiny PNGs (32x32), tiny random model, ``--outputs npy``, a local Ray
instance; and the steady-state cost per image of the Ray engine against the local engine on the
same 1,000 images. Prints a markdown table and writes every run as JSON (after each run, so a
long run that is stopped keeps the finished ones).

    python benchmarks/ray_scale.py                                  # 1k, 10k, 100k (long on 2 cores)
    python benchmarks/ray_scale.py --counts 200 --compare 0         # a smoke run (a minute)
    python benchmarks/ray_scale.py --time-limit 600                 # each run stopped after 10 minutes

Measured per run (the CLI in its own process, as a user runs it):
- driver peak RSS: the ``primedepth`` process itself, sampled every 0.2 s (Ray's own daemons
  and actors are separate processes and not counted); the claim under test is that it does not
  grow with the number of inputs (the driver lists nothing and keeps counts only);
- first result: seconds from the start of the command to the first output file;
- throughput: images per second between the first and the last output file (file times);
- steady s/image: the same interval divided by the images in it.
Inputs are generated once under ``--work`` and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from primedepth.testing import save_tiny_model

SIZE = 32
SUFFIX = "_depth.npy"


@dataclass
class Run:
    """One measured job."""

    engine: str
    images: int
    wall_s: float
    first_result_s: float
    driver_peak_rss_mib: float
    throughput_img_s: float
    steady_s_per_image: float
    done: int
    inputs: int = 0
    complete: bool = True  # False: stopped at the time limit (the numbers cover the part done)


def make_inputs(folder: Path, count: int, source: Path | None = None) -> Path:
    """`count` random 32x32 PNGs; hard links to the first files of `source` when it has them."""
    if folder.is_dir() and sum(1 for _ in os.scandir(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        name = f"f{index:07d}.png"
        if source is not None and (source / name).exists():
            os.link(source / name, folder / name)
        else:
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / name)
    return folder


def _first_output(folder: Path) -> bool:
    """Whether any output exists yet (stops at the first entry: cheap on a large folder)."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(entry.name.endswith(SUFFIX) for entry in entries)


def _output_times(folder: Path) -> list[float]:
    with os.scandir(folder) as entries:
        return sorted(entry.stat().st_mtime for entry in entries if entry.name.endswith(SUFFIX))


def run_job(engine: str, inputs: Path, out: Path, model: Path, actors: int, batch_size: int,
            threads: int | None = None, progress: Path | None = None, limit_s: float | None = None) -> Run:
    """One `primedepth predict` in its own process, sampled while it runs; `threads` caps the
    process's torch threads (OMP_NUM_THREADS); `progress` gets a line every 30 s; after
    `limit_s` seconds the job is terminated (SIGTERM: a resumable stop) and measured as far as
    it got."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    command = [sys.executable, "-m", "primedepth.cli", "predict", str(inputs), "-o", str(out), "--model", str(model),
               "--seed", "0", "--outputs", "npy", "--batch-size", str(batch_size)]
    if engine == "ray":
        command += ["--engine", "ray", "--actors", str(actors)]
    started = time.time()
    # The job's own output goes to a file: a pipe read only at the end would fill up over a long
    # run (Ray Data logs its progress) and block the job.
    log_path = out.with_name(out.name + ".log")
    log_file = log_path.open("w")
    job = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=env)
    driver = psutil.Process(job.pid)
    peak, first, reported = 0, None, time.time()
    stopped = False
    while job.poll() is None:
        if limit_s is not None and not stopped and time.time() - started > limit_s:
            job.terminate()
            stopped = True
        if progress is not None and time.time() - reported > 30:
            reported = time.time()
            done = sum(1 for _ in os.scandir(out)) if out.is_dir() else 0
            with progress.open("a") as log:
                log.write(f"{engine} {inputs.name}: {reported - started:.0f} s, {done} outputs, "
                          f"driver peak RSS {peak / 2**20:.1f} MiB\n")
        try:
            peak = max(peak, driver.memory_info().rss)
        except psutil.Error:
            pass
        if first is None and _first_output(out):
            first = time.time() - started
        time.sleep(0.2)
    wall = time.time() - started
    log_file.close()
    log = log_path.read_text(errors="replace")
    if job.returncode != 0 and not stopped:
        raise RuntimeError(f"{engine} job failed ({job.returncode}):\n{log[-3000:]}")
    times = _output_times(out)
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    steady = span / (len(times) - 1) if len(times) > 1 else float("nan")
    label = f"{engine} ({threads} thread{'s' * (threads != 1)})" if threads else engine
    return Run(engine=label, images=len(times), wall_s=round(wall, 1),
               first_result_s=round(first if first is not None else times[0] - started, 1),
               driver_peak_rss_mib=round(peak / 2**20, 1), throughput_img_s=round(1 / steady, 1),
               steady_s_per_image=round(steady, 4), done=len(times),
               inputs=sum(1 for _ in os.scandir(inputs)), complete=not stopped)


def table(runs: list[Run]) -> str:
    lines = ["| engine | inputs | predicted | wall (s) | first result (s) | driver peak RSS (MiB) | images/s | "
             "steady s/image |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.engine} | {r.inputs:,} | {r.done:,}{'' if r.complete else ' (stopped)'} | {r.wall_s} | "
              f"{r.first_result_s} | {r.driver_peak_rss_mib} | {r.throughput_img_s} | {r.steady_s_per_image} |"
              for r in runs]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--compare", type=int, default=1000, help="images of the Ray vs local comparison (0: none)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="images per forward pass (and rows per actor call)")
    parser.add_argument("--time-limit", type=float, help="seconds after which a run is stopped and measured "
                        "as far as it got (default: none)")
    parser.add_argument("--local-threads", type=int, default=1,
                        help="torch threads of the local engine (default 1: one actor's share; 0: torch's default)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/primedepth-ray-scale"))
    parser.add_argument("--json", type=Path, help="write the runs here (default: WORK/results.json)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "tiny-model"
    if not (model / "model_index.json").exists():
        save_tiny_model(model)
    largest = make_inputs(args.work / f"inputs-{max(args.counts)}", max(args.counts))
    results = args.json or args.work / "results.json"
    progress = results.with_suffix(".progress")
    runs: list[Run] = []

    def measure(engine: str, count: int, threads: int | None = None) -> None:
        inputs = make_inputs(args.work / f"inputs-{count}", count, largest)
        runs.append(run_job(engine, inputs, args.work / "out", model, args.actors, args.batch_size, threads, progress,
                            args.time_limit))
        results.write_text(json.dumps([asdict(run) for run in runs], indent=2))
        print(table(runs[-1:]).splitlines()[-1], flush=True)

    # Small runs first: a long run that is stopped leaves the others measured.
    for count in sorted(args.counts)[:-1]:
        measure("ray", count)
    if args.compare:
        measure("local", args.compare, args.local_threads or None)
        if args.compare not in args.counts:
            measure("ray", args.compare)
    measure("ray", max(args.counts))
    shutil.rmtree(args.work / "out", ignore_errors=True)
    print(table(runs))
    ray_runs = sorted((run for run in runs if run.engine == "ray"), key=lambda run: run.inputs)
    if len(ray_runs) > 1:
        ratio = ray_runs[-1].driver_peak_rss_mib / ray_runs[0].driver_peak_rss_mib
        print(f"\ndriver peak RSS at {ray_runs[-1].inputs:,} / at {ray_runs[0].inputs:,} inputs: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
