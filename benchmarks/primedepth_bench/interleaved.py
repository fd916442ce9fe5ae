"""The interleaved benchmark: all compared paths built once per worker process, timed in rounds.

A worker builds PrimeDepth, the official-style reference, Marigold and Depth Anything for its
dtypes once, then, for each (size, batch) setting, times every path once per round with a
rotating order (`rounds.py`). Ratios come from calls minutes apart at most, instead of from
separate processes run at different times of a shared machine's day.

Memory decides the grouping (`--processes`): on the 24 GiB CPU machine, one worker holding all
paths of one dtype is 11.6 GiB resident in fp32 (PrimeDepth 5.1, which the official-style path
and Marigold's VAE share, text tower 1.3, Marigold UNet 3.2, DAv2-L 1.2) and peaks near 16 GiB
at 768 (the official-style attention); both dtypes in one worker would be about 17 GiB
resident and 21 GiB at the peak, too close to the machine's size. Hence `per-dtype` by default.

    python -m primedepth_bench.interleaved '<worker spec as JSON>'   # one JSON line per event
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import MarigoldDepthPipeline
from transformers import CLIPTextModel, DepthAnythingForDepthEstimation

from primedepth.devices import parse_dtype
from primedepth.pipeline import PrimeDepthPipeline

from .builders import build_dav2, build_marigold, build_primedepth, build_text_encoder, channels_last_copy, make_inputs
from .paths import TimedPath, capture_path, dav2_path, marigold_path, official_path, path_key, primedepth_path
from .rounds import RoundPlan, describe_failure, run_rounds
from .timing import MemoryWatch, current_memory_bytes, peak_memory_bytes
from .worker import BENCHMARKS_DIR

MODULE = "primedepth_bench.interleaved"
# What each --modes entry needs timed; the floor is derived from the primedepth and capture calls.
PATHS_OF_MODE = {"primedepth": {"primedepth"}, "capture": {"capture"}, "floor": {"capture"}, "official": {"official"},
                 "marigold": {"marigold"}, "dav2": {"dav2"}}
PROCESS_GROUPINGS = ("per-dtype", "one", "per-setting")


@dataclass
class WorkerModels:
    """Everything one worker times, built once: per dtype name, and the fp32 reference."""

    primedepth: dict[str, PrimeDepthPipeline] = field(default_factory=dict)
    marigold: dict[str, MarigoldDepthPipeline] = field(default_factory=dict)
    dav2: dict[str, DepthAnythingForDepthEstimation] = field(default_factory=dict)
    official: PrimeDepthPipeline | None = None
    text_encoder: CLIPTextModel | None = None


def timed_paths(modes: Sequence[str]) -> set[str]:
    """The paths the modes need: PrimeDepth always (every ratio is to it), except for `capture`
    alone, whose ratios are within its own call (the capture kernels against each other and
    against the bare UNet)."""
    wanted = set().union(*(PATHS_OF_MODE[mode] for mode in modes))
    return wanted if set(modes) == {"capture"} else {"primedepth"} | wanted


def _primedepth(spec: dict[str, Any], dtype: torch.dtype, official: PrimeDepthPipeline | None) -> PrimeDepthPipeline:
    """PrimeDepth for one dtype; in fp32 it shares the official-style pipeline's UNet and refiner."""
    device, channels_last = torch.device(spec["device"]), spec.get("channels_last", False)
    if official is not None and dtype == torch.float32:
        return channels_last_copy(official) if channels_last else official
    pipeline = build_primedepth(spec.get("scale", "full"), dtype, device, segmentation=False)
    if channels_last:
        pipeline.enable_channels_last()
    return pipeline


def build_models(spec: dict[str, Any]) -> WorkerModels:
    """Build every model of the worker's paths, once (random weights; see `builders`)."""
    scale, device, wanted = spec.get("scale", "full"), torch.device(spec["device"]), timed_paths(spec["modes"])
    models = WorkerModels()
    if "official" in wanted:
        models.official = build_primedepth(scale, torch.float32, device)
        models.text_encoder = build_text_encoder(scale, device)
    for name in spec["dtypes"]:
        dtype = parse_dtype(name)
        models.primedepth[name] = _primedepth(spec, dtype, models.official)
        if "marigold" in wanted:  # the NCHW fp32 VAE of the reference is the same architecture: shared
            shared = models.official.vae if models.official is not None and dtype == torch.float32 else None
            models.marigold[name] = build_marigold(scale, dtype, device, vae=shared)
        if "dav2" in wanted:
            models.dav2[name] = build_dav2(scale, dtype, device)
    return models


def setting_paths(models: WorkerModels, spec: dict[str, Any], size: int, batch: int) -> list[TimedPath]:
    """The timed paths of one (size, batch), all on the same random input."""
    device, wanted = torch.device(spec["device"]), timed_paths(spec["modes"])
    inputs = make_inputs(next(iter(models.primedepth.values())), batch, size, device)
    paths = []
    for name, pipeline in models.primedepth.items():
        dtype = parse_dtype(name)
        if "primedepth" in wanted:
            paths.append(primedepth_path(path_key("primedepth", name), pipeline, inputs, device))
        if "capture" in wanted:
            paths.append(capture_path(path_key("capture", name), pipeline, inputs, dtype, device, spec.get("capture_kernels", ())))
        if name in models.marigold:
            paths.append(marigold_path(path_key("marigold", name), models.marigold[name], inputs, dtype, device))
        if name in models.dav2:
            paths.append(dav2_path(path_key("dav2", name), models.dav2[name], batch, spec["dav2_size"], dtype, device))
    if models.official is not None:
        paths.insert(2, official_path(path_key("official", "fp32"), models.official, inputs, models.text_encoder, device))
    return paths


