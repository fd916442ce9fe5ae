"""Markdown tables of benchmark results, and the machine they were taken on.

Three tables: PrimeDepth with its ratios to every other run (> 1: PrimeDepth is that many
times faster / leaner), the per-stage breakdown, the baselines. A failed or skipped
configuration keeps its row, with its status, so nothing disappears silently.
"""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

import diffusers
import psutil  # an accelerate dependency, so always present with primedepth
import torch
import transformers

Result = dict[str, Any]
DASH = "—"


def format_seconds(value: float | None) -> str:
    """Seconds with three decimals below one second, two above; a dash when missing."""
    return DASH if value is None else (f"{value:.3f}" if value < 1 else f"{value:.2f}")


def format_gib(value: int | None) -> str:
    """Bytes as GiB with two decimals; a dash when missing."""
    return DASH if value is None else f"{value / 2**30:.2f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    """numerator / denominator as "1.23x"; a dash when either is missing (a run failed or was not planned)."""
    if not numerator or not denominator:
        return DASH
    return f"{numerator / denominator:.2f}x"


def _working(result: Result | None) -> int | None:
    """Peak minus the resident memory after building the models: the run's working memory."""
    if not result or result.get("resident_before") is None:
        return None
    return max(1, result["peak_memory"] - result["resident_before"])


def _find(results: list[Result], **match: Any) -> Result | None:
    """The first successful result with all the given fields."""
    for result in results:
        if result.get("status") == "ok" and all(result.get(k) == v for k, v in match.items()):
            return result
    return None


def _get(result: Result | None, key: str) -> Any:
    """A field of a result that may be missing altogether."""
    return result.get(key) if result else None


def table_header(header: list[str]) -> list[str]:
    """A markdown table's header and separator lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]


def table_row(cells: list[Any]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _failed_row(cells: list[Any], status: str, columns: int) -> str:
    """A row of a configuration that did not complete: its key, its status, dashes."""
    return table_row([*cells, status, *[DASH] * (columns - len(cells) - 1)])


MAIN_COLUMNS = ["size", "dtype", "batch", "total s/img", "{memory}", "vs official (time)", "vs official (peak)",
                "vs official (working mem)", "over floor (time)", "UNet+preimage / bare UNet", "vs Marigold 1x1",
                "vs Marigold v1-1 4x1", "vs Marigold v1-0 50x10", "vs DAv2-L 518"]


def _capture_ratio(results: list[Result], result: Result, floor: Result | None) -> tuple[float | None, float | None]:
    """(walk, bare UNet) seconds: from the interleaved `capture` run (robust to load changes)
    when there is one, else from the `primedepth` and `floor` stage timings."""
    key = {k: result[k] for k in ("size", "batch", "device", "dtype")}
    capture = _find(results, mode="capture", **key)
    if capture:
        return capture["stages"]["unet_preimage"], capture["stages"]["unet_bare"]
    return result.get("stages", {}).get("unet_preimage"), floor and floor["stages"]["unet_bare"]


def _main_row(results: list[Result], result: Result) -> str:
    """One PrimeDepth configuration against the official-style path, the floor and the baselines."""
    key = {"size": result["size"], "batch": result["batch"], "device": result["device"]}
    same = dict(key, dtype=result["dtype"])
    official, floor = _find(results, mode="official", **key), _find(results, mode="floor", **same)
    marigold = _find(results, mode="marigold", **same)
    dav2 = _find(results, mode="dav2", dtype=result["dtype"], batch=result["batch"], device=result["device"])
    extrapolated = _get(marigold, "extrapolated") or {}
    total, peak = result["total"], result["peak_memory"]
    return table_row([
        result["size"], result["dtype"], result["batch"], format_seconds(total / result["batch"]), format_gib(peak),
        _ratio(_get(official, "total"), total), _ratio(_get(official, "peak_memory"), peak),
        _ratio(_working(official), _working(result)), _ratio(total, _get(floor, "total")),
        _ratio(*_capture_ratio(results, result, floor)), _ratio(_get(marigold, "total"), total),
        _ratio(extrapolated.get("v1-1 (4x1)"), total), _ratio(extrapolated.get("v1-0 (50x10)"), total),
        _ratio(_get(dav2, "total"), total),
    ])


def main_table(results: list[Result]) -> list[str]:
    """One row per PrimeDepth configuration, with its ratios to the other runs."""
    memory = "peak RSS GiB" if all(r.get("device", "cpu") == "cpu" for r in results) else "peak GiB"
    lines = table_header([memory if c == "{memory}" else c for c in MAIN_COLUMNS])
    for result in (r for r in results if r.get("mode") == "primedepth"):
        if result.get("status") != "ok":
            lines.append(_failed_row([result["size"], result["dtype"], result["batch"]], result["status"], len(MAIN_COLUMNS)))
        else:
            lines.append(_main_row(results, result))
    return lines


STAGE_COLUMNS = ["run", "size", "dtype", "batch", "text encode", "VAE encode", "UNet + preimage / bare UNet", "UNet tail",
                 "refiner", "depth head", "seg head", "total", "peak GiB", "before GiB"]


def _stage_row(result: Result) -> str:
    """A run's stage medians; the UNet column shows walk / bare UNet for the interleaved `capture` run."""
    stages = result.get("stages", {})
    unet = format_seconds(stages.get("unet_preimage", stages.get("unet_bare")))
    if result["mode"] == "capture":
        unet = f"{format_seconds(stages['unet_preimage'])} / {format_seconds(stages['unet_bare'])}"
    timed = [stages.get(name) for name in ("unet_tail", "refiner", "depth_head", "seg_head")]
    return table_row([
        result["mode"], result["size"], result["dtype"], result["batch"], format_seconds(stages.get("text_encode")),
        format_seconds(stages.get("vae_encode")), unet, *map(format_seconds, timed), format_seconds(result["total"]),
        format_gib(result["peak_memory"]), format_gib(result.get("resident_before")),
    ])


