"""The job engine: depth for many images and videos, behind the CLI, `primedepth.predict`, the
server, the demo and the Ray actors.

Modules a reader can name:

- `options`: `JobOptions`, the one definition and validation of a job's options (and the
  keywords `predict` and `predict_dataset` take from it);
- `sources`: work items from paths, in-memory images, bytes and (name, value) pairs;
- `sinks`: where results go (a folder, bytes in memory, a stream of predictions), one interface;
- `resume`: the one rule for what is finished, images and video clips alike;
- `runner`: `run_job`, batching, out-of-memory backoff, ensemble and 3D post-steps, videos;
- `record`: run metadata in one shape, and the job record;
- `summary`: `Prediction` and `JobSummary`;
- `api`: `predict`.
"""

from __future__ import annotations

from .api import MAX_IN_MEMORY_FRAMES, predict
from .options import JOB_KEYWORDS, OUTPUT_KINDS, JobOptions, check_common_options, job_options, takes_job_keywords
from .record import JOB_RECORD, result_metadata, run_metadata, write_job_record
from .resume import clip_complete, completed_clips, is_finished, item_outputs, item_paths
from .runner import run_job
from .sinks import BytesSink, FolderSink, Sink, StreamSink, prepare_output_dir, sink_for
from .sources import collect_items, memory_item
from .summary import JobSummary, Prediction

__all__ = [
    "JOB_KEYWORDS",
    "JOB_RECORD",
    "MAX_IN_MEMORY_FRAMES",
    "OUTPUT_KINDS",
    "BytesSink",
    "FolderSink",
    "JobOptions",
    "JobSummary",
    "Prediction",
    "Sink",
    "StreamSink",
    "check_common_options",
    "clip_complete",
    "completed_clips",
    "collect_items",
    "is_finished",
    "item_outputs",
    "item_paths",
    "job_options",
    "memory_item",
    "predict",
    "prepare_output_dir",
    "result_metadata",
    "run_job",
    "run_metadata",
    "sink_for",
    "takes_job_keywords",
    "write_job_record",
]
