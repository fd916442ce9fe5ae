"""The HTTP API on a live uvicorn (127.0.0.1, ephemeral port), driven with httpx.

Answers are compared with what `primedepth.predict` computes and writes for the same file and
seed: the same bytes for every output kind, the same depth after decoding.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

import primedepth
from primedepth.io import colorize_depth, read_depth_png16, segmentation_labels
from primedepth.io.images import ORIENTATION_TAG
from primedepth.jobs import JOB_RECORD
from primedepth.serve.responses import METADATA_HEADER

from .helpers import http, png_bytes, random_image, start_server

SEED = 7
KIB = 1024


@pytest.fixture(scope="module")
def api(tiny_model: Path) -> Any:
    """One server for the module: small limits so that each one can be hit cheaply."""
    server = start_server(tiny_model, batch_size=2, max_upload_bytes=256 * KIB, max_images=3, max_pixels=1_000_000)
    yield server
    server.__exit__(None, None, None)


def post(url: str, files: list[tuple[str, bytes]], timeout: float = 60, **fields: Any) -> httpx.Response:
    parts = [("image", (name, data, "application/octet-stream")) for name, data in files]
    return http.post(f"{url}/v1/depth", files=parts, data={k: str(v) for k, v in fields.items()}, timeout=timeout)


def cli_files(reference: Any, paths: list[Path], output_dir: Path, kinds: tuple[str, ...], **options: Any) -> dict[str, bytes]:
    """The files `primedepth.predict` writes for these inputs, by file name."""
    primedepth.predict([str(p) for p in paths], model=reference, output_dir=output_dir, outputs=kinds, **options)
    return {path.name: path.read_bytes() for path in sorted(output_dir.iterdir()) if path.name != JOB_RECORD}


def write_png(folder: Path, name: str, image: np.ndarray) -> Path:
    path = folder / name
    path.write_bytes(png_bytes(image))
    return path


def assert_still_serving(url: str) -> None:
    assert http.get(f"{url}/healthz").json() == {"status": "ok"}
    answer = post(url, [("ok.png", png_bytes(random_image(99)))], outputs="npy")
    assert answer.status_code == 200, answer.text


# ------------------------------------------------------------------------------ basics


def test_health_readiness_info_and_docs(api):
    assert http.get(f"{api.url}/healthz").json() == {"status": "ok"}
    ready = http.get(f"{api.url}/readyz").json()
    assert ready["status"] == "ready" and ready["device"] == "cpu" and ready["batch_size"] == 2
    info = http.get(f"{api.url}/v1/info").json()
    assert info["limits"]["max_images"] == 3 and set(info["outputs"]) >= {"png16", "npy", "color", "seg"}
    assert "/v1/depth" in http.get(f"{api.url}/openapi.json").json()["paths"]
    assert http.get(f"{api.url}/docs").status_code == 200


@pytest.mark.parametrize("kind", ["png16", "npy", "color", "seg"])
def test_each_output_kind_is_the_file_predict_writes(api, reference, tmp_path, kind):
    image = random_image(1)
    path = write_png(tmp_path, "scene.png", image)
    answer = post(api.url, [("scene.png", path.read_bytes())], outputs=kind, seed=SEED)
    assert answer.status_code == 200, answer.text
    expected = cli_files(reference, [path], tmp_path / "cli", (kind,), seed=SEED, segmentation=kind == "seg")
    [(name, content)] = expected.items()
    assert answer.headers["content-disposition"] == f'attachment; filename="{name}"'
    assert answer.content == content  # byte for byte what the CLI writes
    [prediction] = primedepth.predict(image, model=reference, seed=SEED, segmentation=kind == "seg")
    _assert_round_trip(kind, answer.content, prediction, tmp_path)


def _assert_round_trip(kind: str, content: bytes, prediction: Any, tmp_path: Path) -> None:
    """The file decodes back to the prediction (to its format's precision)."""
    depth = prediction.depth
    if kind == "npy":
        np.testing.assert_array_equal(np.load(io.BytesIO(content)), depth)
    elif kind == "png16":
        (tmp_path / "d.png").write_bytes(content)
        step = float(depth.max() - depth.min()) / 65535
        np.testing.assert_allclose(read_depth_png16(tmp_path / "d.png"), depth, atol=step)
    elif kind == "color":
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(content))), colorize_depth(depth))
    else:
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(content))), segmentation_labels(prediction.segmentation))


