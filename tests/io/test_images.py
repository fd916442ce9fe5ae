"""Reading images (primedepth.io.images): RGB inputs and 16-bit depth PNGs."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageOps

from primedepth.errors import InputError
from primedepth.io import images

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
    array = images.read_image(path)
    assert array.dtype == np.uint8 and array.shape == (12, 20, 3)
    np.testing.assert_array_equal(array, pixels)


def test_jpeg_reads_as_uint8_rgb(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg", quality=95)
    array = images.read_image(tmp_path / "a.jpg")
    assert array.dtype == np.uint8 and array.shape == (12, 20, 3)


def test_grayscale_is_repeated_to_rgb(tmp_path):
    gray = _rgb()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    array = images.read_image(tmp_path / "g.png")
    assert array.shape == (12, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], gray)


def test_rgba_drops_alpha_and_keeps_colour(tmp_path):
    pixels = _rgb()
    alpha = np.zeros((12, 20, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([pixels, alpha], axis=-1), mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.png"), pixels)


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_png_is_expanded(tmp_path, transparent):
    image = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if transparent:
        image.info["transparency"] = 0
    image.save(tmp_path / "p.png", **({"transparency": 0} if transparent else {}))
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(images.read_image(tmp_path / "p.png"), expected)


def test_16bit_grayscale_png_keeps_full_precision(tmp_path):
    values = RNG.integers(0, 65536, size=(10, 14), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    array = images.read_image(tmp_path / "g16.png")
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
    array = images.read_image(tmp_path / name)
    assert array.dtype == np.float32 and array.shape == (10, 14, 3)
    np.testing.assert_allclose(array, values / 65535.0, atol=1e-7)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(orientation):
    image = Image.fromarray(_rgb(5, 7))
    exif = image.getexif()
    exif[images.ORIENTATION_TAG] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    np.testing.assert_array_equal(
        images.apply_exif_orientation(np.asarray(image), orientation), expected
    )


def test_exif_rotated_jpeg_is_read_upright(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[images.ORIENTATION_TAG] = 6  # stored sideways; display turned 90 degrees clockwise
    image.save(tmp_path / "r.jpg", exif=exif)
    assert images.read_image(tmp_path / "r.jpg").shape == (30, 10, 3)


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
        images.read_image(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_pixel_limit_is_checked_before_decoding(tmp_path):
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "a.png")
    assert images.read_image(tmp_path / "a.png", max_pixels=600).shape == (20, 30, 3)
    with pytest.raises(InputError, match="30x20 .* more than the 0 MP limit"):
        images.read_image(tmp_path / "a.png", max_pixels=599)


# --------------------------------------------------------------------------------------------
# read_png_uint16


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_png_uint16_reads_raw_values_from_a_path_and_from_bytes(tmp_path):
    values = RNG.integers(0, 65536, size=(9, 13), dtype=np.uint16)
    data = _png_bytes(values)
    (tmp_path / "d.png").write_bytes(data)
    for source in (tmp_path / "d.png", str(tmp_path / "d.png"), data):
        array = images.read_png_uint16(source)
        assert array.dtype == np.uint16 and array.shape == (9, 13)
        np.testing.assert_array_equal(array, values)


def test_png_uint16_accepts_8bit_grayscale_losslessly():
    values = RNG.integers(0, 256, size=(4, 5), dtype=np.uint8)
    array = images.read_png_uint16(_png_bytes(values))
    assert array.dtype == np.uint16
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"certainly not a png", "not a readable PNG"),
        (_png_bytes(np.arange(256, dtype=np.uint16).reshape(16, 16))[:60], "not a readable PNG"),
        (_png_bytes(np.zeros((4, 5, 3), dtype=np.uint8)), "single-channel"),
    ],
    ids=["junk", "truncated", "rgb"],
)
def test_png_uint16_bad_data_raises_input_error_with_the_name(data, reason):
    with pytest.raises(InputError) as caught:
        images.read_png_uint16(data, "scene/depth/0001.png")
    assert "scene/depth/0001.png" in str(caught.value) and reason in str(caught.value)


def test_png_uint16_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match="missing.png: no such file"):
        images.read_png_uint16(tmp_path / "missing.png")
