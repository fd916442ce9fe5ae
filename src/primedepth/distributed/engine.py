"""`primedepth predict --engine ray`: the job of the local CLI, spread over Ray actors.

1. inputs: what the local CLI takes (its work items), plus URIs of files and folders on any
   filesystem pyarrow reaches, plus Parquet datasets of encoded images;
2. inputs whose outputs all exist are skipped before anything is dispatched (resume);
3. the rest goes through `predict_dataset`'s actors, one model each;
4. the result rows are counted into the local engine's `JobSummary`, and the failures are
   written to ``OUT/_primedepth_errors.jsonl`` (one JSON object per line: path, reason).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import ray
import ray.data

from .. import io
from .. import errors
from ..errors import InputError, PrimeDepthError
from ..jobs import JobOptions, JobSummary, collect_items, prepare_output_dir, write_job_record
from .actor import WorkerSpec
from .dataset import PoolSpec, map_predictions, output_target, worker_spec
from .rows import DEFAULT_INPUT_COLUMN, batch_rows
from .resume import is_finished
from .storage import Destination, is_uri, list_media, local_folder

# An underscore keeps it out of Parquet readers when the output is a Parquet dataset.
ERRORS_FILE = "_primedepth_errors.jsonl"
# How a user-facing error ends a worker's traceback: "primedepth.errors.InputError: message".
WORKER_ERROR = re.compile(rf"^{re.escape(errors.__name__)}\.(\w+): (.+)$", re.MULTILINE)
# Columns a Parquet input may have besides the image bytes.
PARQUET_KEY_COLUMNS = ("path", "name", "kind")


@dataclass
class Inputs:
    """A job's inputs: file rows (local paths or URIs) and Parquet datasets."""

    rows: list[dict[str, str]] = field(default_factory=list)
    parquet: list[str] = field(default_factory=list)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (label, reason): failed up front

    def add_items(self, items: Sequence[io.InputItem]) -> None:
        """The local engine's work items: rows, and the inputs it found unusable."""
        for item in items:
            if item.kind == "invalid":
                self.invalid.append((item.label, getattr(item, "error", None) or "cannot be processed"))
            else:  # the path made absolute: workers may run in another folder
                self.rows.append({"path": str(Path(item.path).resolve()), "name": str(item.name), "kind": item.kind})


def run_ray_job(items: Sequence[io.InputItem] | None, args: argparse.Namespace, options: JobOptions) -> JobSummary:
    """Run the predict command's job on Ray; the same summary as the local engine's.

    `items`: the local CLI's work items, or None to collect `args.inputs` here (URIs and
    Parquet datasets included; a local output folder is then also prepared here, and the job
    record written, as the CLI does for the local engine). `args`: the predict command's
    arguments; `options`: its job options (``parquet`` is read from `args.outputs`).
    """
    started = time.perf_counter()
    worker = _worker(args, options)
    inputs = _inputs(items, args, worker)
    summary = JobSummary(failed=len(inputs.invalid), failures=list(inputs.invalid))
    summary.stopped = options.fail_fast and summary.failed > 0
    rows = [row for row in inputs.rows if not _skip(row, worker, summary)]
    pool = PoolSpec(actors=args.actors or 1, gpus_per_actor=args.gpus_per_actor)
    with ray_session(args.ray_address):
        jobs = [(ray.data.from_items(rows), True)] if rows else []
        jobs += [(_parquet_dataset(source, worker.input_column), False) for source in inputs.parquet]
        for dataset, prefiltered in jobs:
            if not summary.stopped:
                _tally(map_predictions(dataset, worker, pool), summary, options.fail_fast, prefiltered)
    write_errors(worker.destination, summary.failures)
    summary.seconds = time.perf_counter() - started
    if items is None and worker.options.output_dir is not None:
        write_job_record(worker.options, summary)
    return summary


def _worker(args: argparse.Namespace, options: JobOptions) -> WorkerSpec:
    """The actors' spec from the command's arguments and options (checked before Ray starts)."""
    destination, kinds, parquet = output_target(args.output_dir, args.outputs)
    job = replace(options, output_dir=local_folder(destination), outputs=() if parquet else options.outputs)
    model_args = {"device": args.device, "dtype": args.dtype, "offload": args.offload}
    column = getattr(args, "input_column", None) or DEFAULT_INPUT_COLUMN
    return worker_spec(args.model, job, destination, parquet, model_args, column, None)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at `address` ('auto': the running one), or start a local Ray instance;
    an instance this process started is shut down at the end. An initialised Ray is reused."""
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise PrimeDepthError(f"cannot start or join Ray (address {address or 'local'}): {error}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _inputs(items: Sequence[io.InputItem] | None, args: argparse.Namespace, worker: WorkerSpec) -> Inputs:
    """Rows for the given work items, or the command's inputs collected here (and a local
    output folder checked and cleaned of an earlier run's temporaries, as the CLI does)."""
    if items is not None:
        inputs = Inputs()
        inputs.add_items(items)
        return inputs
    inputs = collect_inputs(args.inputs, args.recursive, args.output_dir, getattr(args, "input_column", None))
    if worker.options.output_dir is not None:
        kinds = [io.InputItem(name=PurePosixPath(row["name"]), kind=row["kind"]) for row in inputs.rows]
        prepare_output_dir(worker.options, kinds)
    return inputs


