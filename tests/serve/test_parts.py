"""The serving parts on their own: batching, upload decoding, names, example photos, the CLI."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from primedepth.cli import build_parser
from primedepth.io import read_image
from primedepth.serve.batching import Batcher, DepthTask
from primedepth.serve.errors import ApiError
from primedepth.serve.examples import EXAMPLE_SIZE, write_examples
from primedepth.serve.options import BatchKey
from primedepth.serve.responses import unique_names
from primedepth.serve.uploads import decode_upload, safe_stem

from .helpers import png_bytes, random_image

KEY = BatchKey(seed=0, max_size=64, prompt=None, segmentation=False)


def _run_batches(max_batch: int, window_s: float, count: int, hold: threading.Event | None = None) -> tuple[list, list]:
    """Submit `count` one-image requests at once; (results, batch sizes seen by the worker)."""
    sizes: list[int] = []

    def run_batch(tasks: list[DepthTask]) -> list[float]:
        if hold is not None:
            hold.wait(5)
        sizes.append(len(tasks))
        return [float(task.image[0, 0, 0]) * 10 for task in tasks]

    async def scenario() -> list:
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher(run_batch, worker, max_batch, window_s)
            batcher.start()
            tasks = [[DepthTask(np.full((1, 1, 3), i, np.uint8), KEY)] for i in range(count)]
            results = await asyncio.gather(*(batcher.submit(t) for t in tasks))
            await batcher.stop()
        return results

    return asyncio.run(scenario()), sizes


def test_batches_fill_up_to_the_batch_size_and_results_go_back_to_their_request():
    results, sizes = _run_batches(max_batch=4, window_s=0.05, count=10)
    assert results == [[i * 10.0] for i in range(10)]
    assert sorted(sizes, reverse=True) == [4, 4, 2] and sum(sizes) == 10


def test_batch_size_one_never_waits_for_company():
    results, sizes = _run_batches(max_batch=1, window_s=10.0, count=3)  # the window is never waited for
    assert results == [[0.0], [10.0], [20.0]] and sizes == [1, 1, 1]


def test_a_request_that_gave_up_is_dropped_before_its_batch_runs():
    seen: list[int] = []

    def run_batch(tasks: list[DepthTask]) -> list[int]:
        seen.extend(int(task.image[0, 0, 0]) for task in tasks)
        return [0] * len(tasks)

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher(run_batch, worker, 4, 0.2)
            batcher.start()
            late = asyncio.ensure_future(batcher.submit([DepthTask(np.full((1, 1, 3), 1, np.uint8), KEY)]))
            await asyncio.sleep(0.05)
            late.cancel()  # as a request timeout does
            await batcher.submit([DepthTask(np.full((1, 1, 3), 2, np.uint8), KEY)])
            await batcher.stop()

    asyncio.run(scenario())
    assert seen == [2]


def test_uploads_decode_exactly_like_files(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray((random_image(1)[..., 0].astype(np.uint16) * 257)).save(path)
    decoded = decode_upload(path.read_bytes(), "deep.png", max_pixels=10_000, max_bytes=1 << 20)
    np.testing.assert_array_equal(decoded, read_image(path))
    with pytest.raises(ApiError, match="more than this server's limit") as error:
        decode_upload(path.read_bytes(), "deep.png", max_pixels=100, max_bytes=1 << 20)
    assert error.value.status == 413


def test_names_come_from_uploads_without_their_folders():
    assert safe_stem("../../etc/passwd.png", "x") == "passwd"
    assert safe_stem("C:\\photos\\my photo.JPG", "x") == "my_photo"
    assert safe_stem("", "image_0") == safe_stem("../", "image_0") == safe_stem(None, "image_0") == "image_0"
    assert unique_names(["a", "b", "a", "a"]) == ["a", "b", "a_2", "a_3"]


def test_example_photos_are_drawn(tmp_path):
    paths = write_examples(tmp_path)
    assert len(paths) == 3 and all(Image.open(p).size == EXAMPLE_SIZE[::-1] for p in paths)


def test_serve_and_demo_commands_are_registered():
    parser = build_parser()
    serve = parser.parse_args(["serve", "--demo", "--batch-size", "8", "--max-upload-mb", "2"])
    demo = parser.parse_args(["demo"])
    assert serve.demo and serve.batch_size == 8 and serve.max_upload_mb == 2 and serve.port == 8000
    assert demo.port == 7860 and demo.host == "127.0.0.1"
    assert png_bytes(random_image(0))  # the helpers import the optional packages, or skip
