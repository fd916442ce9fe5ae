"""The one resume rule: an input is finished when every output asked for is complete.

Re-running a job skips finished inputs without loading the model. The sink says what exists
(`Sink.finished`) and which clips were completed (`Sink.completed_clips`), so a local folder,
object storage and a Parquet dataset resume alike:

- an image is finished when each requested output file exists (files appear whole: atomic);
- a video is finished when each requested output is complete: its depth video (renamed into
  place only after every frame) and, for the per-frame kinds, a completed clip: the job record
  (``primedepth_job.json``) lists every clip that ended with all its frames written, under the
  output kinds of that run (`completed_clips`). A clip finished once is therefore skipped
  whatever the output set of the re-run (``--outputs png16`` after the default set predicts no
  frame); a kind not made before (say ``npy``) runs the clip again for it, keeping the outputs
  that exist.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from .. import io
from .options import JobOptions
from .record import completed_clips
from .sinks import Sink, sink_for

__all__ = ["completed_clips", "item_outputs", "item_paths", "is_finished"]


def item_outputs(item: io.InputItem, options: JobOptions) -> dict[str, PurePosixPath]:
    """Output files whose existence an item needs to be finished, relative to the destination:
    per-image and 3D outputs for images, the depth video for videos (whose frame outputs are
    complete when the clip is in `completed_clips`)."""
    if item.kind == "image":
        kinds = (*options.frame_kinds, *options.geometry_kinds)
        return {kind: PurePosixPath(f"{item.name}{io.ALL_OUTPUT_SUFFIXES[kind]}") for kind in kinds}
    if "video" in options.outputs:
        return {"video": PurePosixPath(f"{item.name}{io.OUTPUT_SUFFIXES['video']}")}
    return {}


def item_paths(item: io.InputItem, options: JobOptions) -> dict[str, Path]:
    """`item_outputs` inside the job's output folder ({} without one)."""
    if options.output_dir is None:
        return {}
    return {key: options.output_dir / relative for key, relative in item_outputs(item, options).items()}


def clip_complete(name: PurePosixPath | str, options: JobOptions, completed: dict[str, frozenset[str]]) -> bool:
    """Whether the clip's frames have every per-frame kind asked for (`completed_clips`)."""
    return set(options.frame_kinds) <= completed.get(str(name), frozenset())


def is_finished(item: io.InputItem, options: JobOptions, sink: Sink | None = None) -> bool:
    """Whether every requested output of the item is complete (`sink`: where to look; default:
    the job's output folder). In-memory images and overwriting jobs are never finished."""
    if options.overwrite or item.kind == "invalid" or (item.path is None and item.data is None):
        return False
    sink = sink if sink is not None else sink_for(options)
    relative = [str(path) for path in item_outputs(item, options).values()]
    if item.kind == "video" and options.frame_kinds:
        return sink.finished(relative) and clip_complete(item.name, options, sink.completed_clips())
    return bool(relative) and sink.finished(relative)