def test_uploads_are_read_as_the_cli_reads_files(api, reference, tmp_path):
    """EXIF-rotated JPEG and 16-bit colour PNG: same decoding as `primedepth predict`."""
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    Image.fromarray(random_image(2, (48, 64))).save(rotated, quality=95, exif=exif)
    deep = tmp_path / "deep.png"
    Image.fromarray((random_image(3).astype(np.uint16) * 257)[..., 0]).save(deep)  # 16-bit grayscale
    for path in (rotated, deep):
        answer = post(api.url, [(path.name, path.read_bytes())], outputs="npy", seed=SEED)
        assert answer.status_code == 200, answer.text
        [expected] = primedepth.predict(str(path), model=reference, seed=SEED)
        np.testing.assert_array_equal(np.load(io.BytesIO(answer.content)), expected.depth)
    assert np.load(io.BytesIO(answer.content)).shape == (40, 56)


def test_several_images_and_outputs_come_as_a_zip_with_metadata(api, reference, tmp_path):
    paths = [write_png(tmp_path, f"view{i}.png", random_image(10 + i)) for i in range(2)]
    answer = post(api.url, [(p.name, p.read_bytes()) for p in paths], outputs="png16,npy", seed=SEED, max_size=512)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    metadata = json.loads(archive.read("metadata.json"))
    expected = cli_files(reference, paths, tmp_path / "cli", ("png16", "npy"), seed=SEED, max_size=512, batch_size=2)
    assert sorted(archive.namelist()) == sorted([*expected, "metadata.json"])
    for name, content in expected.items():
        assert archive.read(name) == content, name  # the two images shared one batch, as in the CLI run
    assert metadata == json.loads(answer.headers[METADATA_HEADER])
    assert metadata["seed"] == SEED and metadata["affine_invariant"] is True and "inverse depth" in metadata["depth"]
    assert metadata["model"] == str(api.service.settings.model) and "revision" in metadata
    height, width = api.service.processing_size(40, 56, 512)[1]
    assert [entry["processing_size"] for entry in metadata["images"]] == [{"width": width, "height": height}] * 2
    assert metadata["max_size"] == 512
    assert [entry["prompt"] for entry in metadata["images"]] == ["", ""]  # the tiny model's default prompt


def test_metadata_of_a_single_file_is_in_a_header(api):
    answer = post(api.url, [("a b/../c d.png", png_bytes(random_image(4)))], outputs="color", prompt="a red car")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["content-disposition"] == 'attachment; filename="c_d_depth_color.png"'
    metadata = json.loads(answer.headers[METADATA_HEADER])
    assert metadata["seed"] == 0 and metadata["prompt"] == "a red car" and metadata["images"][0]["prompt"] == "a red car"
    assert metadata["images"][0]["input_size"] == {"width": 56, "height": 40}


# ------------------------------------------------------------------------------ bad requests


def _truncated_png() -> bytes:
    return png_bytes(random_image(5))[:120]


