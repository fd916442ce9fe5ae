"""The job's inputs as a streaming Ray dataset: listed inside a Ray task, never on the driver.

`primedepth predict --engine ray` takes folders, globs, list files and URIs of folders that may
hold millions of files. The driver only checks that each argument exists (one request per
argument, so a bad location fails before anything starts); the listing itself runs in one Ray
read task (`MediaListing`), which expands local arguments by the local engine's own rules
(`io.expand_inputs`), lists URIs with pyarrow, sets aside inputs that would write the same
outputs, and hands the rows on in blocks while the actors already predict the first ones. The
driver's memory and start-up time therefore do not depend on how many inputs there are.

Rows: ``path`` (local path or URI), ``name`` (output name), ``kind`` (image or video) and
``error`` (why the input cannot be processed; null for good inputs), which the actors report as
failed rows without reading anything.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from .. import io
from ..errors import InputError
from .storage import cause_of, is_uri, iter_media, resolve, shown

# Rows per block handed from the listing task to the actors: each block is one actor call, so
# blocks as small as an actor's batch keep every actor busy (the engine passes its batch size).
BLOCK_ROWS = 8
SCHEMA = pa.schema([("path", pa.string()), ("name", pa.string()), ("kind", pa.string()), ("error", pa.string())])


@dataclass(frozen=True)
class Listing:
    """What to list: explicit rows (already known), local arguments (files, folders, globs,
    ``.txt`` lists) and URIs; `output_dir` (local path or URI) is never read as input."""

    rows: tuple[dict[str, str], ...] = ()
    local: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    recursive: bool = False
    output_dir: str | None = None

    def __bool__(self) -> bool:
        return bool(self.rows or self.local or self.uris)


def check_argument(raw: str) -> None:
    """Fail fast on an input argument that cannot be listed: a missing local path, or a URI
    whose location is unreachable, forbidden or absent (one request, not a listing)."""
    if not is_uri(raw):
        if not Path(raw).expanduser().exists() and not glob.has_magic(raw):
            raise InputError(f"{raw}: no such file or directory")
        return
    filesystem, path = resolve(raw)
    try:
        info = filesystem.get_file_info(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(raw)}: cannot list this location ({cause_of(error)})") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{shown(raw)}: no such file or folder")
    if info.type == pafs.FileType.File and io.media_kind(Path(path)) is None:
        raise InputError(f"{shown(raw)}: not an image or video (by its extension)")


def list_rows(listing: Listing) -> list[dict[str, Any]]:
    """Every input row of a listing (in the Ray task that runs it), clashes set aside."""
    rows = list(listing.rows)
    output = listing.output_dir
    if listing.local:
        local_output = None if output is None or is_uri(output) else Path(output)
        rows += [item_row(item) for item in io.expand_inputs(list(listing.local), listing.recursive, local_output)]
    excluded = _excluded_prefix(output)
    for uri in listing.uris:
        for path, name, kind in iter_media(uri, listing.recursive):
            if excluded is None or not path.split("?", 1)[0].startswith(excluded):
                rows.append({"path": path, "name": str(name), "kind": kind, "error": None})
    return set_clashes_aside(rows)


def item_row(item: io.InputItem) -> dict[str, Any]:
    """A local engine work item as a row; paths made absolute (workers run elsewhere)."""
    if item.kind == "invalid":
        return {"path": item.label, "name": item.label, "kind": "invalid", "error": item.error or "cannot be processed"}
    return {"path": str(Path(item.path).resolve()), "name": str(item.name), "kind": item.kind, "error": None}


def _excluded_prefix(output_dir: str | None) -> str | None:
    """The output location as a URI prefix: inputs below it are earlier outputs."""
    if output_dir is None or not is_uri(output_dir):
        return None
    return output_dir.split("?", 1)[0].rstrip("/") + "/"


def set_clashes_aside(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two different files that would write the same outputs both fail, with the reason, and
    the rest goes on (the local engine's rule, `io.deduplicate`); repeats of one file run once."""
    paths: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.get("error") is None:
            twins = paths.setdefault((row["name"], row["kind"]), [])
            if row["path"] not in twins:
                twins.append(row["path"])
    kept, seen = [], set()
    for row in rows:
        twins = paths.get((row["name"], row["kind"]), [])
        if row.get("error") is None and len(twins) > 1:
            reason = f"{' and '.join(map(shown, twins))} would all write outputs named '{row['name']}'"
            kept.append({**row, "error": reason})
        elif row.get("error") is not None or row["path"] not in seen:
            kept.append(row)
            seen.add(row["path"])
    return kept


def _blocks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[pa.Table]:
    """Rows as pyarrow tables of at most `size` rows."""
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield pa.Table.from_pylist(chunk, schema=SCHEMA)
            chunk = []
    if chunk:
        yield pa.Table.from_pylist(chunk, schema=SCHEMA)


class MediaListing(Datasource):
    """A Ray Data datasource of one read task that lists the job's inputs (see the module
    docstring); blocks stream to the actors as they are produced."""

    def __init__(self, listing: Listing, block_rows: int = BLOCK_ROWS) -> None:
        self.listing = listing
        self.block_rows = block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        listing, size = self.listing, self.block_rows
        metadata = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
        return [ReadTask(lambda: _blocks(list_rows(listing), size), metadata, schema=SCHEMA)]

    def get_name(self) -> str:
        return "PrimeDepthInputs"


def input_rows(listing: Listing, block_rows: int = BLOCK_ROWS) -> Any:
    """The listing as a lazy Ray dataset (a read step; nothing runs until it is consumed), in
    blocks of `block_rows` rows: one block per actor call."""
    import ray.data

    # No CPU reserved: the listing is light I/O, and actors holding a fraction of every node's
    # CPUs (one per node, spread) must not keep the only read task from being scheduled. Ray
    # Data merges a task's small outputs into one large block, and a block goes to one actor:
    # the streaming repartition cuts it back into blocks of `block_rows`, one per actor call.
    dataset = ray.data.read_datasource(MediaListing(listing, block_rows), override_num_blocks=1, num_cpus=0)
    return dataset.repartition(target_num_rows_per_block=block_rows)
