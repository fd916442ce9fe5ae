"""Medians of timed calls and peak-memory probes, CPU and CUDA alike."""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psutil  # an accelerate dependency, so always present with primedepth
import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work, so a wall-clock reading covers the computation."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of `fn` over `repeats` calls after `warmup` untimed ones (first calls pay
    for allocation and kernel selection); returns (seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def release_memory() -> None:
    """Free what a finished or failed call left behind (after an out-of-memory above all), so
    the next measurement starts from the same state."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def peak_memory_bytes(device: torch.device) -> int:
    """Peak since process start (CPU: max RSS) or since the last reset (CUDA: allocated)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_memory_bytes(device: torch.device) -> int:
    """Memory held now (CPU: RSS, CUDA: allocated): the weights and runtime before a run."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return psutil.Process().memory_info().rss


class MemoryWatch:
    """Starts a run's memory window: resets the CUDA peak and notes what is resident already,
    so a result can report its working memory (peak minus resident) besides its peak."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.resident_before = current_memory_bytes(device)

    def result(self, total: float, **extra: Any) -> dict[str, Any]:
        """A run's result record: total seconds, peak and resident memory, and `extra` fields."""
        return {"total": total, "peak_memory": peak_memory_bytes(self.device),
                "resident_before": self.resident_before, **extra}


@dataclass
class StageTimer:
    """Times named stages one after another and keeps their medians (seconds, in call order)."""

    device: torch.device
    repeats: int
    warmup: int = 1
    seconds: dict[str, float] = field(default_factory=dict)

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        """Time `fn` as stage `name`; returns its last result, the next stage's input."""
        self.seconds[name], result = time_call(fn, self.device, self.repeats, self.warmup)
        return result


@dataclass
class Elapsed:
    """Wall seconds and this process's CPU seconds (all its threads) of one timed span.

    On a shared CPU the wall time grows with other processes' load; the CPU time counts only
    the work this process did, so its ratios move far less (on CUDA it means nothing)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __add__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.wall - other.wall, self.cpu - other.cpu)


def now() -> Elapsed:
    """The two clocks' current readings."""
    return Elapsed(time.perf_counter(), time.process_time())


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Elapsed, Any]:
    """One call of `fn`: (its wall and CPU seconds, its result), queued CUDA work included."""
    synchronize(device)
    start = now()
    result = fn()
    synchronize(device)
    return now() - start, result


class ModuleClock:
    """Seconds spent inside groups of modules during one call, read from forward hooks.

    A stage of an end-to-end call (the VAE encoder inside `predict_raw`, say) is then timed in
    the very call that is timed as a whole, instead of in a second call minutes later. Modules
    of one group may nest; a group's clock runs while any of them is running. On CUDA each
    boundary synchronises, so the seconds cover the queued work.
    """

    def __init__(self, device: torch.device, groups: dict[str, Iterable[torch.nn.Module]]) -> None:
        self.device = device
        self.groups = {name: [m for m in modules if m is not None] for name, modules in groups.items()}
        self.elapsed: dict[str, Elapsed] = {}
        self._depth: dict[str, int] = {}
        self._start: dict[str, Elapsed] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> ModuleClock:
        self.elapsed = {name: Elapsed() for name in self.groups}
        self._depth = {name: 0 for name in self.groups}
        for name, modules in self.groups.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(partial(self._enter, name)))
                self._handles.append(module.register_forward_hook(partial(self._leave, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, name: str, module: torch.nn.Module, args: Any) -> None:
        """Pre-hook: start the group's clock unless one of its modules is already running."""
        if self._depth[name] == 0:
            synchronize(self.device)
            self._start[name] = now()
        self._depth[name] += 1

    def _leave(self, name: str, module: torch.nn.Module, args: Any, output: Any) -> None:
        """Forward hook: stop the group's clock when its outermost module returns."""
        self._depth[name] -= 1
        if self._depth[name] == 0:
            synchronize(self.device)
            self.elapsed[name] += now() - self._start[name]


class ElapsedTimer:
    """Times named stages once each, one after another, on both clocks (a `StageTimer` for
    rounds: the round is the repetition)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed: dict[str, Elapsed] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        """Time `fn` as stage `name`; returns its result, the next stage's input."""
        self.elapsed[name], result = timed(fn, self.device)
        return result
