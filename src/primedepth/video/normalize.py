"""One normalisation per clip, so that a colour or a 16-bit value means the same depth in every frame.

Two ranges are gathered frame by frame in constant memory:

- `low`/`high`: the clip's minimum and maximum, used by the 16-bit PNGs, which therefore never
  clip (every aligned value is recoverable to 16-bit precision);
- `display_low`/`display_high`: the lowest 1st and highest 99th percentile of any frame, used by
  colour frames and the depth video, so that a few extreme pixels do not wash the colours out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..io.video import normalize_to_range

__all__ = ["ClipRange", "clip_range", "normalize_to_range", "DISPLAY_PERCENTILES"]

DISPLAY_PERCENTILES = (1.0, 99.0)
PERCENTILE_PIXELS = 65536  # percentiles are taken on a regular subsample of about this many pixels


@dataclass
class ClipRange:
    """The value ranges of a clip, grown by `add` one frame at a time."""

    low: float = np.inf
    high: float = -np.inf
    display_low: float = np.inf
    display_high: float = -np.inf

    def add(self, depth: np.ndarray, display: np.ndarray | None = None) -> None:
        """Take one aligned frame (and its display copy, if smoothed) into the ranges; non-finite
        pixels are ignored."""
        finite = depth[np.isfinite(depth)]
        if finite.size == 0:
            return
        self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
        if display is not None and display is not depth:
            finite = display[np.isfinite(display)]
        step = max(1, finite.size // PERCENTILE_PIXELS)
        display_low, display_high = np.percentile(finite[::step], DISPLAY_PERCENTILES)
        self.display_low = min(self.display_low, float(display_low))
        self.display_high = max(self.display_high, float(display_high))

    @property
    def empty(self) -> bool:
        return not np.isfinite(self.low)

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high, "display_low": self.display_low, "display_high": self.display_high}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> ClipRange:
        return cls(**{key: float(values[key]) for key in ("low", "high", "display_low", "display_high")})


def clip_range(depths: Sequence[np.ndarray] | np.ndarray, display: Sequence[np.ndarray] | None = None) -> ClipRange:
    """The `ClipRange` of a whole clip at once (`display`: the smoothed copies, if any)."""
    result = ClipRange()
    for index, depth in enumerate(depths):
        result.add(np.asarray(depth), None if display is None else np.asarray(display[index]))
    return result
