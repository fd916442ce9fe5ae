"""What produced the outputs, in one shape: PNG text chunks, the job record, HTTP headers and
Parquet rows all carry `run_metadata` (plus, per result, `result_metadata`).

The job record ``OUT/primedepth_job.json`` is a list of runs: each run's metadata, its output
kinds and counts and, per clip, the temporal settings and each frame's index, time, scale and
shift. It is written once per job by whoever ran the job (CLI, `predict`, the Ray driver).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import __version__, io
from ..devices import dtype_label, pipeline_device_and_dtype
from .options import JobOptions
from .summary import JobSummary, Prediction

__all__ = ["JOB_RECORD", "run_metadata", "result_metadata", "write_job_record", "job_entry", "read_job_record",
           "completed_clips"]

JOB_RECORD = "primedepth_job.json"


def run_metadata(pipeline: Any, options: JobOptions) -> dict[str, str]:
    """What produced the outputs (PNG text chunks, job record, HTTP header, Parquet rows):
    enough to redo it. Every value is a string, as PNG text chunks need."""
    model = options.model_name or str(getattr(pipeline, "name_or_path", "") or "in-memory pipeline")
    return {
        "primedepth_version": __version__,
        "model": model,
        "dtype": dtype_label(pipeline_device_and_dtype(pipeline)[1]),
        "seed": "none (fresh noise)" if options.seed is None else str(options.seed),
        "max_size": str(options.max_size),
        "prompt_option": "model default" if options.prompt is None else options.prompt,
        "depth_quantity": io.DEPTH_QUANTITY,
    }


def result_metadata(prediction: Prediction) -> dict[str, Any]:
    """Per-result fields beside the run's: the prompt used, the ensemble and, for video frames,
    the clip, the frame's index and time and its scale and shift (raw = (aligned - shift) / scale)."""
    temporal = prediction.temporal or {}
    return {
        "name": prediction.name,
        "prompt": prediction.prompt,
        "ensemble": prediction.ensemble,
        "video": prediction.video,
        "frame_index": prediction.frame_index,
        "time": prediction.time,
        "frame_scale": temporal.get("scale"),
        "frame_shift": temporal.get("shift"),
    }


def job_entry(options: JobOptions, summary: JobSummary) -> dict[str, Any]:
    """This job's entry of the job record."""
    entry: dict[str, Any] = {**summary.metadata, "outputs": list(options.outputs), "done": summary.done,
                             "failed": summary.failed, "skipped": summary.skipped, "ensemble": summary.ensemble}
    if summary.videos:  # per clip: temporal settings, clip ranges, each frame's time, scale and shift
        entry["videos"] = summary.videos
    return entry


def read_job_record(folder: Path) -> list[dict]:
    """The runs recorded in `folder` ([] when there is no readable record)."""
    path = Path(folder) / JOB_RECORD
    try:
        runs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [run for run in runs if isinstance(run, dict)] if isinstance(runs, list) else []


def completed_clips(runs: Iterable[dict]) -> dict[str, frozenset[str]]:
    """Clip name -> the per-frame output kinds all its frames have, from the runs of a job record:
    a clip is listed in a run's ``videos`` only when it ended with every frame written."""
    completed: dict[str, set[str]] = {}
    for run in runs:
        kinds = {kind for kind in run.get("outputs", []) if kind in io.FRAME_OUTPUT_KINDS}
        for clip in run.get("videos", []):
            completed.setdefault(str(clip.get("video")), set()).update(kinds)
    return {name: frozenset(kinds) for name, kinds in completed.items()}


def write_job_record(options: JobOptions, summary: JobSummary) -> None:
    """Append this job to OUT/primedepth_job.json (settings, counts): the sidecar of the outputs.

    Once per job, by whoever ran it (the CLI, `predict`, the Ray driver), never by a worker."""
    if options.output_dir is None or not summary.metadata:
        return
    path = options.output_dir / JOB_RECORD
    runs = read_job_record(options.output_dir) if path.is_file() else []
    runs.append(job_entry(options, summary))
    with io.atomic_path(path) as temporary:
        temporary.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
