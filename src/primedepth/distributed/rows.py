"""The rows of a Ray job: what goes in, how a row becomes a work item of the local engine,
and what comes back.

Input rows (any Ray Data dataset with these columns):

- ``path``: a local path or URI of an image or video; with the bytes column it only names the
  row (``ray.data.read_binary_files(..., include_paths=True)`` gives both);
- the bytes column (default ``bytes``): the encoded file, e.g. from a Parquet dataset;
- ``name`` (optional): the output name, a relative path without suffix; by default ``path``
  relative to the job's root (or the whole path without its scheme), without the suffix;
- ``kind`` (optional): ``image`` or ``video``; by default from the extension.

Every row becomes a work item of the local engine, read by its own reader: a local path as it
is, bytes and URI objects in memory (no temporary file per row), so decoding (EXIF orientation,
16-bit PNGs, videos) is the same code whichever engine and storage ran the job. Output names go
through the one check (`primedepth.io.names.safe_output_name`): a row whose name is absolute,
has ``..``, is empty or holds control characters fails on its own with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import io
from ..errors import InputError
from ..io.names import safe_output_name
from .storage import URI_MARK, cause_of, is_uri, resolve, shown

DEFAULT_INPUT_COLUMN = "bytes"
REFUSED_NAME = PurePosixPath(".refused")  # the name of a row whose own name was refused: never written
# One result row per input row (files and Parquet outputs); see `result_row`.
RESULT_COLUMNS = ("name", "source", "kind", "status", "error", "images", "metadata")


@dataclass(frozen=True)
class Row:
    """One input row, decoded: its output name, what to show in messages, its kind and data."""

    name: PurePosixPath
    source: str
    kind: str
    data: bytes | None = None
    error: str | None = None  # why the row cannot be used (a refused name): it fails on its own


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A Ray batch (column -> array) as a list of row dicts."""
    columns = list(batch)
    count = len(batch[columns[0]]) if columns else 0
    return [{column: batch[column][index] for column in columns} for index in range(count)]


def columns_of(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Row dicts as a Ray batch; object columns so that variable-size arrays and None fit."""
    columns = {}
    for name in names:
        column = np.empty(len(rows), dtype=object)
        column[:] = [row.get(name) for row in rows]
        columns[name] = column
    return columns


def default_name(path: str, root: str | None) -> PurePosixPath:
    """The output name of a path: relative to `root` when below it, else the path without its
    scheme and leading slash (unique when paths are), always without the suffix."""
    text = path.split(URI_MARK, 1)[-1]
    if root is not None:
        base = root.split(URI_MARK, 1)[-1].rstrip("/") + "/"
        if text.startswith(base):
            text = text[len(base):]
    return PurePosixPath(text.lstrip("/")).with_suffix("")


def decode_row(row: dict[str, Any], input_column: str, root: str | None) -> Row:
    """A `Row` from a dataset row; `InputError` when it has nothing to name or read."""
    path = _text(row.get("path"))
    name = _text(row.get("name"))
    if path is None and name is None:
        raise InputError("every row needs a 'path' or a 'name' column (see primedepth.distributed.rows)")
    data = row.get(input_column)
    if data is None and path is None:
        raise InputError(f"row '{name}' has neither a '{input_column}' column nor a 'path' to read")
    source = path or name
    kind = _text(row.get("kind")) or io.media_kind(Path(source)) or "image"
    data = bytes(data) if data is not None else None
    try:
        output = safe_output_name(name if name is not None else default_name(source, root))
    except InputError as error:
        return Row(name=REFUSED_NAME, source=source, kind=kind, error=str(error))
    return Row(name=output, source=source, kind=kind, data=data)


def _text(value: Any) -> str | None:
    """A string cell, with missing values (None, NaN, empty) as None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text or None


def local_item(row: Row, scratch: Path | None = None, index: int = 0) -> io.InputItem:
    """The local engine's work item for a row: a local path as it is; bytes, and URI objects
    read into memory, decoded there (nothing is written). `InputError` for a refused row.

    In-memory items keep a `path` below `scratch` that is never created: the identity by which
    the caller matches the engine's results (`Prediction.source`) to its rows."""
    if row.error is not None:
        raise InputError(row.error)
    if row.data is None and not is_uri(row.source):
        return io.InputItem(name=row.name, path=Path(row.source), kind=row.kind)
    data = row.data if row.data is not None else read_uri(row.source)
    identity = Path(scratch or ".") / f"{index:06d}{PurePosixPath(row.source).suffix}"
    return io.InputItem(name=row.name, path=identity, kind=row.kind, data=data, origin=row.source)


def read_uri(uri: str) -> bytes:
    """The object at `uri`, in memory (an image or a video file, as one dataset row holds)."""
    filesystem, path = resolve(uri)
    try:
        with filesystem.open_input_stream(path) as source:
            return source.read()
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(uri)}: cannot read ({cause_of(error)})") from None


def result_row(row: Row, status: str, error: str | None = None, images: int = 0,
               metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """What a row reports: status 'done', 'skipped' (its outputs existed) or 'failed' (why in
    `error`), how many images (video frames) it predicted, and what produced its outputs (the
    local engine's run metadata, as JSON) for the job record."""
    return {"name": str(row.name), "source": row.source, "kind": row.kind, "status": status,
            "error": error, "images": images, "metadata": json.dumps(metadata) if metadata else None}
