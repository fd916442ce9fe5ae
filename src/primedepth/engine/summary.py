"""What a job returns: one `Prediction` per image or video frame, and the `JobSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Prediction", "JobSummary", "MAX_LISTED_FAILURES"]

MAX_LISTED_FAILURES = 20


@dataclass
class Prediction:
    """The result for one image or video frame.

    `status` is 'done', 'skipped' (its outputs existed) or 'failed' (then `error` says why).
    `depth` is affine-invariant inverse depth (H, W), larger = closer; `segmentation` the
    (H, W) class labels when asked for (the pipeline gives logits, `output_segmentation=True`).
    Both are None unless the job keeps results in memory.
    `ensemble` describes the ensemble `depth` comes from, None for PrimeDepth alone.
    """

    name: str
    source: Path | None
    status: str
    depth: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    prompt: str | None = None
    error: str | None = None
    outputs: list[Path] = field(default_factory=list)
    ensemble: str | None = None
    geometry: dict | None = None  # the 3D/metric report: alignment fit, intrinsics, warnings
    temporal: dict | None = None  # video frames: mode, the frame's scale and shift, the clip's ranges
    video: str | None = None  # video frames: the clip's output name
    frame_index: int | None = None  # video frames: the frame's index in the clip
    time: float | None = None  # video frames: seconds since the clip's first frame
    raw_depth: np.ndarray | None = None  # video frames: the frame's own prediction before any clip alignment


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


@dataclass
class JobSummary:
    """What a job did: counts per input (an image or a whole video) and every failure."""

    done: int = 0
    skipped: int = 0
    failed: int = 0
    images: int = 0  # images and video frames predicted
    seconds: float = 0.0
    stopped: bool = False  # fail_fast stopped the job early
    ensemble: str | None = None  # what the depth maps are when they are an ensemble
    failures: list[tuple[str, str]] = field(default_factory=list)
    results: list = field(default_factory=list)  # of Prediction
    metadata: dict[str, str] = field(default_factory=dict)  # what produced the outputs (`run_metadata`)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # e.g. video frames that could not be decoded
    videos: list[dict] = field(default_factory=list)  # per clip: temporal settings, ranges, per-frame scale/shift
    clips: int = 0  # videos finished (part of `done`)
    frames: int = 0  # video frames predicted (part of `images`)

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return self.failed == 0

    def _work_line(self) -> str:
        """What was predicted: images, clips and their frames counted apart, with the rate."""
        if not self.images:
            return ""
        stills = self.images - self.frames
        parts = [_plural(stills, "image")] if stills or not self.clips else []
        if self.clips or self.frames:
            parts.append(f"{_plural(self.clips, 'clip')} ({_plural(self.frames, 'frame')})")
        unit = "frames/s" if self.frames else "images/s"
        rate = f", {self.images / self.seconds:.2f} {unit}" if self.seconds > 0 else ""
        return f": {' and '.join(parts)}{rate}"

    def format(self, output_dir: Path | None = None) -> str:
        """The final report: counts, speed, where outputs are, and the failures."""
        lines = [
            f"done {self.done}, skipped {self.skipped} (outputs existed), failed {self.failed}"
            f" in {self.seconds:.1f} s{self._work_line()}"
        ]
        if output_dir is not None and (self.done or self.skipped):
            lines.append(f"outputs in {output_dir}")
        if self.ensemble is not None and self.done:
            lines.append(f"depth is the ensemble {self.ensemble}")
        if self.skipped:
            lines.append("existing outputs were kept; use --overwrite to recompute them")
        if self.failures:
            lines.append("failed inputs:")
        for label, reason in self.failures[:MAX_LISTED_FAILURES]:
            lines.append(f"  {label}: {reason}")
        if len(self.failures) > MAX_LISTED_FAILURES:
            lines.append(f"... and {len(self.failures) - MAX_LISTED_FAILURES} more failures")
        if self.stopped:
            lines.append("stopped at the first failure (--fail-fast)")
        lines += [f"warning: {label}: {message}" for label, message in self.warnings[:MAX_LISTED_FAILURES]]
        return "\n".join(lines)
