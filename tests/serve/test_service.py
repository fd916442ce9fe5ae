"""Protecting the server: API key, bounded queue (503), per-request timeout (504), bind rules,
and the server `primedepth serve` builds (run in a thread here, not a second process: a fresh
interpreter spends most of a minute importing torch and diffusers on a busy 2-core machine)."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import primedepth
from primedepth.cli import build_parser, main
from primedepth.commands.serve import settings_from_args
from primedepth.errors import InputError
from primedepth.loading import load_pipeline
from primedepth.serve.server import build_server
from primedepth.serve.settings import ServeSettings, check_bind, is_loopback
from primedepth.testing import save_tiny_model

from .helpers import http, SlowPipeline, live_server, png_bytes, random_image, wait_ready

__all__ = ["live_server"]  # the fixture, imported for pytest


def post_one(url: str, image: np.ndarray, headers: dict | None = None, **fields: object) -> httpx.Response:
    files = [("image", ("photo.png", png_bytes(image), "image/png"))]
    return http.post(f"{url}/v1/depth", files=files, data={k: str(v) for k, v in fields.items()},
                      headers=headers, timeout=60)


def test_the_api_key_is_enforced(live_server):
    server = live_server(api_key="s3cret")
    image = random_image(20)
    for headers in (None, {"Authorization": "Bearer wrong"}, {"X-API-Key": "s3cre"}, {"Authorization": "Basic s3cret"}):
        answer = post_one(server.url, image, headers=headers, outputs="npy")
        assert (answer.status_code, answer.json()["error"]) == (401, "unauthorized")
    assert http.get(f"{server.url}/metrics").status_code == 401
    for headers in ({"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}):
        assert post_one(server.url, image, headers=headers, outputs="npy").status_code == 200
    assert http.get(f"{server.url}/healthz").status_code == 200 and http.get(f"{server.url}/readyz").status_code == 200


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
    assert 'primedepth_errors_total{kind="queue_full"}' in http.get(f"{server.url}/metrics").text


def test_a_slow_request_times_out_with_504_and_keeps_its_place_until_the_work_stops(live_server, tiny_model):
    slow = SlowPipeline(load_pipeline(tiny_model, "cpu"), delay=1.5)
    server = live_server(pipeline=slow, timeout_s=0.3, max_queue=1)
    answer = post_one(server.url, random_image(40))
    assert (answer.status_code, answer.json()["error"]) == (504, "timeout")
    assert "primedepth_queue_length 1.0" in http.get(f"{server.url}/metrics").text  # the worker still runs it
    busy = post_one(server.url, random_image(41))
    assert (busy.status_code, busy.json()["error"]) == (503, "queue_full")
    deadline = time.monotonic() + 20
    while "primedepth_queue_length 0.0" not in http.get(f"{server.url}/metrics").text:
        assert time.monotonic() < deadline, "the queue place was never given back"
        time.sleep(0.05)
    assert http.get(f"{server.url}/healthz").status_code == 200


def test_what_can_never_fit_is_refused_at_once_with_the_limits(live_server, tiny_model):
    """More images than the queue holds, or more pixels than its budget: 413, not a 503 to retry."""
    server = live_server(max_images=3, max_queue=2, max_queue_pixels=5000)
    three = [("image", (f"{i}.png", png_bytes(random_image(i)), "image/png")) for i in range(3)]
    answer = http.post(f"{server.url}/v1/depth", files=three)
    assert (answer.status_code, answer.json()["error"]) == (413, "too_many_images")
    assert "at most 2" in answer.json()["message"] and "max_queue 2" in answer.json()["message"]
    assert "retry-after" not in answer.headers
    answer = post_one(server.url, random_image(1, (60, 90)))  # 5400 pixels
    assert (answer.status_code, answer.json()["error"]) == (413, "too_many_pixels")
    assert "budget of 0.0 MP (max_queue_pixels)" in answer.json()["message"]
    assert post_one(server.url, random_image(2, (40, 56)), outputs="npy").status_code == 200  # 2240 pixels fit
    assert http.get(f"{server.url}/v1/info").json()["limits"]["max_images"] == 2


def test_the_queue_is_bounded_by_pixels(live_server, tiny_model):
    slow = SlowPipeline(load_pipeline(tiny_model, "cpu"), delay=1.0)
    server = live_server(pipeline=slow, batch_size=1, max_queue=8, max_queue_pixels=3000, batch_window_ms=0)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda seed: post_one(server.url, random_image(seed), outputs="npy"), (50, 51)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 503], statuses  # 2 x 2240 pixels exceed 3000 although 2 images < 8
    assert "MP queued" in next(a for a in answers if a.status_code == 503).json()["message"]


def test_sizes_the_model_cannot_take_get_422_naming_why(live_server):
    server = live_server()
    answer = post_one(server.url, random_image(3), max_size=32)
    assert (answer.status_code, answer.json()["error"]) == (422, "bad_max_size")
    assert "between 64 (the smallest accepted)" in answer.json()["message"]
    thin = np.zeros((16, 4000, 3), np.uint8)
    answer = post_one(server.url, thin, max_size=128)
    assert (answer.status_code, answer.json()["error"]) == (422, "image_not_processable"), answer.text
    assert "aspect ratio is 250:1" in answer.json()["message"]
    photo = post_one(server.url, random_image(4, (120, 160)), max_size=64, outputs="npy")
    assert photo.status_code == 200, photo.text
    assert np.load(io.BytesIO(photo.content)).shape == (120, 160)
    assert json.loads(photo.headers["primedepth-metadata"])["images"][0]["processing_size"] == {"width": 85, "height": 64}


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
    check_bind(ServeSettings(host="0.0.0.0", api_key="k"), demo=True)  # the key protects the demo too
    with pytest.raises(InputError, match="--api-key-file"):
        check_bind(ServeSettings(host="0.0.0.0"), demo=True)
    assert "WITHOUT AUTHENTICATION" not in capsys.readouterr().err
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


def test_the_serve_command_stops_when_the_model_cannot_load(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["serve", "--device", "cpu", "--port", str(_free_port()), "--model", str(missing)]) == 1
    assert "no-such-model" in capsys.readouterr().err


def test_the_server_of_the_command_answers_and_stops(tiny_model, reference):
    settings = settings_from_args(build_parser().parse_args(
        ["serve", "--model", str(tiny_model), "--device", "cpu", "--port", str(_free_port()), "--seed", "5"]))
    server, service = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{settings.port}"
        assert wait_ready(url)["model"] == str(tiny_model)
        answer = post_one(url, random_image(50), outputs="npy")
        [expected] = primedepth.predict(random_image(50), model=reference, seed=5)
        np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), expected.depth)
        assert json.loads(answer.headers["primedepth-metadata"])["seed"] == 5
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive() and service.error is None


def test_sigterm_stops_the_server_with_a_message_that_fits(tiny_model, capsys):
    """uvicorn shuts down gracefully, then re-raises SIGTERM; the command says the server stopped
    (not predict's 'partial outputs were removed') and exits 143."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"

    def terminate_when_ready() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_when_ready, daemon=True).start()
    code = main(["serve", "--model", str(tiny_model), "--device", "cpu", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 143, err
    assert "primedepth serve: terminated (SIGTERM); the server stopped" in err and "partial outputs" not in err