def collect_inputs(inputs: Sequence[str], recursive: bool, output_dir: str, input_column: str | None) -> Inputs:
    """Local inputs as the local CLI takes them, URIs of files or folders, and Parquet datasets
    (inputs ending in .parquet, or every non-media input when an input column is named)."""
    local, collected = [], Inputs()
    for raw in map(str, inputs):
        if raw.rstrip("/").endswith(".parquet") or (input_column and io.media_kind(Path(raw)) is None):
            collected.parquet.append(raw if is_uri(raw) else str(Path(raw).resolve()))
        elif is_uri(raw):
            collected.rows += [{"path": uri, "name": str(name), "kind": kind} for uri, name, kind in list_media(raw, recursive)]
        else:
            local.append(raw)
    output = None if is_uri(output_dir) else Path(output_dir)
    if local:
        collected.add_items(collect_items(local, recursive=recursive, output_dir=output))
    _set_clashes_aside(collected)
    if not collected.rows and not collected.parquet and not collected.invalid:
        raise InputError("no images or videos found in the given inputs")
    _announce(collected, output_dir)
    return collected


def _set_clashes_aside(inputs: Inputs) -> None:
    """Two different files that would write the same outputs both fail, with the reason, and
    the rest goes on (the local engine's rule, `io.deduplicate`); repeats of one file run once."""
    paths: dict[tuple[str, str], list[str]] = {}
    for row in inputs.rows:
        twins = paths.setdefault((row["name"], row["kind"]), [])
        if row["path"] not in twins:
            twins.append(row["path"])
    kept, seen = [], set()
    for row in inputs.rows:
        twins = paths[(row["name"], row["kind"])]
        if len(twins) > 1:
            reason = f"{' and '.join(twins)} would all write outputs named '{row['name']}'"
            inputs.invalid.append((row["path"], reason))
        elif row["path"] not in seen:
            kept.append(row)
            seen.add(row["path"])
    inputs.rows = kept


def _announce(inputs: Inputs, output_dir: str) -> None:
    """One line on what is about to happen."""
    videos = sum(row["kind"] == "video" for row in inputs.rows)
    parts = [f"{len(inputs.rows) - videos} images", f"{videos} videos", f"{len(inputs.parquet)} Parquet datasets"]
    print(f"primedepth predict (ray): {', '.join(parts)} -> {output_dir}", file=sys.stderr)


def _skip(row: dict[str, str], worker: WorkerSpec, summary: JobSummary) -> bool:
    """Count a finished input as skipped, before dispatch; True if it was."""
    local = None if is_uri(row["path"]) else Path(row["path"])
    parquet = worker.finished if worker.parquet else None
    finished = is_finished(PurePosixPath(row["name"]), row["kind"], local, worker.options, worker.destination, parquet)
    summary.skipped += finished
    return finished


def _parquet_dataset(source: str, column: str) -> ray.data.Dataset:
    """A Parquet input, only the columns a row needs; the image column must be there."""
    dataset = ray.data.read_parquet(source)
    names = dataset.schema().names
    if column not in names:
        raise InputError(f"{source}: no column '{column}' (columns: {', '.join(names)}); name it with --input-column")
    return dataset.select_columns([column, *(name for name in PARQUET_KEY_COLUMNS if name in names)])


def _tally(results: ray.data.Dataset, summary: JobSummary, fail_fast: bool, prefiltered: bool) -> None:
    """Count the result rows into the summary as they stream in; stop early with `fail_fast`.

    When the rows were `prefiltered` (finished ones skipped before dispatch), an input that an
    actor finds finished was written by an earlier attempt of its batch (a retry after a
    crash) and counts as done.
    """
    try:
        for batch in results.iter_batches(batch_format="numpy"):
            for row in batch_rows(batch):
                _count(row, summary, prefiltered)
            if fail_fast and summary.failed:
                summary.stopped = True
                return
    except Exception as error:
        raise _user_error(error) from None


def _count(row: dict[str, Any], summary: JobSummary, prefiltered: bool) -> None:
    """Add one result row to the summary."""
    if row["status"] == "failed":
        summary.failed += 1
        summary.failures.append((str(row["source"]), str(row["error"])))
        return
    if row["status"] == "skipped" and not prefiltered:
        summary.skipped += 1
        return
    summary.done += 1
    summary.images += int(row["images"] or 0)
    if row["metadata"] and not summary.metadata:
        summary.metadata = json.loads(row["metadata"])


def _user_error(error: BaseException) -> BaseException:
    """The user-facing error behind a failed Ray job (a missing model, a model without the
    asked-for head), rebuilt from the worker's traceback: Ray Data hands the driver a wrapper
    whose text, not whose type, holds it. Any other error is returned as it is."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PrimeDepthError) and type(seen).__module__ == errors.__name__:
            return seen
        cause = getattr(seen, "cause", None)
        seen = cause if isinstance(cause, BaseException) else seen.__cause__
    found = WORKER_ERROR.findall(str(error))
    if not found:
        return error
    name, message = found[-1]
    kind = getattr(errors, name, PrimeDepthError)
    return kind(message) if isinstance(kind, type) and issubclass(kind, PrimeDepthError) else error


def write_errors(destination: Destination, failures: Sequence[tuple[str, str]]) -> None:
    """The failures as JSON lines (path, reason), written whole; a stale file from an earlier
    run is removed when nothing failed."""
    if not failures:
        destination.remove(ERRORS_FILE)
        return
    text = "".join(json.dumps({"path": path, "reason": reason}) + "\n" for path, reason in failures)
    with destination.atomic_file(ERRORS_FILE) as temporary:
        temporary.write_text(text, encoding="utf-8")
