"""Statistics of interleaved rounds: seconds per path, ratios per round, and how they read.

A ratio is taken round by round (both paths of a round saw the same minutes of load), then
reported as the median of those per-round ratios, their range across rounds, and the ratio of
the two paths' fastest calls (min/min). A ratio whose range crosses 1.0 is a tie: the load
moved it both ways, so it is printed as "tie (noise)", never as a speed-up.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .paths import kernel_stage, path_key
from .runners import MARIGOLD_PROTOCOLS

Round = dict[str, Any]
Series = Callable[[Round], float | None]  # a quantity of one round; None where it is missing
DASH = "—"


@dataclass
class Spread:
    """Seconds of one path across rounds."""

    median: float
    minimum: float
    rounds: int


@dataclass
class RatioStats:
    """A ratio across rounds: median of the per-round ratios, their range, min/min."""

    median: float
    low: float
    high: float
    min_min: float
    rounds: int

    @property
    def tie(self) -> bool:
        """The range crosses 1.0: the rounds disagree on which side is faster."""
        return self.low < 1.0 < self.high


def spread(values: Sequence[float | None]) -> Spread | None:
    """Median and minimum of the values present; None when there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(statistics.median(present), min(present), len(present))


def ratio_stats(numerators: Sequence[float | None], denominators: Sequence[float | None]) -> RatioStats | None:
    """Per-round ratios numerator / denominator (rounds with both), summarised."""
    pairs = [(n, d) for n, d in zip(numerators, denominators) if n and d]
    if not pairs:
        return None
    ratios = [n / d for n, d in pairs]
    min_min = min(n for n, _ in pairs) / min(d for _, d in pairs)
    return RatioStats(statistics.median(ratios), min(ratios), max(ratios), min_min, len(pairs))


def format_ratio(stats: RatioStats | None, with_min_min: bool = False) -> str:
    """ "2.01x [1.95-2.10]", or "tie (noise) 1.02x [0.95-1.09]" when the range crosses 1."""
    if stats is None:
        return DASH
    text = f"{stats.median:.2f}x [{stats.low:.2f}-{stats.high:.2f}]"
    if with_min_min:
        text += f", min/min {stats.min_min:.2f}x"
    return f"tie (noise) {text}" if stats.tie else text


CLOCKS = ("wall", "cpu")  # wall-clock seconds, or this process's CPU seconds (see `timing.Elapsed`)


def total(mode: str, dtype: str, clock: str = "wall") -> Series:
    """A path's seconds per call in a round, on one clock."""
    key, field = path_key(mode, dtype), "seconds" if clock == "wall" else "cpu_seconds"
    return lambda r: r.get(field, {}).get(key)


def stage(mode: str, dtype: str, name: str, clock: str = "wall") -> Series:
    """One stage's seconds of a path in a round, on one clock."""
    key, field = path_key(mode, dtype), "stages" if clock == "wall" else "cpu_stages"
    return lambda r: r.get(field, {}).get(key, {}).get(name)


def floor_seconds(dtype: str, clock: str = "wall") -> Series:
    """The bare components in a round: the `primedepth` call's VAE encoder and depth head plus
    the `capture` call's bare UNet (none of PrimeDepth's own work: no capture, no refiner)."""
    parts = [stage("primedepth", dtype, "vae_encode", clock), stage("capture", dtype, "unet_bare", clock),
             stage("primedepth", dtype, "depth_head", clock)]

    def seconds(r: Round) -> float | None:
        values = [part(r) for part in parts]
        return None if None in values else sum(values)

    return seconds


def marigold_seconds(dtype: str, steps: int, members: int, clock: str = "wall") -> Series:
    """Marigold at `steps` x `members`, from its 1 x 1 call of the round:
    T(S, E) = T(1, 1) + (S E - 1) T_unet + (E - 1) T_decode (the image is encoded once)."""
    one, unet, decode = (total("marigold", dtype, clock), stage("marigold", dtype, "unet", clock),
                         stage("marigold", dtype, "vae_decode", clock))

    def seconds(r: Round) -> float | None:
        values = (one(r), unet(r), decode(r))
        return None if None in values else values[0] + (steps * members - 1) * values[1] + (members - 1) * values[2]

    return seconds


def series(rounds: Sequence[Round], quantity: Series) -> list[float | None]:
    """A quantity of every round, in round order."""
    return [quantity(r) for r in rounds]


def ratio(rounds: Sequence[Round], numerator: Series, denominator: Series) -> RatioStats | None:
    """numerator / denominator round by round, summarised."""
    return ratio_stats(series(rounds, numerator), series(rounds, denominator))


def comparisons(dtype: str, clock: str = "wall") -> dict[str, tuple[Series, Series]]:
    """The published ratios of PrimeDepth in `dtype` (> 1: PrimeDepth faster, except `over
    floor` and the capture ratios, where > 1 is PrimeDepth's extra cost, and the kernel ratio,
    where < 1 is the chunked capture kernel faster than the padded-SDPA reference), on one clock."""
    ours = total("primedepth", dtype, clock)
    found = {
        "vs official (time)": (total("official", "fp32", clock), ours),
        "over floor (time)": (ours, floor_seconds(dtype, clock)),
        "UNet+preimage / bare UNet": (stage("capture", dtype, "unet_preimage", clock), stage("capture", dtype, "unet_bare", clock)),
        "capture chunked / padded SDPA": (stage("capture", dtype, kernel_stage("chunked"), clock),
                                          stage("capture", dtype, kernel_stage("padded-sdpa"), clock)),
        "vs Marigold 1x1": (total("marigold", dtype, clock), ours),
    }
    for name, (steps, members) in sorted(MARIGOLD_PROTOCOLS.items(), key=lambda item: item[1]):
        found[f"vs Marigold {name.split()[0]} {steps}x{members}"] = (marigold_seconds(dtype, steps, members, clock), ours)
    found["vs DAv2-L"] = (total("dav2", dtype, clock), ours)
    if dtype != "fp32":  # present when both dtypes ran in one worker (--processes one): same rounds
        found["vs PrimeDepth fp32"] = (total("primedepth", "fp32", clock), ours)
    return found
