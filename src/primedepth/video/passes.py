"""How the two streaming passes of a video job drive the stabiliser, whatever the temporal mode.

- pass 1 (`first`): every frame's raw prediction, in order, as soon as it is stored;
- between the passes (`ranges`): the clip's value ranges -- for "global" after the joint solve
  (`coalign.solve`), which needs the whole clip, so nothing can be written before pass 1 ends;
- pass 2 (`second`): the same frames again, in the same order: each aligned, with its display copy.

The window modes ("align", "flow") fit each frame to the previous ones in both passes (the same
deterministic stabiliser, so both passes see the same aligned frames); pass 1 only gathers the
ranges, from the same-pixel fit without the display average.
"""

from __future__ import annotations

import numpy as np

from .normalize import ClipRange
from .stabilizer import GlobalStabilizer, StabilizedFrame, Stabilizer


class ClipPasses:
    """One clip's stabilisation across the two passes of `video.job.VideoJob`."""

    def __init__(self, mode: str, window: int, smoothing: float) -> None:
        self.mode, self.window, self.smoothing = mode, window, smoothing
        self.aligner = GlobalStabilizer(smoothing) if mode == "global" else None
        self.gatherer = None if self.aligner is not None else Stabilizer("align" if mode != "none" else "none", window, 0.0)
        self.values = ClipRange()
        self.writer: Stabilizer | None = None

    def first(self, depth: np.ndarray, frame: np.ndarray | None) -> None:
        """Pass 1: the next frame's raw prediction and image."""
        if self.aligner is not None:
            self.aligner.observe(depth, frame)
            return
        result = self.gatherer.push(depth, frame)
        self.values.add(result.depth, result.display)

    def ranges(self) -> ClipRange:
        """The clip's ranges (solving the clip first in the global mode); call after pass 1."""
        if self.aligner is not None:
            self.aligner.solve()
            return self.aligner.clip_range()
        return self.values

    def second(self, depth: np.ndarray, frame: np.ndarray | None) -> StabilizedFrame:
        """Pass 2: the next frame aligned, with its display copy."""
        if self.aligner is not None:
            return self.aligner.apply(depth, frame)
        if self.writer is None:
            self.writer = Stabilizer(self.mode, self.window, self.smoothing)
        return self.writer.push(depth, frame)
