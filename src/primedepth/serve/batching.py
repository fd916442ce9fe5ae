"""Dynamic batching: concurrent requests share forward passes, answers go back to their owners.

On a GPU one batch of 8 images costs far less than 8 calls. The first image to arrive opens a
batch; the batch closes when it holds `max_batch` images or `window_s` has passed, and then runs
on the service's single worker thread (the only thread that touches the pipeline), while new
images queue for the next batch. Each image carries its own future, so results can never be
handed to another request. A request that gave up (timeout) is dropped before its batch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import BatchKey

__all__ = ["DepthTask", "Batcher", "POLL_S"]

POLL_S = 0.001  # how often an open batch looks for new images within its window


@dataclass(eq=False)
class DepthTask:
    """One image to predict, with what it shares a pipeline call by."""

    image: np.ndarray
    key: BatchKey


class Batcher:
    """An asyncio queue of tasks feeding `run_batch` on `executor`, batch by batch.

    `run_batch(tasks)` returns one result per task, in order; `submit` awaits the results of a
    request's tasks. Create, `start` and `submit` on the same event loop.
    """

    def __init__(self, run_batch: Callable[[list[DepthTask]], list[Any]], executor: Executor,
                 max_batch: int, window_s: float) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.max_batch = max(1, int(max_batch))
        self.window_s = max(0.0, float(window_s))
        self._queue: asyncio.Queue[tuple[DepthTask, asyncio.Future]] = asyncio.Queue()
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
        while not self._queue.empty():
            self._queue.get_nowait()[1].cancel()

    async def submit(self, tasks: Sequence[DepthTask]) -> list[Any]:
        """Queue the tasks of one request and wait for their results (in order)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in tasks]
        for task, future in zip(tasks, futures):
            self._queue.put_nowait((task, future))
        try:
            results = await asyncio.gather(*futures, return_exceptions=True)
        finally:
            for future in futures:
                future.cancel()  # no-op when done; drops them from a batch not yet run
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
        return list(results)

    async def _collect(self) -> list[tuple[DepthTask, asyncio.Future]]:
        """Wait for a first task, then gather more until the batch is full or the window ends."""
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while len(batch) < self.max_batch:
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            remaining = deadline - loop.time()
            if len(batch) >= self.max_batch or remaining <= 0:
                break
            await asyncio.sleep(min(remaining, POLL_S))
        return [(task, future) for task, future in batch if not future.done()]

    async def _run(self) -> None:
        """Batch after batch, forever: run it on the worker thread, hand back each result."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [task for task, _ in batch])
            except Exception as error:  # the whole batch failed: every request hears why
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
