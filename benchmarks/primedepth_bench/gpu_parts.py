"""The four parts of the GPU check (`gpu_check.py`), each adding rows to the report.

Each part guards its configurations one by one (`check_report.guarded`), so a failure of one
(out of memory at 1024 x 8 in the official-style path, say) is a row and the others still run.
Models a part builds are freed when it returns (`gpu_check.run_part`), except PrimeDepth of the
timing part, which the compile part reuses.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from primedepth.devices import parse_dtype

from .builders import build_primedepth, make_inputs
from .compiled import compare_compiled, compile_modules
from .check_report import Budget, CheckReport, guarded
from .interleaved import build_models, run_setting
from .interleaved_tables import runs_of
from .placement import placement_memory
from .precision import TINY_MODEL_BOUND, reference_outputs, stage_errors
from .ratios import comparisons, format_ratio, ratio, ratio_stats, series, spread
from .rounds import RoundPlan
from .tables import format_gib, format_seconds

# The timing part may use this share of the time left when it starts; the rest is the compile part's.
TIMING_SHARE = 0.6


def _mib(value: float | None) -> str:
    """nvidia-smi's MiB as GiB for the table."""
    return "—" if value is None else f"{value / 1024:.2f} GiB"


def memory_part(args: argparse.Namespace, report: CheckReport, budget: Budget, state: dict[str, Any]) -> None:
    """Peak memory of `primedepth predict`'s placement, one dtype after the other."""
    device = torch.device(args.device)
    for name in args.memory_dtypes:
        configuration = f"{args.memory_size}x{args.memory_size} {name} batch 1, depth path on {device.type}"

        def measure() -> None:
            found = placement_memory(args.scale, parse_dtype(name), device, args.memory_size)
            report.data.setdefault("memory", []).append(found)
            peak = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS (process)"
            report.add("memory", configuration, peak, f"{format_gib(found['peak_allocated'])} GiB",
                       f"weights on the device {format_gib(found['weights_on_device'])} GiB; finite: {found['finite']}")
            if found["peak_reserved"] is not None:
                report.add("memory", configuration, "torch.cuda.max_memory_reserved", f"{format_gib(found['peak_reserved'])} GiB")
            report.add("memory", configuration, "nvidia-smi used after the prediction", _mib(found["nvidia_smi_after_mib"]),
                       f"before building: {_mib(found['nvidia_smi_before_mib'])} (includes the CUDA context)")

        budget.check()
        guarded(report, "memory", configuration, measure)


def precision_part(args: argparse.Namespace, report: CheckReport, budget: Budget, state: dict[str, Any]) -> None:
    """Half precision against fp32, stage by stage, on one input of the precision size."""
    device, size = torch.device(args.device), args.precision_size
    reference = build_primedepth(args.scale, torch.float32, device)
    inputs = make_inputs(reference, 1, size, device)
    expected = reference_outputs(reference, inputs)
    for name in args.precision_dtypes:
        dtype, configuration = parse_dtype(name), f"{name} vs fp32, {size}x{size}, random weights"

        def measure() -> None:
            errors = stage_errors(reference, expected, inputs, dtype)
            report.data.setdefault("precision", {})[name] = errors
            for stage, value in errors.items():
                detail = "" if stage.startswith("end to end") else f"tiny-model test bound {TINY_MODEL_BOUND.get(dtype, 0):.0%}"
                report.add("precision", configuration, f"relative RMS: {stage}", f"{value:.3%}", detail)

        budget.check()
        guarded(report, "precision", configuration, measure)


