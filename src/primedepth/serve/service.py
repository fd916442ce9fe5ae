"""`DepthService`: one loaded pipeline behind the HTTP API, the browser demo and Ray Serve.

Depth is computed by `primedepth.serve.forward`, the pipeline's own steps with each image's
seed, prompt and max size, so an answer equals `primedepth.predict(image, model=pipeline,
seed=seed)` for the same image (up to float rounding when the image shared a forward pass with
others), while requests with different options still share forward passes. The pipeline is
touched by one worker thread only; requests reach it through a batcher
(`primedepth.serve.batching`, or `@serve.batch` on Ray).

Admission always can succeed: what could never fit (more images than the queue holds, more
pixels than its pixel budget) is refused at once with 413; what does not fit now gets 503 with
Retry-After. An image keeps its place in the queue until the worker is done with it, also when
its request timed out (504), so the queue bounds the work really held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..devices import auto_batch_size, dtype_label, pipeline_device_and_dtype
from ..errors import InputError, PrimeDepthError, first_line
from ..jobs import Prediction
from ..loading import load_pipeline
from .batching import Batcher, DepthTask
from .errors import ApiError
from .forward import AUTO_PROMPT, Bucket, ImageJob, as_prediction, bucket_of, png_text, predict_bucket
from .metrics import ServeMetrics
from .options import DepthRequest
from .settings import ServeSettings

__all__ = ["DepthService", "DepthResult", "WARM_UP_SIDE", "captioning_problem"]

LOG = logging.getLogger("primedepth.serve")
WARM_UP_SIDE = 64
_PNG_TEXT_CACHE = 256


@dataclass
class DepthResult:
    """One image's prediction and the PNG text chunks `primedepth predict` writes with it."""

    prediction: Prediction
    png_text: dict[str, str] = field(default_factory=dict)


def _warm_up_image() -> np.ndarray:
    """A smooth gradient: a real image for the first forward pass, no randomness."""
    ramp = np.linspace(0, 255, WARM_UP_SIDE, dtype=np.float32)
    gray = (ramp[None, :] + ramp[:, None]) / 2
    return np.repeat(gray[..., None], 3, axis=2).astype(np.uint8)


def captioning_problem(pipeline: Any, prompt: str | None) -> str | None:
    """Why BLIP-2 captions (the "auto" prompt) cannot be used, or None when they can or are not
    needed. Asked once at start-up (`primedepth.text.captioning.check_captioner`, fast offline)."""
    text = pipeline.config.default_prompt if prompt is None else prompt
    if text != AUTO_PROMPT:
        return None
    from ..text.captioning import check_captioner  # lazy: transformers' BLIP-2 classes

    return check_captioner()