def stage_table(results: list[Result]) -> list[str]:
    """Median seconds of every stage of the PrimeDepth-like runs."""
    lines = ["Per stage (median seconds per batch; `unet+preimage` is the UNet walk with map capture, materialised):", ""]
    lines += table_header(STAGE_COLUMNS)
    for result in results:
        if result.get("mode") not in ("capture", "primedepth", "official", "floor"):
            continue
        key = [result["mode"], result["size"], result["dtype"], result["batch"]]
        lines.append(_stage_row(result) if result.get("status") == "ok" else _failed_row(key, result["status"], len(STAGE_COLUMNS)))
    return lines


BASELINE_COLUMNS = ["run", "size", "dtype", "batch", "measured total", "VAE encode", "UNet (1 pass)", "VAE decode",
                    "v1-1 4x1 (extrap.)", "v1-0 50x10 (extrap.)", "peak GiB"]
BASELINE_NAMES = {"marigold": "Marigold 1x1", "dav2": "Depth Anything V2-L"}


def baseline_table(results: list[Result]) -> list[str]:
    """Marigold (measured, and extrapolated to its protocols) and Depth Anything V2."""
    lines = ["Baselines (median seconds per batch):", ""] + table_header(BASELINE_COLUMNS)
    for result in (r for r in results if r.get("mode") in BASELINE_NAMES):
        key = [BASELINE_NAMES[result["mode"]], result["size"], result["dtype"], result["batch"]]
        if result.get("status") != "ok":
            lines.append(_failed_row(key, result["status"], len(BASELINE_COLUMNS)))
            continue
        stages, extrapolated = result.get("stages", {}), result.get("extrapolated", {})
        timed = [stages.get("vae_encode"), stages.get("unet"), stages.get("vae_decode"),
                 extrapolated.get("v1-1 (4x1)"), extrapolated.get("v1-0 (50x10)")]
        lines.append(table_row([*key, format_seconds(result["total"]), *map(format_seconds, timed), format_gib(result["peak_memory"])]))
    return lines


def format_tables(results: list[Result]) -> str:
    """Markdown: the PrimeDepth table with ratios, the stage breakdown, the baselines, failures."""
    lines = main_table(results) + [""] + stage_table(results) + [""] + baseline_table(results)
    bad = [r for r in results if r.get("status") == "ok" and not r.get("finite", True)]
    if bad:
        lines += ["", "Non-finite outputs: " + ", ".join(f"{r['mode']} {r['size']} {r['dtype']} b{r['batch']}" for r in bad)]
    return "\n".join(lines)


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else (platform.processor() or "unknown CPU")


def machine_description(device: str) -> str:
    """CPU, memory, GPU and library versions, printed above the tables (timings depend on them)."""
    parts = [f"CPU: {_cpu_name()}, {os.cpu_count()} logical cores visible, torch threads {torch.get_num_threads()}",
             f"RAM: {psutil.virtual_memory().total / 2**30:.1f} GiB"]
    if device == "cuda" and torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    parts.append(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
                 f"Python {platform.python_version()}")
    parts.append(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}")
    return "; ".join(parts)