BAD_UPLOADS = {
    "zero bytes": (b"", 400, "empty_upload"),
    "not an image": (b"depth, please\n" * 10, 415, "not_an_image"),
    "truncated": (_truncated_png(), 400, "corrupt_image"),
    "1x1 pixel": (png_bytes(np.zeros((1, 1, 3), np.uint8)), 422, "image_too_small"),
    "1 pixel high": (png_bytes(np.zeros((1, 300, 3), np.uint8)), 422, "image_too_small"),
    "too many pixels": (png_bytes(Image.new("RGB", (1100, 1000))), 413, "too_many_pixels"),
    "too many bytes": (png_bytes(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)),
                       413, "upload_too_large"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_a_4xx_naming_the_problem(api, case):
    data, status, kind = BAD_UPLOADS[case]
    answer = post(api.url, [("upload.png", data)])
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["error"] == kind and error["status"] == status and error["message"].startswith("upload.png: ")
    assert_still_serving(api.url)


@pytest.mark.parametrize("fields, kind", [
    ({"outputs": "png16,depth.exr"}, "bad_outputs"),
    ({"max_size": 4}, "bad_max_size"),
    ({"max_size": 100_000}, "bad_max_size"),
    ({"seed": -1}, "bad_seed"),
    ({"colormap": "rainbow_unicorn"}, "bad_colormap"),
    ({"prompt": "x" * 1000}, "bad_prompt"),
    ({"seed": "seven"}, "invalid_request"),
])
def test_bad_options_get_422(api, fields, kind):
    answer = post(api.url, [("a.png", png_bytes(random_image(6)))], **fields)
    assert (answer.status_code, answer.json()["error"]) == (422, kind), answer.text


def test_paths_and_urls_are_not_accepted(api):
    for value in ("/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:1/photo.png"):
        answer = http.post(f"{api.url}/v1/depth", data={"image": value})
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
        assert "paths and URLs are not accepted" in answer.json()["message"]
    answer = http.post(f"{api.url}/v1/depth", data={"outputs": "npy"})
    assert answer.status_code == 422


def _endless_upload(limit: int) -> Any:
    """A chunked multipart body (no Content-Length) whose file part outgrows `limit`."""
    yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
    for _ in range(limit // 65536 + 2):
        yield b"x" * 65536


def test_too_many_images_and_too_large_bodies_are_refused(api):
    small = png_bytes(random_image(7))
    answer = post(api.url, [(f"{i}.png", small) for i in range(4)])
    assert (answer.status_code, answer.json()["error"]) == (413, "too_many_images")
    huge = b"\0" * (api.service.settings.max_request_bytes + 1)
    answer = post(api.url, [("huge.png", huge)])
    assert (answer.status_code, answer.json()["error"]) == (413, "request_too_large")
    answer = http.post(f"{api.url}/v1/depth", content=_endless_upload(api.service.settings.max_request_bytes),
                        headers={"content-type": "multipart/form-data; boundary=b"})
    assert (answer.status_code, answer.json()["error"]) == (413, "request_too_large")
    assert_still_serving(api.url)


def _answers(url: str) -> dict[tuple[str, str], float]:
    """primedepth_requests_total by (status, route)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(http.get(f"{url}/metrics").text)
    [family] = [f for f in families if f.name == "primedepth_requests"]
    return {(s.labels["status"], s.labels["route"]): s.value for s in family.samples if s.name.endswith("_total")}


def test_metrics_count_every_answer_by_status(api):
    """Answers written by the handler, FastAPI's validation and the body limit all count."""
    before = _answers(api.url)
    post(api.url, [("bad.png", b"")])  # 400 from the handler
    http.post(f"{api.url}/v1/depth", data={"seed": "x"})  # 422 from FastAPI's own validation
    http.post(f"{api.url}/v1/depth", content=b"\0" * (api.service.settings.max_request_bytes + 1),
              headers={"content-type": "multipart/form-data; boundary=b"})  # 413 from the body limit
    post(api.url, [("ok.png", png_bytes(random_image(8)))], outputs="npy")  # 200
    http.get(f"{api.url}/no-such-page")  # 404
    after = _answers(api.url)
    for status, route in (("400", "depth"), ("422", "depth"), ("413", "depth"), ("200", "depth"), ("404", "other")):
        assert after.get((status, route), 0) - before.get((status, route), 0) == 1, (status, route, after)
    text = http.get(f"{api.url}/metrics").text
    assert 'primedepth_errors_total{kind="empty_upload"}' in text and "primedepth_request_seconds_bucket" in text
    assert 'primedepth_errors_total{kind="request_too_large"}' in text and 'primedepth_errors_total{kind="invalid_request"}' in text
    assert "primedepth_queue_length 0.0" in text and "primedepth_queue_pixels 0.0" in text
    assert "primedepth_ready 1.0" in text
