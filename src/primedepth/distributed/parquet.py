"""Depth as a Parquet dataset (``--outputs parquet``): one row per image or video frame.

Columns: ``name`` (the output name the file outputs would have), ``source`` (input path or URI),
``video`` and ``frame`` (the video's name and the frame's index, null for images), ``time``
(seconds since the clip's first frame), ``frame_scale``/``frame_shift`` (how the frame was
aligned to its clip: ``raw = (depth - frame_shift) / frame_scale``), ``height``, ``width``,
``depth`` (float32 little-endian bytes, row-major (height, width): the prediction at full
precision, as the ``.npy`` output; for frames the clip-aligned one), ``depth_min``/``depth_max``,
``prompt`` and, with segmentation, ``segmentation`` (uint16 little-endian bytes of the per-pixel
labels). The names follow the one metadata shape (`primedepth.engine.result_metadata`).
`read_depth` and `read_labels` turn a row back into arrays. Plain binary columns keep the files
readable by any Parquet reader (pandas, DuckDB, Spark), not only by Ray.

Rows are written in chunks (`ParquetSink`: at most `CHUNK_ROWS` rows in memory, whatever the
length of a video), each chunk one part file whose name is a hash of its rows, atomically: a
chunk written again after a crash replaces its own part instead of adding a duplicate. Only
``part-*.parquet`` files are in the dataset folder's top level, plus ``_``-prefixed markers that
readers skip (``_clip-HASH.done``: the clip ended with all its frames written), so
``pyarrow.parquet.read_table(folder)`` and ``pandas.read_parquet(folder)`` read the whole folder.
A re-run skips the images in the dataset and the clips with their marker (`finished_names`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import io
from ..engine.sinks import Sink
from ..engine.summary import Prediction
from .storage import Destination

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
DEPTH_DTYPE = np.dtype("<f4")
LABEL_DTYPE = np.dtype("<u2")
CHUNK_ROWS = 32  # rows a ParquetSink holds before writing them as a part (bounded memory)
CLIP_MARK_PREFIX = "_clip-"
CLIP_MARK_SUFFIX = ".done"


def part_name(names: Iterable[str]) -> str:
    """The part file of a batch: the same rows always give the same name."""
    digest = hashlib.sha1("\n".join(sorted(names)).encode("utf-8")).hexdigest()[:24]
    return f"{PART_PREFIX}{digest}{PART_SUFFIX}"


def frame_key(video_name: PurePosixPath, frame_name: str) -> int | None:
    """The frame index of a frame's output name (`io.frame_name`), None for images."""
    path = PurePosixPath(frame_name)
    return int(path.name) if path.parent.name == f"{video_name.name}_frames" else None


def prediction_record(prediction: Any, item: io.InputItem | None, source: str) -> dict[str, Any]:
    """One predicted image or frame as plain values (arrays kept as arrays). `item`: the input it
    came from (older callers); the prediction itself names its clip and frame."""
    depth = np.asarray(prediction.depth, dtype=np.float32)
    video, frame = getattr(prediction, "video", None), getattr(prediction, "frame_index", None)
    if video is None and item is not None and item.kind == "video":
        frame = frame_key(item.name, prediction.name)
        video = str(item.name) if frame is not None else None
    temporal = getattr(prediction, "temporal", None) or {}
    labels = None
    if prediction.segmentation is not None:
        labels = io.segmentation_labels(prediction.segmentation).astype(np.uint16)
    _, low, high = io.normalize_depth(depth)  # the same range as the 16-bit PNG's text chunks
    return {"name": prediction.name, "source": source, "video": video, "frame": frame,
            "time": getattr(prediction, "time", None), "frame_scale": temporal.get("scale"),
            "frame_shift": temporal.get("shift"), "height": depth.shape[0], "width": depth.shape[1], "depth": depth,
            "depth_min": low, "depth_max": high, "prompt": prediction.prompt, "segmentation": labels}


def _schema(segmentation: bool) -> pa.Schema:
    fields = [("name", pa.string()), ("source", pa.string()), ("video", pa.string()), ("frame", pa.int32()),
              ("time", pa.float64()), ("frame_scale", pa.float64()), ("frame_shift", pa.float64()),
              ("height", pa.int32()), ("width", pa.int32()), ("depth", pa.large_binary()),
              ("depth_min", pa.float64()), ("depth_max", pa.float64()), ("prompt", pa.string())]
    if segmentation:
        fields.append(("segmentation", pa.large_binary()))
    return pa.schema(fields)


