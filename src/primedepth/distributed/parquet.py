"""Depth as a Parquet dataset (``--outputs parquet``): one row per image or video frame.

Columns: ``name`` (the output name the file outputs would have), ``source`` (input path or URI),
``video`` and ``frame`` (the video's name and the frame's index, null for images), ``time``
(seconds since the clip's first frame), ``frame_scale``/``frame_shift`` (the affine part of the
frame's alignment to its clip), ``height``, ``width``, ``depth`` (float32 little-endian bytes,
row-major (height, width); for an image its prediction at full precision, as its ``.npy``
output; for a frame the clip's value, as its 16-bit PNG holds it: ``frame_scale * raw +
frame_shift``, then filtered when the temporal setting filters values, so that the relation is
then approximate), ``raw_depth`` (frames only, null for images: the frame's own prediction
before any alignment or filtering, as the local engine's ``.npy`` frame output; same encoding),
``depth_min``/``depth_max``, ``prompt`` and, with segmentation, ``segmentation`` (uint16
little-endian bytes of the per-pixel labels). The names follow the one metadata shape
(`primedepth.engine.result_metadata`). `read_depth`, `read_raw_depth` and `read_labels` turn a
row back into arrays. Plain binary columns keep the files readable by any Parquet reader
(pandas, DuckDB, Spark), not only by Ray.

Rows are written in chunks (`ParquetSink`: at most `CHUNK_ROWS` rows or about `CHUNK_BYTES` of
arrays in memory, whatever the length or size of a video), each chunk one part file written
atomically under a name that the same rows always get again: a chunk of one clip's frames is
named by the clip and its position among the clip's parts (``part-CLIPHASH-000002.parquet``),
any other chunk by a hash of its row names. So a clip or batch written again after a crash
replaces its own parts instead of adding duplicates, and parts of an earlier, longer attempt at
a clip are removed before its end is marked. Only ``part-*.parquet`` files are in the dataset
folder's top level, plus ``_``-prefixed markers that readers skip (``_clip-HASH.done``: the clip
ended with all its frames written), so ``pyarrow.parquet.read_table(folder)``,
``pandas.read_parquet(folder)`` and DuckDB's ``read_parquet('folder/*.parquet')`` read the whole
folder. A re-run skips the images in the dataset and the clips with their marker
(`finished_names`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
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
CHUNK_BYTES = 64 * 1024**2  # or array bytes: a few rows of a 4K video, not 32 of them
CLIP_MARK_PREFIX = "_clip-"
CLIP_MARK_SUFFIX = ".done"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]


def part_name(names: Iterable[str]) -> str:
    """The part file of a batch: the same rows always give the same name."""
    joined = "\n".join(sorted(names))
    return f"{PART_PREFIX}{_digest(joined)}{PART_SUFFIX}"


def clip_part_name(video: str, ordinal: int) -> str:
    """The `ordinal`-th part of the clip `video`'s frames (0, 1, ... in frame order): a clip
    predicted again gets the same names, whatever its frames' values."""
    return f"{PART_PREFIX}{_digest(video)}-{ordinal:06d}{PART_SUFFIX}"


def remove_clip_parts(destination: Destination, video: str, start: int = 0) -> int:
    """Remove the parts of the clip `video` from the `start`-th on (those an earlier attempt
    wrote beyond the clip's present end, or all of them for a clip that failed); how many. One
    existence request per part, plus one: a clip's parts are numbered without gaps."""
    removed = 0
    while destination.exists([clip_part_name(video, start + removed)])[0]:
        destination.remove(clip_part_name(video, start + removed))
        removed += 1
    return removed


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
    raw = getattr(prediction, "raw_depth", None)
    if raw is not None:
        raw = np.asarray(raw, dtype=np.float32)
        if raw.shape != depth.shape:
            raise ValueError(f"{prediction.name}: raw depth {raw.shape} and depth {depth.shape} "
                             "differ in size")
    _, low, high = io.normalize_depth(depth)  # the same range as the 16-bit PNG's text chunks
    return {"name": prediction.name, "source": source, "video": video, "frame": frame,
            "time": getattr(prediction, "time", None), "frame_scale": temporal.get("scale"),
            "frame_shift": temporal.get("shift"), "height": depth.shape[0], "width": depth.shape[1], "depth": depth,
            "raw_depth": raw, "depth_min": low, "depth_max": high, "prompt": prediction.prompt,
            "segmentation": labels}


def _schema(segmentation: bool) -> pa.Schema:
    fields = [("name", pa.string()), ("source", pa.string()), ("video", pa.string()), ("frame", pa.int32()),
              ("time", pa.float64()), ("frame_scale", pa.float64()), ("frame_shift", pa.float64()),
              ("height", pa.int32()), ("width", pa.int32()), ("depth", pa.large_binary()),
              ("raw_depth", pa.large_binary()), ("depth_min", pa.float64()), ("depth_max", pa.float64()),
              ("prompt", pa.string())]
    if segmentation:
        fields.append(("segmentation", pa.large_binary()))
    return pa.schema(fields)


def records_table(records: Sequence[dict[str, Any]], segmentation: bool) -> pa.Table:
    """Records of `prediction_record` as a Parquet-ready table (arrays as bytes)."""
    schema = _schema(segmentation)
    columns = {field.name: [record.get(field.name) for record in records] for field in schema}
    columns["depth"] = [np.ascontiguousarray(d, dtype=DEPTH_DTYPE).tobytes() for d in columns["depth"]]
    columns["raw_depth"] = [None if d is None else np.ascontiguousarray(d, dtype=DEPTH_DTYPE).tobytes()
                            for d in columns["raw_depth"]]
    if segmentation:
        columns["segmentation"] = [None if s is None else np.ascontiguousarray(s, dtype=LABEL_DTYPE).tobytes()
                                   for s in columns["segmentation"]]
    return pa.table(columns, schema=schema)


