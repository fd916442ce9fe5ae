"""The Ray actor: one PrimeDepth pipeline per actor, and every batch through the local engine.

Each batch of rows is handed to `primedepth.jobs.run_job` with the job's own `JobOptions`, so the
reading, the seed rule, the grouping by size and the writers are the local engine's, and the
outputs are the files `primedepth predict` writes. The actor only turns rows into local files
(`rows.local_item`), skips finished inputs (`resume`), copies outputs up to object storage, and
reports one row per input: done, skipped or failed with the reason. A batch that Ray retries
after the actor died redoes only what is missing: every file appears whole, once. Whether an
input is finished is decided here, per batch (one existence request to an object store), not
on the driver.

With ``--outputs parquet`` the engine streams its results into a `parquet.ParquetSink`, nothing
is kept in memory beyond a chunk of rows: a video of any length becomes numbered parts of at most
`WorkerSpec.chunk_rows` frames, then its marker. A clip cut short (the actor died) has no marker
and runs again whole: its parts get the same names and replace the earlier ones, and parts past
its new end are removed before the marker; a clip that fails leaves no rows.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from .. import io
from ..errors import first_line
from ..jobs import JobOptions, JobSummary, run_job
from ..loading import load_pipeline, quiet_library_progress
from .parquet import CHUNK_ROWS, ParquetSink, clip_mark_name, finished_names, prediction_record, remove_clip_parts
from .resume import destination_clips, finished_flags
from .rows import DEFAULT_INPUT_COLUMN, RESULT_COLUMNS, Row, batch_rows, columns_of, decode_row, local_item, result_row
from .storage import Destination, is_uri, local_folder

# Rows of `predict_dataset` without an output folder: one per image or video frame.
MEMORY_COLUMNS = ("name", "source", "kind", "status", "error", "video", "frame", "prompt", "depth")

# The clips a video row completed (the local engine's `JobSummary.videos`), carried to the
# driver's job record inside the row's metadata: what makes a finished clip resumable.
VIDEOS_KEY = "_videos"

Work = list[tuple[Row, io.InputItem]]


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor needs (picklable): the model, the job's options and where outputs go.

    `destination` None keeps results in the returned rows; `parquet` writes Parquet parts
    instead of files (each actor reads the names the Parquet output has already, once), of at
    most `chunk_rows` rows each.
    """

    model: str
    device: str = "auto"
    dtype: str = "fp32"
    offload: bool = False
    options: JobOptions = field(default_factory=JobOptions)
    destination: Destination | None = None
    parquet: bool = False
    input_column: str = DEFAULT_INPUT_COLUMN
    root: str | None = None
    threads: int | None = None
    chunk_rows: int = CHUNK_ROWS


