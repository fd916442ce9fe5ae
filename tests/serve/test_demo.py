"""The demo's bounds and captioning: a byte budget for results, 3D files thinned for display,
clip length counted by decoding, and a server that keeps serving without BLIP-2 captions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

import primedepth
from primedepth import geometry
from primedepth.geometry.cloud import grid_step
from primedepth.testing import tiny_pipeline

from .helpers import http, live_server, png_bytes, random_image, require

gr = require("gradio", "the browser demo")
demo = require("primedepth.serve.demo", "the browser demo")

__all__ = ["live_server"]


def _fill(folder: Path, size: int) -> None:
    (folder / "result.bin").write_bytes(b"\0" * size)


def test_results_stay_within_the_byte_budget_oldest_evicted_first():
    folders = demo.ResultFolders(max_bytes=2500)
    made = []
    for _ in range(4):
        made.append(folders.new())
        _fill(made[-1], 1000)
        folders.written(made[-1])
    assert [f.exists() for f in made] == [False, False, True, True] and folders.total == 2000
    huge = folders.new()
    _fill(huge, 10_000)
    folders.written(huge)  # larger than the budget alone: kept, everything older goes
    assert huge.exists() and not any(f.exists() for f in made)
    root = folders.root
    folders.close()
    assert not root.exists()


@pytest.mark.parametrize("size", [(3000, 4000), (4000, 3000), (333, 10_000), (700, 700), (10, 20)])
def test_3d_files_for_display_keep_to_the_point_budget(size):
    budget = 50_000
    options = demo.display_options(*size, budget)
    step = grid_step(*size, options.points_max_size)
    assert -(-size[0] // step) * -(-size[1] // step) <= budget
    assert options.mesh_max_faces == budget
    if size[0] * size[1] <= budget:
        assert options.points_max_size is None  # small images keep one point per pixel


def test_the_written_point_cloud_is_thinned(tmp_path):
    depth = np.random.default_rng(0).uniform(1, 2, (300, 400)).astype(np.float32)
    image = np.zeros((300, 400, 3), np.uint8)
    paths = geometry.geometry_output_paths(tmp_path, Path("scene"), ["ply"])
    geometry.write_geometry_outputs(paths, depth, image, demo.display_options(300, 400, 5000))
    header = paths["ply"].read_bytes().split(b"end_header")[0].decode()
    vertices = int(next(line.split()[-1] for line in header.splitlines() if line.startswith("element vertex")))
    assert 0 < vertices <= 5000


def _clip(path: Path, frames: int) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            picture = np.full((48, 64, 3), index * 10, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_clip_length_is_counted_by_decoding_and_stops_past_the_limit(tmp_path):
    clip = _clip(tmp_path / "clip.mp4", 12)
    assert demo.count_frames(clip, 100) == 12
    assert demo.count_frames(clip, 5) == 6  # stops decoding one frame past the limit


def test_the_prompt_choice_has_an_explicit_no_caption():
    assert demo.prompt_of(demo.PROMPT_NONE, "ignored") == ""
    assert demo.prompt_of(demo.PROMPT_TEXT, "a kitchen") == "a kitchen"
    assert demo.prompt_of(demo.PROMPT_DEFAULT, "ignored") is None


def test_without_captioning_the_server_serves_with_the_empty_prompt(live_server, monkeypatch):
    """A model whose default prompt is BLIP-2's caption, BLIP-2 unavailable: the server starts,
    says so in /readyz, /v1/info and the demo page, and predicts with ""."""
    monkeypatch.setattr("primedepth.text.captioning.check_captioner", lambda *a, **k: "BLIP-2 is not cached")
    auto = tiny_pipeline(default_prompt="auto")
    server = live_server(pipeline=auto, demo_path="/demo")
    ready = http.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["captioning"].startswith("captioning unavailable: BLIP-2 is not cached")
    assert "captioning unavailable" in http.get(f"{server.url}/v1/info").json()["captioning"]
    image = random_image(9)
    answer = http.post(f"{server.url}/v1/depth", files=[("image", ("a.png", png_bytes(image), "image/png"))],
                       data={"outputs": "npy", "seed": "4"})
    assert answer.status_code == 200, answer.text
    [expected] = primedepth.predict(image, model=auto, seed=4, prompt="")
    np.testing.assert_allclose(np.load(io.BytesIO(answer.content)), expected.depth, atol=1e-6)
    status, mode, _ = demo.page_state(server.service)
    assert "Captioning unavailable" in status and mode["value"] == demo.PROMPT_NONE
