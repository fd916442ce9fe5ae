"""Which inputs are finished already: a re-run skips them (resume), and a batch that Ray retries
after a crash skips what its first attempt wrote, so nothing is written twice.

The rule is the local engine's: an input is finished when every requested output exists. For
local files in a local output folder it is literally the local engine's check (a video also
needs its last frame's outputs). Where that check cannot look (an object store, an input known
only by its URI), an image is finished when all its outputs exist, and a video when its depth
video exists: it is written only after all its frames, locally and in object storage alike.
With ``--outputs parquet`` the input must also be in the Parquet dataset.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePosixPath

from .. import io
from ..jobs import JobOptions
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
    if options.overwrite:
        return False
    if parquet_names is not None:  # Parquet is an output of its own
        return str(name) in parquet_names
    if destination.is_local and local is not None:
        item = io.InputItem(name=name, path=local, kind=kind)
        return local_engine_is_finished(item, options)
    relative = finished_outputs(name, kind, options)
    return bool(relative) and all(destination.exists(relative))
