"""Markdown tables of an interleaved run (`interleaved.run_interleaved`'s report, or its JSON).

Every number is computed here from the raw per-round seconds kept in the report, so a saved
report re-renders exactly (`--from-json`). Seconds are medians (and minima) across rounds;
ratios are medians of per-round ratios with their range, "tie (noise)" when it crosses 1.0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from primedepth.model.attention_maps import SELF_CAPTURE_KERNELS

from .paths import kernel_stage, path_key
from .ratios import (
    DASH,
    Series,
    MARIGOLD_PROTOCOLS,
    comparisons,
    floor_seconds,
    format_ratio,
    marigold_seconds,
    ratio,
    series,
    spread,
    stage,
    total,
)
from .tables import format_gib, format_seconds, table_header, table_row

Record = dict[str, Any]
Row = tuple[Record, str]  # a setting's record and one of its dtypes


def setting_rows(report: dict[str, Any]) -> list[Row]:
    """(setting record, dtype) of every finished setting; a later one replaces the same
    (size, batch, dtype, device), so merged reports keep the newest measurement."""
    found: dict[tuple, Row] = {}
    for worker in report["workers"]:
        for record in (e for e in worker["events"] if e.get("event") == "setting"):
            for dtype in record["dtypes"]:
                key = (record["size"], record["batch"], dtype, record["device"])
                found.pop(key, None)
                found[key] = (record, dtype)
    order = {dtype: index for index, dtype in enumerate(("fp32", "bf16", "fp16"))}
    return sorted(found.values(), key=lambda row: (row[0]["batch"], order.get(row[1], 9), row[0]["size"]))


def missing_settings(report: dict[str, Any]) -> list[str]:
    """Planned settings that a worker did not finish, with the worker's status: nothing vanishes."""
    done = {(r["size"], r["batch"], d) for r, d in setting_rows(report)}
    lines = []
    for worker in report["workers"]:
        for size, batch in worker["spec"]["settings"]:
            lines += [f"- {size} {dtype} batch {batch}: not measured (worker: {worker['status']})"
                      for dtype in worker["spec"]["dtypes"] if (size, batch, dtype) not in done]
    return lines


def _key(record: Record, dtype: str) -> list[Any]:
    """The first cells of a row: size, dtype, batch."""
    return [record["size"], dtype, record["batch"]]


RATIO_NAMES = list(comparisons("bf16"))  # every ratio of any dtype (fp32 rows have no "vs PrimeDepth fp32")
MAIN_COLUMNS = ["size", "dtype", "batch", "rounds", "PrimeDepth s/img median (min)", *RATIO_NAMES]


def main_table(rows: Sequence[Row], clock: str = "wall") -> list[str]:
    """One row per setting and dtype: PrimeDepth's seconds and every ratio with its range."""
    lines = table_header([c.replace("s/img", "CPU s/img") if clock == "cpu" else c for c in MAIN_COLUMNS])
    for record, dtype in rows:
        rounds = record["rounds"]
        ours = spread(series(rounds, total("primedepth", dtype, clock)))
        seconds = DASH if ours is None else f"{format_seconds(ours.median / record['batch'])} ({format_seconds(ours.minimum / record['batch'])})"
        found = comparisons(dtype, clock)
        ratios = [format_ratio(ratio(rounds, *found[name])) if name in found else DASH for name in RATIO_NAMES]
        lines.append(table_row([*_key(record, dtype), len(rounds), seconds, *ratios]))
    return lines


RATIO_COLUMNS = ["size", "dtype", "batch", "ratio", "clock", "median of per-round ratios", "range across rounds", "min/min",
                 "rounds", "reading"]


def ratio_table(rows: Sequence[Row], clocks: Sequence[str]) -> list[str]:
    """Every ratio in full: median, range, min/min, rounds, and whether it is a tie."""
    lines = table_header(RATIO_COLUMNS)
    for record, dtype in rows:
        for name in comparisons(dtype):
            for clock in clocks:
                stats = ratio(record["rounds"], *comparisons(dtype, clock)[name])
                if stats is None:
                    continue
                reading = "tie (noise)" if stats.tie else "same side of 1 in every round"
                lines.append(table_row([*_key(record, dtype), name, clock, f"{stats.median:.2f}x", f"{stats.low:.2f}-{stats.high:.2f}x",
                                        f"{stats.min_min:.2f}x", stats.rounds, reading]))
    return lines


