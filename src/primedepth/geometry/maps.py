"""Per-pixel geometry files: metric depth (.npy in metres, 16-bit PNG in millimetres), normals.

Every PNG carries what is needed to read it in its text chunks (unit, decoding rule, the
alignment's scale and shift), because a 16-bit PNG alone does not say what its numbers mean.
"""

from __future__ import annotations

import os

import numpy as np

from ..io.atomic import save_npy_atomic
from ..io.images import UINT16_MAX
from ..io.outputs import save_png
from .cloud import normals_to_rgb

MM_PER_M = 1000.0
PNG_MM_MAX_M = UINT16_MAX / MM_PER_M  # 65.535 m: farther pixels are stored as 0 (unknown)
METRIC_PNG_DECODE = "depth_m = value / 1000 (value 0 = unknown or farther than 65.535 m)"
NORMALS_DECODE = "n = value / 127.5 - 1, frame: x right, y up, z towards the viewer; black = unknown"


def save_metric_npy(path: str | os.PathLike[str], depth_m: np.ndarray) -> None:
    """Metric depth as float32 metres, exactly as aligned (clamped to the depth range)."""
    save_npy_atomic(path, np.asarray(depth_m, dtype=np.float32))


def metric_to_png16(depth_m: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Millimetres as uint16 (0 = unknown) and the count of valid pixels too far to store."""
    depth = np.asarray(depth_m, dtype=np.float64)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    too_far = ok & (depth * MM_PER_M > UINT16_MAX + 0.5)
    values = np.where(ok & ~too_far, np.rint(depth * MM_PER_M), 0.0)
    return values.astype(np.uint16), int(too_far.sum())


def save_metric_png16(path: str | os.PathLike[str], depth_m: np.ndarray, valid: np.ndarray | None = None,
                      text: dict[str, str] | None = None) -> int:
    """Write metric depth as a 16-bit PNG in millimetres; returns the pixels too far for it.

    Text chunks: ``depth_unit`` (mm), ``depth_scale`` (0.001 m per unit), ``depth_decode`` and
    any `text` given (the alignment's scale and shift, its source).
    """
    values, too_far = metric_to_png16(depth_m, valid)
    chunks = {"depth_unit": "mm", "depth_scale": "0.001", "depth_decode": METRIC_PNG_DECODE,
              "depth_quantity": "metric depth along the optical axis (z)"}
    chunks.update(text or {})
    save_png(path, values, chunks)
    return too_far


def save_normals_png(path: str | os.PathLike[str], normals: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write camera-frame normals as an 8-bit RGB normal map, ``(n + 1) / 2`` colour coded."""
    chunks = {"normals_decode": NORMALS_DECODE}
    chunks.update(text or {})
    save_png(path, normals_to_rgb(normals), chunks)
