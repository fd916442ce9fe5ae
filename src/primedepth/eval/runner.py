"""Run a model over benchmark datasets: cached predictions, per-image metrics, summary tables.

Layout of a run under `output_dir/<model name>/`:

    <dataset>/predictions/<image folder>/pred_<id>.npy   raw model output (processing size)
    <dataset>/per_image_metrics.csv                       one row per image
    <dataset>/summary.json                                mean metrics and protocol settings
    summary.json, summary.csv                             every dataset evaluated so far

Predictions are written atomically as soon as they are made, so an interrupted run resumes
where it stopped, and metrics can be recomputed without a model. They are stored at the
processing resolution and brought to the ground-truth size at evaluation, exactly as the
model output would be (ETH3D at full size would take 44 GB).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..adapters import DepthModel, check_adapter, check_output, safe_name
from ..errors import InputError
from ..io.atomic import save_npy_atomic
from .datasets import EvalDataset, Sample, prediction_name
from .evaluate import PROTOCOL, evaluate_prediction, resize_prediction
from .metrics import METRIC_NAMES, average_metrics

# Papers report AbsRel and delta1 in percent.
PERCENT = 100.0
TABLE_METRICS = ("abs_rel", "delta1")
RUN_CONFIG_FILE = "run_config.json"


@dataclass
class DatasetResult:
    """Outcome of one model on one dataset."""

    dataset: str
    title: str
    model: str
    output_space: str
    num_images: int
    metrics: dict[str, float]
    protocol: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    inferred: int = 0  # images for which the model ran (the rest came from the cache)


def resize_image(image: np.ndarray, processing_res: int | None) -> np.ndarray:
    """Resize so the longer side is `processing_res` (bilinear, antialiased); None = as is.

    Sizes follow diffusers' Marigold processor: new side = side * res // longer side.
    """
    if processing_res is None:
        return image
    import torch
    import torch.nn.functional as F

    height, width = image.shape[:2]
    longer = max(height, width)
    size = (height * processing_res // longer, width * processing_res // longer)
    if size == (height, width):
        return image
    if min(size) == 0:
        raise InputError(f"image of {height}x{width} is too elongated for resolution {processing_res}")
    tensor = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None]
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _load_cached(path: Path) -> np.ndarray | None:
    """A cached prediction, or None when it is absent or unreadable (then it is redone)."""
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None


def _protocol(dataset: EvalDataset, space: str) -> dict[str, Any]:
    """The protocol settings a result was obtained with, for the summary files."""
    spec = dataset.spec
    return {
        "name": PROTOCOL,
        "alignment_space": space,
        "alignment_downsample": "width",
        "min_depth": spec.min_depth,
        "max_depth": spec.max_depth if math.isfinite(spec.max_depth) else "inf",
        "eval_crop": spec.eval_crop,
        "kb_crop": spec.kb_crop,
        "processing_res": spec.processing_res,
        "alignment_max_res": spec.alignment_max_res,
        "archive": str(dataset.archive_path),
    }


def _check_run_config(folder: Path, config: dict[str, Any]) -> None:
    """Refuse to mix cached predictions made with other settings into a run."""
    path = folder / RUN_CONFIG_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != config:
            raise InputError(
                f"{folder} holds predictions made with {previous}, not {config}; "
                "use another --output-dir or delete that folder"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")


def predict_sample(
    adapter: DepthModel, dataset: EvalDataset, sample: Sample, cache: Path
) -> tuple[np.ndarray, bool]:
    """The model output for one sample, from the cache or by running the model (then cached)."""
    path = cache / prediction_name(dataset.spec, sample)
    cached = _load_cached(path)
    if cached is not None:
        return cached, False
    image = resize_image(dataset.load_image(sample), dataset.spec.processing_res)
    prediction = check_output(adapter(image), image, adapter.name)
    save_npy_atomic(path, prediction)
    return prediction, True


def evaluate_sample(
    prediction: np.ndarray, dataset: EvalDataset, sample: Sample, space: str
) -> dict[str, float]:
    """Protocol metrics of one cached prediction against its ground truth."""
    spec = dataset.spec
    truth = dataset.load_ground_truth(sample)
    full = resize_prediction(prediction, truth.depth.shape)
    metrics, _ = evaluate_prediction(
        full,
        truth.depth,
        valid_mask=truth.mask,
        min_depth=spec.min_depth,
        max_depth=spec.max_depth,
        space=space,
        crop=spec.eval_crop,
        alignment_max_res=spec.alignment_max_res,
    )
    return metrics


def run_dataset(
    adapter: DepthModel,
    dataset: EvalDataset,
    output_dir: str | Path,
    max_images: int | None = None,
    progress: bool = True,
) -> DatasetResult:
    """Predict (or reuse cached predictions) and evaluate every sample of one dataset."""
    from tqdm.auto import tqdm

    check_adapter(adapter)
    spec = dataset.spec
    folder = Path(output_dir) / safe_name(adapter.name) / spec.name
    _check_run_config(
        folder,
        {"model": adapter.name, "output_space": adapter.output_space,
         "processing_res": spec.processing_res, "kb_crop": spec.kb_crop},
    )
    samples = dataset.samples if max_images is None else dataset.samples[:max_images]
    rows: list[dict[str, Any]] = []
    inferred = 0
    for sample in tqdm(samples, desc=f"primedepth eval {spec.title} [{adapter.name}]", disable=None if progress else True):
        prediction, ran = predict_sample(adapter, dataset, sample, folder / "predictions")
        inferred += ran
        metrics = evaluate_sample(prediction, dataset, sample, adapter.output_space)
        rows.append({"sample": sample.sample_id, **metrics})
    result = DatasetResult(
        dataset=spec.name,
        title=spec.title,
        model=adapter.name,
        output_space=adapter.output_space,
        num_images=len(rows),
        metrics=average_metrics(rows),
        protocol=_protocol(dataset, adapter.output_space),
        warnings=_count_warnings(dataset, rows, max_images),
        inferred=inferred,
    )
    _write_per_image(folder / "per_image_metrics.csv", rows)
    (folder / "summary.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def _count_warnings(
    dataset: EvalDataset, rows: list[dict[str, Any]], max_images: int | None
) -> list[str]:
    """Warn when a full run does not cover the official sample count or skips images."""
    warnings = []
    spec = dataset.spec
    if max_images is None and len(dataset) != spec.num_samples:
        warnings.append(
            f"{spec.title}: evaluated {len(dataset)} samples, the protocol has {spec.num_samples}; "
            "results are not comparable to published numbers"
        )
    empty = sum(1 for row in rows if math.isnan(row["abs_rel"]))
    if empty:
        warnings.append(f"{spec.title}: {empty} images without valid pixels were left out")
    return warnings


def _write_per_image(path: Path, rows: list[dict[str, Any]]) -> None:
    """Per-image metrics for analysis (one line per image)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sample", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)


