"""`primedepth.predict`: the Python API of the job engine.

Results kept in memory are bounded: with ``stream=True`` predictions come one at a time from an
iterator as soon as they are final (a clip's frames after its alignment), the job running in a
worker thread that waits while the caller has not taken the last few; without it, a video in
memory is refused beyond `MAX_IN_MEMORY_FRAMES` frames (write to `output_dir` or stream).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..constants import OFFICIAL_REPO_ID
from ..errors import InputError
from ..loading import load_pipeline
from .options import JobOptions, job_options, takes_job_keywords
from .record import write_job_record
from .runner import run_job
from .sinks import StreamSink, prepare_output_dir, sink_for
from .sources import collect_items
from .summary import JobSummary, Prediction

__all__ = ["predict", "MAX_IN_MEMORY_FRAMES", "STREAM_QUEUE"]

MAX_IN_MEMORY_FRAMES = 1000  # video frames `predict` returns in a list; beyond: stream=True or output_dir
STREAM_QUEUE = 4  # predictions computed ahead of the caller with stream=True


@takes_job_keywords
def predict(
    inputs: Any,
    model: Any = None,
    *,
    output_dir: str | Path | None = None,
    device: str = "auto",
    dtype: str = "fp32",
    offload: bool = False,
    recursive: bool = False,
    errors: str = "raise",
    progress: bool = False,
    stream: bool = False,
    **job: Any,
) -> list[Prediction] | Iterator[Prediction]:
    """Depth for images, folders, glob patterns, list files and videos, in one call.

    `inputs`: one or a list of paths (as the CLI takes), in-memory images (PIL, HxWx3 numpy,
    3xHxW tensor), encoded image bytes, or ``(name, image_or_bytes)`` pairs. `model`: a loaded
    `PrimeDepthPipeline`, or a hub id, model folder or official ``.ckpt`` (default: the official
    weights); `device`, `dtype` and `offload` as in `load_pipeline`. With `output_dir`, the
    `outputs` are written there, existing files are kept unless `overwrite`, and inputs whose
    outputs are all complete are skipped (a video clip whatever the output set of the earlier run).
    `errors`: "raise" stops at the first bad input with its error; "skip" goes on and marks it
    failed in the results. `stream`: return an iterator that yields each prediction as soon as it
    is final, so memory stays bounded whatever the number of images or video frames; without it a
    list is returned, and videos longer than `MAX_IN_MEMORY_FRAMES` frames are refused unless
    written to `output_dir`.

    Job keywords (`primedepth.engine.JOB_KEYWORDS`, as for `predict_dataset`): `outputs` (png16,
    npy, color, seg, video, ply, glb, obj, normals, metric, metric_png16; see `primedepth.io`),
    `colormap`, `batch_size` (images per forward pass, or "auto": 1 on the CPU, on a GPU as many
    as fit), `max_size`, `prompt` (None for the model's default, a text, or "auto" to caption
    each image), `prompt_embeds` ((1, tokens, D) conditioning instead of a prompt), `seed` (fixes
    the noise, per image), `segmentation`, `overwrite`, `ensemble` (None, a Depth Anything name,
    hub id or folder, or a loaded disparity adapter: aligned by least squares and averaged),
    `geometry` (`primedepth.geometry.GeometryOptions`), `temporal`, `temporal_window`,
    `temporal_smoothing` (how video frames are aligned across the clip; a frame's `depth` is
    then the aligned prediction and `temporal` its scale and shift).

    Returns one `Prediction` per image or video frame, in input order.
    """
    if errors not in ("raise", "skip"):
        raise InputError(f"errors must be 'raise' or 'skip', got '{errors}'")
    options = job_options(job, output_dir=Path(output_dir) if output_dir is not None else None,
                          fail_fast=errors == "raise", keep_results=not stream, progress=progress)
    items = collect_items(inputs, recursive=recursive, output_dir=options.output_dir)
    prepare_output_dir(options, items)
    if not stream:
        _check_in_memory_frames(options, items)
    get_pipeline = _pipeline_getter(model, options, device, dtype, offload)
    if stream:
        return _streamed(items, get_pipeline, options, errors)
    summary = run_job(items, get_pipeline, options)
    _finish(options, summary, errors)
    return summary.results


def _pipeline_getter(model: Any, options: JobOptions, device: str, dtype: str, offload: bool) -> Any:
    """How the job gets its pipeline: the loaded one given, or loaded when first needed."""
    if model is not None and not isinstance(model, (str, Path)):
        return lambda: model
    options.model_name = str(model) if model is not None else OFFICIAL_REPO_ID
    return lambda: load_pipeline(model, device, dtype, offload)


def _finish(options: JobOptions, summary: JobSummary, errors: str) -> None:
    """The job record, then the first failure raised when asked to."""
    write_job_record(options, summary)
    if errors == "raise" and summary.failures:
        label, reason = summary.failures[0]
        raise InputError(f"{label}: {reason}")


def _check_in_memory_frames(options: JobOptions, items: list) -> None:
    """Refuse, up front, a video whose frames a list in memory could not hold."""
    if options.output_dir is not None:
        return
    from .. import io

    for item in items:
        if item.kind != "video":
            continue
        try:
            frames = io.probe_video(item.source).frames
        except InputError:
            continue  # reported as that item's failure by the job
        if frames is None or frames > MAX_IN_MEMORY_FRAMES:
            count = "an unknown number of" if frames is None else str(frames)
            raise InputError(
                f"{item.label}: {count} frames are more than predict() keeps in memory ({MAX_IN_MEMORY_FRAMES}); "
                "use predict(..., stream=True) to iterate over the frames, or write them with output_dir"
            )


class _Cancelled(BaseException):
    """The caller stopped iterating: the worker ends the job (its outputs cleaned up as on Ctrl-C)."""


_END = object()


def _streamed(items: list, get_pipeline: Any, options: JobOptions, errors: str) -> Iterator[Prediction]:
    """Run the job in a worker thread; yield each prediction as the sink receives it."""
    handoff: queue.Queue = queue.Queue(maxsize=STREAM_QUEUE)
    cancelled = threading.Event()

    def put(entry: Any) -> None:
        while not cancelled.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def work() -> None:
        try:
            summary = run_job(items, get_pipeline, options, StreamSink(put, sink_for(options)))
            _finish(options, summary, errors)
            put(_END)
        except _Cancelled:
            pass
        except BaseException as error:  # handed to the caller's thread
            try:
                put(error)
            except _Cancelled:
                pass

    worker = threading.Thread(target=work, name="primedepth-predict", daemon=True)
    worker.start()
    try:
        while True:
            entry = handoff.get()
            if entry is _END:
                return
            if isinstance(entry, BaseException):
                raise entry
            yield entry
    finally:
        cancelled.set()
        worker.join()
