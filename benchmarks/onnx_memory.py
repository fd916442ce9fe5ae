"""Peak memory of one depth prediction on ONNX Runtime against the torch path, measured.

Each path runs in its own process on the full-size architecture with random weights (built from
the released configuration, no download; `primedepth_bench.builders`), fp32, CPU:

- `export`: build the model, trace the depth path at SIZE x SIZE into WORKDIR (ONNX + external
  weights; `primedepth.export.onnx.write_graph`, self-attention capture with `--capture-kernel`:
  chunked, the export's default, or padded-sdpa, one ONNX `Attention` node per layer), and
  report what the export itself costs;
- `torch`: build the model as `primedepth predict` runs it (channels-last VAE and head), run
  `predict_raw` once (depth only);
- `onnx`: open the graph in an ONNX Runtime session (CPU provider), run it once; `--ort-arena off`
  and `--ort-level basic` set the session's CPU memory arena and graph optimisation level.

Memory is the process's resident set (RSS), read from the kernel, not estimated: after building
or loading, the high-water mark while building or loading (VmHWM), then the high-water mark of
the prediction alone (VmHWM reset with /proc/self/clear_refs before it runs, so loading peaks do
not hide it). Memory does not depend on the machine's load, unlike the times also printed (wall
seconds, and the process's CPU seconds, which load moves less).

    python benchmarks/onnx_memory.py --size 768 --workdir /tmp/onnx768 --markdown out.md --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GIB = 2**30
STEPS = ("export", "torch", "onnx")
GRAPH = "depth.onnx"


def _status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (kB) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss() -> int:
    """Resident bytes now."""
    value = _status_bytes("VmRSS")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def high_water() -> int:
    """Peak resident bytes since the process started, or since the last `reset_high_water`."""
    value = _status_bytes("VmHWM")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_high_water() -> bool:
    """Restart VmHWM from the current RSS (Linux: write 5 to clear_refs); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _measured(label: str, action: Any, record: dict[str, Any]) -> Any:
    """Run `action`, recording its wall time, the RSS after it and the high-water mark during it."""
    record[f"{label}_reset"] = reset_high_water()
    before, started, cpu_started = rss(), time.perf_counter(), time.process_time()
    result = action()
    record[f"{label}_seconds"] = time.perf_counter() - started
    record[f"{label}_cpu_seconds"] = time.process_time() - cpu_started
    record[f"{label}_rss_before"], record[f"{label}_rss_after"], record[f"{label}_peak"] = before, rss(), high_water()
    return result


def _pipeline(channels_last: bool) -> Any:
    from primedepth_bench.builders import build_primedepth

    import torch

    pipeline = build_primedepth("full", torch.float32, torch.device("cpu"), segmentation=False)
    if channels_last:
        pipeline.enable_channels_last()
    return pipeline


def _inputs(pipeline: Any, size: int) -> Any:
    from primedepth_bench.builders import make_inputs

    import torch

    return make_inputs(pipeline, 1, size, torch.device("cpu"))


def step_export(size: int, workdir: Path, record: dict[str, Any]) -> None:
    from primedepth.casting import drop_empty_fp32_warning
    from primedepth.export.onnx import write_graph

    drop_empty_fp32_warning()
    kernel = record["capture_kernel"]
    pipeline = _measured("build", lambda: _pipeline(channels_last=False), record)
    _measured("export", lambda: write_graph(pipeline, workdir / GRAPH, (size, size), capture_kernel=kernel), record)
    record["graph_bytes"] = sum(p.stat().st_size for p in workdir.iterdir() if p.name.startswith(GRAPH))


def step_torch(size: int, workdir: Path, record: dict[str, Any]) -> None:
    import torch

    from primedepth.casting import drop_empty_fp32_warning

    drop_empty_fp32_warning()
    pipeline = _measured("load", lambda: _pipeline(channels_last=True), record)
    inputs = _inputs(pipeline, size)

    @torch.no_grad()
    def run() -> Any:
        return pipeline.predict_raw(inputs.pixels, inputs.context, posterior_noise=inputs.noise.posterior,
                                    step_noise=inputs.noise.step, output_segmentation=False).depth

    depth = _measured("run", run, record)
    record["output_shape"] = list(depth.shape)