class DepthPredictor:
    """A Ray Data callable class: the pipeline is loaded once per actor, when first needed."""

    def __init__(self, spec: WorkerSpec) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        quiet_library_progress()  # an actor has no terminal; Ray's bars and the summary report
        self.spec = spec
        # Per-actor options: results kept only where rows carry them (Parquet streams through
        # its sink); no bars, no early stop.
        self.options = replace(spec.options, output_dir=None if spec.parquet else local_folder(spec.destination),
                               keep_results=spec.destination is None, progress=False, fail_fast=False)
        self._pipeline: Any = None
        self._finished: frozenset[str] | None = None
        self._clips: dict[str, frozenset[str]] | None = None
        self.batches = 0

    def pipeline(self) -> Any:
        """The actor's pipeline, loaded on first use (a batch of finished inputs needs none)."""
        if self._pipeline is None:
            spec = self.spec
            self._pipeline = load_pipeline(spec.model, spec.device, spec.dtype, spec.offload)
        return self._pipeline

    def parquet_names(self) -> frozenset[str] | None:
        """What the Parquet output held when this actor started (None without Parquet): read
        here, once per actor, so that no driver holds or ships every finished name."""
        if not self.spec.parquet or self.spec.destination is None:
            return None
        if self._finished is None:
            self._finished = frozenset() if self.options.overwrite else finished_names(self.spec.destination)
        return self._finished

    def completed_clips(self) -> dict[str, frozenset[str]]:
        """The clips the destination's job record lists as complete (read once per actor)."""
        if self._clips is None:
            self._clips = destination_clips(self.spec.destination)
        return self._clips

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        self.batches += 1
        # In-memory rows are named below a folder that is never created: only an identity by
        # which the engine's results are matched to their rows (`rows.local_item`).
        results, work = self._prepare(batch_rows(batch), Path(f"primedepth-batch-{self.batches:06d}"))
        if self.spec.destination is None:
            results += self._in_memory(work)
            columns = MEMORY_COLUMNS + (("segmentation",) if self.options.segmentation else ())
        else:
            results += self._parquet(work) if self.spec.parquet else self._files(work)
            columns = RESULT_COLUMNS
        return columns_of(results, columns)

    def _prepare(self, raw_rows: list[dict[str, Any]], scratch: Path) -> tuple[list[dict[str, Any]], Work]:
        """Rows as local work items; rows listed as unusable, unreadable and finished ones are
        answered at once (finished ones before anything is downloaded)."""
        spec, results, pending = self.spec, [], []
        for raw in raw_rows:
            if raw.get("error") is not None:  # set aside by the listing (missing, clashing)
                results.append(_listed_failure(raw))
                continue
            pending.append(decode_row(raw, spec.input_column, spec.root))
        if spec.destination is not None and pending:
            entries = [(row.name, row.kind, _local_file(row)) for row in pending]
            finished = finished_flags(entries, self.options, spec.destination, self.parquet_names(),
                                      self.completed_clips)
            results += [result_row(row, "skipped") for row, done in zip(pending, finished) if done]
            pending = [row for row, done in zip(pending, finished) if not done]
        work = []
        for index, row in enumerate(pending):
            try:
                work.append((row, local_item(row, scratch / "in", index)))
            except (OSError, ValueError) as error:  # InputError is a ValueError
                results.append(result_row(row, "failed", first_line(str(error))))
        return results, work

    def _run(self, group: Work, options: JobOptions,
             sink: ParquetSink | None = None) -> tuple[JobSummary, dict[str, str]]:
        """The local engine on a group of items (into `sink` when given); its failures by item label."""
        summary = run_job([item for _, item in group], self.pipeline, options, sink)
        return summary, dict(summary.failures)

    def _files(self, work: Work) -> list[dict[str, Any]]:
        """Write the file outputs; report each row. A local destination is written in place; for
        object storage each group's outputs are spooled to one private folder (bounded by the
        group) and copied up file by file, each object complete, then the spool is removed."""
        if not work:
            return []
        if self.spec.destination.is_local:
            return self._write_groups(work, self.options, None)
        with tempfile.TemporaryDirectory(prefix="primedepth-ray-spool-") as spool:
            return self._write_groups(work, replace(self.options, output_dir=Path(spool)), Path(spool))

    def _write_groups(self, work: Work, options: JobOptions, staging: Path | None) -> list[dict[str, Any]]:
        """Run the engine on each group and report each row (uploading a spool when there is one)."""
        destination, results = self.spec.destination, []
        for group in _groups(work):
            summary, failures = self._run(group, options)
            uploaded = None if staging is None else _upload(staging, destination, options.overwrite)
            for row, item in group:
                reason = failures.get(item.label) or uploaded
                images = summary.images if item.kind == "video" else 1
                done = result_row(row, "done", images=images, metadata=_row_metadata(summary))
                results.append(result_row(row, "failed", reason) if reason else done)
        return results

    def _parquet(self, work: Work) -> list[dict[str, Any]]:
        """Stream each group's rows into Parquet parts (one sink per group: a clip's parts hold
        its frames alone); report each row."""
        results = []
        for group in _groups(work):
            results += self._parquet_group(group)
        return results

    def _parquet_group(self, group: Work) -> list[dict[str, Any]]:
        """One group through a `ParquetSink` of its own; a failed clip's parts are removed."""
        destination = self.spec.destination
        videos = [str(item.name) for _, item in group if item.kind == "video"]
        if self.options.overwrite:  # recomputed: not finished until its new rows are all there
            for video in videos:
                destination.remove(clip_mark_name(video))
        sink = ParquetSink(destination, self.options.segmentation, self.spec.chunk_rows,
                           sources={str(item.path): row.source for row, item in group})
        summary, failures = self._run(group, self.options, sink)  # keeps nothing: keep_results is off here
        results = []
        for row, item in group:
            if item.label in failures:
                if item.kind == "video":  # no rows of a clip that did not finish
                    remove_clip_parts(destination, str(item.name))
                results.append(result_row(row, "failed", failures[item.label]))
                continue
            images = summary.frames if item.kind == "video" else 1
            results.append(result_row(row, "done", images=images, metadata=_row_metadata(summary)))
        return results

    def _in_memory(self, work: Work) -> list[dict[str, Any]]:
        """One row per predicted image or frame, with its arrays; failures with their reason."""
        rows_out = []
        for group in _groups(work):
            summary, _ = self._run(group, self.options)
            by_path = {item.path: (row, item) for row, item in group}
            for prediction in summary.results:
                row, item = by_path[prediction.source]
                if prediction.status != "done":
                    failed = result_row(row, prediction.status, prediction.error)
                    rows_out.append({**failed, **_empty_arrays(self.options)})
                    continue
                record = prediction_record(prediction, item, row.source)
                rows_out.append({**result_row(row, "done", images=1), **record, "name": prediction.name})
        return rows_out


