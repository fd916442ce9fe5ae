"""Uploaded image bytes -> the RGB array `primedepth predict` would read from the same file.

An upload is classified from its header first (empty, not an image, too many pixels, too small),
so each bad upload gets its own HTTP status and a message naming the problem. It is then decoded
by `primedepth.io.read_image` itself, from the bytes in memory: the server accepts exactly
what the CLI accepts (EXIF orientation, 16-bit colour, palettes, alpha) and gives the model the
same array. Only bytes are accepted, never a path or URL: there is nothing to traverse or fetch.
"""

from __future__ import annotations

import re
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from ..io.images import read_image
from ..io.names import safe_output_name
from ..processing import MIN_IMAGE_SIDE
from .errors import ApiError

__all__ = ["decode_upload", "check_image_size", "safe_stem"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM_CHARS = 80


def safe_stem(filename: str | None, fallback: str) -> str:
    """An output name from a client's file name: no folders, no odd characters, never empty."""
    stem = Path((filename or "").replace("\\", "/")).stem
    stem = _UNSAFE.sub("_", stem).strip("._")[:MAX_STEM_CHARS]
    return str(safe_output_name(stem)) if stem else fallback  # the one name check of every source


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


def check_image_size(width: int, height: int, label: str) -> None:
    """Refuse images too small for the pipeline to take at all (`processing.MIN_IMAGE_SIDE`)."""
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ApiError(
            422, "image_too_small",
            f"{label}: image of {width}x{height} pixels is too small: both sides must be at least "
            f"{MIN_IMAGE_SIDE} pixels",
        )


def decode_upload(data: bytes, label: str, max_pixels: int, max_bytes: int) -> np.ndarray:
    """Decode one upload exactly as `io.read_image` decodes a file, or raise `ApiError`.

    `label` names the upload in messages (its file name). What the pipeline refuses later (an
    image too elongated for its processing size) comes back from the engine as a 422.
    """
    if len(data) == 0:
        raise ApiError(400, "empty_upload", f"{label}: the upload is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ApiError(
            413, "upload_too_large",
            f"{label}: the upload is {len(data)} bytes, more than this server's limit of {max_bytes} bytes",
        )
    width, height = _header_size(data, label, max_pixels)
    check_image_size(width, height, label)
    try:
        return read_image(data, max_pixels=max_pixels, label=label)  # in memory: no temporary file
    except InputError as error:
        raise ApiError(400, "corrupt_image", str(error)) from None