def runs_of(dtype: str, clock: str) -> list[tuple[str, str, Series]]:
    """(label, path whose failure it shares, per-round seconds) of every run of a dtype."""
    return [("PrimeDepth", path_key("primedepth", dtype), total("primedepth", dtype, clock)),
            ("floor (derived)", path_key("capture", dtype), floor_seconds(dtype, clock)),
            ("official-style (fp32)", path_key("official", "fp32"), total("official", "fp32", clock)),
            ("Marigold 1x1", path_key("marigold", dtype), total("marigold", dtype, clock)),
            ("Depth Anything V2-L", path_key("dav2", dtype), total("dav2", dtype, clock))]


def seconds_table(rows: Sequence[Row], clock: str = "wall") -> list[str]:
    """Median and minimum seconds per image of every run, with its rounds or failure."""
    unit = "s/img" if clock == "wall" else "CPU s/img"
    lines = table_header(["size", "dtype", "batch", "run", f"median {unit}", f"min {unit}", "rounds", "status"])
    for record, dtype in rows:
        for label, path, quantity in runs_of(dtype, clock):
            values = spread(series(record["rounds"], quantity))
            status = record.get("failed", {}).get(path, "ok" if values else "not run")
            cells = [DASH, DASH, 0] if values is None else [
                format_seconds(values.median / record["batch"]), format_seconds(values.minimum / record["batch"]), values.rounds]
            lines.append(table_row([*_key(record, dtype), label, *cells, status]))
    return lines


STAGE_NAMES = ["text_encode", "vae_encode", "unet", "unet_tail", "refiner", "depth_head", "seg_head", "total"]
STAGE_COLUMNS = ["run", "size", "dtype", "batch", "text encode", "VAE encode", "UNet + preimage / bare UNet", "UNet tail",
                 "refiner", "depth head", "seg head", "total"]


def _median(rounds: Sequence[Record], quantity: Series) -> str:
    """A quantity's median across rounds, formatted; a dash when it was not measured."""
    values = spread(series(rounds, quantity))
    return DASH if values is None else format_seconds(values.median)


def _stage_line(run: str, key: list[Any], cells: dict[str, str]) -> str:
    """A stage-table row; stages a run does not have are dashes."""
    return table_row([run, *key, *(cells.get(name, DASH) for name in STAGE_NAMES)])


def _stage_lines(record: Record, dtype: str, clock: str) -> list[str]:
    """PrimeDepth (encoder and head from its call, walk and refiner from the capture call), the
    capture pair, the derived floor and, once per setting, the official-style stages."""
    rounds, key = record["rounds"], _key(record, dtype)
    ours = {name: _median(rounds, stage("primedepth", dtype, name, clock)) for name in ("vae_encode", "depth_head")}
    walk, refiner, bare = (_median(rounds, stage("capture", dtype, name, clock)) for name in ("unet_preimage", "refiner", "unet_bare"))
    end_to_end = _median(rounds, total("primedepth", dtype, clock))
    lines = [_stage_line("primedepth", key, dict(ours, unet=walk, refiner=refiner, total=end_to_end)),
             _stage_line("capture", key, {"unet": f"{walk} / {bare}"})]
    for kernel in SELF_CAPTURE_KERNELS:
        kernel_walk = _median(rounds, stage("capture", dtype, kernel_stage(kernel), clock))
        if kernel_walk != DASH:
            lines.append(_stage_line(f"capture, {kernel} kernel", key, {"unet": f"{kernel_walk} / {bare}"}))
    lines.append(_stage_line("floor (derived)", key, dict(ours, unet=bare, total=_median(rounds, floor_seconds(dtype, clock)))))
    if dtype == record["dtypes"][0]:
        official = {name: _median(rounds, stage("official", "fp32", name, clock)) for name in STAGE_NAMES}
        official.update(unet=_median(rounds, stage("official", "fp32", "unet_preimage", clock)),
                        total=_median(rounds, total("official", "fp32", clock)))
        lines.append(_stage_line("official (fp32)", [record["size"], "fp32", record["batch"]], official))
    return lines


def stage_table(rows: Sequence[Row], clock: str = "wall") -> list[str]:
    """Median seconds per batch of every stage, from the same rounds as the totals."""
    what = "seconds" if clock == "wall" else "CPU seconds"
    lines = [f"Per stage (median {what} per batch across rounds; PrimeDepth's VAE encode and depth head are timed "
             "inside its end-to-end call, its UNet walk and refiner in the `capture` call; the floor is derived):", ""]
    lines += table_header(STAGE_COLUMNS)
    for record, dtype in rows:
        lines += _stage_lines(record, dtype, clock)
    return lines


