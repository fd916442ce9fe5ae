"""What the job engine keeps per clip between its two passes, and the frame outputs it writes.

A video is processed in two streaming passes (memory: a batch of frames and the stabiliser's
window, whatever the clip's length):

1. predict: every frame's raw prediction is stored as soon as it is made (`RawStore`), the
   stabiliser's fit runs along and the clip's value ranges are gathered from the aligned frames
   (`ClipRange`: min/max for 16-bit PNGs, 1st..99th percentiles for colour and video);
2. write: the stored predictions are aligned again (the same deterministic stabiliser) and the
   frame outputs and the depth video are written with the one clip-wide normalisation.

Where raw predictions are kept: the frames' ``.npy`` outputs when those are asked for (they are
the raw prediction, as for images), otherwise a hidden folder ``OUT/.NAME_temporal/`` next to the
outputs, with ``clip.json`` (the clip's prompt and noise seed and what produced them). A run that
is interrupted resumes at the first frame not yet predicted; the hidden folder is removed when
the clip is finished. With ``--outputs video`` alone nothing per-frame is kept on interruption
(the clip restarts), since no per-frame file was asked for.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from ..io.atomic import atomic_path, save_npy_atomic
from ..io.outputs import DEPTH_QUANTITY, PNG16_DECODE, PNG16_MAX, save_png
from ..io.video import colorize_in_range, normalize_to_range
from .normalize import ClipRange
from .stabilizer import StabilizedFrame

CLIP_STATE = "clip.json"
RAW_DECODE = "raw = (decoded value - frame_shift) / frame_scale"
RAW_DECODE_FILTERED = ("raw ~ (decoded value - frame_shift) / frame_scale, not exactly: the values were averaged "
                       "with neighbouring frames (temporal_filter); the exact raw prediction is the frame's .npy output")


def work_folder(output_dir: Path, name: PurePosixPath) -> Path:
    """The hidden per-clip folder of the video called `name` (see the module docstring)."""
    return output_dir / name.parent / f".{name.name}_temporal"


class RawStore:
    """Raw per-frame predictions of one clip: in memory (no folder), as the frames' ``.npy``
    outputs, or in the (hidden or private) work folder; segmentation labels that pass 2 hands on
    are spooled beside them (``seg/``), so a clip of any length holds no frame in memory."""

    def __init__(self, folder: Path | None, npy_path: Callable[[int], Path] | None = None) -> None:
        self.folder, self.npy_path = folder, npy_path
        self.memory: dict[int, np.ndarray] = {}
        self.segmentation: dict[int, np.ndarray] = {}  # labels when there is no folder

    def _labels_path(self, index: int) -> Path | None:
        return None if self.folder is None else self.folder / "seg" / f"{index:06d}.npy"

    def put_labels(self, index: int, labels: np.ndarray) -> None:
        """Keep a frame's segmentation labels until pass 2 takes them (`pop_labels`)."""
        path = self._labels_path(index)
        if path is None:
            self.segmentation[index] = labels
        else:
            save_npy_atomic(path, np.asarray(labels))

    def pop_labels(self, index: int) -> np.ndarray | None:
        """A frame's kept labels (None when none were kept), removed from the store."""
        path = self._labels_path(index)
        if path is None:
            return self.segmentation.pop(index, None)
        if not path.is_file():
            return None
        labels = np.load(path, allow_pickle=False)
        path.unlink()
        return labels

    def path(self, index: int) -> Path | None:
        if self.npy_path is not None:
            return self.npy_path(index)
        return None if self.folder is None else self.folder / "raw" / f"{index:06d}.npy"

    def has(self, index: int) -> bool:
        path = self.path(index)
        return index in self.memory if path is None else path.exists()

    def put(self, index: int, depth: np.ndarray) -> None:
        path = self.path(index)
        if path is None:
            self.memory[index] = np.asarray(depth, dtype=np.float32)
        else:
            save_npy_atomic(path, np.asarray(depth, dtype=np.float32))

    def get(self, index: int) -> np.ndarray:
        path = self.path(index)
        return self.memory[index] if path is None else np.load(path, allow_pickle=False)

    def read_state(self) -> dict:
        """The clip's saved settings (prompt, seed, what produced them), {} when none."""
        path = None if self.folder is None else self.folder / CLIP_STATE
        if path is None or not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / CLIP_STATE) as temporary:
            temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")

    def discard(self) -> None:
        """Forget everything stored in the work folder (the frames' ``.npy`` outputs stay)."""
        self.memory.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def frame_text(base: dict[str, str], frame: StabilizedFrame, mode: str, index: int,
               filter_radius: int = 0) -> dict[str, str]:
    """PNG text chunks shared by a frame's depth PNGs: how it was aligned and how to undo it
    (exactly, or -- when the temporal filter changed the values -- only approximately)."""
    filtered = frame.filtered and filter_radius > 0
    return {
        **base,
        "temporal_mode": mode,
        "frame_index": str(index),
        "frame_scale": repr(frame.scale),
        "frame_shift": repr(frame.shift),
        "temporal_filter": f"radius {filter_radius}" if filtered else "none",
        "raw_decode": RAW_DECODE_FILTERED if filtered else RAW_DECODE,
    }


def save_png16_in_range(path: Path, depth: np.ndarray, low: float, high: float, text: dict[str, str]) -> None:
    """16-bit PNG of aligned depth by the clip's range; ``depth_min``/``depth_max`` are that range,
    so `primedepth.io.read_depth_png16` gives values on one scale for the whole clip."""
    values = np.round(normalize_to_range(depth, low, high) * PNG16_MAX).astype(np.uint16)
    save_png(path, values, {**text, "depth_min": repr(low), "depth_max": repr(high), "depth_decode": PNG16_DECODE,
                            "depth_quantity": DEPTH_QUANTITY, "clip_normalization": "clip-wide min/max"})


def save_color_in_range(path: Path, depth: np.ndarray, low: float, high: float, colormap: str,
                        text: dict[str, str]) -> None:
    """Colour PNG of the display copy by the clip's display range (percentiles)."""
    save_png(path, colorize_in_range(depth, low, high, colormap),
             {**text, "display_min": repr(low), "display_max": repr(high),
              "clip_normalization": "clip-wide 1st..99th percentiles (of any frame)"})


def write_clip_frame(paths: dict[str, Path], frame: StabilizedFrame, ranges: ClipRange, colormap: str,
                     overwrite: bool, text: dict[str, str]) -> list[Path]:
    """The 16-bit and colour outputs of one aligned frame; existing files are kept unless `overwrite`."""
    written = []
    for kind, path in paths.items():
        if path.exists() and not overwrite:
            continue
        if kind == "png16":
            save_png16_in_range(path, frame.depth, ranges.low, ranges.high, text)
        elif kind == "color":
            save_color_in_range(path, frame.display, ranges.display_low, ranges.display_high, colormap, text)
        else:
            continue
        written.append(path)
    return written
