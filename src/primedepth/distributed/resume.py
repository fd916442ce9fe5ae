"""Which inputs are finished already: a re-run skips them (resume), and a batch that Ray retries
after a crash skips what its first attempt wrote, so nothing is written twice.

The rule is the local engine's: an input is finished when every requested output exists. For
local files in a local output folder it is literally the local engine's check. Where that check
cannot look (an object store, an input known only by its URI), the same rule is applied to the
destination: an image is finished when all its outputs exist, and a video when its depth video
exists (if asked for) and, for per-frame outputs, the job record lists its clip as complete for
those kinds.
With ``--outputs parquet`` the input must also be in the Parquet dataset.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from .. import io
from ..engine import clip_complete, completed_clips
from ..engine.record import read_job_record
from ..jobs import JOB_RECORD, JobOptions
from ..jobs import is_finished as local_engine_is_finished  # the local engine's own rule
from ..jobs import item_paths as local_engine_item_paths  # and its output names
from .storage import Destination


def finished_outputs(name: PurePosixPath, kind: str, options: JobOptions) -> list[str]:
    """Relative paths whose existence proves an input finished (empty: never finished): the
    local engine's output paths of the input, below an output folder '.'."""
    item = io.InputItem(name=name, kind=kind)
    return [path.as_posix() for path in local_engine_item_paths(item, replace(options, output_dir=Path("."))).values()]


def is_finished(name: PurePosixPath, kind: str, local: Path | None, options: JobOptions,
                destination: Destination, parquet_names: frozenset[str] | None = None) -> bool:
    """Whether an input needs no work. `local`: its local file if it has one; `parquet_names`:
    what the Parquet output holds, None when Parquet is not asked for. For a local destination,
    `options.output_dir` is that folder."""
    return finished_flags([(name, kind, local)], options, destination, parquet_names)[0]


def destination_clips(destination: Destination) -> dict[str, frozenset[str]]:
    """The clips that the destination's job record lists as complete, with their frame kinds
    (`primedepth.engine.completed_clips`); read once per actor."""
    if destination.is_local:
        return completed_clips(read_job_record(destination.local_dir))
    if not destination.exists([JOB_RECORD])[0]:
        return {}
    with tempfile.TemporaryDirectory(prefix="primedepth-record-") as folder:
        destination.download(JOB_RECORD, Path(folder) / JOB_RECORD)
        return completed_clips(read_job_record(Path(folder)))


def finished_flags(entries: Sequence[tuple[PurePosixPath, str, Path | None]], options: JobOptions,
                   destination: Destination, parquet_names: frozenset[str] | None = None,
                   clips: Callable[[], dict[str, frozenset[str]]] | None = None) -> list[bool]:
    """`is_finished` for a batch of (name, kind, local file) in one existence request to an
    object store: what each actor asks per batch (resume is decided in the actors). A video
    with per-frame outputs also needs its clip complete in the job record (`clips`, read when
    first needed; default: `destination_clips`), the local engine's rule: a finished clip
    predicts no frame again, whatever the output set."""
    if options.overwrite:
        return [False] * len(entries)
    if parquet_names is not None:  # Parquet is an output of its own
        return [str(name) in parquet_names for name, _, _ in entries]
    flags: list[bool] = [False] * len(entries)
    asked: list[tuple[int, list[str], bool]] = []
    for index, (name, kind, local) in enumerate(entries):
        if destination.is_local and local is not None:
            flags[index] = local_engine_is_finished(io.InputItem(name=name, path=local, kind=kind), options)
            continue
        relative = finished_outputs(name, kind, options)
        needs_clip = kind == "video" and bool(options.frame_kinds)
        if relative or needs_clip:
            asked.append((index, relative, needs_clip))
    found = destination.exists([path for _, relative, _ in asked for path in relative]) if asked else []
    position = 0
    for index, relative, needs_clip in asked:
        flags[index] = all(found[position:position + len(relative)])
        position += len(relative)
        if flags[index] and needs_clip:
            clips = clips or (lambda: destination_clips(destination))
            flags[index] = clip_complete(entries[index][0], options, clips())
    return flags
