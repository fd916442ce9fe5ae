"""The command line of `benchmark_inference.py`: plan the configurations, run each in its own
subprocess within a time budget, print and save the tables; or re-render saved results."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from primedepth.devices import DTYPE_CHOICES

from .builders import DAV2_SIZE, SCALES
from .tables import format_gib, format_seconds, format_tables, machine_description
from .worker import run_in_subprocess

MODES = ("capture", "primedepth", "official", "floor", "marigold", "dav2")
# What identifies a configuration: a later results file's replaces an earlier one's (--from-json).
CONFIGURATION_KEY = ("mode", "size", "dtype", "batch", "device")

DESCRIPTION = "PrimeDepth inference benchmark: per-stage timings, peak memory and baselines, as a table."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments, with the device-dependent dtype default and --quick applied."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=DTYPE_CHOICES, help="default: fp32 bf16 on CPU, fp32 fp16 on CUDA")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dav2-size", type=int, default=DAV2_SIZE)
    parser.add_argument("--channels-last", action="store_true", help="PrimeDepth (and the floor) run with channels-last VAE and heads, as "
                        "`primedepth predict` does; the official-style path stays NCHW")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker (CPU)")
    parser.add_argument("--scale", default="full", choices=SCALES, help="tiny: the test model (smoke runs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256x256, fp32, batch 1, 1 repeat after 1 warm-up, DAv2 at 252")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per configuration")
    parser.add_argument("--budget", type=float, default=None, help="stop starting configurations after this many seconds")
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--markdown", default=None, help="write the table (with the machine) to this file")
    parser.add_argument("--from-json", nargs="+", default=None,
                        help="only re-render tables from results files written by --json (a later file's "
                             "configuration replaces the same configuration of an earlier one)")
    args = parser.parse_args(argv)
    if args.dtypes is None:
        args.dtypes = ["fp32", "fp16"] if args.device == "cuda" else ["fp32", "bf16"]
    if args.quick:
        args.sizes, args.dtypes, args.batch_sizes, args.repeats, args.warmup = [256], ["fp32"], [1], 1, 1
        args.dav2_size = 252
    return args


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Configurations in run order, so that a time budget cuts the least important tail.

    Per batch size: PrimeDepth, its floor and the official-style baseline at every size and dtype
    first (the official-style path is always fp32), then Depth Anything V2, then Marigold.
    """
    common = {"device": args.device, "repeats": args.repeats, "warmup": args.warmup, "scale": args.scale,
              "threads": args.threads, "channels_last": args.channels_last}
    specs = []
    for batch in args.batch_sizes:
        for dtype in args.dtypes:
            for size in args.sizes:
                modes = ["capture", "primedepth", "floor"] + (["official"] if dtype == args.dtypes[0] else [])
                specs += [dict(common, mode=mode, size=size, dtype="fp32" if mode == "official" else dtype, batch=batch)
                          for mode in modes]
        specs += [dict(common, mode="dav2", size=args.dav2_size, dtype=dtype, batch=batch) for dtype in args.dtypes]
        specs += [dict(common, mode="marigold", size=size, dtype=dtype, batch=batch) for size in args.sizes for dtype in args.dtypes]
    return [s for s in specs if s["mode"] in args.modes]


def _write(path: str | None, text: str) -> None:
    """Write `text` to an optional output file (the options default to no file)."""
    if path:
        Path(path).write_text(text, encoding="utf-8")


def _save_json(path: str | None, machine: str, results: list[dict[str, Any]]) -> None:
    """Results with their machine, in the format --from-json reads back."""
    _write(path, json.dumps({"machine": machine, "results": results}, indent=1))


def render_from_json(args: argparse.Namespace) -> str:
    """Tables of saved results files, merged (a later file's configuration replaces an earlier
    one's), in the order the suite runs them; also saved with --json / --markdown."""
    merged: dict[tuple, dict[str, Any]] = {}
    machines = []
    for path in args.from_json:
        saved = json.loads(Path(path).read_text(encoding="utf-8"))
        machines.append(saved["machine"])
        for result in saved["results"]:
            key = tuple(result.get(k) for k in CONFIGURATION_KEY)
            merged.pop(key, None)  # re-inserted: it takes the later file's place in the order
            merged[key] = result
    order = {mode: index for index, mode in enumerate(MODES)}
    results = sorted(merged.values(), key=lambda r: (r["batch"], order[r["mode"]], r["dtype"] != "fp32", r["size"]))
    header = "\n".join(f"Machine ({path}): {machine}" for path, machine in zip(args.from_json, machines))
    table = f"{header}\n\n{format_tables(results)}"
    _save_json(args.json, " | ".join(dict.fromkeys(machines)), results)
    _write(args.markdown, table + "\n")
    return table


def run_suite(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every planned configuration in its own subprocess, until the budget is spent; the rest are
    listed as not run. Partial results are saved after each configuration (--json)."""
    specs = plan(args)
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, spec in enumerate(specs):
        label = f"[{index + 1}/{len(specs)}] {spec['mode']} {spec['size']} {spec['dtype']} b{spec['batch']}"
        if args.budget is not None and time.perf_counter() - started > args.budget:
            results.append(dict(spec, status="not run: time budget spent"))
            print(f"{label}: skipped (budget)", file=sys.stderr, flush=True)
            continue
        result = run_in_subprocess(spec, args.timeout)
        results.append(result)
        print(f"{label}: {result['status']} total={format_seconds(result.get('total'))} s peak={format_gib(result.get('peak_memory'))} GiB "
              f"({result.get('wall_seconds', 0):.0f} s wall)", file=sys.stderr, flush=True)
        _save_json(args.json, machine_description(args.device), results)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point of `benchmarks/benchmark_inference.py`."""
    args = parse_args(argv)
    if args.from_json:
        print(render_from_json(args))
        return 0
    results = run_suite(args)
    table = format_tables(results)
    machine = machine_description(args.device)
    print(f"Machine: {machine}\n\n{table}")
    command = " ".join(sys.argv if argv is None else ["benchmarks/benchmark_inference.py", *argv])
    _write(args.markdown, f"Machine: {machine}\n\nCommand: `{command}`\n\n{table}\n")
    return 0