def _load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (how busy it was)."""
    return [round(value, 2) for value in os.getloadavg()]


def run_setting(models: WorkerModels, spec: dict[str, Any], size: int, batch: int, budget: float | None) -> dict[str, Any]:
    """Warm-up and timed rounds of one (size, batch): the minimum of rounds, then more while
    they fit in `budget` seconds."""
    device = torch.device(spec["device"])
    started, load_before = time.perf_counter(), _load_average()
    watch = MemoryWatch(device)
    paths = setting_paths(models, spec, size, batch)
    setup = time.perf_counter() - started
    plan = RoundPlan(spec["warmup"], spec["min_rounds"], spec["max_rounds"], None if budget is None else budget - setup, spec["pause"])
    outcome = run_rounds(paths, plan)
    return {"event": "setting", "size": size, "batch": batch, "dtypes": spec["dtypes"], "device": spec["device"],
            "scale": spec.get("scale", "full"), "dav2_size": spec["dav2_size"], "budget": budget,
            "load_before": load_before, "load_after": _load_average(), "wall_seconds": time.perf_counter() - started,
            "peak_memory": peak_memory_bytes(device), "resident_before": watch.resident_before, **outcome}


def _share(budget: float | None, started: float, weights: Sequence[float]) -> float | None:
    """What is left of `budget` since `started`, in proportion to the first of the weights still to run."""
    if budget is None:
        return None
    left = max(0.0, budget - (time.perf_counter() - started))
    return left * weights[0] / sum(weights)


def _weight(size: int, batch: int) -> float:
    """A setting's share of a budget: its pixel count (the CPU time grows about with it)."""
    return float(size * size * batch)


def run_worker(spec: dict[str, Any], emit: Callable[[dict[str, Any]], None]) -> None:
    """Build once, then every setting in turn; each event (built, setting) is passed to `emit`."""
    torch.manual_seed(0)
    started = time.perf_counter()
    models = build_models(spec)
    device = torch.device(spec["device"])
    emit({"event": "built", "dtypes": spec["dtypes"], "build_seconds": time.perf_counter() - started,
          "resident_after_build": current_memory_bytes(device)})
    settings = [tuple(s) for s in spec["settings"]]
    for index, (size, batch) in enumerate(settings):
        budget = _share(spec.get("budget"), started, [_weight(*s) for s in settings[index:]])
        emit(run_setting(models, spec, size, batch, budget))


def run_worker_subprocess(spec: dict[str, Any], timeout: float) -> tuple[list[dict[str, Any]], str]:
    """`run_worker` in a fresh interpreter; its events (what it finished before a failure too)
    and a status (ok, timeout, out of memory, the worker's error)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(BENCHMARKS_DIR), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", MODULE, json.dumps(spec)]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout, env=env, check=False)
        output, code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = expired.stdout, None
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    events = [json.loads(line) for line in (output or "").splitlines() if line.startswith("{")]
    errors = [e["status"] for e in events if e.get("event") == "error"]
    if code is None:
        return events, f"timeout > {timeout:.0f} s"
    if code in (-9, 137):
        return events, "out of memory (killed)"
    return events, errors[-1] if errors else ("ok" if code == 0 else f"failed (exit {code})")


def worker_specs(args: Any) -> list[dict[str, Any]]:
    """The worker processes of a run: one per dtype (default), one for all, or one per setting."""
    common = {"device": args.device, "scale": args.scale, "threads": args.threads, "channels_last": args.channels_last,
              "modes": list(args.modes), "dav2_size": args.dav2_size, "warmup": args.warmup, "pause": args.pause,
              "min_rounds": args.min_rounds, "max_rounds": args.rounds,
              "capture_kernels": list(getattr(args, "capture_kernels", []) or [])}
    settings = [[size, batch] for batch in args.batch_sizes for size in args.sizes]
    if args.processes == "one":
        return [dict(common, dtypes=list(args.dtypes), settings=settings)]
    if args.processes == "per-setting":
        return [dict(common, dtypes=[d], settings=[s]) for d in args.dtypes for s in settings]
    return [dict(common, dtypes=[d], settings=settings) for d in args.dtypes]


def _spec_weight(spec: dict[str, Any]) -> float:
    """A worker's share of the budget: its settings' weights times its dtypes."""
    return len(spec["dtypes"]) * sum(_weight(*s) for s in spec["settings"])


def run_interleaved(args: Any, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Every worker in turn, the budget shared by weight; `save` gets the report after each."""
    specs = worker_specs(args)
    started = time.perf_counter()
    report: dict[str, Any] = {"kind": "interleaved", "load_before": _load_average(), "workers": []}
    for index, spec in enumerate(specs):
        spec["budget"] = _share(args.budget, started, [_spec_weight(s) for s in specs[index:]])
        budget = "none" if spec["budget"] is None else f"{spec['budget']:.0f} s"
        print(f"[worker {index + 1}/{len(specs)}] {' '.join(spec['dtypes'])}: {len(spec['settings'])} settings, "
              f"budget {budget}", file=sys.stderr, flush=True)
        events, status = run_worker_subprocess(spec, args.timeout * len(spec["settings"]))
        report["workers"].append({"spec": spec, "status": status, "events": events})
        report["load_after"], report["seconds"] = _load_average(), time.perf_counter() - started
        save(report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Worker entry: run the spec given as JSON, printing one JSON line per event."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])

    def emit(event: dict[str, Any]) -> None:
        print(json.dumps(event), flush=True)

    try:
        run_worker(spec, emit)
    except Exception as error:  # noqa: BLE001 - reported to the suite as the worker's status
        emit({"event": "error", "status": describe_failure(error)})
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
