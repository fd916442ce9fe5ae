"""The job engine's former home: every name is re-exported from `primedepth.engine`.

Kept so that ``from primedepth.jobs import predict, run_job, JobOptions, ...`` goes on working;
new code imports from `primedepth.engine`.
"""

from __future__ import annotations

from .engine import (
    JOB_RECORD,
    OUTPUT_KINDS,
    JobOptions,
    JobSummary,
    Prediction,
    collect_items,
    is_finished,
    item_paths,
    predict,
    prepare_output_dir,
    run_job,
    run_metadata,
    write_job_record,
)
from .io.outputs import DEFAULT_OUTPUTS

__all__ = [
    "predict",
    "run_job",
    "collect_items",
    "JobOptions",
    "JobSummary",
    "Prediction",
    "DEFAULT_OUTPUTS",
    "OUTPUT_KINDS",
    "JOB_RECORD",
    "prepare_output_dir",
    "write_job_record",
    "run_metadata",
    "is_finished",
    "item_paths",
]
