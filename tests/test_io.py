"""Reading inputs, finding them, and writing outputs (primedepth.io); no model involved."""

from __future__ import annotations

import os
import struct
import zlib
from fractions import Fraction
from pathlib import Path, PurePosixPath

import av
import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image, ImageOps

from primedepth import io
from primedepth.errors import InputError

RNG = np.random.default_rng(0)


def _rgb(height: int = 12, width: int = 20) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _write_av_image(path: Path, pixels: np.ndarray, codec: str, pix_fmt: str, source_fmt: str):
    """Write a 16-bit colour image with FFmpeg, since Pillow cannot."""
    with av.open(str(path), "w", format="image2") as container:
        stream = container.add_stream(codec)
        stream.height, stream.width = pixels.shape[:2]
        stream.pix_fmt = pix_fmt
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format=source_fmt)):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# --------------------------------------------------------------------------------------------
# read_image


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_formats_read_back_exactly(tmp_path, suffix):
    pixels = _rgb()
    path = tmp_path / f"image{suffix}"
    Image.fromarray(pixels).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    array = io.read_image(path)
    assert array.dtype == np.uint8 and array.shape == (12, 20, 3)
    np.testing.assert_array_equal(array, pixels)


def test_jpeg_reads_as_uint8_rgb(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg", quality=95)
    array = io.read_image(tmp_path / "a.jpg")
    assert array.dtype == np.uint8 and array.shape == (12, 20, 3)


def test_grayscale_is_repeated_to_rgb(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    array = io.read_image(tmp_path / "g.png")
    assert array.shape == (12, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], gray)


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    pixels = _rgb()
    alpha = np.zeros((12, 20, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([pixels, alpha], axis=-1), mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), pixels)


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_is_expanded(tmp_path, transparent):
    image = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if transparent:
        image.info["transparency"] = 0
    image.save(tmp_path / "p.png", **({"transparency": 0} if transparent else {}))
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(io.read_image(tmp_path / "p.png"), expected)


def test_16bit_grayscale_png_keeps_full_precision(tmp_path):
    values = RNG.integers(0, 65536, size=(10, 14), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    array = io.read_image(tmp_path / "g16.png")
    assert array.dtype == np.float32 and array.shape == (10, 14, 3)
    np.testing.assert_allclose(array[..., 1], values / 65535.0, atol=1e-7)


@pytest.mark.parametrize(
    "name, codec, pix_fmt",
    [("c16.png", "png", "rgb48be"), ("c16a.png", "png", "rgba64be"), ("c16.tif", "tiff", "rgb48le")],
)
def test_16bit_colour_keeps_full_precision(tmp_path, name, codec, pix_fmt):
    values = RNG.integers(0, 65536, size=(10, 14, 3), dtype=np.uint16)
    source = values
    if "a" in pix_fmt.replace("rgb", ""):
        source = np.concatenate([values, values[..., :1]], axis=-1)
    source_fmt = "rgba64le" if source.shape[-1] == 4 else "rgb48le"
    _write_av_image(tmp_path / name, source, codec, pix_fmt, source_fmt)
    array = io.read_image(tmp_path / name)
    assert array.dtype == np.float32 and array.shape == (10, 14, 3)
    np.testing.assert_allclose(array, values / 65535.0, atol=1e-7)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    image = Image.fromarray(_rgb(5, 7))
    exif = image.getexif()
    exif[io.ORIENTATION_TAG] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(io.apply_exif_orientation(np.asarray(image), orientation), expected)


def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[io.ORIENTATION_TAG] = 6  # stored sideways; display turned 90 degrees clockwise
    image.save(tmp_path / "r.jpg", exif=exif)
    assert io.read_image(tmp_path / "r.jpg").shape == (30, 10, 3)


def _huge_png(path: Path) -> None:
    """A valid PNG header claiming 20000x20000 pixels; never decoded."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b""))


def _truncated(path: Path, suffix: str) -> None:
    Image.fromarray(_rgb(64, 64)).save(path.with_suffix(suffix))
    data = path.with_suffix(suffix).read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("hello, I am text"), "not an image"),
        (lambda p: _truncated(p, ".full.jpg"), "truncated"),
        (lambda p: _truncated(p, ".full.png"), "truncated"),
        (_huge_png, "too large"),
        (lambda p: p.mkdir(), "not a regular file"),
    ],
    ids=["missing", "empty", "text", "truncated-jpeg", "truncated-png", "huge", "directory"],
)
def test_bad_files_raise_input_error_with_path_and_reason(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError) as caught:
        io.read_image(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


# --------------------------------------------------------------------------------------------
# expand_inputs


@pytest.fixture()
def tree(tmp_path) -> Path:
    """data/a.jpg, data/b.png, data/notes.md, data/sub/c.webp, data/sub/clip.mp4"""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.webp", "sub/clip.mp4"):
        (root / name).write_bytes(b"x")
    (root / "notes.md").write_text("not an input")
    return root


def _names(items) -> list[str]:
    return [str(item.name) for item in items]


def test_directory_lists_direct_media_files(tree):
    assert _names(io.expand_inputs([tree])) == ["a", "b"]


def test_recursive_directory_mirrors_the_tree(tree):
    items = io.expand_inputs([tree], recursive=True)
    assert _names(items) == ["a", "b", "sub/c", "sub/clip"]
    assert [item.kind for item in items] == ["image", "image", "image", "video"]


def test_glob_is_named_relative_to_its_fixed_folder(tree):
    items = io.expand_inputs([str(tree / "**" / "*.webp")], recursive=True)
    assert _names(items) == ["sub/c"]
    with pytest.raises(InputError, match="no file matches"):
        io.expand_inputs([str(tree / "*.gif")])


def test_list_file_resolves_relative_to_itself(tree):
    listing = tree / "list.txt"
    listing.write_text(f"# inputs\nsub/c.webp\n\n{tree / 'a.jpg'}\n")
    items = io.expand_inputs([listing])
    assert _names(items) == ["sub/c", "a"]
    assert items[0].path == tree / "sub" / "c.webp"
    listing.write_text("missing.png\n")
    with pytest.raises(InputError, match="line 1"):
        io.expand_inputs([listing])


def test_single_files_duplicates_and_collisions(tree, tmp_path):
    assert _names(io.expand_inputs([tree / "a.jpg", tree, tree / "a.jpg"])) == ["a", "b"]
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="both write outputs named 'a'"):
        io.expand_inputs([tree / "a.jpg", tmp_path / "a.png"])


def test_unsupported_and_missing_paths_are_refused(tree):
    with pytest.raises(InputError, match="unsupported file type '.md'"):
        io.expand_inputs([tree / "notes.md"])
    with pytest.raises(InputError, match="no such file or directory"):
        io.expand_inputs([tree / "nope.jpg"])


def test_earlier_outputs_are_not_taken_as_inputs(tree):
    inner = tree / "out"
    (inner / "x").mkdir(parents=True)
    (inner / "a_depth_color.png").write_bytes(b"x")
    assert _names(io.expand_inputs([tree], recursive=True, output_dir=inner)) == [
        "a", "b", "sub/c", "sub/clip"
    ]
    for name in ("a_depth.png", "a_depth_color.png", "clip_frames/000000_depth.png"):
        (tree / name).parent.mkdir(exist_ok=True)
        (tree / name).write_bytes(b"x")
    items = io.expand_inputs([tree], recursive=True, output_dir=tree)
    assert "a_depth" not in _names(items) and "clip_frames/000000_depth" not in _names(items)
    assert "a" in _names(items)


def test_frame_and_output_names():
    name = PurePosixPath("sub/clip")
    assert io.frame_name(name, 12) == PurePosixPath("sub/clip_frames/000012")
    paths = io.output_paths(Path("out"), name, ["png16", "color", "video"])
    assert paths == {
        "png16": Path("out/sub/clip_depth.png"),
        "color": Path("out/sub/clip_depth_color.png"),
        "video": Path("out/sub/clip_depth.mp4"),
    }


# --------------------------------------------------------------------------------------------
# Writing


def test_atomic_path_leaves_nothing_on_failure_and_normal_permissions_on_success(tmp_path):
    target = tmp_path / "deep" / "out.bin"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list((tmp_path / "deep").iterdir()) == []
    with io.atomic_path(target) as temporary:
        temporary.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_png16_round_trip_recovers_raw_values(tmp_path):
    depth = RNG.normal(3.0, 2.0, size=(15, 17)).astype(np.float32)
    io.save_depth_png16(tmp_path / "d.png", depth)
    with Image.open(tmp_path / "d.png") as image:
        assert image.mode == "I;16"
        assert float(image.text["depth_min"]) == float(depth.min())
        assert float(image.text["depth_max"]) == float(depth.max())
    recovered = io.read_depth_png16(tmp_path / "d.png")
    step = (depth.max() - depth.min()) / 65535
    np.testing.assert_allclose(recovered, depth, atol=step * 0.51 + 1e-6)


def test_constant_and_non_finite_maps_give_no_nan(tmp_path):
    constant = np.full((4, 5), 2.5, dtype=np.float32)
    colour = io.colorize_depth(constant)
    assert colour.shape == (4, 5, 3) and colour.dtype == np.uint8
    io.save_depth_png16(tmp_path / "c.png", constant)
    np.testing.assert_array_equal(io.read_depth_png16(tmp_path / "c.png"), constant)
    holes = np.array([[np.nan, 1.0], [np.inf, 0.0]], dtype=np.float32)
    normalized, low, high = io.normalize_depth(holes)
    assert np.isfinite(normalized).all() and (low, high) == (0.0, 1.0)


def test_colorize_uses_the_colormap_table_like_the_official_release():
    depth = np.array([[0.0, 1.0, 0.5]], dtype=np.float32)
    for name in ("Spectral", "viridis"):
        expected = (colormaps[name](np.array([0.0, 1.0, 0.5]))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(io.colorize_depth(depth, name)[0], expected)
    with pytest.raises(InputError, match="unknown colormap"):
        io.colorize_depth(depth, "no-such-map")


def test_npy_and_segmentation_outputs(tmp_path):
    depth = RNG.random((6, 8), dtype=np.float32)
    io.save_depth_npy(tmp_path / "d.npy", depth)
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), depth)
    logits = RNG.random((150, 6, 8), dtype=np.float32)
    io.save_segmentation(tmp_path / "s.png", logits)
    with Image.open(tmp_path / "s.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), logits.argmax(0))


def test_write_outputs_keeps_existing_files_unless_overwrite(tmp_path):
    depth = RNG.random((6, 8), dtype=np.float32)
    paths = io.output_paths(tmp_path, PurePosixPath("x"), ["png16", "npy", "color", "seg"])
    paths["npy"].write_bytes(b"mine")
    written = io.write_outputs(paths, depth, segmentation=None)
    assert written == [paths["png16"], paths["color"]]
    assert paths["npy"].read_bytes() == b"mine" and not paths["seg"].exists()
    assert io.write_outputs(paths, depth, overwrite=True) == [
        paths["png16"], paths["npy"], paths["color"]
    ]
    np.testing.assert_array_equal(np.load(paths["npy"]), depth)


# --------------------------------------------------------------------------------------------
# Video


def test_depth_video_round_trip_with_odd_size(tmp_path):
    target = tmp_path / "v" / "clip_depth.mp4"
    with io.DepthVideoWriter(target, Fraction(12)) as writer:
        for _ in range(4):
            writer.write(RNG.random((17, 23), dtype=np.float32))
    assert list(target.parent.iterdir()) == [target]
    info = io.probe_video(target)
    assert info.fps == 12 and info.frames == 4
    frames = list(io.read_video_frames(target))
    assert len(frames) == 4 and frames[0].shape == (18, 24, 3) and frames[0].dtype == np.uint8


def test_aborted_video_leaves_no_file(tmp_path):
    target = tmp_path / "clip_depth.mp4"
    with pytest.raises(KeyError):
        with io.DepthVideoWriter(target, Fraction(12)) as writer:
            writer.write(RNG.random((8, 8), dtype=np.float32))
            raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_video_raises_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(InputError, match="bad.mp4"):
        io.probe_video(bad)
    with pytest.raises(InputError, match="bad.mp4"):
        list(io.read_video_frames(bad))


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "a.png")
    assert io.read_image(tmp_path / "a.png", max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(InputError, match="30x20 .* more than the 0 MP limit"):
        io.read_image(tmp_path / "a.png", max_pixels=599)
