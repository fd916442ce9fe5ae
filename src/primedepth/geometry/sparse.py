"""Sparse metric depth: known depths at a few pixels, read from the formats users have.

Every reader returns a `SparseDepth`: pixel positions (column ``x``, row ``y``, 0-based, in
pixels of the *image being predicted*), depths in metres, optional weights, and what was
dropped on the way. Formats:

- depth image: 16-bit PNG in millimetres, float ``.npy`` in metres, or ``.exr`` in metres
  (read with the optional ``OpenEXR`` package); 0 and NaN mark unknown pixels, negative or
  infinite values are refused;
- points file: ``.csv`` with a header naming ``x, y, depth_m`` (and optionally ``weight``), or
  ``.json`` holding a list of such objects (or ``{"points": [...]}``); fractional pixel
  positions are rounded to the nearest pixel centre, positions outside the image are dropped
  and counted;
- a COLMAP sparse model (see `primedepth.geometry.colmap`).

Resizing rule: a depth image whose size differs from the image's is mapped onto it by moving
each known pixel to the image pixel that contains its centre (``x' = floor((x + 0.5) * W / w)``,
the same for rows), which is allowed only when the two aspect ratios agree within
`ASPECT_TOLERANCE` (1%); otherwise it is an error, since a crop or a rotation cannot be guessed.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.images import read_png_uint16
from .intrinsics import Intrinsics

ASPECT_TOLERANCE = 0.01
DEPTH_IMAGE_EXTENSIONS = (".png", ".npy", ".exr")
POINTS_EXTENSIONS = (".csv", ".json")
MILLIMETRE = 1e-3
EXR_DEPTH_CHANNELS = ("Z", "depth", "Y", "R")


@dataclass
class SparseDepth:
    """Known metric depths at integer pixel positions of an image of size `shape` (H, W)."""

    x: np.ndarray
    y: np.ndarray
    depth_m: np.ndarray
    shape: tuple[int, int]
    source: str
    weight: np.ndarray | None = None
    dropped_out_of_bounds: int = 0
    notes: list[str] = field(default_factory=list)
    intrinsics: Intrinsics | None = None  # a calibrated camera that came with the data

    @property
    def count(self) -> int:
        """How many known depths there are."""
        return int(self.depth_m.size)

    def summary(self) -> dict[str, object]:
        """Plain numbers for the job report."""
        return {"source": self.source, "points": self.count,
                "dropped_out_of_bounds": self.dropped_out_of_bounds, "notes": list(self.notes)}


def check_shape_rule(sparse_hw: tuple[int, int], image_hw: tuple[int, int], label: str) -> None:
    """Allow a size difference only when it is a pure resize (see the module's rule)."""
    if tuple(sparse_hw) == tuple(image_hw):
        return
    (h, w), (height, width) = sparse_hw, image_hw
    ratio, target = w / h, width / height
    if abs(ratio - target) <= ASPECT_TOLERANCE * target:
        return
    hint = ""
    if abs(h / w - target) <= ASPECT_TOLERANCE * target:
        hint = " (it looks rotated by 90 degrees: was the EXIF orientation applied to one and not the other?)"
    raise InputError(
        f"{label}: size {w}x{h} does not match the image's {width}x{height} and the aspect ratios "
        f"differ by more than {ASPECT_TOLERANCE:.0%}{hint}; resize or crop it to {width}x{height}"
    )


def _scale_positions(values: np.ndarray, source_size: int, target_size: int) -> np.ndarray:
    """The pixel of the target resolution that contains each source pixel's centre."""
    if source_size == target_size:
        return values.astype(np.int64)
    scaled = np.floor((values + 0.5) * (target_size / source_size)).astype(np.int64)
    return np.clip(scaled, 0, target_size - 1)


def sparse_from_map(
    depth_m: np.ndarray, image_shape: tuple[int, int], source: str = "depth map"
) -> SparseDepth:
    """Known depths of a dense map with 0/NaN for unknown, mapped onto the image's pixels."""
    depth = np.asarray(depth_m)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or depth.size == 0:
        raise InputError(f"{source}: expected a single-channel depth map (H, W), got shape {depth.shape}")
    if depth.dtype.kind not in "fiub":
        raise InputError(f"{source}: expected numeric depths, got {depth.dtype}")
    depth = depth.astype(np.float64)
    _check_values(depth, source)
    check_shape_rule(depth.shape, image_shape, source)
    rows, cols = np.nonzero(depth > 0)  # NaN compares False: unknown
    if rows.size == 0:
        raise InputError(f"{source}: no known depths (every pixel is 0 or NaN, which mean unknown)")
    sparse = SparseDepth(
        x=_scale_positions(cols, depth.shape[1], image_shape[1]),
        y=_scale_positions(rows, depth.shape[0], image_shape[0]),
        depth_m=depth[rows, cols], shape=tuple(image_shape), source=source,
    )
    if depth.shape != tuple(image_shape):
        sparse.notes.append(f"{source}: resized from {depth.shape[1]}x{depth.shape[0]} by pixel-centre scaling")
    return sparse


def _check_values(depth: np.ndarray, source: str) -> None:
    """Refuse negative and infinite depths, naming how many and where the first one is."""
    for bad, what in ((np.isinf(depth), "infinite"), (depth < 0, "negative")):
        count = int(bad.sum())
        if count:
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise InputError(
                f"{source}: {count} {what} depth value(s), the first at x={col}, y={row}; depths "
                "must be positive metres (0 or NaN mark unknown pixels)"
            )


def read_depth_image(path: Path) -> np.ndarray:
    """A sparse depth image as float64 metres: 16-bit PNG (mm), .npy (m) or .exr (m)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if suffix == ".png":
        return read_png_uint16(path).astype(np.float64) * MILLIMETRE
    if suffix == ".npy":
        try:
            return np.asarray(np.load(path, allow_pickle=False))
        except (OSError, ValueError, EOFError) as error:
            raise InputError(f"{path}: not a readable .npy array ({error})") from None
    if suffix == ".exr":
        return _read_exr(path)
    raise InputError(f"{path}: unsupported depth image type {suffix!r}; use {', '.join(DEPTH_IMAGE_EXTENSIONS)}")


def _read_exr(path: Path) -> np.ndarray:
    """The depth channel of an OpenEXR file (Z, depth, Y or R, or the only channel)."""
    try:
        import OpenEXR  # lazy: optional extra
    except ImportError:
        raise InputError(
            f"{path}: reading .exr needs the OpenEXR package (pip install 'primedepth[3d]'), "
            "or save the depth as float .npy in metres"
        ) from None
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
    except Exception as error:  # the binding raises plain RuntimeErrors for damaged files
        raise InputError(f"{path}: not a readable EXR file ({error})") from None
    for name in EXR_DEPTH_CHANNELS:
        if name in channels:
            return np.asarray(channels[name], dtype=np.float64)
    if len(channels) == 1:
        return np.asarray(next(iter(channels.values())), dtype=np.float64)
    raise InputError(f"{path}: no depth channel among {sorted(channels)}; expected one of {EXR_DEPTH_CHANNELS}")


def read_points_file(path: Path, image_shape: tuple[int, int]) -> SparseDepth:
    """Known depths listed as ``x, y, depth_m[, weight]`` rows of a CSV or JSON file."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    rows = _csv_rows(path) if suffix == ".csv" else _json_rows(path)
    if not rows:
        raise InputError(f"{path}: no points (expected rows with x, y, depth_m)")
    table = np.array([_parse_row(row, index, path) for index, row in enumerate(rows, start=1)])
    x, y, depth, weight = (np.rint(table[:, 0]), np.rint(table[:, 1]), table[:, 2], table[:, 3])
    height, width = image_shape
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    dropped = int((~inside).sum())
    sparse = SparseDepth(
        x=x[inside].astype(np.int64), y=y[inside].astype(np.int64), depth_m=depth[inside],
        shape=tuple(image_shape), source=str(path), weight=weight[inside],
        dropped_out_of_bounds=dropped,
    )
    if dropped:
        sparse.notes.append(f"{path}: dropped {dropped} of {len(rows)} points outside the {width}x{height} image")
    if sparse.count == 0:
        raise InputError(f"{path}: all {len(rows)} points lie outside the {width}x{height} image")
    return sparse


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """CSV rows as dicts keyed by the lower-cased header names."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file, skipinitialspace=True)
            fields = [name.strip().lower() for name in reader.fieldnames or []]
            missing = {"x", "y", "depth_m"} - set(fields)
            if missing:
                raise InputError(f"{path}: the header must name x, y, depth_m; missing {', '.join(sorted(missing))}")
            return [{key.strip().lower(): value for key, value in row.items() if key} for row in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from None


def _json_rows(path: Path) -> list[dict[str, object]]:
    """JSON points: a list of objects, or an object with a "points" list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON file ({error})") from None
    if isinstance(data, dict):
        data = data.get("points")
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise InputError(f"{path}: expected a list of {{\"x\", \"y\", \"depth_m\"}} objects or {{\"points\": [...]}}")
    return data


def _parse_row(row: dict, index: int, path: Path) -> tuple[float, float, float, float]:
    """One point as numbers; a bad value is an error naming the row."""
    values = []
    for key, default in (("x", None), ("y", None), ("depth_m", None), ("weight", 1.0)):
        raw = row.get(key, default)
        try:
            value = float(raw if raw not in (None, "") else default)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"{path}: point {index}: {key}={raw!r} is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"{path}: point {index}: {key}={raw!r} is not finite")
        values.append(value)
    if values[2] <= 0:
        raise InputError(f"{path}: point {index}: depth_m={values[2]:g} must be positive metres")
    if values[3] < 0:
        raise InputError(f"{path}: point {index}: weight={values[3]:g} must not be negative")
    return tuple(values)  # type: ignore[return-value]


def read_sparse_file(path: Path, image_shape: tuple[int, int]) -> SparseDepth:
    """Any single-file sparse depth (depth image or points file) for an image of `image_shape`."""
    suffix = path.suffix.lower()
    if suffix in POINTS_EXTENSIONS:
        return read_points_file(path, image_shape)
    if suffix in DEPTH_IMAGE_EXTENSIONS:
        return sparse_from_map(read_depth_image(path), image_shape, str(path))
    raise InputError(
        f"{path}: unsupported sparse depth file; use a depth image ({', '.join(DEPTH_IMAGE_EXTENSIONS)}), "
        f"a points file ({', '.join(POINTS_EXTENSIONS)}) or a COLMAP model folder"
    )
