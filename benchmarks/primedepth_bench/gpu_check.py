"""The GPU check: one command, one markdown table and one JSON file to paste back.

Parts, in this order (each guarded: a failure, an out-of-memory above all, becomes a row of
the table and the next part runs):

1. `memory`: peak GPU memory of one 768x768 prediction as `primedepth predict` places the models
   (`placement.py`), in bf16 and fp16: `torch.cuda.max_memory_allocated` and nvidia-smi.
2. `precision`: fp16 / bf16 against fp32, stage by stage, on the full-size architecture with
   random weights (`precision.py`).
3. `timing`: seconds per image at 512 / 768 / 1024 and batches 1 / 4 / 8 for PrimeDepth, the
   official-style reference, Marigold 1x1 and Depth Anything V2-L, interleaved in rounds
   (`interleaved.run_setting`), with every ratio's range.
4. `compile`: torch.compile on / off for PrimeDepth's UNet walk and depth head, interleaved,
   compile time apart (`compiled.py`).

A global time budget (default 420 s) bounds the whole run: parts start only with time left,
the timing part leaves time for the compile part, and an alarm stops whatever runs when the
budget is spent (reported as such). The files are rewritten after every part, so a crash
still leaves what was measured.

    python benchmarks/gpu_check.py OUT_DIR                       # on a CUDA machine
    python benchmarks/gpu_check.py OUT_DIR --device cpu --scale tiny   # smoke run
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

from .builders import DAV2_SIZE, SCALES
from .check_report import Budget, BudgetSpent, CheckReport, alarm_at_end_of
from .compiled import COMPILED
from .gpu_parts import PART_FUNCTIONS
from .tables import machine_description
from .timing import release_memory

PARTS = ("memory", "precision", "timing", "compile")
# Defaults per scale: (sizes, batch sizes, memory size, precision size, DAv2 size, compile backend).
SCALE_DEFAULTS = {"full": ([512, 768, 1024], [1, 4, 8], 768, 512, DAV2_SIZE, "inductor"),
                  "tiny": ([64, 96], [1, 2], 64, 64, 56, "eager")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments; what is not given takes the scale's default."""
    parser = argparse.ArgumentParser(description="PrimeDepth GPU check: memory, timings, torch.compile, half precision.")
    parser.add_argument("output", help="folder for gpu-check.md and gpu-check.json (created)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", default="full", choices=SCALES, help="tiny: the test model (a smoke run in seconds)")
    parser.add_argument("--budget", type=float, default=420, help="seconds for the whole run (default 420: with start-up, under 8 minutes)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--dtype", default="bf16", choices=DTYPE_CHOICES, help="PrimeDepth, Marigold and DAv2 in the timing and compile parts")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--memory-size", type=int, default=None)
    parser.add_argument("--memory-dtypes", nargs="+", default=["bf16", "fp16"], choices=DTYPE_CHOICES)
    parser.add_argument("--precision-size", type=int, default=None)
    parser.add_argument("--precision-dtypes", nargs="+", default=["fp16", "bf16"], choices=DTYPE_CHOICES)
    parser.add_argument("--dav2-size", type=int, default=None)
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; eager with --scale tiny)")
    parser.add_argument("--compile-modules", default="walk-and-head", choices=COMPILED,
                        help="compile the UNet blocks of the walk and the depth head, or the head alone (quick)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting at most")
    parser.add_argument("--min-rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between two calls of a round")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args(argv)
    defaults = SCALE_DEFAULTS[args.scale]
    for name, value in zip(("sizes", "batch_sizes", "memory_size", "precision_size", "dav2_size", "compile_backend"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.min_rounds = min(args.min_rounds, args.rounds)
    return args


# Seconds a part needs left to start at all.
PART_NEEDS = {"memory": 20.0, "precision": 20.0, "timing": 45.0, "compile": 45.0}
TABLE_COLUMNS = ["part", "configuration", "measurement", "value", "detail", "status"]


def _settings_line(args: argparse.Namespace) -> str:
    """What was asked for, above the table."""
    backends = torch.backends
    tf32 = f"TF32 matmul {backends.cuda.matmul.allow_tf32}, cuDNN TF32 {backends.cudnn.allow_tf32}" if args.device == "cuda" else ""
    return (f"Scale {args.scale}, device {args.device}, timing dtype {args.dtype} (official-style path fp32), sizes "
            f"{args.sizes}, batches {args.batch_sizes}, {args.rounds} rounds at most after {args.warmup} warm-up, "
            f"budget {args.budget:.0f} s. {tf32}").strip()


def render(report: CheckReport, header: dict[str, Any]) -> str:
    """The markdown: how it was run, then the one table."""
    lines = ["# PrimeDepth GPU check", "", f"Machine: {header['machine']}", "", f"Command: `{header['command']}`", "",
             header["settings"], "", f"Took {header['seconds']:.0f} s; parts: " +
             ", ".join(f"{name} {seconds:.0f} s" for name, seconds in header["part_seconds"].items()), "",
             "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in TABLE_COLUMNS) + " |" for row in report.rows]
    return "\n".join(lines) + "\n"


def save(folder: Path, report: CheckReport, header: dict[str, Any]) -> None:
    """Write gpu-check.md and gpu-check.json (after every part: a crash keeps what was measured)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gpu-check.md").write_text(render(report, header), encoding="utf-8")
    document = dict(header, rows=report.rows, data=report.data)
    (folder / "gpu-check.json").write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")


def run_part(name: str, args: argparse.Namespace, report: CheckReport, budget: Budget, state: dict[str, Any]) -> None:
    """One part, unless too little time is left; a failure of the part as a whole becomes a row."""
    if budget.left() < PART_NEEDS[name]:
        report.add(name, "—", "—", "—", status="not run: time budget spent")
        return
    try:
        PART_FUNCTIONS[name](args, report, budget, state)
    except BudgetSpent as spent:
        report.add(name, "—", "—", "—", status=f"stopped: {spent}")
    except Exception as error:  # noqa: BLE001 - reported; the next part runs
        report.failed(name, "—", error)
    finally:
        release_memory()  # the part's models are out of scope now


def main(argv: list[str] | None = None) -> int:
    """Entry point of `benchmarks/gpu_check.py`: every asked part in order, files after each."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget, report, state = Budget(args.budget), CheckReport(), {}
    header = {"machine": machine_description(args.device), "settings": _settings_line(args), "part_seconds": {},
              "command": " ".join(sys.argv if argv is None else ["benchmarks/gpu_check.py", *argv]), "seconds": 0.0}
    with alarm_at_end_of(budget):
        for name in (p for p in PARTS if p in args.parts):
            started = time.perf_counter()
            try:
                run_part(name, args, report, budget, state)
            except BudgetSpent as spent:  # the alarm fired between the part's own guards
                report.add(name, "—", "—", "—", status=f"stopped: {spent}")
            header["part_seconds"][name] = time.perf_counter() - started
            header["seconds"] = budget.seconds - budget.left()
            save(Path(args.output), report, header)
    print(render(report, header))
    return 0
