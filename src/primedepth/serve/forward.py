"""Forward passes shared by requests with different seeds, prompts and processing sizes.

The job engine (`primedepth predict`) runs one seed, one prompt and one max size per call. A
server gets many small requests that differ in all three, and what a forward pass really needs
equal is only the processed size (one tensor) and whether segmentation is computed: the
`Bucket`. Within a bucket each image keeps its own noise (drawn from a generator seeded with its
own seed, exactly as the engine's `seeded_generators` does), its own prompt (each distinct text
encoded once: the pipeline's prompt encoder caches them) and its own max size (its pixels are
prepared at it). So an image's depth is what `primedepth.predict(image, seed=..., prompt=...,
max_size=...)` computes, up to float rounding from batch composition.

Only the pipeline's public steps are used: `image_processor.preprocess`, `encode_prompts`,
`draw_noise`, `predict_raw`, `image_processor.postprocess`, `captioner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import torch

from ..errors import InputError, PrimeDepthError, WeightsNotFoundError, first_line
from ..jobs import JobOptions, Prediction, run_metadata
from ..pipeline import AUTO_PROMPT  # caption each image with BLIP-2
from ..processing import to_rgb_uint8
from .errors import ApiError

__all__ = ["Bucket", "ImageJob", "AUTO_PROMPT", "bucket_of", "resolve_prompt", "predict_bucket", "png_text",
           "as_prediction"]



@dataclass(frozen=True)
class Bucket:
    """What images must share to be predicted in one forward pass."""

    size: tuple[int, int]  # processed (height, width)
    segmentation: bool


@dataclass(frozen=True)
class ImageJob:
    """One image's options: seed, max size, prompt text (None: the model's default), segmentation."""

    seed: int
    max_size: int
    prompt: str | None
    segmentation: bool


def bucket_of(pipeline: Any, image: np.ndarray, job: ImageJob) -> Bucket:
    """The bucket of an image (raises InputError, e.g. for an aspect ratio beyond the limit)."""
    return Bucket(tuple(pipeline.processing_size(image.shape[0], image.shape[1], job.max_size)), job.segmentation)


def resolve_prompt(pipeline: Any, prompt: str | None, captioning: bool) -> str:
    """The text an image is conditioned on: the given one, else the model's default; "auto"
    (caption with BLIP-2) becomes "" when captioning is unavailable on this server."""
    text = pipeline.config.default_prompt if prompt is None else prompt
    return "" if text == AUTO_PROMPT and not captioning else text


def png_text(pipeline: Any, model_name: str | None, job: ImageJob) -> dict[str, str]:
    """The PNG text chunks `primedepth predict` writes for the same options (`jobs.run_metadata`)."""
    options = JobOptions(output_dir=None, outputs=("npy",), batch_size=1, max_size=job.max_size,
                         prompt=job.prompt, seed=job.seed, keep_results=True, model_name=model_name)
    return run_metadata(pipeline, options)


def _prompts(pipeline: Any, images: Sequence[np.ndarray], jobs: Sequence[ImageJob], captioning: bool) -> list[str]:
    """One prompt text per image; "auto" ones captioned (all in one captioner call)."""
    prompts = [resolve_prompt(pipeline, job.prompt, captioning) for job in jobs]
    to_caption = [i for i, text in enumerate(prompts) if text == AUTO_PROMPT]
    if to_caption:
        captions = pipeline.captioner.caption([to_rgb_uint8(images[i]) for i in to_caption])
        for index, caption in zip(to_caption, captions):
            prompts[index] = caption
    return prompts


def _forward(pipeline: Any, images: Sequence[np.ndarray], jobs: Sequence[ImageJob], bucket: Bucket,
             captioning: bool) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
    """One forward pass over images of one bucket: (depth, labels or None, prompt) per image."""
    side = pipeline.smallest_side
    prepared = [pipeline.image_processor.preprocess(image, job.max_size, side) for image, job in zip(images, jobs)]
    sizes = {tuple(item.processed_size) for item in prepared}
    if sizes != {bucket.size}:
        raise PrimeDepthError(f"images of sizes {sorted(sizes)} in the bucket of size {bucket.size}")
    prompts = _prompts(pipeline, images, jobs, captioning)
    context = pipeline.encode_prompts(prompts)  # each distinct text encoded once (cached)
    generators = [torch.Generator().manual_seed(job.seed) for job in jobs]
    noise = pipeline.draw_noise([bucket.size] * len(jobs), generators)
    raw = pipeline.predict_raw(
        torch.cat([item.pixel_values for item in prepared]), context,
        posterior_noise=torch.cat([n.posterior for n in noise]), step_noise=torch.cat([n.step for n in noise]),
        output_segmentation=bucket.segmentation,
    )
    results = []
    for row, item in enumerate(prepared):
        depth, labels = pipeline.image_processor.postprocess(raw, row, item, labels=True)
        results.append((np.asarray(depth.numpy(), dtype=np.float32),
                        None if labels is None else np.asarray(labels.numpy()), prompts[row]))
    return results


def _failure(error: BaseException) -> ApiError:
    """A failed image as an HTTP error: input problems 422, missing weights 503, the rest 500."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, WeightsNotFoundError):
        return ApiError(503, "model_files_unavailable", f"{error}; send prompt=\"\" (or a text) to skip captioning")
    if isinstance(error, InputError):
        return ApiError(422, "image_not_processable", f"the image cannot be processed: {error}")
    return ApiError(500, "prediction_failed", f"the prediction failed: {first_line(error)}")


def predict_bucket(pipeline: Any, images: Sequence[np.ndarray], jobs: Sequence[ImageJob], bucket: Bucket,
                   batch_size: int, captioning: bool) -> list[tuple[np.ndarray, np.ndarray | None, str] | ApiError]:
    """Predict images of one bucket, `batch_size` per forward pass; one result or error per image.

    Out of GPU memory, a pass is split in halves; any other failure of a pass is retried image by
    image, so that one bad image fails alone."""
    results: list[Any] = []
    for start in range(0, len(images), batch_size):
        results += _predict_part(pipeline, images[start:start + batch_size], jobs[start:start + batch_size],
                                 bucket, captioning)
    return results


def _predict_part(pipeline: Any, images: Sequence[np.ndarray], jobs: Sequence[ImageJob], bucket: Bucket,
                  captioning: bool) -> list[Any]:
    try:
        return _forward(pipeline, images, jobs, bucket, captioning)
    except torch.cuda.OutOfMemoryError as error:
        if len(images) == 1:
            return [_failure(error)]
        torch.cuda.empty_cache()
        half = len(images) // 2
        return (_predict_part(pipeline, images[:half], jobs[:half], bucket, captioning)
                + _predict_part(pipeline, images[half:], jobs[half:], bucket, captioning))
    except WeightsNotFoundError as error:
        return [_failure(error)] * len(images)
    except Exception as error:
        if len(images) == 1:
            return [_failure(error)]
        return [result for image, job in zip(images, jobs)
                for result in _predict_part(pipeline, [image], [job], bucket, captioning)]


def as_prediction(name: PurePosixPath, outcome: tuple[np.ndarray, np.ndarray | None, str]) -> Prediction:
    """A forward result as the engine's `Prediction` (what the response encoders take)."""
    depth, labels, prompt = outcome
    return Prediction(name=str(name), source=None, status="done", depth=depth, segmentation=labels, prompt=prompt)