def records_table(records: Sequence[dict[str, Any]], segmentation: bool) -> pa.Table:
    """Records of `prediction_record` as a Parquet-ready table (arrays as bytes)."""
    schema = _schema(segmentation)
    columns = {field.name: [record.get(field.name) for record in records] for field in schema}
    columns["depth"] = [np.ascontiguousarray(d, dtype=DEPTH_DTYPE).tobytes() for d in columns["depth"]]
    if segmentation:
        columns["segmentation"] = [None if s is None else np.ascontiguousarray(s, dtype=LABEL_DTYPE).tobytes()
                                   for s in columns["segmentation"]]
    return pa.table(columns, schema=schema)


def write_part(destination: Destination, records: Sequence[dict[str, Any]], segmentation: bool,
               clips: Iterable[str] | None = None) -> str | None:
    """Write a batch's records as one part file (see the module docstring); its name, if any.
    `clips`: videos whose every frame is now written (their markers follow the part); None: every
    video among the records (a batch that holds whole clips)."""
    if clips is None:
        clips = sorted({record["video"] for record in records if record.get("video") is not None})
    name = None
    if records:
        name = part_name(record["name"] for record in records)
        with destination.atomic_file(name) as temporary:
            pq.write_table(records_table(records, segmentation), temporary)
    for clip in clips:
        mark_clip(destination, clip)
    return name


def clip_mark_name(video: str) -> str:
    """The marker of a finished clip: ``_``-prefixed, so Parquet readers skip it."""
    return f"{CLIP_MARK_PREFIX}{hashlib.sha1(video.encode('utf-8')).hexdigest()[:24]}{CLIP_MARK_SUFFIX}"


def mark_clip(destination: Destination, video: str) -> None:
    """Record that every frame row of the clip `video` is in the dataset."""
    with destination.atomic_file(clip_mark_name(video)) as temporary:
        Path(temporary).write_text(video + "\n", encoding="utf-8")


class ParquetSink(Sink):
    """The engine's results as rows of a Parquet dataset, `CHUNK_ROWS` at a time: a video of any
    length streams through in bounded memory; a clip's marker follows its last rows."""

    def __init__(self, destination: Destination, segmentation: bool = False, chunk_rows: int = CHUNK_ROWS,
                 source: str | None = None) -> None:
        self.destination, self.segmentation, self.chunk_rows = destination, segmentation, chunk_rows
        self.source = source
        self.records: list[dict[str, Any]] = []
        self.parts: list[str] = []
        self._finished: frozenset[str] | None = None

    def finished(self, relative: Sequence[str]) -> bool:
        return False  # rows, not files: see `finished_names`

    def add(self, prediction: Prediction) -> None:
        source = self.source or (str(prediction.source) if prediction.source is not None else prediction.name)
        self.records.append(prediction_record(prediction, None, source))
        if len(self.records) >= self.chunk_rows:
            self.flush()

    def flush(self, clips: Iterable[str] = ()) -> None:
        name = write_part(self.destination, self.records, self.segmentation, clips)
        if name is not None:
            self.parts.append(name)
        self.records = []

    def finish_clip(self, name: str) -> None:
        self.flush(clips=[name])

    def close(self) -> None:
        self.flush()


def part_files(destination: Destination) -> list[str]:
    """The part files already under a destination."""
    return [name for name in destination.list_files(PART_SUFFIX) if name.startswith(PART_PREFIX)]


def finished_names(destination: Destination) -> frozenset[str]:
    """Image names in the destination's parts, and the clips whose marker says all their frames
    are there: what a re-run skips (a clip cut short runs again, its parts replaced)."""
    names: set[str] = set()
    videos: set[str] = set()
    for part in part_files(destination):
        table = pq.read_table(destination.location(part), columns=["name", "video"])
        for name, video in zip(table.column("name").to_pylist(), table.column("video").to_pylist()):
            if video is None:
                names.add(name)
            else:
                videos.add(video)
    marks = {name for name in destination.list_files(CLIP_MARK_SUFFIX) if name.startswith(CLIP_MARK_PREFIX)}
    return frozenset(names | {video for video in videos if clip_mark_name(video) in marks})


def read_depth(row: dict[str, Any]) -> np.ndarray:
    """The (height, width) float32 depth of a Parquet output row."""
    return np.frombuffer(row["depth"], dtype=DEPTH_DTYPE).reshape(row["height"], row["width"])


def read_labels(row: dict[str, Any]) -> np.ndarray | None:
    """The (height, width) segmentation labels of a row, None without segmentation."""
    data = row.get("segmentation")
    return None if data is None else np.frombuffer(data, dtype=LABEL_DTYPE).reshape(row["height"], row["width"])
