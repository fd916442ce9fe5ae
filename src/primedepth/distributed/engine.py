"""`primedepth predict --engine ray`: the job of the local CLI, spread over Ray actors, streaming.

1. the output location is checked first (a local folder as the local CLI checks it; a URI by
   writing and removing an empty object): a bad location fails before Ray or a model starts;
2. each input argument is checked with one request (missing, unreachable, forbidden); the inputs
   are then listed inside a Ray task (`listing`), so the driver never holds the list;
3. the rows stream through `predict_dataset`'s actors, one model each, which skip finished
   inputs themselves (resume) and report one row per input;
4. the driver only counts the result rows into the local engine's `JobSummary` and keeps the
   failures, which go to ``OUT/_primedepth_errors.jsonl`` (one JSON object per line: path,
   reason); the job record goes to ``OUT/primedepth_job.json`` for local folders and URIs alike
   (``_primedepth_job.json`` beside a Parquet output, so that Parquet readers skip it).

Bad locations raise `InputError` (exit status 2) with one line naming the location and cause.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import ray
import ray.data

from .. import errors, io
from ..errors import InputError, PrimeDepthError
from ..jobs import JobOptions, JobSummary, prepare_output_dir, write_job_record
from .actor import VIDEOS_KEY, WorkerSpec
from .dataset import PoolSpec, map_predictions, output_target, rows_per_batch, worker_spec
from .listing import Listing, check_argument, input_rows, item_row
from .parquet import clear_dataset
from .rows import DEFAULT_INPUT_COLUMN, batch_rows
from .storage import Destination, is_uri, local_folder, shown

# An underscore keeps it out of Parquet readers when the output is a Parquet dataset.
ERRORS_FILE = "_primedepth_errors.jsonl"
# The local engine's job record, and its name beside a Parquet dataset (readers skip '_' files).
JOB_RECORD = "primedepth_job.json"
PARQUET_JOB_RECORD = "_primedepth_job.json"
# How a user-facing error ends a worker's traceback: "primedepth.errors.InputError: message".
WORKER_ERROR = re.compile(rf"^{re.escape(errors.__name__)}\.(\w+): (.+)$", re.MULTILINE)
# Columns a Parquet input may have besides the image bytes.
PARQUET_KEY_COLUMNS = ("path", "name", "kind")
# How often the driver returns freed heap memory to the system during a job (`HeapTrimmer`).
TRIM_INTERVAL_S = 10.0


@dataclass
class Inputs:
    """A job's inputs: what to list (in a Ray task) and Parquet datasets."""

    listing: Listing = field(default_factory=Listing)
    parquet: list[str] = field(default_factory=list)


def run_ray_job(items: Sequence[io.InputItem] | None, args: argparse.Namespace, options: JobOptions) -> JobSummary:
    """Run the predict command's job on Ray; the same summary as the local engine's.

    `items`: the local CLI's work items, or None to take `args.inputs` here (URIs and Parquet
    datasets included; a local output folder is then also prepared here, and the job record
    written, as the CLI does for the local engine). `args`: the predict command's arguments;
    `options`: its job options (``parquet`` is read from `args.outputs`).
    """
    started = time.perf_counter()
    worker = _worker(args, options)
    inputs = _inputs(items, args, worker)
    if worker.parquet and options.overwrite and worker.destination is not None:
        clear_dataset(worker.destination)
    summary = JobSummary()
    pool = PoolSpec(actors=args.actors or 1, gpus_per_actor=args.gpus_per_actor)
    rows = 0
    with ray_session(args.ray_address):
        block_rows = rows_per_batch(worker.options, pool)
        datasets = [input_rows(inputs.listing, block_rows)] if inputs.listing else []
        datasets += [_parquet_dataset(source, worker.input_column).repartition(target_num_rows_per_block=block_rows)
                     for source in inputs.parquet]
        for dataset in datasets:
            if not summary.stopped:
                rows += _tally(map_predictions(dataset, worker, pool), summary, options.fail_fast)
    if rows == 0:
        raise InputError("no images or videos found in the given inputs "
                         "(folders are read without their sub-folders unless --recursive)")
    write_errors(worker.destination, summary.failures)
    summary.seconds = time.perf_counter() - started
    if items is None:
        record_job(worker, summary)
    return summary


def _worker(args: argparse.Namespace, options: JobOptions) -> WorkerSpec:
    """The actors' spec from the command's arguments and options; the output location is
    checked here, before Ray starts (`output_target`)."""
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
    """What to list: the given work items, or the command's inputs, each checked here with one
    request (and a local output folder checked and cleaned of an earlier run's temporaries,
    as the CLI does)."""
    if items is not None:
        rows = tuple(item_row(item) for item in items)
        return Inputs(listing=Listing(rows=rows))
    inputs = collect_inputs(args.inputs, args.recursive, args.output_dir, getattr(args, "input_column", None))
    if worker.options.output_dir is not None:
        # The kinds are known only once listed: the "--outputs video without videos" check
        # is the local engine's; here a video placeholder lets the folder check run alone.
        prepare_output_dir(worker.options, [io.InputItem(name=PurePosixPath("-"), kind="video")])
    return inputs


