"""A test double of the Ray actor that dies like an out-of-memory kill, once, mid-job.

The production actor has no fault hook: tests map their dataset through `crashing_predictor`'s
subclass instead (`dataset.map_predictions(..., predictor=...)`). Ray pickles this module by
value, so its workers need no import path to the tests.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import ray.cloudpickle

from primedepth.distributed.actor import DepthPredictor
from primedepth.distributed.dataset import PoolSpec, map_predictions, output_target, worker_spec
from primedepth.jobs import JobOptions

EXIT_CODE = 75


def crashing_predictor(marker: Path, after_batches: int) -> type[DepthPredictor]:
    """A `DepthPredictor` whose actor kills its own process after its `after_batches`-th batch's
    work (outputs written, results not yet returned), if it is the first to take `marker`."""

    class CrashingPredictor(DepthPredictor):
        def __call__(self, batch: dict[str, Any]) -> Any:
            results = super().__call__(batch)
            if self.batches >= after_batches and marker.exists():
                try:
                    os.rename(marker, f"{marker}.fired")  # only one actor wins the rename
                except OSError:
                    return results
                os._exit(EXIT_CODE)
            return results

    return CrashingPredictor


def crash_job(rows: Any, model: Path, out: str, marker: Path, after: int, root: str | None = None) -> list[dict]:
    """What `predict_dataset(rows, model, output_dir=out, outputs=("npy",), seed=0, actors=1,
    rows_per_batch=3)` runs, with an actor that dies after its `after`-th batch."""
    destination, kinds, parquet = output_target(out, ("npy",))
    options = JobOptions(output_dir=destination.local_dir if destination.is_local else None, outputs=kinds, seed=0)
    worker = worker_spec(model, options, destination, parquet, {}, "bytes", root)
    pool = PoolSpec(actors=1, threads_per_actor=1, rows_per_batch=3)
    return map_predictions(rows, worker, pool, predictor=crashing_predictor(marker, after)).take_all()


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