class DepthService:
    """The model, its worker thread, the batcher and the metrics of one server.

    `pipeline`: an already loaded pipeline to share (tests, the demo next to the API), else
    `settings.model` is loaded by `start` (or `prepare`). Ready once a warm-up prediction ran.
    """

    def __init__(self, settings: ServeSettings, pipeline: Any = None) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = ServeMetrics()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="primedepth-worker")
        self.batch_size = 1
        self.batcher: Any = None
        self.prepared = False
        self.ready = False
        self.error: str | None = None
        self.captioning_unavailable: str | None = None  # why "auto" prompts fall back to ""
        self.pending = 0
        self.pending_pixels = 0
        self.model_info: dict[str, Any] = {"model": settings.model_name, "revision": settings.revision}
        self.on_failure: Callable[[BaseException], None] | None = None
        self.on_stop: list[Callable[[], None]] = []  # clean-ups when the server stops (the demo's files)
        self._requests = itertools.count()
        self._png_text: dict[ImageJob, dict[str, str]] = {}

    # ------------------------------------------------------------------ life cycle

    def prepare(self) -> None:
        """Load the model (unless given), choose the batch size, check captioning, warm up."""
        if self.pipeline is None:
            extra = {"revision": self.settings.revision} if self.settings.revision else {}
            self.pipeline = load_pipeline(self.settings.model, self.settings.device, self.settings.dtype,
                                          self.settings.offload, **extra)
        device, dtype = pipeline_device_and_dtype(self.pipeline)
        batch_size = self.settings.batch_size
        self.batch_size = auto_batch_size(device, dtype, self.settings.max_size) if batch_size == "auto" else batch_size
        self.captioning_unavailable = captioning_problem(self.pipeline, self.settings.prompt)
        if self.captioning_unavailable:
            LOG.warning("primedepth serve: captioning unavailable (%s); requests without a prompt use \"\"",
                        self.captioning_unavailable)
        self.model_info.update(revision=self._revision(), device=str(device), dtype=dtype_label(dtype),
                               batch_size=self.batch_size, captioning=self.captioning_status)
        image = _warm_up_image()
        job = ImageJob(self.settings.seed, self.settings.max_size, "", False)
        [warm] = self._predict_bucket(bucket_of(self.pipeline, image, job), [image], [job])
        if isinstance(warm, BaseException):
            raise PrimeDepthError(f"the warm-up prediction failed: {warm}")
        self.prepared = True

    @property
    def captioning_status(self) -> str:
        """What /readyz, /v1/info and the demo say about BLIP-2 captions."""
        if self.captioning_unavailable:
            return f"captioning unavailable: {self.captioning_unavailable}; requests without a prompt use \"\""
        return "available"

    def make_batcher(self) -> Any:
        """The local batcher; Ray Serve's service replaces it with `@serve.batch`."""
        return Batcher(self.run_batch, self.executor, self.batch_size, self.settings.batch_window_ms / 1000)

    async def start(self) -> None:
        """Load and warm up on the worker thread, then accept requests (idempotent)."""
        if self.ready:
            return
        try:
            if not self.prepared:
                await asyncio.get_running_loop().run_in_executor(self.executor, self.prepare)
        except Exception as error:
            self.error = first_line(error) if not isinstance(error, PrimeDepthError) else str(error)
            LOG.error("primedepth serve: the model could not be loaded: %s", self.error)
            if self.on_failure is not None:
                self.on_failure(error)
            return
        self.batcher = self.make_batcher()
        self.batcher.start()
        self.ready = True
        self.metrics.ready.set(1)

    async def stop(self) -> None:
        """Stop batching and let the worker thread go."""
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None and hasattr(self.batcher, "stop"):
            await self.batcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        for clean_up in self.on_stop:
            clean_up()

    def _revision(self) -> str | None:
        """The revision asked for, or the commit of a hub snapshot folder the model came from."""
        if self.settings.revision:
            return self.settings.revision
        folder = Path(str(getattr(self.pipeline.config, "_name_or_path", "") or ""))
        return folder.name if folder.parent.name == "snapshots" else None

    # ------------------------------------------------------------------ admission

    def check_request(self, request: DepthRequest, count: int) -> None:
        """Refuse up front what cannot be answered: not ready, no seg head, more images than the
        queue can ever hold (413), a full queue (503)."""
        if not self.ready:
            reason = f"the model failed to load: {self.error}" if self.error else "the model is still loading"
            raise ApiError(503, "not_ready", reason, retry_after=self.settings.retry_after_s)
        if "seg" in request.outputs and self.pipeline.segmentation_head is None:
            raise ApiError(422, "no_segmentation_head", "this model has no segmentation head; drop 'seg' from outputs")
        limit = min(self.settings.max_images, self.settings.max_queue)
        if count > limit:
            raise ApiError(413, "too_many_images",
                           f"{count} images in one request; this server takes at most {limit} per request "
                           f"(max_images {self.settings.max_images}, max_queue {self.settings.max_queue})")
        if self.pending + count > self.settings.max_queue:
            raise self._busy()

    def _check_pixels(self, pixels: int) -> None:
        """A request's pixels against the queue's pixel budget: never (413) or not now (503)."""
        budget = self.settings.max_queue_pixels
        if pixels > budget:
            raise ApiError(413, "too_many_pixels",
                           f"the request's images hold {pixels / 1e6:.1f} MP, more than this server's queue "
                           f"budget of {budget / 1e6:.1f} MP (max_queue_pixels); send fewer or smaller images")
        if self.pending_pixels + pixels > budget:
            raise self._busy()

    def _busy(self) -> ApiError:
        return ApiError(
            503, "queue_full",
            f"the server is busy ({self.pending} images, {self.pending_pixels / 1e6:.1f} MP queued; limits "
            f"{self.settings.max_queue} images, {self.settings.max_queue_pixels / 1e6:.1f} MP); retry later",
            retry_after=self.settings.retry_after_s,
        )

    def _tasks(self, images: Sequence[np.ndarray], request: DepthRequest) -> list[DepthTask]:
        """One task per image, its bucket found now: an image the model cannot take is a 422 here."""
        tasks, job, request_id = [], request.job, next(self._requests)
        for image in images:
            try:
                bucket = bucket_of(self.pipeline, image, job)
            except InputError as error:
                raise ApiError(422, "image_not_processable", f"the image cannot be processed: {error}") from None
            tasks.append(DepthTask(image, job, bucket, pixels=int(image.shape[0] * image.shape[1]), request=request_id))
        return tasks

    def _hold(self, tasks: Sequence[DepthTask]) -> None:
        """Count the tasks in the queue until each is settled (done, failed or dropped)."""
        loop = asyncio.get_running_loop()
        for task in tasks:
            task.settled = loop.create_future()
            task.settled.add_done_callback(functools.partial(self._release, task))
        self._count_pending(len(tasks), sum(task.pixels for task in tasks))

    def _release(self, task: DepthTask, _: Any) -> None:
        self._count_pending(-1, -task.pixels)

    def _count_pending(self, images: int, pixels: int) -> None:
        self.pending += images
        self.pending_pixels += pixels
        self.metrics.queue_length.set(self.pending)
        self.metrics.queue_pixels.set(self.pending_pixels)

    # ------------------------------------------------------------------ requests

    async def predict(self, images: Sequence[np.ndarray], request: DepthRequest) -> list[DepthResult]:
        """Depth for the images of one request, batched with other requests; in input order."""
        self.check_request(request, len(images))
        tasks = self._tasks(images, request)
        self._check_pixels(sum(task.pixels for task in tasks))
        self._hold(tasks)
        try:
            results = await asyncio.wait_for(self.batcher.submit(tasks), self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within this server's limit of {self.settings.timeout_s:g} s") from None
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self.metrics.images.inc(len(results))
        return results

    def processing_size(self, height: int, width: int, max_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((height, width) given, (height, width) the pipeline runs the image at)."""
        return (height, width), self.pipeline.processing_size(height, width, max_size)

    def resolved_prompt(self, prompt: str | None) -> str | None:
        """The prompt a request without one is predicted with: "" when captions are unavailable."""
        if prompt is None and self.captioning_unavailable:
            return ""
        return prompt

    async def run_exclusive(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` on the worker thread, between batches (the demo's video tab)."""
        if not self.ready:
            raise ApiError(503, "not_ready", "the model is still loading", retry_after=self.settings.retry_after_s)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args))

    # ------------------------------------------------------------------ the worker thread

    def run_batch(self, tasks: list[DepthTask]) -> list[DepthResult | BaseException]:
        """Predict a batch on the worker thread: one forward pass per bucket, results in task order."""
        groups: dict[Bucket, list[int]] = {}
        for index, task in enumerate(tasks):
            groups.setdefault(task.bucket, []).append(index)
        results: list[DepthResult | BaseException] = [None] * len(tasks)  # type: ignore[list-item]
        for bucket, indices in groups.items():
            started = time.perf_counter()
            outcome = self._predict_bucket(bucket, [tasks[i].image for i in indices], [tasks[i].job for i in indices])
            for index, result in zip(indices, outcome):
                results[index] = result
            self.metrics.batch_size.observe(len(indices))
            self.metrics.batch_requests.observe(len({tasks[i].request for i in indices}))
            LOG.debug("batch of %d in %.3f s", len(indices), time.perf_counter() - started)
        return results

    def _predict_bucket(self, bucket: Bucket, images: list[np.ndarray],
                        jobs: list[ImageJob]) -> list[DepthResult | BaseException]:
        outcome = predict_bucket(self.pipeline, images, jobs, bucket, self.batch_size,
                                 captioning=self.captioning_unavailable is None)
        results: list[DepthResult | BaseException] = []
        for index, (job, result) in enumerate(zip(jobs, outcome)):
            if isinstance(result, BaseException):
                if isinstance(result, ApiError) and result.kind == "model_files_unavailable":
                    self.captioning_unavailable = self.captioning_unavailable or result.message
                    self.model_info["captioning"] = self.captioning_status
                results.append(result)
            else:
                results.append(DepthResult(as_prediction(PurePosixPath(f"image_{index:04d}"), result), self._text(job)))
        return results

    def _text(self, job: ImageJob) -> dict[str, str]:
        """The PNG text chunks of `job`'s options (cached: the same few options recur); the empty
        prompt is recorded where it replaced unavailable captions."""
        if job.prompt is None and self.captioning_unavailable and self.pipeline.config.default_prompt == AUTO_PROMPT:
            job = dataclasses.replace(job, prompt="")
        if job not in self._png_text:
            if len(self._png_text) >= _PNG_TEXT_CACHE:
                self._png_text.clear()
            self._png_text[job] = png_text(self.pipeline, self.settings.model, job)
        return self._png_text[job]