def write_part(destination: Destination, records: Sequence[dict[str, Any]], segmentation: bool,
               clips: Iterable[str] | None = None, name: str | None = None) -> str | None:
    """Write a batch's records as one part file (see the module docstring); its name, if any.
    `clips`: videos whose every frame is now written (their markers follow the part); None: every
    video among the records (a batch that holds whole clips). `name`: the part's name; default:
    the hash of its rows' names."""
    if clips is None:
        clips = sorted({record["video"] for record in records if record.get("video") is not None})
    if not records:
        name = None
    else:
        name = name or part_name(record["name"] for record in records)
        with destination.atomic_file(name) as temporary:
            pq.write_table(records_table(records, segmentation), temporary)
    for clip in clips:
        mark_clip(destination, clip)
    return name


def clip_mark_name(video: str) -> str:
    """The marker of a finished clip: ``_``-prefixed, so Parquet readers skip it."""
    return f"{CLIP_MARK_PREFIX}{_digest(video)}{CLIP_MARK_SUFFIX}"


def mark_clip(destination: Destination, video: str) -> None:
    """Record that every frame row of the clip `video` is in the dataset."""
    with destination.atomic_file(clip_mark_name(video)) as temporary:
        Path(temporary).write_text(video + "\n", encoding="utf-8")


class ParquetSink(Sink):
    """The engine's results as rows of a Parquet dataset, `chunk_rows` rows (or the first rows to
    reach `chunk_bytes` of arrays) at a time: a video of any length streams through in bounded
    memory; a clip's marker follows its last rows.

    `source` names the input of every row (one input per sink), or `sources` maps each
    prediction's `source` path to the input's name (in-memory items carry a stand-in path)."""

    def __init__(self, destination: Destination, segmentation: bool = False, chunk_rows: int = CHUNK_ROWS,
                 source: str | None = None, sources: Mapping[str, str] | None = None,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        self.destination, self.segmentation, self.chunk_rows = destination, segmentation, chunk_rows
        self.chunk_bytes = chunk_bytes
        self.source, self.sources = source, dict(sources or {})
        self.records: list[dict[str, Any]] = []
        self._bytes = 0  # of the arrays in `records`
        self.parts: list[str] = []
        self._clip_parts: dict[str, int] = {}  # clip -> parts of its frames alone written so far

    def finished(self, relative: Sequence[str]) -> bool:
        return False  # rows, not files: see `finished_names`

    def add(self, prediction: Prediction) -> None:
        record = prediction_record(prediction, None, self._source_of(prediction))
        self.records.append(record)
        self._bytes += sum(record[key].nbytes for key in ("depth", "raw_depth", "segmentation")
                           if record[key] is not None)
        if len(self.records) >= self.chunk_rows or self._bytes >= self.chunk_bytes:
            self.flush()

    def _source_of(self, prediction: Prediction) -> str:
        path = None if prediction.source is None else str(prediction.source)
        if path is not None and path in self.sources:
            return self.sources[path]
        return self.source or path or prediction.name

    def flush(self, clips: Iterable[str] = ()) -> None:
        """Write the buffered rows as one part (then the markers of `clips`)."""
        name = write_part(self.destination, self.records, self.segmentation, clips, self._next_name())
        if name is not None:
            self.parts.append(name)
        self.records, self._bytes = [], 0

    def _next_name(self) -> str | None:
        """A chunk of one clip's frames alone: the clip's next numbered part; else None (by rows)."""
        videos = {record["video"] for record in self.records}
        if len(videos) != 1 or None in videos:
            return None
        video = videos.pop()
        ordinal = self._clip_parts.get(video, 0)
        self._clip_parts[video] = ordinal + 1
        return clip_part_name(video, ordinal)

    def finish_clip(self, name: str) -> None:
        """The clip's last rows, then any later-numbered part an earlier attempt left, then its marker."""
        self.flush()
        remove_clip_parts(self.destination, name, self._clip_parts.get(name, 0))
        mark_clip(self.destination, name)

    def close(self) -> None:
        self.flush()


def part_files(destination: Destination) -> list[str]:
    """The part files already under a destination."""
    return [name for name in destination.list_files(PART_SUFFIX) if name.startswith(PART_PREFIX)]


def clear_dataset(destination: Destination) -> int:
    """Remove an earlier run's parts and clip markers (an --overwrite run starts the dataset
    anew: parts are named by their batch, so a different batching would otherwise leave the old
    rows beside the new ones). Other files are left alone. Returns how many were removed."""
    marks = [name for name in destination.list_files(CLIP_MARK_SUFFIX) if name.startswith(CLIP_MARK_PREFIX)]
    stale = part_files(destination) + marks
    for name in stale:
        destination.remove(name)
    return len(stale)


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


def read_raw_depth(row: dict[str, Any]) -> np.ndarray | None:
    """The (height, width) float32 raw prediction of a video frame's row (before any clip
    alignment or filtering); None for images, whose `read_depth` is raw already."""
    data = row.get("raw_depth")
    return None if data is None else np.frombuffer(data, dtype=DEPTH_DTYPE).reshape(row["height"], row["width"])


def read_labels(row: dict[str, Any]) -> np.ndarray | None:
    """The (height, width) segmentation labels of a row, None without segmentation."""
    data = row.get("segmentation")
    return None if data is None else np.frombuffer(data, dtype=LABEL_DTYPE).reshape(row["height"], row["width"])
