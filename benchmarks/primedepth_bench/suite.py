"""The command line of `benchmark_inference.py`.

Default, for comparisons: the interleaved mode (`interleaved.py`): every compared path built
once per worker process and timed in rounds, ratios with their range across rounds.
`--isolated`: one fresh subprocess per configuration (its peak memory is its own), the
configurations one after another. Either way tables are printed and saved; `--from-json`
re-renders saved results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from primedepth.devices import DTYPE_CHOICES
from primedepth.model.attention_maps import SELF_CAPTURE_KERNELS

from .builders import DAV2_SIZE, SCALES
from .interleaved import PROCESS_GROUPINGS, run_interleaved
from .interleaved_tables import format_interleaved
from .tables import format_gib, format_seconds, format_tables, machine_description
from .worker import run_in_subprocess

MODES = ("capture", "primedepth", "official", "floor", "marigold", "dav2")
# What identifies a configuration: a later results file's replaces an earlier one's (--from-json).
CONFIGURATION_KEY = ("mode", "size", "dtype", "batch", "device")

DESCRIPTION = "PrimeDepth inference benchmark: interleaved timings with ratio ranges (default) or isolated runs with peak memory."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments, with the device-dependent dtype default and --quick applied."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=DTYPE_CHOICES, help="default: fp32 bf16 on CPU, fp32 fp16 on CUDA")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--isolated", action="store_true", help="one subprocess per configuration, one after another "
                        "(per-configuration peak memory; ratios then compare runs minutes apart)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved: timed rounds (default 3); with --budget the "
                        "most rounds (default 20)")
    parser.add_argument("--min-rounds", type=int, default=2, help="interleaved: rounds run even past the budget (a range needs 2)")
    parser.add_argument("--pause", type=float, default=0.5, help="interleaved: seconds between two calls")
    parser.add_argument("--processes", default="per-dtype", choices=PROCESS_GROUPINGS,
                        help="interleaved: worker processes, one per dtype (default), one for all, or one per setting")
    parser.add_argument("--repeats", type=int, default=3, help="isolated: timed calls per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls (interleaved: rounds) before timing")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dav2-size", type=int, default=DAV2_SIZE)
    parser.add_argument("--channels-last", action="store_true", help="PrimeDepth (and the floor) run with channels-last VAE and heads, as "
                        "`primedepth predict` does; the official-style path stays NCHW")
    parser.add_argument("--capture-kernels", nargs="*", default=list(SELF_CAPTURE_KERNELS), choices=list(SELF_CAPTURE_KERNELS),
                        help="interleaved: the UNet walk once per self-attention capture kernel, in the capture path (default: "
                             "all; none: only the default kernel)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker (CPU)")
    parser.add_argument("--scale", default="full", choices=SCALES, help="tiny: the test model (smoke runs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256x256, fp32, batch 1, 1 repeat after 1 warm-up, DAv2 at 252")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per configuration (interleaved: per setting)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole run: interleaved, the rounds adapt "
                        "to it; isolated, no configuration starts after it")
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
        args.dav2_size, args.rounds = 252, 2
    if args.rounds is None:
        args.rounds = 20 if args.budget is not None else 3
    args.min_rounds = min(args.min_rounds, args.rounds)
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


def _merge_interleaved(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Interleaved reports as one: their workers in file order (a later setting replaces the same one)."""
    return {"kind": "interleaved", "workers": [w for r in reports for w in r["workers"]],
            "load_before": reports[0].get("load_before"), "load_after": reports[-1].get("load_after"),
            "seconds": sum(r.get("seconds", 0.0) for r in reports)}


def _merge_isolated(saved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Isolated results merged (a later file's configuration replaces an earlier one's), in run order."""
    merged: dict[tuple, dict[str, Any]] = {}
    for result in (r for file in saved for r in file["results"]):
        key = tuple(result.get(k) for k in CONFIGURATION_KEY)
        merged.pop(key, None)  # re-inserted: it takes the later file's place in the order
        merged[key] = result
    order = {mode: index for index, mode in enumerate(MODES)}
    return sorted(merged.values(), key=lambda r: (r["batch"], order[r["mode"]], r["dtype"] != "fp32", r["size"]))


def render_from_json(args: argparse.Namespace) -> str:
    """Tables of saved results files of one kind (interleaved or isolated), merged; also saved
    with --json / --markdown."""
    saved = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.from_json]
    kinds = {file.get("kind", "isolated") for file in saved}
    if len(kinds) > 1:
        raise SystemExit("--from-json: interleaved and isolated results cannot be merged into one table")
    machines = [file["machine"] for file in saved]
    header = "\n".join(f"Machine ({path}): {machine}" for path, machine in zip(args.from_json, machines))
    if kinds == {"interleaved"}:
        report = dict(_merge_interleaved(saved), machine=" | ".join(dict.fromkeys(machines)))
        table = f"{header}\n\n{format_interleaved(report)}"
        _write(args.json, json.dumps(report, indent=1))
    else:
        results = _merge_isolated(saved)
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


def _command(argv: list[str] | None) -> str:
    """The command line as run, for the saved tables."""
    return " ".join(sys.argv if argv is None else ["benchmarks/benchmark_inference.py", *argv])


def main_isolated(args: argparse.Namespace, command: str) -> str:
    """The isolated mode: every configuration in its own subprocess, one after another."""
    results = run_suite(args)
    table = format_tables(results)
    machine = machine_description(args.device)
    _write(args.markdown, f"Machine: {machine}\n\nCommand: `{command}`\n\n{table}\n")
    return f"Machine: {machine}\n\n{table}"


def main_interleaved(args: argparse.Namespace, command: str) -> str:
    """The interleaved mode: the report is saved after every worker (--json), tables at the end."""
    machine = machine_description(args.device).replace(f"torch threads {torch.get_num_threads()}", f"torch threads {args.threads or 'default'}")

    def save(report: dict[str, Any]) -> None:
        _write(args.json, json.dumps(dict(report, machine=machine, command=command), indent=1))

    report = run_interleaved(args, save)
    text = f"Machine: {machine}\n\nCommand: `{command}`\n\n{format_interleaved(report)}"
    _write(args.markdown, text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point of `benchmarks/benchmark_inference.py`."""
    args = parse_args(argv)
    if args.from_json:
        print(render_from_json(args))
        return 0
    command = _command(argv)
    print(main_isolated(args, command) if args.isolated else main_interleaved(args, command))
    return 0
