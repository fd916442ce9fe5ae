"""Dynamic batching: concurrent requests share forward passes, answers go back to their owners.

On a GPU one batch of 8 images costs far less than 8 calls. Images of any request can share a
forward pass when they fall in the same `Bucket` (processed size, segmentation): seeds, prompts
and max sizes may differ (`primedepth.serve.forward`). The oldest waiting image opens a batch
and decides its bucket, so no image waits behind newer ones of other buckets for more than one
batch per bucket ahead of it; the batch takes waiting images of its bucket, in arrival order,
until it holds `max_batch` or `window_s` has passed, and then runs on the service's single
worker thread (the only thread that touches the pipeline). Each image carries its own future,
so results can never be handed to another request. An image whose request gave up (timeout) is
dropped before its batch runs; every image is `settled` once the worker is done with it (or it
was dropped), which is when its place in the queue is given back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .forward import Bucket, ImageJob

__all__ = ["DepthTask", "Batcher", "POLL_S", "settle"]

POLL_S = 0.001  # how often an open batch looks for new images within its window


@dataclass(eq=False)
class DepthTask:
    """One image to predict: its options, its bucket, and `settled`, a future done once the
    worker no longer holds it (predicted, failed or dropped)."""

    image: np.ndarray
    job: ImageJob
    bucket: Bucket
    pixels: int = 0  # what it holds in the queue (input pixels)
    request: int = 0  # which request it belongs to (for the metrics of shared batches)
    settled: asyncio.Future | None = field(default=None, repr=False)


def settle(tasks: Sequence[DepthTask]) -> None:
    """Mark tasks as no longer held by the worker (idempotent; call on their event loop)."""
    for task in tasks:
        if task.settled is not None and not task.settled.done():
            task.settled.set_result(None)


class Batcher:
    """A queue of tasks feeding `run_batch` on `executor`, one bucket per batch.

    `run_batch(tasks)` returns one result per task, in order; `submit` awaits the results of a
    request's tasks. Create, `start` and `submit` on the same event loop.
    """

    def __init__(self, run_batch: Callable[[list[DepthTask]], list[Any]], executor: Executor,
                 max_batch: int, window_s: float) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max(1, int(max_batch))
        self.window_s = max(0.0, float(window_s))
        self._waiting: collections.deque[tuple[DepthTask, asyncio.Future]] = collections.deque()
        self._arrived = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        """Start collecting batches on the running event loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="primedepth-batcher")

    async def stop(self) -> None:
        """Stop collecting; queued requests are cancelled."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        while self._waiting:
            task, future = self._waiting.popleft()
            future.cancel()
            settle([task])

    async def submit(self, tasks: Sequence[DepthTask]) -> list[Any]:
        """Queue the tasks of one request and wait for their results (in order)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in tasks]
        self._waiting.extend(zip(tasks, futures))
        self._arrived.set()
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            for future in futures:
                future.cancel()  # no-op when done; drops them from a batch not yet run
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
        return list(results)

    def _drop_abandoned(self) -> None:
        """Forget waiting tasks whose request gave up; their place in the queue is free again."""
        kept = collections.deque()
        for task, future in self._waiting:
            if future.done():
                settle([task])
            else:
                kept.append((task, future))
        self._waiting = kept

    def _take(self, bucket: Bucket, batch: list[tuple[DepthTask, asyncio.Future]]) -> None:
        """Move waiting tasks of `bucket` into `batch`, oldest first, until it is full."""
        kept = collections.deque()
        for entry in self._waiting:
            if len(batch) < self.max_batch and entry[0].bucket == bucket:
                batch.append(entry)
            else:
                kept.append(entry)
        self._waiting = kept

    async def _collect(self) -> list[tuple[DepthTask, asyncio.Future]]:
        """Wait for a first task, then gather more of its bucket until the batch is full or the window ends."""
        while True:
            self._drop_abandoned()
            if self._waiting:
                break
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._waiting.popleft()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while True:
            self._take(batch[0][0].bucket, batch)
            remaining = deadline - loop.time()
            if len(batch) >= self.max_batch or remaining <= 0:
                break
            await asyncio.sleep(min(remaining, POLL_S))
        live = [(task, future) for task, future in batch if not future.done()]
        settle([task for task, future in batch if future.done()])
        return live

    async def _run(self) -> None:
        """Batch after batch, forever: run it on the worker thread, hand back each result."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [task for task, _ in batch])
            except asyncio.CancelledError:  # stopping: nobody waits for these any more
                settle([task for task, _ in batch])
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as error:  # the whole batch failed: every request hears why
                results = [error] * len(batch)
            settle([task for task, _ in batch])  # before the answers: the queue is free when they arrive
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
