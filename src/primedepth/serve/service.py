"""`DepthService`: one loaded pipeline behind the HTTP API, the browser demo and Ray Serve.

Depth is computed by `primedepth.jobs.run_job`, the engine behind `primedepth predict`, on
in-memory items with the same options (seed, max size, prompt): an answer equals
`primedepth.predict(image, model=pipeline, seed=seed)` for the same image (up to float rounding
when the image shared a batch with others). The pipeline is touched by one worker thread only;
requests reach it through a batcher (`primedepth.serve.batching`, or `@serve.batch` on Ray).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import io
from ..devices import auto_batch_size, dtype_label, pipeline_device_and_dtype
from ..errors import PrimeDepthError, first_line
from ..jobs import JobOptions, Prediction, run_job
from ..loading import load_pipeline
from .batching import Batcher, DepthTask
from .errors import ApiError
from .metrics import ServeMetrics
from .options import BatchKey, DepthRequest
from .settings import ServeSettings

__all__ = ["DepthService", "DepthResult", "WARM_UP_SIDE"]

LOG = logging.getLogger("primedepth.serve")
_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")
WARM_UP_SIDE = 64


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
        self.pending = 0
        self.model_info: dict[str, Any] = {"model": settings.model_name, "revision": settings.revision}
        self.on_failure: Callable[[BaseException], None] | None = None

    # ------------------------------------------------------------------ life cycle

    def prepare(self) -> None:
        """Load the model (unless given), choose the batch size, run one warm-up prediction."""
        if self.pipeline is None:
            extra = {"revision": self.settings.revision} if self.settings.revision else {}
            self.pipeline = load_pipeline(self.settings.model, self.settings.device, self.settings.dtype,
                                          self.settings.offload, **extra)
        device, dtype = pipeline_device_and_dtype(self.pipeline)
        batch_size = self.settings.batch_size
        self.batch_size = auto_batch_size(device, dtype, self.settings.max_size) if batch_size == "auto" else batch_size
        self.model_info.update(revision=self._revision(), device=str(device), dtype=dtype_label(dtype),
                               batch_size=self.batch_size)
        key = BatchKey(self.settings.seed, self.settings.max_size, self.settings.prompt, False)
        [warm] = self._run_group(key, [_warm_up_image()])  # not a batch of the metrics
        if isinstance(warm, BaseException):
            raise warm
        if warm.prediction.status != "done":
            raise PrimeDepthError(f"the warm-up prediction failed: {warm.prediction.error}")
        self.prepared = True

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

    def _revision(self) -> str | None:
        """The revision asked for, or the commit of a hub snapshot folder the model came from."""
        if self.settings.revision:
            return self.settings.revision
        folder = Path(str(getattr(self.pipeline.config, "_name_or_path", "") or ""))
        return folder.name if folder.parent.name == "snapshots" else None

    # ------------------------------------------------------------------ requests

    def check_request(self, request: DepthRequest, count: int) -> None:
        """Refuse up front what cannot be answered now: not ready, a full queue, no seg head."""
        if not self.ready:
            reason = f"the model failed to load: {self.error}" if self.error else "the model is still loading"
            raise ApiError(503, "not_ready", reason, retry_after=self.settings.retry_after_s)
        if "seg" in request.outputs and self.pipeline.segmentation_head is None:
            raise ApiError(422, "no_segmentation_head", "this model has no segmentation head; drop 'seg' from outputs")
        if self.pending + count > self.settings.max_queue:
            raise ApiError(
                503, "queue_full",
                f"the server is busy ({self.pending} images queued, limit {self.settings.max_queue}); retry later",
                retry_after=self.settings.retry_after_s,
            )

    async def predict(self, images: Sequence[np.ndarray], request: DepthRequest) -> list[DepthResult]:
        """Depth for the images of one request, batched with other requests; in input order."""
        self.check_request(request, len(images))
        tasks = [DepthTask(image, request.key) for image in images]
        self._count_pending(len(tasks))
        try:
            predictions = await asyncio.wait_for(self.batcher.submit(tasks), self.settings.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, "timeout", f"no answer within this server's limit of {self.settings.timeout_s:g} s") from None
        finally:
            self._count_pending(-len(tasks))
        for result in predictions:
            if result.prediction.status != "done":
                raise _failure(result.prediction.error or "unknown reason")
        self.metrics.images.inc(len(predictions))
        return predictions

    def processing_size(self, height: int, width: int, max_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((height, width) given, (height, width) the pipeline runs the image at)."""
        return (height, width), self.pipeline.processing_size(height, width, max_size)

    def _count_pending(self, change: int) -> None:
        self.pending += change
        self.metrics.queue_length.set(self.pending)

    async def run_exclusive(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function(*args)` on the worker thread, between batches (the demo's video tab)."""
        if not self.ready:
            raise ApiError(503, "not_ready", "the model is still loading", retry_after=self.settings.retry_after_s)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(function, *args))

    # ------------------------------------------------------------------ the worker thread

    def run_batch(self, tasks: list[DepthTask]) -> list[DepthResult | BaseException]:
        """Predict a batch on the worker thread: one job per batch key, results in task order."""
        groups: dict[BatchKey, list[int]] = {}
        for index, task in enumerate(tasks):
            groups.setdefault(task.key, []).append(index)
        results: list[DepthResult | BaseException] = [None] * len(tasks)  # type: ignore[list-item]
        for key, indices in groups.items():
            started = time.perf_counter()
            outcome = self._run_group(key, [tasks[i].image for i in indices])
            for index, result in zip(indices, outcome):
                results[index] = result
            self.metrics.batch_size.observe(len(indices))
            LOG.debug("batch of %d in %.3f s", len(indices), time.perf_counter() - started)
        return results

    def _run_group(self, key: BatchKey, images: list[np.ndarray]) -> list[DepthResult | BaseException]:
        """One `run_job` over in-memory items, with the options `primedepth predict` would use."""
        items = [io.InputItem(name=PurePosixPath(f"image_{i:04d}"), image=image) for i, image in enumerate(images)]
        options = JobOptions(
            output_dir=None, outputs=("npy",), batch_size=self.batch_size, max_size=key.max_size,
            prompt=key.prompt, seed=key.seed, segmentation=key.segmentation, keep_results=True,
            model_name=self.settings.model,
        )
        try:
            summary = run_job(items, lambda: self.pipeline, options)
        except PrimeDepthError as error:
            return [ApiError(422, "bad_request", str(error))] * len(items)
        by_name = {result.name: result for result in summary.results}
        return [DepthResult(by_name.get(str(item.name)) or _missing(item), summary.metadata) for item in items]


def _failure(reason: str) -> ApiError:
    """A failed prediction as an HTTP error: the engine words input problems plainly (422) and
    prefixes unexpected exceptions with their type (`jobs._reason`), which are the server's (500)."""
    if _EXCEPTION_PREFIX.match(reason):
        return ApiError(500, "prediction_failed", f"the prediction failed: {reason}")
    return ApiError(422, "image_not_processable", f"the image cannot be processed: {reason}")


def _missing(item: io.InputItem) -> Prediction:
    """A result the engine did not report (never expected): a failure, not a silent gap."""
    return Prediction(name=str(item.name), source=None, status="failed", error="no result from the job engine")