def _groups(work: Work) -> list[Work]:
    """Images together (the engine batches them by size), each video on its own."""
    images = [pair for pair in work if pair[1].kind != "video"]
    return ([images] if images else []) + [[pair] for pair in work if pair[1].kind == "video"]


def _row_metadata(summary: JobSummary) -> dict[str, Any]:
    """What produced a group's outputs, with the clips it completed (the driver's job record)."""
    return {**summary.metadata, VIDEOS_KEY: summary.videos} if summary.videos else summary.metadata


def _empty_arrays(options: JobOptions) -> dict[str, Any]:
    """Array cells of a failed row: empty, so the column stays a tensor column."""
    empty = {"depth": np.zeros((0, 0), np.float32), "video": None, "frame": None, "prompt": None}
    return {**empty, "segmentation": np.zeros((0, 0), np.uint16)} if options.segmentation else empty


def _upload(staging: Path, destination: Destination, overwrite: bool) -> str | None:
    """Copy everything the engine staged up to the destination and empty the staging folder;
    existing outputs are kept unless overwriting, and depth videos go last (their existence
    means their frames are there). None when it worked, else why not."""
    files = sorted((p for p in staging.rglob("*") if p.is_file()), key=lambda p: (p.suffix == ".mp4", str(p)))
    relative = [path.relative_to(staging).as_posix() for path in files]
    present = [False] * len(relative) if overwrite else destination.exists(relative)
    try:
        for path, name, exists in zip(files, relative, present):
            if not exists:
                destination.upload(path, name)
    except OSError as error:
        return f"cannot write the outputs to {destination.root}: {error}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


def _local_file(row: Row) -> Path | None:
    """The row's input as a local file, when it is one (the local engine's resume rule reads it)."""
    return Path(row.source) if row.data is None and not is_uri(row.source) else None


def _listed_failure(raw: dict[str, Any]) -> dict[str, Any]:
    """The result of a row the listing found unusable: failed, with its reason."""
    path = str(raw.get("path") or raw.get("name"))
    row = Row(name=PurePosixPath(str(raw.get("name") or path)), source=path, kind=str(raw.get("kind") or "image"))
    return result_row(row, "failed", str(raw["error"]))
