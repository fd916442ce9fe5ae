"""Output names and files (primedepth.io.outputs): PNG16, npy, colour, segmentation."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from primedepth.errors import InputError
from primedepth.io import outputs

RNG = np.random.default_rng(0)


def test_frame_and_output_names():
    name = PurePosixPath("sub/clip")
    assert outputs.frame_name(name, 12) == PurePosixPath("sub/clip_frames/000012")
    paths = outputs.output_paths(Path("out"), name, ["png16", "color", "video"])
    assert paths == {
        "png16": Path("out/sub/clip_depth.png"),
        "color": Path("out/sub/clip_depth_color.png"),
        "video": Path("out/sub/clip_depth.mp4"),
    }


def test_png16_round_trip_recovers_raw_values(tmp_path):
    depth = RNG.normal(3.0, 2.0, size=(15, 17)).astype(np.float32)
    outputs.save_depth_png16(tmp_path / "d.png", depth)
    with Image.open(tmp_path / "d.png") as image:
        assert image.mode == "I;16"
        assert float(image.text["depth_min"]) == float(depth.min())
        assert float(image.text["depth_max"]) == float(depth.max())
    recovered = outputs.read_depth_png16(tmp_path / "d.png")
    step = (depth.max() - depth.min()) / 65535
    np.testing.assert_allclose(recovered, depth, atol=step * 0.51 + 1e-6)


def test_constant_and_non_finite_maps_give_no_nan(tmp_path):
    constant = np.full((4, 5), 2.5, dtype=np.float32)
    colour = outputs.colorize_depth(constant)
    assert colour.shape == (4, 5, 3) and colour.dtype == np.uint8
    outputs.save_depth_png16(tmp_path / "c.png", constant)
    np.testing.assert_array_equal(outputs.read_depth_png16(tmp_path / "c.png"), constant)
    holes = np.array([[np.nan, 1.0], [np.inf, 0.0]], dtype=np.float32)
    normalized, low, high = outputs.normalize_depth(holes)
    assert np.isfinite(normalized).all() and (low, high) == (0.0, 1.0)


def test_colorize_uses_the_colormap_table_like_the_official_release():
    depth = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    for name in ("Spectral", "viridis"):
        expected = (colormaps[name](np.array([0.0, 1.0, 0.5]))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(outputs.colorize_depth(depth, name)[0], expected)
    with pytest.raises(InputError, match="unknown colormap"):
        outputs.colorize_depth(depth, "no-such-map")


def test_npy_and_segmentation_outputs(tmp_path):
    depth = RNG.random((6, 8), dtype=np.float32)
    outputs.save_depth_npy(tmp_path / "d.npy", depth)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), depth)
    logits = RNG.random((150, 6, 8), dtype=np.float32)
    outputs.save_segmentation(tmp_path / "s.png", logits)
    with Image.open(tmp_path / "s.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), logits.argmax(0))


def test_write_outputs_keeps_existing_files_unless_overwrite(tmp_path):
    depth = RNG.random((6, 8), dtype=np.float32)
    paths = outputs.output_paths(tmp_path, PurePosixPath("x"), ["png16", "npy", "color", "seg"])
    paths["npy"].write_bytes(b"mine")
    written = outputs.write_outputs(paths, depth, segmentation=None)
    assert written == [paths["png16"], paths["color"]]
    assert paths["npy"].read_bytes() == b"mine" and not paths["seg"].exists()
    assert outputs.write_outputs(paths, depth, overwrite=True) == [
        paths["png16"], paths["npy"], paths["color"]
    ]
    np.testing.assert_array_equal(np.load(paths["npy"]), depth)


@pytest.mark.parametrize("classes, mode", [(150, "P"), (300, "I;16")])
def test_labels_to_image_holds_the_argmax_labels(classes, mode):
    logits = RNG.random((classes, 5, 7), dtype=np.float32)
    image = outputs.labels_to_image(logits)
    assert image.mode == mode
    np.testing.assert_array_equal(np.asarray(image), logits.argmax(0))