def run_benchmark(
    adapter: DepthModel,
    datasets: list[str],
    data_dir: str | Path,
    output_dir: str | Path,
    max_images: int | None = None,
    split_file: str | Path | None = None,
    progress: bool = True,
) -> list[DatasetResult]:
    """Run one model over several datasets and update the model's summary files."""
    if split_file is not None and len(datasets) != 1:
        raise InputError("--split-file applies to one dataset; use --dataset, not --datasets")
    results = []
    for name in datasets:
        dataset = EvalDataset(name, data_dir, split_file=split_file)
        try:
            results.append(run_dataset(adapter, dataset, output_dir, max_images, progress))
        finally:
            dataset.close()
        for warning in results[-1].warnings:
            print(f"warning: {warning}", file=sys.stderr)
    write_summary(Path(output_dir) / safe_name(adapter.name), results)
    return results


def write_summary(folder: Path, results: list[DatasetResult]) -> None:
    """Merge results into the model's summary.json and rewrite summary.csv from it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    for result in results:
        summary[result.dataset] = asdict(result)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    with open(folder / "summary.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "model", "output_space", "num_images", *METRIC_NAMES])
        for entry in summary.values():
            writer.writerow(
                [entry["dataset"], entry["model"], entry["output_space"], entry["num_images"],
                 *(entry["metrics"][name] for name in METRIC_NAMES)]
            )


def format_table(results: list[DatasetResult]) -> str:
    """A table like the papers': one row per dataset, AbsRel and delta1 in percent."""
    if not results:
        return "(no results)"
    header = f"{'Dataset':<10} {'Images':>6} {'AbsRel x100':>11} {'delta1 x100':>11}"
    lines = [f"Model: {results[0].model} (aligned in {results[0].output_space} space)",
             f"Protocol: {PROTOCOL}; numbers under other protocols are not comparable", header, "-" * len(header)]
    for result in results:
        abs_rel, delta1 = (result.metrics[name] * PERCENT for name in TABLE_METRICS)
        lines.append(f"{result.title:<10} {result.num_images:>6} {abs_rel:>11.1f} {delta1:>11.1f}")
    return "\n".join(lines)
