"""Interleaved rounds: every path once per round, A B C ... then B C ... A, a pause between calls.

On a shared machine the load changes from minute to minute; a ratio of two paths timed in the
same round sees (nearly) the same load, and the spread of the per-round ratios shows how much
the load moved them. The number of rounds adapts to a time budget.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .paths import TimedPath
from .timing import release_memory

# {"order": [...], "seconds": {path: wall s}, "cpu_seconds": {path: CPU s}, "stages": {path: {stage: wall s}},
#  "cpu_stages": {path: {stage: CPU s}}, "finite": {path: bool}, "wall": s}
Round = dict[str, Any]


@dataclass
class RoundPlan:
    """How many rounds: `warmup` untimed rounds first, then at least `min_rounds` (however long
    they take: a ratio needs two rounds for a range) and at most `max_rounds`, as many as fit
    in `budget` seconds (warm-up included; None: `max_rounds`)."""

    warmup: int = 1
    min_rounds: int = 2
    max_rounds: int = 3
    budget: float | None = None
    pause: float = 0.5


def rotated(paths: Sequence[TimedPath], index: int) -> list[TimedPath]:
    """The order of round `index`: the list rotated by one more place each round."""
    shift = index % len(paths) if paths else 0
    return list(paths[shift:]) + list(paths[:shift])


def describe_failure(error: BaseException) -> str:
    """A short status for a failed call: out of memory, or the error's type and first line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, MemoryError) or "out of memory" in text.lower():
        return "out of memory"
    return f"failed: {type(error).__name__}: {text[:100]}"


def run_round(paths: Sequence[TimedPath], failed: dict[str, str], pause: float, label: str = "") -> Round:
    """Call every path once, in the given order, pausing between calls. A path that raises is
    recorded in `failed` (and left out of later rounds by the caller); the others go on."""
    record: Round = {"order": [p.name for p in paths], "seconds": {}, "cpu_seconds": {}, "stages": {}, "cpu_stages": {}, "finite": {}}
    started = time.perf_counter()
    for index, path in enumerate(paths):
        if index:
            time.sleep(pause)
        try:
            measurement = path.call()
        except Exception as error:  # noqa: BLE001 - one failing path must not stop the others
            failed[path.name] = describe_failure(error)
            release_memory()
            print(f"  {label}{path.name}: {failed[path.name]}", file=sys.stderr, flush=True)
            continue
        total, stages = measurement["total"], measurement.get("stages", {})
        record["seconds"][path.name], record["cpu_seconds"][path.name] = total.wall, total.cpu
        record["stages"][path.name] = {name: e.wall for name, e in stages.items()}
        record["cpu_stages"][path.name] = {name: e.cpu for name, e in stages.items()}
        record["finite"][path.name] = measurement.get("finite", True)
        print(f"  {label}{path.name}: {total.wall:.3f} s (CPU {total.cpu:.3f} s)", file=sys.stderr, flush=True)
    record["wall"] = time.perf_counter() - started
    return record


def _next_round_fits(plan: RoundPlan, elapsed: float, last_wall: float, done: int) -> bool:
    """Whether another round is due: at the maximum never, below the minimum always, else if
    one more round like the last one ends within the budget."""
    if done >= plan.max_rounds:
        return False
    return done < plan.min_rounds or plan.budget is None or elapsed + last_wall <= plan.budget


def run_rounds(paths: Sequence[TimedPath], plan: RoundPlan) -> dict[str, Any]:
    """Warm-up rounds, then timed rounds with a rotating order, as many as the plan allows.

    Returns {"rounds": [...], "warmup": [...], "failed": {path: status}, "seconds": wall}.
    """
    started = time.perf_counter()
    failed: dict[str, str] = {}
    warmup = [run_round(paths, failed, plan.pause, f"warm-up {i + 1}: ") for i in range(plan.warmup)]
    rounds: list[Round] = []
    last_wall = warmup[-1]["wall"] if warmup else 0.0
    while _next_round_fits(plan, time.perf_counter() - started, last_wall, len(rounds)):
        active = [p for p in paths if p.name not in failed]
        if not active:
            break
        rounds.append(run_round(rotated(active, len(rounds)), failed, plan.pause, f"round {len(rounds) + 1}: "))
        last_wall = rounds[-1]["wall"]
    return {"rounds": rounds, "warmup": warmup, "failed": failed, "seconds": time.perf_counter() - started}
