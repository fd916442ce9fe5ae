"""Uploaded image bytes -> the RGB array `primedepth predict` would read from the same file.

An upload is classified from its header first (empty, not an image, too many pixels, too small),
so each bad upload gets its own HTTP status and a message naming the problem. It is then decoded
by `primedepth.io.read_image` itself, from a private temporary file: the server accepts exactly
what the CLI accepts (EXIF orientation, 16-bit colour, palettes, alpha) and gives the model the
same array. Only bytes are accepted, never a path or URL: there is nothing to traverse or fetch.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..io.images import read_image
from ..processing import MIN_IMAGE_SIDE, processed_size
from .errors import ApiError

__all__ = ["decode_upload", "check_image_size", "safe_stem"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM_CHARS = 80


def safe_stem(filename: str | None, fallback: str) -> str:
    """An output name from a client's file name: no folders, no odd characters, never empty."""
    stem = Path((filename or "").replace("\\", "/")).stem
    stem = _UNSAFE.sub("_", stem).strip("._")[:MAX_STEM_CHARS]
    return stem or fallback


def _header_size(data: bytes, label: str, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the header alone, refusing what is not an image or far too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ApiError(413, "too_many_pixels", f"{label}: image is too large to decode safely") from None
    except (UnidentifiedImageError, ValueError, TypeError):
        raise ApiError(415, "not_an_image", f"{label}: not an image file, or an unsupported format") from None
    except (OSError, SyntaxError, EOFError) as error:
        raise ApiError(400, "corrupt_image", f"{label}: corrupt or truncated image ({error})") from None
    if width * height > max_pixels:
        raise ApiError(
            413, "too_many_pixels",
            f"{label}: image is {width}x{height} pixels ({width * height / 1e6:.1f} MP), more than this "
            f"server's limit of {max_pixels / 1e6:.1f} MP; downscale it first",
        )
    return width, height


def check_image_size(width: int, height: int, max_size: int, label: str) -> None:
    """Refuse images the pipeline cannot process (a side under 8 pixels, now or once resized)."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ApiError(
            422, "image_too_small",
            f"{label}: image of {width}x{height} pixels is too small: both sides must be at least "
            f"{MIN_IMAGE_SIDE} pixels",
        )
    resized = processed_size(height, width, max_size)
    if min(resized) < MIN_IMAGE_SIDE:
        raise ApiError(
            422, "image_too_elongated",
            f"{label}: image of {width}x{height} pixels would be {resized[1]}x{resized[0]} at max_size "
            f"{max_size}; both sides must stay at least {MIN_IMAGE_SIDE} pixels (raise max_size or crop it)",
        )


def decode_upload(data: bytes, label: str, max_pixels: int, max_bytes: int, max_size: int) -> np.ndarray:
    """Decode one upload exactly as `io.read_image` decodes a file, or raise `ApiError`.

    `label` names the upload in messages (its file name); `max_size` is the processing size
    the image will be predicted at (an image that shrinks below 8 pixels is refused).
    """
    if len(data) == 0:
        raise ApiError(400, "empty_upload", f"{label}: the upload is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ApiError(
            413, "upload_too_large",
            f"{label}: the upload is {len(data)} bytes, more than this server's limit of {max_bytes} bytes",
        )
    width, height = _header_size(data, label, max_pixels)
    check_image_size(width, height, max_size, label)
    with tempfile.TemporaryDirectory(prefix="primedepth-upload-") as folder:
        path = Path(folder) / "upload"
        path.write_bytes(data)
        try:
            return read_image(path, max_pixels=max_pixels)
        except InputError as error:
            reason = str(error).removeprefix(f"{path}: ")
            raise ApiError(400, "corrupt_image", f"{label}: {reason}") from None
