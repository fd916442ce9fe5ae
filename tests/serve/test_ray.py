"""`primedepth serve --ray`: the same app as a Ray Serve deployment answers the same requests with
the same results (a local Ray: 2 CPUs, a small object store, everything on 127.0.0.1)."""

from __future__ import annotations

import io
import socket
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import primedepth
from primedepth.jobs import JOB_RECORD
from primedepth.serve.settings import ServeSettings

from .helpers import http, png_bytes, random_image, require, wait_ready

ray = require("ray", "the Ray Serve test")
serve = require("ray.serve", "the Ray Serve test")
ray_serve = require("primedepth.serve.ray_serve", "the Ray Serve test")

SEED = 3


@pytest.fixture(scope="module")
def ray_url(tiny_model):
    ray.init(num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServeSettings(model=str(tiny_model), device="cpu", batch_size=2, batch_window_ms=300)
        serve.run(ray_serve.build_application(settings, ray_serve.RayOptions()), name=ray_serve.APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def post(url, uploads, **fields):
    files = [("image", (name, data, "image/png")) for name, data in uploads]
    return http.post(f"{url}/v1/depth", files=files, data={k: str(v) for k, v in fields.items()})


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
    metrics = http.get(f"{ray_url}/metrics").text
    count = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("primedepth_batch_size_count")))
    total = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("primedepth_batch_size_sum")))
    assert total >= 4 and count < total  # @serve.batch put several requests in one batch