def collect_inputs(inputs: Sequence[str], recursive: bool, output_dir: str, input_column: str | None) -> Inputs:
    """Local inputs as the local CLI takes them, URIs of files or folders, and Parquet datasets
    (inputs ending in .parquet, or every non-media input when an input column is named). Each
    argument is checked (one request); the files are listed later, in a Ray task."""
    local, uris, parquet = [], [], []
    for raw in map(str, inputs):
        if raw.split("?", 1)[0].rstrip("/").endswith(".parquet") or (input_column and io.media_kind(Path(raw)) is None):
            parquet.append(raw if is_uri(raw) else str(Path(raw).resolve()))
            continue
        check_argument(raw)
        (uris if is_uri(raw) else local).append(raw)
    output = output_dir if is_uri(output_dir) else str(Path(output_dir).resolve())
    listing = Listing(local=tuple(local), uris=tuple(uris), recursive=recursive, output_dir=output)
    _announce(len(local) + len(uris), len(parquet), output_dir)
    return Inputs(listing=listing, parquet=parquet)


def _announce(arguments: int, parquet: int, output_dir: str) -> None:
    """One line on what is about to happen (the inputs are counted as they are listed)."""
    parts = [f"{arguments} input locations (listed as the job runs)", f"{parquet} Parquet datasets"]
    print(f"primedepth predict (ray): {', '.join(parts)} -> {shown(str(output_dir))}", file=sys.stderr)


def _parquet_dataset(source: str, column: str) -> ray.data.Dataset:
    """A Parquet input, only the columns a row needs; the image column must be there."""
    try:
        dataset = ray.data.read_parquet(source)
        names = dataset.schema().names
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(source)}: cannot read this Parquet dataset ({errors.first_line(error)})") from None
    if column not in names:
        raise InputError(f"{shown(source)}: no column '{column}' (columns: {', '.join(names)}); "
                         "name it with --input-column")
    return dataset.select_columns([column, *(name for name in PARQUET_KEY_COLUMNS if name in names)])


class HeapTrimmer:
    """Hands the driver's freed heap back to the system every `interval_s` seconds.

    Result blocks are decoded on Ray Data's prefetch threads; glibc keeps what they free in
    per-thread arenas, and a long job's driver then grows by a few KiB per input although
    nothing is live (measured: +37 MiB over 8,000 images, flat with this trim; see
    benchmarks/ray_scale.py). `malloc_trim` is glibc's; elsewhere this does nothing.
    """

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.last = time.monotonic()
        try:
            self._trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to trim
            self._trim = None

    def maybe_trim(self) -> bool:
        """Trim if `interval_s` has passed since the last trim; whether it trimmed."""
        if self._trim is None or time.monotonic() - self.last < self.interval_s:
            return False
        self._trim(0)
        self.last = time.monotonic()
        return True


def _tally(results: ray.data.Dataset, summary: JobSummary, fail_fast: bool) -> int:
    """Count the result rows into the summary as they stream in (the driver keeps counts and
    failures only); stop early with `fail_fast`. Returns how many rows came back."""
    rows = 0
    trimmer = HeapTrimmer()
    try:
        for batch in results.iter_batches(batch_format="numpy", batch_size=None):
            trimmer.maybe_trim()
            for row in batch_rows(batch):
                rows += 1
                count_row(row, summary)
            if fail_fast and summary.failed:
                summary.stopped = True
                break
    except Exception as error:
        raise _user_error(error) from None
    return rows


def count_row(row: dict[str, Any], summary: JobSummary) -> None:
    """Add one result row to the summary."""
    if row["status"] == "failed":
        summary.failed += 1
        summary.failures.append((str(row["source"]), str(row["error"])))
        return
    if row["status"] == "skipped":
        summary.skipped += 1
        return
    summary.done += 1
    summary.images += int(row["images"] or 0)
    summary.clips += row["kind"] == "video"
    if row["metadata"]:
        metadata = json.loads(row["metadata"])
        summary.videos += metadata.pop(VIDEOS_KEY, [])
        summary.metadata = summary.metadata or metadata


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


def record_job(worker: WorkerSpec, summary: JobSummary) -> None:
    """The local engine's job record, wherever the outputs went: appended in place for a local
    folder; for a URI (or beside a Parquet dataset) the record is read, appended to locally by
    the local engine's writer, and put back whole."""
    destination = worker.destination
    if destination is None or not summary.metadata:
        return
    if destination.is_local and not worker.parquet:
        write_job_record(worker.options, summary)
        return
    name = PARQUET_JOB_RECORD if worker.parquet else JOB_RECORD
    with tempfile.TemporaryDirectory(prefix="primedepth-record-") as folder:
        local = Path(folder) / JOB_RECORD
        if destination.exists([name])[0]:
            destination.download(name, local)
        write_job_record(replace(worker.options, output_dir=Path(folder)), summary)
        if not local.is_file():
            return
        if worker.parquet:  # the engine's options know files only: name the Parquet output
            runs = json.loads(local.read_text(encoding="utf-8"))
            runs[-1]["outputs"] = ["parquet"]
            local.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
        with destination.atomic_file(name) as temporary:
            shutil.copyfile(local, temporary)
