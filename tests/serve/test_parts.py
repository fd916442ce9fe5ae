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
from primedepth.serve.forward import Bucket, ImageJob
from primedepth.serve.responses import unique_names
from primedepth.serve.uploads import decode_upload, safe_stem

from .helpers import png_bytes, random_image

KEY = ImageJob(seed=0, max_size=64, prompt=None, segmentation=False)
BUCKET = Bucket((64, 64), False)


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
            tasks = [[DepthTask(np.full((1, 1, 3), i, np.uint8), KEY, BUCKET)] for i in range(count)]
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
            late = asyncio.ensure_future(batcher.submit([DepthTask(np.full((1, 1, 3), 1, np.uint8), KEY, BUCKET)]))
            await asyncio.sleep(0.05)
            late.cancel()  # as a request timeout does
            await batcher.submit([DepthTask(np.full((1, 1, 3), 2, np.uint8), KEY, BUCKET)])
            await batcher.stop()

    asyncio.run(scenario())
    assert seen == [2]


def test_a_batch_takes_its_bucket_only_and_the_oldest_image_goes_first():
    """Different seeds and prompts share a batch; another processing size waits for the next one."""
    seen: list[list[tuple[int, int]]] = []

    def run_batch(tasks: list[DepthTask]) -> list[int]:
        seen.append([(int(task.image[0, 0, 0]), task.job.seed) for task in tasks])
        return [int(task.image[0, 0, 0]) for task in tasks]

    async def scenario() -> list:
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher(run_batch, worker, 4, 0.05)
            batcher.start()
            small, large = Bucket((64, 64), False), Bucket((64, 128), False)
            jobs = [ImageJob(seed, 64, prompt, False) for seed, prompt in ((1, "a"), (2, None), (3, "b"), (4, ""))]
            requests = [[DepthTask(np.full((1, 1, 3), i, np.uint8), jobs[i % 4], large if i == 1 else small)]
                        for i in range(5)]
            results = await asyncio.gather(*(batcher.submit(r) for r in requests))
            await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results == [[i] for i in range(5)]
    assert seen[0] == [(0, 1), (2, 3), (3, 4), (4, 1)] and seen[1] == [(1, 2)]


def test_an_abandoned_image_keeps_its_queue_place_until_the_worker_is_done():
    """A request that gives up while its batch runs: the task is settled only when the batch ends."""
    release = threading.Event()
    events: list[str] = []

    def run_batch(tasks: list[DepthTask]) -> list[int]:
        release.wait(5)
        events.append("batch done")
        return [0] * len(tasks)

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as worker:
            batcher = Batcher(run_batch, worker, 1, 0.0)
            batcher.start()
            task = DepthTask(np.zeros((1, 1, 3), np.uint8), KEY, BUCKET)
            task.settled = asyncio.get_running_loop().create_future()
            task.settled.add_done_callback(lambda _: events.append("settled"))
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(batcher.submit([task]), 0.1)
            await asyncio.sleep(0.05)
            assert events == []  # the request gave up, the worker still holds the image
            release.set()
            await asyncio.wait_for(asyncio.shield(task.settled), 5)
            await batcher.stop()

    asyncio.run(scenario())
    assert events == ["batch done", "settled"]


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


def test_the_key_and_limits_come_from_the_command_line(tmp_path):
    from primedepth.commands.serve import settings_from_args
    from primedepth.errors import InputError

    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    parser = build_parser()
    args = parser.parse_args(["serve", "--api-key-file", str(key_file), "--metrics-public", "--max-queue-megapixels", "5",
                              "--demo-max-mb", "10", "--demo-max-points", "1000"])
    settings = settings_from_args(args)
    assert settings.api_key == "from-a-file" and settings.metrics_public and settings.max_queue_pixels == 5_000_000
    assert settings.max_demo_bytes == 10 * 1024 * 1024 and settings.max_display_points == 1000
    assert "from-a-file" not in repr(settings)
    demo_args = parser.parse_args(["demo", "--api-key-file", str(key_file)])
    assert settings_from_args(demo_args).api_key == "from-a-file"  # the demo command takes a key too
    with pytest.raises(InputError, match="either --api-key-file or --api-key"):
        settings_from_args(parser.parse_args(["serve", "--api-key-file", str(key_file), "--api-key", "x"]))


def test_one_forward_pass_serves_different_seeds_prompts_and_max_sizes():
    """Four images with their own seed, prompt and max size, one processed size: one pass, each
    prompt encoded once, each answer the single-image `primedepth.predict` answer."""
    import primedepth
    from primedepth.serve.forward import bucket_of, predict_bucket
    from primedepth.testing import tiny_pipeline

    pipe = tiny_pipeline()
    images = [random_image(i) for i in range(4)]
    jobs = [ImageJob(1, 64, "a room", False), ImageJob(2, 1024, "a street", False),
            ImageJob(3, 512, "a room", False), ImageJob(1, 64, None, False)]
    [bucket] = {bucket_of(pipe, image, job) for image, job in zip(images, jobs)}
    calls = []
    original = pipe.predict_raw
    pipe.predict_raw = lambda *args, **kwargs: calls.append(args[0].shape[0]) or original(*args, **kwargs)
    outcome = predict_bucket(pipe, images, jobs, bucket, batch_size=4, captioning=True)
    assert calls == [4]
    assert pipe.prompt_encoder.cache_info().misses == 3  # "a room", "a street" and the default ""
    for image, job, (depth, labels, prompt) in zip(images, jobs, outcome):
        [alone] = primedepth.predict(image, model=pipe, seed=job.seed, prompt=job.prompt, max_size=job.max_size)
        np.testing.assert_allclose(depth, alone.depth, rtol=0, atol=1e-4)  # float rounding of batching
        assert labels is None and prompt == (job.prompt if job.prompt is not None else "")
