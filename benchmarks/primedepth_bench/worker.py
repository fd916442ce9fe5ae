"""One configuration (mode, size, dtype, batch) per fresh interpreter.

A configuration's peak memory must be its own (CPU: the process's max RSS, which never goes
down), and no state may leak between runs, so the suite starts one subprocess per configuration:

    python -m primedepth_bench.worker '<spec as JSON>'   # prints the result as one JSON line
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from primedepth.devices import parse_dtype

from .builders import (
    build_dav2,
    build_marigold,
    build_primedepth,
    build_text_encoder,
    make_inputs,
)
from .official_style import run_official
from .runners import (
    run_capture_overhead,
    run_dav2,
    run_floor,
    run_marigold,
    run_primedepth,
)

MODULE = "primedepth_bench.worker"
BENCHMARKS_DIR = Path(__file__).resolve().parents[1]  # holds this package; the subprocess imports it from there


def _build(spec: dict[str, Any], dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """The models the configuration's mode runs (timed apart from the run as build time)."""
    scale, mode = spec.get("scale", "full"), spec["mode"]
    if mode == "dav2":
        return {"model": build_dav2(scale, dtype, device)}
    if mode == "marigold":
        return {"pipeline": build_marigold(scale, dtype, device)}
    pipeline = build_primedepth(scale, dtype, device)
    if spec.get("channels_last") and mode != "official":  # the official code is NCHW
        pipeline.enable_channels_last()
    return {"pipeline": pipeline, "text_encoder": build_text_encoder(scale, device) if mode == "official" else None}


def _run(spec: dict[str, Any], built: dict[str, Any], dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """Run the configuration's mode on the built models."""
    mode, batch, repeats, warmup = spec["mode"], spec["batch"], spec["repeats"], spec.get("warmup", 1)
    if mode == "dav2":  # at its own size: the suite plans it with size = --dav2-size
        return run_dav2(built["model"], batch, dtype, device, repeats, warmup, size=spec["size"])
    pipeline = built["pipeline"]
    inputs = make_inputs(pipeline, batch, spec["size"], device)
    if mode == "marigold":
        return run_marigold(pipeline, inputs, dtype, device, repeats, warmup)
    if mode == "capture":
        return run_capture_overhead(pipeline, inputs, dtype, device, repeats, warmup)
    if mode == "primedepth":
        return run_primedepth(pipeline, inputs, dtype, device, repeats, warmup, spec.get("stages", True))
    if mode == "official":
        return run_official(pipeline, inputs, device, repeats, warmup, built["text_encoder"])
    if mode == "floor":
        return run_floor(pipeline, inputs, dtype, device, repeats, warmup)
    raise ValueError(f"unknown mode {mode}")


def run_configuration(spec: dict[str, Any]) -> dict[str, Any]:
    """Build and run one configuration in this process: the spec, its result and build time."""
    device, dtype = torch.device(spec["device"]), parse_dtype(spec["dtype"])
    torch.manual_seed(0)
    started = time.perf_counter()
    built = _build(spec, dtype, device)
    build_seconds = time.perf_counter() - started
    return spec | _run(spec, built, dtype, device) | {"build_seconds": build_seconds}


def run_in_subprocess(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`run_configuration` in a fresh interpreter: honest peaks, no state shared between runs.
    A failure becomes the result's `status` (timeout, out of memory, the error's last line)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(BENCHMARKS_DIR), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", MODULE, json.dumps(spec)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return dict(spec, status=f"timeout > {timeout:.0f} s")
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        status = "out of memory (killed)" if done.returncode in (-9, 137) else f"failed: {tail[:120]}"
        return dict(spec, status=status, wall_seconds=wall)
    return dict(json.loads(lines[-1]), status="ok", wall_seconds=wall)


def main(argv: list[str] | None = None) -> int:
    """Worker entry: run the configuration given as JSON and print its result as one JSON line."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    print(json.dumps(run_configuration(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
