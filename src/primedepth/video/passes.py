"""How the two streaming passes of a video job drive the stabiliser, whatever the temporal mode.

- pass 1 (`first`): every frame's raw prediction, in order, as soon as it is stored;
- between the passes (`ranges`): the clip's value ranges -- for "global" after the joint solve
  (`coalign.solve`), which needs the whole clip, so nothing can be written before pass 1 ends;
- pass 2 (`stream`): the same frames again, in the same order: each aligned, with its display
  copy; in the global mode also temporally filtered (`temporal_filter`), which holds a window
  of frames, so a frame comes out once the `filter_radius` frames after it have gone in.

The window modes ("align", "flow") fit each frame to the previous ones in both passes (the same
deterministic stabiliser, so both passes see the same aligned frames); pass 1 only gathers the
ranges, from the same-pixel fit without the display average.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from .normalize import ClipRange
from .stabilizer import GlobalStabilizer, StabilizedFrame, Stabilizer
from .temporal_filter import DEFAULT_RADIUS


class ClipPasses:
    """One clip's stabilisation across the two passes of `video.job.VideoJob`."""

    def __init__(self, mode: str, window: int, smoothing: float, filter_radius: int = DEFAULT_RADIUS) -> None:
        self.mode, self.window, self.smoothing = mode, window, smoothing
        self.aligner = GlobalStabilizer(smoothing, filter_radius=filter_radius) if mode == "global" else None
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

    @property
    def filter_radius(self) -> int:
        """The temporal filter's neighbours on each side (0: none: the window modes, or switched off)."""
        return 0 if self.aligner is None else self.aligner.filter_radius

    def stream(self, items: Iterable[tuple[Any, np.ndarray, np.ndarray | None]]) -> Iterator[tuple[Any, StabilizedFrame]]:
        """Pass 2 over (key, raw prediction, image) in clip order: (key, aligned frame) in the same
        order, each as soon as it is ready (the filter's window later in the global mode)."""
        if self.aligner is None:
            for key, depth, frame in items:
                result = self.second(depth, frame)
                result.raw = np.asarray(depth, dtype=np.float32)
                yield key, result
            return
        keys: deque[Any] = deque()

        def pairs() -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
            for key, depth, frame in items:
                keys.append(key)
                yield depth, frame

        for result in self.aligner.apply_stream(pairs()):
            yield keys.popleft(), result