def baseline_table(rows: Sequence[Row], clock: str = "wall") -> list[str]:
    """Marigold (its stages, timed inside its call, and the extrapolated protocols) and DAv2."""
    protocols = sorted(MARIGOLD_PROTOCOLS.items(), key=lambda item: item[1])
    lines = [f"Baselines (median {'seconds' if clock == 'wall' else 'CPU seconds'} per batch across rounds):", ""]
    lines += table_header(["run", "size", "dtype", "batch", "median total", "min total", "VAE encode", "UNet (1 pass)",
                           "VAE decode", *[f"{name} (extrap.)" for name, _ in protocols]])
    for record, dtype in rows:
        rounds = record["rounds"]
        measured = spread(series(rounds, total("marigold", dtype, clock)))
        if measured is not None:
            stages = [_median(rounds, stage("marigold", dtype, name, clock)) for name in ("vae_encode", "unet", "vae_decode")]
            extrapolated = [_median(rounds, marigold_seconds(dtype, *protocol, clock)) for _, protocol in protocols]
            lines.append(table_row(["Marigold", *_key(record, dtype), format_seconds(measured.median),
                                    format_seconds(measured.minimum), *stages, *extrapolated]))
        dav2 = spread(series(rounds, total("dav2", dtype, clock)))
        if dav2 is not None:
            lines.append(table_row(["Depth Anything V2-L", f"{record['dav2_size']} (for {record['size']})", dtype, record["batch"],
                                    format_seconds(dav2.median), format_seconds(dav2.minimum), *[DASH] * (3 + len(protocols))]))
    return lines


def _load(values: Sequence[float] | None) -> str:
    """Load averages as "1.20 / 1.10 / 0.90"."""
    return DASH if not values else " / ".join(f"{v:.2f}" for v in values)


def run_notes(report: dict[str, Any]) -> list[str]:
    """How the run went: load averages, each worker's build and memory, each setting's rounds."""
    lines = [f"Load average (1 / 5 / 15 min): before {_load(report.get('load_before'))}, after {_load(report.get('load_after'))}"
             + (f"; {report['seconds'] / 60:.1f} min in all" if report.get("seconds") else ""), ""]
    for worker in report["workers"]:
        built = next((e for e in worker["events"] if e.get("event") == "built"), {})
        lines.append(f"- worker {' + '.join(worker['spec']['dtypes'])} ({worker['status']}): built in "
                     f"{built.get('build_seconds', 0):.0f} s, {format_gib(built.get('resident_after_build'))} GiB resident after building")
        for record in (e for e in worker["events"] if e.get("event") == "setting"):
            budget = DASH if record.get("budget") is None else f"{record['budget']:.0f} s"
            lines.append(f"  - {record['size']} batch {record['batch']}: {len(record['rounds'])} rounds after {len(record['warmup'])} "
                         f"warm-up, {record['wall_seconds']:.0f} s (budget {budget}); load {_load(record['load_before'])} -> "
                         f"{_load(record['load_after'])}; peak {format_gib(record.get('peak_memory'))} GiB")
    return lines


def _non_finite(rows: Sequence[Row]) -> list[str]:
    """Paths whose output had inf/NaN in some round (random weights in half precision)."""
    bad = sorted({f"{name} at {record['size']} b{record['batch']}" for record, _ in rows for r in record["rounds"]
                  for name, ok in r.get("finite", {}).items() if not ok})
    return ["", "Non-finite outputs: " + ", ".join(bad)] if bad else []


def format_interleaved(report: dict[str, Any]) -> str:
    """All tables of an interleaved report, with how the run went; on CPU every table again on
    the CPU-time clock (this process's CPU seconds, far less moved by other processes' load)."""
    rows = setting_rows(report)
    clocks = ("wall", "cpu") if all(record["device"] == "cpu" for record, _ in rows) else ("wall",)
    lines = run_notes(report)
    for clock in clocks:
        title = "Wall-clock time" if clock == "wall" else "CPU time (this process's CPU seconds, all its threads)"
        lines += ["", f"{title}:", ""] + main_table(rows, clock)
    lines += ["", "Every ratio:", ""] + ratio_table(rows, clocks)
    for clock in clocks:
        lines += ["", f"Seconds per image ({clock} clock):", ""] + seconds_table(rows, clock) + [""] + stage_table(rows, clock)
        lines += [""] + baseline_table(rows, clock)
    missing = missing_settings(report)
    return "\n".join(lines + (["", "Not measured:", *missing] if missing else []) + _non_finite(rows))
