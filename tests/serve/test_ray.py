"""`primedepth serve --ray`: `serve_on_ray` end to end on a local Ray instance (2 CPUs, a small
object store, everything on 127.0.0.1): the same app answers the same requests with the same
results, behind the same key, and batches concurrent requests."""

from __future__ import annotations

import io
import socket
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import primedepth
from primedepth.errors import InputError
from primedepth.jobs import JOB_RECORD
from primedepth.serve.settings import ServeSettings

from .helpers import http, png_bytes, random_image, require, wait_ready

ray = require("ray", "the Ray Serve test")
serve = require("ray.serve", "the Ray Serve test")
ray_serve = require("primedepth.serve.ray_serve", "the Ray Serve test")

SEED = 3
KEY = "ray-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
SMALL_RAY = {"num_cpus": 2, "object_store_memory": 100 * 1024**2, "log_to_driver": False,
             "_node_ip_address": "127.0.0.1"}


@pytest.fixture(scope="module")
def ray_url(tiny_model):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ServeSettings(model=str(tiny_model), device="cpu", batch_size=2, batch_window_ms=300, port=port,
                             api_key=KEY)
    stop = threading.Event()
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(ray_serve.serve_on_ray(settings, ray_serve.RayOptions(), ray_init=SMALL_RAY, stop=stop))
        except BaseException as error:  # reported by the fixture
            outcome.append(error)

    thread = threading.Thread(target=run, name="serve-on-ray")
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url, thread)
        wait_ready(url)
        yield url
    finally:
        stop.set()
        thread.join(timeout=120)
    assert outcome == [0], outcome  # serve_on_ray returned after shutting Ray down
    assert not ray.is_initialized()


def _wait_for_http(url, thread, timeout=180.0):
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if http.get(f"{url}/healthz", timeout=2).status_code == 200:  # the app, not Ray's proxy alone
                return
        except Exception:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("serve_on_ray did not start serving")
        time.sleep(0.25)


def post(url, uploads, headers=HEADERS, **fields):
    files = [("image", (name, data, "image/png")) for name, data in uploads]
    return http.post(f"{url}/v1/depth", files=files, data={k: str(v) for k, v in fields.items()}, headers=headers)


def test_more_than_one_demo_replica_is_refused():
    with pytest.raises(InputError, match="--replicas 1"):
        ray_serve.check_demo_replicas(ray_serve.RayOptions(replicas=2), demo=True)
    ray_serve.check_demo_replicas(ray_serve.RayOptions(replicas=2), demo=False)
    ray_serve.check_demo_replicas(ray_serve.RayOptions(replicas=1), demo=True)


def test_the_command_refuses_several_demo_replicas_before_starting_ray(capsys, tiny_model):
    from primedepth.cli import main

    assert main(["serve", "--ray", "--demo", "--replicas", "3", "--model", str(tiny_model)]) == 2
    assert "--replicas 1" in capsys.readouterr().err and not ray.is_initialized()


def test_ray_serve_needs_the_key(ray_url):
    answer = post(ray_url, [("a.png", png_bytes(random_image(1)))], headers={})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert http.get(f"{ray_url}/readyz").json() == {"status": "ready"}


def test_ray_serve_answers_like_predict(ray_url, reference, tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"view{i}.png")
        paths[-1].write_bytes(png_bytes(random_image(70 + i)))
    single = post(ray_url, [(paths[0].name, paths[0].read_bytes())], outputs="npy", seed=SEED)
    assert single.status_code == 200, single.text
    [expected] = primedepth.predict(str(paths[0]), model=reference, seed=SEED)
    np.testing.assert_array_equal(np.load(io.BytesIO(single.content)), expected.depth)
    both = post(ray_url, [(p.name, p.read_bytes()) for p in paths], outputs="png16", seed=SEED)
    primedepth.predict([str(p) for p in paths], model=reference, seed=SEED, output_dir=tmp_path / "cli",
                       outputs=("png16",), batch_size=2)
    archive = zipfile.ZipFile(io.BytesIO(both.content))
    for path in sorted((tmp_path / "cli").iterdir()):
        if path.name != JOB_RECORD:
            assert archive.read(path.name) == path.read_bytes(), path.name
    bad = post(ray_url, [("notes.png", b"not an image")])
    assert (bad.status_code, bad.json()["error"]) == (415, "not_an_image")


def test_ray_serve_batches_concurrent_requests(ray_url, reference):
    images = [random_image(80 + i) for i in range(4)]
    expected = [p.depth for p in primedepth.predict(images, model=reference, batch_size=2)]
    with ThreadPoolExecutor(len(images)) as pool:
        answers = list(pool.map(lambda image: post(ray_url, [("x.png", png_bytes(image))], outputs="npy"), images))
    for own, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        depth = np.load(io.BytesIO(answer.content))
        assert int(np.argmin([np.abs(depth - e).mean() for e in expected])) == own
    metrics = http.get(f"{ray_url}/metrics", headers=HEADERS).text
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("primedepth_batch_size_count")))
    total = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("primedepth_batch_size_sum")))
    assert total >= 4 and count < total  # @serve.batch put several requests in one batch