def timing_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The interleaved worker spec of the timing part: one dtype, every compared path on the device."""
    return {"device": args.device, "scale": args.scale, "dtypes": [args.dtype], "channels_last": True,
            "modes": ["primedepth", "capture", "official", "marigold", "dav2"], "dav2_size": args.dav2_size,
            "warmup": args.warmup, "min_rounds": args.min_rounds, "max_rounds": args.rounds, "pause": args.pause}


def timing_rows(report: CheckReport, record: dict[str, Any], dtype: str) -> None:
    """Seconds per image of every path and every ratio (with its range) of one setting."""
    configuration = f"{record['size']}x{record['size']} batch {record['batch']} {dtype}"
    rounds, batch = record["rounds"], record["batch"]
    for label, path, quantity in runs_of(dtype, "wall"):
        values = spread(series(rounds, quantity))
        status = record.get("failed", {}).get(path, "ok" if values else "not run")
        value = "—" if values is None else f"{format_seconds(values.median / batch)} s/img"
        detail = "" if values is None else f"min {format_seconds(values.minimum / batch)} s/img, {values.rounds} rounds"
        report.add("timing", configuration, label, value, detail, status)
    for name, pair in comparisons(dtype).items():
        stats = ratio(rounds, *pair)
        if stats is not None:
            report.add("timing", configuration, name, format_ratio(stats), f"min/min {stats.min_min:.2f}x, {stats.rounds} rounds")


def timing_part(args: argparse.Namespace, report: CheckReport, budget: Budget, state: dict[str, Any]) -> None:
    """Every (size, batch), all paths interleaved in rounds, within its share of the time left."""
    spec = timing_spec(args)
    models = build_models(spec)
    state["primedepth"] = models.primedepth[args.dtype]
    settings = [(size, batch) for batch in args.batch_sizes for size in args.sizes]
    ends_at = budget.left() * (1 - TIMING_SHARE)  # the seconds left for the compile part
    for index, (size, batch) in enumerate(settings):
        share = (budget.left() - ends_at) / (len(settings) - index)

        def measure() -> None:
            record = run_setting(models, spec, size, batch, share)
            report.data.setdefault("timing", []).append(record)
            timing_rows(report, record, args.dtype)

        budget.check(ends_at)
        guarded(report, "timing", f"{size}x{size} batch {batch} {args.dtype}", measure)


def compile_rows(report: CheckReport, found: dict[str, Any], dtype: str, backend: str) -> None:
    """Compile time, eager and compiled seconds per image, and their ratio with its range."""
    configuration = f"{found['size']}x{found['size']} batch {found['batch']} {dtype}, {backend}"
    rounds, batch = found["rounds"], found["batch"]
    compile_seconds = found["compile_seconds"]
    report.add("compile", configuration, "compile time (first call - median call)",
               "—" if compile_seconds is None else f"{compile_seconds:.1f} s", f"first call {found['first_call']:.1f} s")
    for name in ("eager", "compiled"):
        values = spread(series(rounds, lambda r, n=name: r["seconds"].get(n)))
        status = found["failed"].get(name, "ok")
        report.add("compile", configuration, f"PrimeDepth {name}", "—" if values is None else f"{format_seconds(values.median / batch)} s/img",
                   "" if values is None else f"min {format_seconds(values.minimum / batch)} s/img, {values.rounds} rounds", status)
    stats = ratio_stats(series(rounds, lambda r: r["seconds"].get("eager")), series(rounds, lambda r: r["seconds"].get("compiled")))
    if stats is not None:
        report.add("compile", configuration, "eager / compiled", format_ratio(stats), f"min/min {stats.min_min:.2f}x")


def compile_part(args: argparse.Namespace, report: CheckReport, budget: Budget, state: dict[str, Any]) -> None:
    """Compile PrimeDepth's walk and depth head, then every (size, batch) eager vs compiled."""
    device, dtype = torch.device(args.device), parse_dtype(args.dtype)
    pipeline = state.get("primedepth")
    if pipeline is None:  # the timing part did not run (or failed before building)
        pipeline = build_primedepth(args.scale, dtype, device, segmentation=False)
        pipeline.enable_channels_last()
    count = compile_modules(pipeline, args.compile_backend, args.compile_modules)
    what = "the UNet blocks the preimage walk calls, and the depth head" if args.compile_modules == "walk-and-head" else "the depth head"
    report.add("compile", f"{args.dtype}, backend {args.compile_backend}", "modules compiled", str(count), what)
    plan = RoundPlan(warmup=args.warmup, min_rounds=args.min_rounds, max_rounds=args.rounds, pause=args.pause)
    for size, batch in [(size, batch) for batch in args.batch_sizes for size in args.sizes]:

        def measure() -> None:
            found = compare_compiled(pipeline, size, batch, device, plan)
            report.data.setdefault("compile", []).append(found)
            compile_rows(report, found, args.dtype, args.compile_backend)

        budget.check()
        guarded(report, "compile", f"{size}x{size} batch {batch} {args.dtype}", measure)


PART_FUNCTIONS = {"memory": memory_part, "precision": precision_part, "timing": timing_part, "compile": compile_part}
