"""The Ray actor: one PrimeDepth pipeline per actor, and every batch through the local engine.

Each batch of rows is handed to `primedepth.jobs.run_job` with the job's own `JobOptions`, so the
reading, the seed rule, the grouping by size and the writers are the local engine's, and the
outputs are the files `primedepth predict` writes. The actor only turns rows into local files
(`rows.local_item`), skips finished inputs (`resume`), copies outputs up to object storage, and
reports one row per input: done, skipped or failed with the reason. A batch that Ray retries
after the actor died redoes only what is missing: every file appears whole, once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import io
from ..errors import first_line
from ..jobs import JobOptions, JobSummary, run_job
from ..loading import load_pipeline, quiet_library_progress
from .parquet import prediction_record, write_part
from .resume import is_finished
from .rows import DEFAULT_INPUT_COLUMN, RESULT_COLUMNS, Row, batch_rows, columns_of, decode_row, local_item, result_row
from .storage import Destination, local_folder

# Fault drills and tests: a file holding N; the first actor to reach its N-th batch removes
# the file and kills its own process after the batch's work, before returning its results.
FAULT_ENV = "PRIMEDEPTH_RAY_FAULT_FILE"
FAULT_EXIT_CODE = 75
# Rows of `predict_dataset` without an output folder: one per image or video frame.
MEMORY_COLUMNS = ("name", "source", "kind", "status", "error", "video", "frame", "prompt", "depth")

Work = list[tuple[Row, io.InputItem]]


@dataclass(frozen=True)
class WorkerSpec:
    """What every actor needs (picklable): the model, the job's options and where outputs go.

    `destination` None keeps results in the returned rows; `parquet` writes Parquet parts
    instead of files; `finished` holds the names the Parquet output has already.
    """

    model: str
    device: str = "auto"
    dtype: str = "fp32"
    offload: bool = False
    options: JobOptions = field(default_factory=JobOptions)
    destination: Destination | None = None
    parquet: bool = False
    finished: frozenset[str] = frozenset()
    input_column: str = DEFAULT_INPUT_COLUMN
    root: str | None = None
    threads: int | None = None


class DepthPredictor:
    """A Ray Data callable class: the pipeline is loaded once per actor, when first needed."""

    def __init__(self, spec: WorkerSpec) -> None:
        if spec.threads:
            torch.set_num_threads(spec.threads)
        quiet_library_progress()  # an actor has no terminal; Ray's bars and the summary report
        self.spec = spec
        # Per-actor options: results kept only where rows carry them; no bars, no early stop.
        self.options = replace(spec.options, output_dir=None if spec.parquet else local_folder(spec.destination),
                               keep_results=spec.parquet or spec.destination is None,
                               progress=False, fail_fast=False)
        self._pipeline: Any = None
        self.batches = 0

    def pipeline(self) -> Any:
        """The actor's pipeline, loaded on first use (a batch of finished inputs needs none)."""
        if self._pipeline is None:
            spec = self.spec
            self._pipeline = load_pipeline(spec.model, spec.device, spec.dtype, spec.offload)
        return self._pipeline

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        self.batches += 1
        with tempfile.TemporaryDirectory(prefix="primedepth-ray-") as scratch:
            results, work = self._prepare(batch_rows(batch), Path(scratch))
            if self.spec.destination is None:
                results += self._in_memory(work)
                columns = MEMORY_COLUMNS + (("segmentation",) if self.options.segmentation else ())
            else:
                results += self._parquet(work) if self.spec.parquet else self._files(work, Path(scratch))
                columns = RESULT_COLUMNS
        crash_if_asked(self.batches)
        return columns_of(results, columns)

    def _prepare(self, raw_rows: list[dict[str, Any]], scratch: Path) -> tuple[list[dict[str, Any]], Work]:
        """Rows as local work items; unreadable and finished ones are answered at once."""
        spec, results, work = self.spec, [], []
        (scratch / "in").mkdir()
        for index, raw in enumerate(raw_rows):
            row = decode_row(raw, spec.input_column, spec.root)
            try:
                item = local_item(row, scratch / "in", index)
            except (OSError, ValueError) as error:  # InputError is a ValueError
                results.append(result_row(row, "failed", first_line(str(error))))
                continue
            if spec.destination is not None and is_finished(
                row.name, row.kind, item.path, self.options, spec.destination,
                spec.finished if spec.parquet else None,
            ):
                results.append(result_row(row, "skipped"))
                continue
            work.append((row, item))
        return results, work

    def _run(self, group: Work, options: JobOptions) -> tuple[JobSummary, dict[str, str]]:
        """The local engine on a group of items; its failures by item label."""
        summary = run_job([item for _, item in group], self.pipeline, options)
        return summary, dict(summary.failures)

    def _files(self, work: Work, scratch: Path) -> list[dict[str, Any]]:
        """Write the file outputs (staged and copied up for object storage); report each row."""
        destination = self.spec.destination
        staging = None if destination.is_local else scratch / "out"
        options = self.options if staging is None else replace(self.options, output_dir=staging)
        results = []
        for group in _groups(work):
            summary, failures = self._run(group, options)
            uploaded = None if staging is None else _upload(staging, destination, options.overwrite)
            for row, item in group:
                reason = failures.get(item.label) or uploaded
                images = summary.images if item.kind == "video" else 1
                done = result_row(row, "done", images=images, metadata=summary.metadata)
                results.append(result_row(row, "failed", reason) if reason else done)
        return results

    def _parquet(self, work: Work) -> list[dict[str, Any]]:
        """Predict into memory and write the batch as one Parquet part; report each row."""
        results, records = [], []
        for group in _groups(work):
            summary, failures = self._run(group, self.options)
            for row, item in group:
                if item.label in failures:
                    results.append(result_row(row, "failed", failures[item.label]))
                    continue
                predicted = [p for p in summary.results if p.source == item.path and p.status == "done"]
                records += [prediction_record(p, item, row.source) for p in predicted]
                results.append(result_row(row, "done", images=len(predicted), metadata=summary.metadata))
        write_part(self.spec.destination, records, self.options.segmentation)
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
                    rows_out.append({**result_row(row, prediction.status, prediction.error), **_empty_arrays(self.options)})
                    continue
                record = prediction_record(prediction, item, row.source)
                rows_out.append({**result_row(row, "done", images=1), **record, "name": prediction.name})
        return rows_out


def _groups(work: Work) -> list[Work]:
    """Images together (the engine batches them by size), each video on its own."""
    images = [pair for pair in work if pair[1].kind != "video"]
    return ([images] if images else []) + [[pair] for pair in work if pair[1].kind == "video"]


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


def crash_if_asked(batches: int) -> None:
    """Kill this process once, as an out-of-memory kill would, when `FAULT_ENV` asks for it."""
    marker = os.environ.get(FAULT_ENV)
    if not marker:
        return
    try:
        after = int(Path(marker).read_text().strip() or 1)
    except (OSError, ValueError):
        return
    if batches < after:
        return
    try:
        os.rename(marker, f"{marker}.fired")  # only one actor wins the rename
    except OSError:
        return
    os._exit(FAULT_EXIT_CODE)