def step_onnx(size: int, workdir: Path, record: dict[str, Any]) -> None:
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("ONNX_MEMORY_THREADS", "0"))
    options.enable_cpu_mem_arena = record["ort_arena"] == "on"
    options.graph_optimization_level = {"basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                        "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                        "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL}[record["ort_level"]]
    session = _measured("load", lambda: onnxruntime.InferenceSession(str(workdir / GRAPH), options,
                                                                     providers=["CPUExecutionProvider"]), record)
    generator = np.random.default_rng(0)
    feeds = {item.name: generator.uniform(-1, 1, item.shape).astype(np.float32) for item in session.get_inputs()}
    (depth,) = _measured("run", lambda: session.run(None, feeds), record)
    record["output_shape"] = list(depth.shape)
    record["onnxruntime"] = onnxruntime.__version__


def run_step(step: str, size: int, workdir: Path, threads: int, kernel: str, ort: tuple[str, str] = ("on", "all")) -> dict[str, Any]:
    """One step in this process; the record as a dict (an `error` entry when it failed)."""
    import torch

    torch.set_num_threads(threads)
    record: dict[str, Any] = {"step": step, "size": size, "rss_start": rss(), "threads": threads,
                              "capture_kernel": kernel if step != "torch" else "padded-sdpa"}
    if step == "onnx":
        record["ort_arena"], record["ort_level"] = ort
    try:
        {"export": step_export, "torch": step_torch, "onnx": step_onnx}[step](size, workdir, record)
    except Exception as error:  # noqa: BLE001 - reported in the table, the other steps still run
        record["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    record["process_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return record


def child(step: str, size: int, workdir: Path, threads: int, timeout: float, kernel: str, ort: tuple[str, str]) -> dict[str, Any]:
    """Run one step in a fresh process (its own peak memory); its record, or why it has none."""
    command = [sys.executable, __file__, "--step", step, "--size", str(size), "--workdir", str(workdir), "--threads", str(threads),
               "--capture-kernel", kernel, "--ort-arena", ort[0], "--ort-level", ort[1]]
    env = dict(os.environ, ONNX_MEMORY_THREADS=str(threads))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"step": step, "size": size, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"step": step, "size": size, "error": f"exit {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def _gib(value: Any) -> str:
    return "—" if value is None else f"{value / GIB:.2f}"


def table(records: list[dict[str, Any]]) -> str:
    """The markdown table of the steps' records."""
    rows = ["| size | process | capture kernel | RSS after build/load GiB | peak while building/loading GiB | peak during the step GiB "
            "| step's peak over RSS before it GiB | step wall s | step CPU s | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        first = "build" if r["step"] == "export" else "load"
        second = "export" if r["step"] == "export" else "run"
        note = r.get("error", "")
        if not note and r["step"] == "export":
            note = f"graph + weights {r.get('graph_bytes', 0) / GIB:.2f} GiB on disk"
        elif not note and r.get("onnxruntime"):
            note = f"onnxruntime {r['onnxruntime']}, CPU provider, arena {r['ort_arena']}, optimisation {r['ort_level']}"
        over = None if f"{second}_peak" not in r else r[f"{second}_peak"] - r[f"{second}_rss_before"]
        seconds, cpu = r.get(f"{second}_seconds"), r.get(f"{second}_cpu_seconds")
        rows.append(f"| {r['size']} | {r['step']} | {r.get('capture_kernel', '—')} | {_gib(r.get(f'{first}_rss_after'))} "
                    f"| {_gib(r.get(f'{first}_peak'))} | {_gib(r.get(f'{second}_peak'))} | {_gib(over)} "
                    f"| {'—' if seconds is None else f'{seconds:.1f}'} | {'—' if cpu is None else f'{cpu:.1f}'} | {note} |")
    return "\n".join(rows)


def machine() -> str:
    import torch

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, {memory:.1f} GiB RAM, "
            f"torch {torch.__version__}, Python {platform.python_version()}, "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M+00:00')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=768, help="square input side, a multiple of 64 (default 768)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # one step, in this process (the children)
    parser.add_argument("--workdir", type=Path, help="where the graph is written (default: a temporary folder, removed)")
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime intra-op threads")
    parser.add_argument("--capture-kernel", choices=["chunked", "padded-sdpa"], default="chunked",
                        help="the export's self-attention capture (`primedepth export onnx --capture-kernel`)")
    parser.add_argument("--ort-arena", choices=["on", "off"], default="on", help="ONNX Runtime's CPU memory arena (default on)")
    parser.add_argument("--ort-level", choices=["all", "extended", "basic"], default="all",
                        help="ONNX Runtime's graph optimisation level (default all)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per step")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    if args.size <= 0 or args.size % 64:
        parser.error("--size must be a positive multiple of 64")
    if args.step:
        print(json.dumps(run_step(args.step, args.size, args.workdir, args.threads, args.capture_kernel, (args.ort_arena, args.ort_level))))
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="onnx-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        records = []
        for step in args.steps:
            print(f"[onnx_memory] {step} at {args.size}...", file=sys.stderr, flush=True)
            records.append(child(step, args.size, workdir, args.threads, args.timeout, args.capture_kernel, (args.ort_arena, args.ort_level)))
            print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = f"Machine: {machine()}\n\nCommand: `{' '.join(['benchmarks/onnx_memory.py', *sys.argv[1:]])}`\n\n{table(records)}\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "records": records}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all("error" not in r for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
