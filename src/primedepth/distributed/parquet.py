"""Depth as a Parquet dataset (``--outputs parquet``): one row per image or video frame.

Columns: ``name`` (the output name the file outputs would have), ``source`` (input path or URI),
``video`` and ``frame`` (the video's name and the frame index, null for images), ``height``,
``width``, ``depth`` (float32 little-endian bytes, row-major (height, width): the raw
prediction, as the ``.npy`` output), ``depth_min``/``depth_max``, ``prompt`` and, with
segmentation, ``segmentation`` (uint16 little-endian bytes of the per-pixel labels).
`read_depth` and `read_labels` turn a row back into arrays. Plain binary columns keep the files
readable by any Parquet reader (pandas, DuckDB, Spark), not only by Ray.

Each Ray batch writes one part file whose name is a hash of the batch's rows, atomically: a
batch retried after a crash replaces its own part instead of adding a duplicate, and only
predicted rows are written (failures go to the errors file), so a re-run computes just the
rows that are missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import io
from .storage import Destination

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
DEPTH_DTYPE = np.dtype("<f4")
LABEL_DTYPE = np.dtype("<u2")


def part_name(names: Iterable[str]) -> str:
    """The part file of a batch: the same rows always give the same name."""
    digest = hashlib.sha1("\n".join(sorted(names)).encode("utf-8")).hexdigest()[:24]
    return f"{PART_PREFIX}{digest}{PART_SUFFIX}"


def frame_key(video_name: PurePosixPath, frame_name: str) -> int | None:
    """The frame index of a frame's output name (`io.frame_name`), None for images."""
    path = PurePosixPath(frame_name)
    return int(path.name) if path.parent.name == f"{video_name.name}_frames" else None


def prediction_record(prediction: Any, item: io.InputItem, source: str) -> dict[str, Any]:
    """One predicted image or frame as plain values (arrays kept as arrays)."""
    depth = np.asarray(prediction.depth, dtype=np.float32)
    frame = frame_key(item.name, prediction.name) if item.kind == "video" else None
    labels = None
    if prediction.segmentation is not None:
        labels = io.segmentation_labels(prediction.segmentation).astype(np.uint16)
    _, low, high = io.normalize_depth(depth)  # the same range as the 16-bit PNG's text chunks
    return {"name": prediction.name, "source": source,
            "video": str(item.name) if frame is not None else None, "frame": frame,
            "height": depth.shape[0], "width": depth.shape[1], "depth": depth,
            "depth_min": low, "depth_max": high, "prompt": prediction.prompt, "segmentation": labels}


def _schema(segmentation: bool) -> pa.Schema:
    fields = [("name", pa.string()), ("source", pa.string()), ("video", pa.string()), ("frame", pa.int32()),
              ("height", pa.int32()), ("width", pa.int32()), ("depth", pa.large_binary()),
              ("depth_min", pa.float64()), ("depth_max", pa.float64()), ("prompt", pa.string())]
    if segmentation:
        fields.append(("segmentation", pa.large_binary()))
    return pa.schema(fields)


def records_table(records: Sequence[dict[str, Any]], segmentation: bool) -> pa.Table:
    """Records of `prediction_record` as a Parquet-ready table (arrays as bytes)."""
    schema = _schema(segmentation)
    columns = {field.name: [record[field.name] for record in records] for field in schema}
    columns["depth"] = [np.ascontiguousarray(d, dtype=DEPTH_DTYPE).tobytes() for d in columns["depth"]]
    if segmentation:
        columns["segmentation"] = [None if s is None else np.ascontiguousarray(s, dtype=LABEL_DTYPE).tobytes()
                                   for s in columns["segmentation"]]
    return pa.table(columns, schema=schema)


def write_part(destination: Destination, records: Sequence[dict[str, Any]], segmentation: bool) -> str | None:
    """Write a batch's records as one part file (see the module docstring); its name, if any."""
    if not records:
        return None
    name = part_name(record["name"] for record in records)
    with destination.atomic_file(name) as temporary:
        pq.write_table(records_table(records, segmentation), temporary)
    return name


def part_files(destination: Destination) -> list[str]:
    """The part files already under a destination."""
    return [name for name in destination.list_files(PART_SUFFIX) if name.startswith(PART_PREFIX)]


def finished_names(destination: Destination) -> frozenset[str]:
    """Names (and video names) already in the destination's parts: what a re-run skips."""
    names: set[str] = set()
    for part in part_files(destination):
        table = pq.read_table(destination.location(part), columns=["name", "video"])
        names.update(table.column("name").to_pylist())
        names.update(video for video in table.column("video").to_pylist() if video is not None)
    return frozenset(names)


def read_depth(row: dict[str, Any]) -> np.ndarray:
    """The (height, width) float32 depth of a Parquet output row."""
    return np.frombuffer(row["depth"], dtype=DEPTH_DTYPE).reshape(row["height"], row["width"])


def read_labels(row: dict[str, Any]) -> np.ndarray | None:
    """The (height, width) segmentation labels of a row, None without segmentation."""
    data = row.get("segmentation")
    return None if data is None else np.frombuffer(data, dtype=LABEL_DTYPE).reshape(row["height"], row["width"])
