"""Protecting the server: API key, bounded queue (503), per-request timeout (504), bind rules,
and the `primedepth serve` command itself."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import primedepth
from primedepth.cli import main
from primedepth.errors import InputError
from primedepth.loading import load_pipeline
from primedepth.serve.settings import ServeSettings, check_bind, is_loopback
from primedepth.testing import save_tiny_model

from .helpers import SlowPipeline, live_server, png_bytes, random_image, wait_ready

__all__ = ["live_server"]  # the fixture, imported for pytest


def post_one(url: str, image: np.ndarray, headers: dict | None = None, **fields: object) -> httpx.Response:
    files = [("image", ("photo.png", png_bytes(image), "image/png"))]
    return httpx.post(f"{url}/v1/depth", files=files, data={k: str(v) for k, v in fields.items()},
                      headers=headers, timeout=60)


def test_the_api_key_is_enforced(live_server):
    server = live_server(api_key="s3cret")
    image = random_image(20)
    for headers in (None, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}, {"Authorization": "Basic s3cret"}):
        answer = post_one(server.url, image, headers=headers, outputs="npy")
        assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized")
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
        assert post_one(server.url, image, headers=headers, outputs="npy").status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200 and httpx.get(f"{server.url}/readyz").status_code == 200


def test_a_full_queue_answers_503_with_retry_after(live_server, tiny_model, reference):
    slow = SlowPipeline(load_pipeline(tiny_model, "cpu"), delay=0.5)
    server = live_server(pipeline=slow, batch_size=1, max_queue=2, batch_window_ms=0)
    images = [random_image(30 + i) for i in range(6)]
    with ThreadPoolExecutor(len(images)) as pool:
        answers = list(pool.map(lambda image: post_one(server.url, image, outputs="npy"), images))
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1, statuses
    for image, answer in zip(images, answers):
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1" and answer.json()["error"] == "queue_full"
        else:
            [expected] = primedepth.predict(image, model=reference)
            np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), expected.depth)
    assert post_one(server.url, images[0], outputs="npy").status_code == 200  # the queue drained
    assert 'primedepth_errors_total{kind="queue_full"}' in httpx.get(f"{server.url}/metrics").text


def test_a_slow_request_times_out_with_504(live_server, tiny_model):
    slow = SlowPipeline(load_pipeline(tiny_model, "cpu"), delay=0.8)
    server = live_server(pipeline=slow, timeout_s=0.3)
    answer = post_one(server.url, random_image(40))
    assert (answer.status_code, answer.json()["error"]) == (504, "timeout")
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_segmentation_needs_a_model_with_its_head(live_server, tmp_path):
    server = live_server(model=str(save_tiny_model(tmp_path / "no-seg", segmentation=False)))
    answer = post_one(server.url, random_image(41), outputs="png16,seg")
    assert (answer.status_code, answer.json()["error"]) == (422, "no_segmentation_head")


# ------------------------------------------------------------------------------ binding


def test_other_addresses_need_a_key_or_a_loud_opt_out(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    check_bind(ServeSettings(host="127.0.0.5"))
    check_bind(ServeSettings(host="0.0.0.0", api_key="k"))
    with pytest.raises(InputError, match="--api-key"):
        check_bind(ServeSettings(host="0.0.0.0"))
    with pytest.raises(InputError, match="demo has no authentication"):
        check_bind(ServeSettings(host="0.0.0.0", api_key="k"), demo=True)
    check_bind(ServeSettings(host="0.0.0.0", insecure_no_auth=True), demo=True)
    assert "WITHOUT AUTHENTICATION" in capsys.readouterr().err
    assert ServeSettings(host="0.0.0.0").with_env_key({"PRIMEDEPTH_API_KEY": "from-env"}).api_key == "from-env"


def test_serve_refuses_a_public_address_without_a_key(capsys, tiny_model):
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tiny_model)]) == 2
    assert "--insecure-no-auth" in capsys.readouterr().err


def test_bad_limits_are_refused_up_front():
    for bad in ({"max_queue": 0}, {"max_images": -1}, {"batch_size": 0}, {"max_size": 4}, {"colormap": "nope"}):
        with pytest.raises(InputError):
            ServeSettings(**bad)


# ------------------------------------------------------------------------------ the command


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [sys.executable, "-m", "primedepth.cli", "serve", "--device", "cpu", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    return process, f"http://127.0.0.1:{port}"


def _wait_listening(process: subprocess.Popen, url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"primedepth serve did not start: {process.communicate(timeout=10)[0][-2000:]}")


def test_the_serve_command_answers_and_stops_on_ctrl_c(tiny_model, reference):
    process, url = _start_cli("--model", str(tiny_model), "--seed", "5")
    try:
        _wait_listening(process, url)
        assert wait_ready(url)["model"] == str(tiny_model)
        answer = post_one(url, random_image(50), outputs="npy")
        [expected] = primedepth.predict(random_image(50), model=reference, seed=5)
        np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), expected.depth)
        assert json.loads(answer.headers["primedepth-metadata"])["seed"] == 5
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output


def test_the_serve_command_stops_when_the_model_cannot_load(tmp_path):
    process, _ = _start_cli("--model", str(tmp_path / "no-such-model"))
    output = process.communicate(timeout=90)[0]
    assert process.returncode == 1 and "no-such-model" in output, output
