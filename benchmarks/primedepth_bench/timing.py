"""Medians of timed calls and peak-memory probes, CPU and CUDA alike."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
