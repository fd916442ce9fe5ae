"""`predict_dataset`: PrimeDepth as one step of a Ray Data pipeline (read -> predict -> write).

It maps a pool of `DepthPredictor` actors (one model each, GPUs per actor) over the rows, in
batches. Dead actors are restarted and their batches retried by Ray Data, whose actor pools
restart without limit and retry every task by default; retries are safe because the work is
idempotent (see `actor`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray
import ray.data

from ..constants import OFFICIAL_REPO_ID
from ..errors import InputError
from ..io.outputs import DEFAULT_OUTPUTS
from ..engine.options import job_options, takes_job_keywords
from ..jobs import JobOptions
from .actor import DepthPredictor, WorkerSpec
from .parquet import clear_dataset
from .rows import DEFAULT_INPUT_COLUMN
from .storage import Destination, local_folder

PARQUET = "parquet"
# Rows per actor call when the batch size is 'auto': a few pipeline batches, few enough that a
# retried batch redoes little.
DEFAULT_ROWS_PER_BATCH = 8


@dataclass(frozen=True)
class PoolSpec:
    """The actor pool: how many actors, the GPUs and CPUs each holds, the torch threads each
    runs and the rows per call (None: the defaults of `_resources` and `rows_per_batch`)."""

    actors: int = 1
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None
    threads_per_actor: int | None = None
    rows_per_batch: int | None = None

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise InputError(f"the number of actors must be at least 1, got {self.actors}")
        if self.gpus_per_actor is not None and self.gpus_per_actor < 0:
            raise InputError(f"GPUs per actor must be 0 or more, got {self.gpus_per_actor}")


def split_outputs(outputs: Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """The file output kinds for `JobOptions`, and whether a Parquet dataset is asked for."""
    kinds = tuple(outputs)
    if PARQUET not in kinds:
        return kinds, False
    if len(kinds) > 1:
        raise InputError("'parquet' is an output of its own: it holds the depth arrays; drop the other kinds")
    return (), True


def rows_per_batch(options: JobOptions, pool: PoolSpec) -> int:
    """Rows per actor call: as asked, else a whole number of pipeline batches (at least 8 rows)."""
    if pool.rows_per_batch is not None:
        return pool.rows_per_batch
    if options.batch_size == "auto":
        return DEFAULT_ROWS_PER_BATCH
    return options.batch_size * max(1, -(-DEFAULT_ROWS_PER_BATCH // options.batch_size))


def _resources(pool: PoolSpec) -> tuple[float, float, int]:
    """GPUs and CPUs per actor, and torch threads: on CPUs the actors share the cluster's cores.

    Actors reserve at most one CPU each and leave one CPU (half of them on a 1-CPU machine) to
    Ray Data's own tasks: reading a Parquet dataset waits forever when actors hold every CPU.
    """
    available = ray.cluster_resources()
    total = float(available.get("CPU", 1))
    gpus = pool.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if available.get("GPU", 0) >= 1 else 0.0
    cpus = pool.cpus_per_actor
    if cpus is None:
        cpus = min(1.0, max(total - 1.0, total / 2) / pool.actors)
    threads = 1 if gpus else max(1, int(total // pool.actors))
    return gpus, cpus, pool.threads_per_actor or threads


def map_predictions(dataset: ray.data.Dataset, worker: WorkerSpec, pool: PoolSpec,
                    predictor: type[DepthPredictor] = DepthPredictor) -> ray.data.Dataset:
    """The dataset mapped through a pool of `predictor` actors (see `predict_dataset`); tests
    pass a subclass of `DepthPredictor` to inject faults."""
    gpus, cpus, threads = _resources(pool)
    return dataset.map_batches(
        predictor,
        fn_constructor_kwargs={"spec": replace(worker, threads=threads)},
        batch_size=rows_per_batch(worker.options, pool),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        num_cpus=cpus,
        num_gpus=gpus,
        scheduling_strategy="SPREAD",  # one model per node before two on one: memory, and a lost node costs less
    )


def output_target(output_dir: Any, outputs: Sequence[str]) -> tuple[Destination | None, tuple[str, ...], bool]:
    """Where outputs go (None: into the returned rows), the file kinds, and whether Parquet.
    A URI is checked here, before any model loads (`Destination.check_writable`)."""
    kinds, parquet = split_outputs(outputs)
    destination = Destination.of(output_dir) if output_dir is not None else None
    if parquet and destination is None:
        raise InputError("Parquet output needs an output folder (output_dir)")
    if destination is not None:
        destination.check_writable()
    return destination, kinds, parquet


def worker_spec(model: Any, job: JobOptions, destination: Destination | None, parquet: bool,
                model_args: dict[str, Any], input_column: str, root: str | None) -> WorkerSpec:
    """The actors' spec (each actor reads what a Parquet output holds already itself)."""
    model = str(os.path.abspath(model)) if os.path.exists(str(model)) else str(model)
    return WorkerSpec(model=model, options=job, destination=destination, parquet=parquet,
                      input_column=input_column, root=root, **model_args)


@takes_job_keywords
def predict_dataset(
    dataset: ray.data.Dataset,
    model: str | os.PathLike[str] = OFFICIAL_REPO_ID,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    outputs: Sequence[str] = DEFAULT_OUTPUTS,
    device: str = "auto",
    dtype: str = "fp32",
    offload: bool = False,
    actors: int = 1,
    gpus_per_actor: float | None = None,
    threads_per_actor: int | None = None,
    rows_per_batch: int | None = None,
    input_column: str = DEFAULT_INPUT_COLUMN,
    root: str | None = None,
    **job: Any,
) -> ray.data.Dataset:
    """Depth for every row of a Ray dataset of images and videos; lazy, like any Ray Data step.

    Rows name a file by ``path`` (local path reachable from the workers, or URI) and/or carry its
    encoded bytes in `input_column`; see `primedepth.distributed.rows` for ``name``/``kind``
    and how output names follow from `root`. The model and job arguments mean what they mean
    for `primedepth.predict`, and each image is computed exactly as there. With `output_dir`
    (local folder or URI), the `outputs` are written there as `primedepth predict` writes them,
    or as a Parquet dataset with ``outputs=("parquet",)`` (`primedepth.distributed.parquet`),
    and the returned rows report each input (``name, source, kind, status, error, images``).
    Without it, the rows carry the results: one per image or video frame with ``depth`` (H, W)
    float32, ``video``/``frame``, ``prompt`` and, with `segmentation`, the labels.
    `actors` model replicas hold `gpus_per_actor` GPUs each (default: 1 if the cluster has GPUs)
    and run `threads_per_actor` torch threads (default: on GPUs 1, on CPUs the cluster's cores
    shared out); `rows_per_batch` rows go to an actor per call (default: 8, or whole batches).
    With ``overwrite=True`` and a Parquet output, the earlier dataset's parts and clip markers
    are removed now, when this is called, not when the lazy dataset runs: parts are named by
    their batch, so a run batched otherwise would leave the old rows beside the new ones.
    """
    destination, kinds, parquet = output_target(output_dir, outputs)
    job = job_options(job, output_dir=local_folder(destination), outputs=kinds, model_name=str(model))
    if parquet and job.overwrite and destination is not None:
        clear_dataset(destination)
    model_args = {"device": device, "dtype": dtype, "offload": offload}
    worker = worker_spec(model, job, destination, parquet, model_args, input_column, root)
    pool = PoolSpec(actors=actors, gpus_per_actor=gpus_per_actor, threads_per_actor=threads_per_actor,
                    rows_per_batch=rows_per_batch)
    return map_predictions(dataset, worker, pool)
