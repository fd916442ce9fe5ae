"""Reading images: RGB inputs for the model, and 16-bit single-channel depth PNGs.

`read_image` gives the model what a viewer would show (upright, alpha dropped) at the file's
full precision; `read_png_uint16` gives the raw integer units of depth ground truth, which the
training and evaluation datasets scale to metres themselves.
"""

from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"

# Larger images are refused before decoding: they would need gigabytes just to be read.
MAX_IMAGE_PIXELS = 100_000_000

# Full scale of a 16-bit sample: 16-bit inputs are divided by it to land in [0, 1].
UINT16_MAX = 65535


Source = str | os.PathLike[str] | bytes  # a file, or a file's bytes (an upload, a dataset row)


def read_image(path: Source, max_pixels: int = MAX_IMAGE_PIXELS, label: str | None = None) -> np.ndarray:
    """Read an image file (or its bytes) as an RGB array, upright as a viewer would show it.

    Returns ``uint8`` (H, W, 3) for 8-bit files and ``float32`` (H, W, 3) in [0, 1] for 16-bit
    and float files, so their extra precision reaches the model. Grayscale is repeated to three
    channels, palettes are expanded, alpha is dropped (the colour under it is kept, as other
    depth tools do) and the EXIF orientation is applied. Any problem raises `InputError` naming
    the file (or `label`, for bytes) and the reason. Bytes are decoded in memory: an upload or a
    dataset row needs no temporary file.
    """
    label = label or ("<bytes>" if isinstance(path, bytes) else str(Path(path)))
    if isinstance(path, bytes):
        if not path:
            raise InputError(f"{label}: file is empty (0 bytes)")
    else:
        path = Path(path)
        check_readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(_opened(path)) as image:
                _check_pixel_count(image.size, max_pixels)
                orientation = image.getexif().get(ORIENTATION_TAG, 1)
                if _has_16bit_colour(image, path):
                    array = _read_16bit_colour(path)
                else:
                    image.load()
                    array = _pil_to_rgb_array(image)
    except InputError as error:
        raise InputError(f"{label}: {error}") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{label}: image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image file, or an unsupported format") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(f"{label}: corrupt or truncated image ({error})") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{label}: image has zero width or height")
    return apply_exif_orientation(array, orientation)


def _opened(source: Path | bytes) -> Path | BytesIO:
    """What Pillow and PyAV open: the path, or a stream over the bytes."""
    return BytesIO(source) if isinstance(source, bytes) else source


def check_readable_file(path: Path) -> None:
    """Fail early, with a plain reason, for paths that cannot hold an image or video at all."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (0 bytes)")


def _check_pixel_count(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse huge images from their header alone, before anything is decoded."""
    width, height = size
    if width * height > max_pixels:
        raise InputError(
            f"image is too large: {width}x{height} ({width * height / 1e6:.0f} MP), more than the "
            f"{max_pixels / 1e6:.0f} MP limit; downscale it first"
        )


def _has_16bit_colour(image: Image.Image, path: Path | bytes) -> bool:
    """True for 16-bit RGB(A) PNG/TIFF files, which Pillow would silently cut to 8 bit."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    if image.format == "PNG":
        if isinstance(path, bytes):
            header = path[:26]
        else:
            with path.open("rb") as file:
                header = file.read(26)  # signature (8) + IHDR length/type (8) + w, h (8) + depth
        return len(header) == 26 and header[24] == 16
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return False


def _read_16bit_colour(path: Path | bytes) -> np.ndarray:
    """Decode a 16-bit colour PNG/TIFF at full precision through FFmpeg (PyAV)."""
    import av  # lazy: start-up speed

    try:
        with av.open(_opened(path) if isinstance(path, bytes) else str(path)) as container:
            frame = next(container.decode(video=0))
            pixels = frame.to_ndarray(format="rgb48le")  # alpha, if any, is dropped here
    except (av.error.FFmpegError, StopIteration) as error:
        raise InputError(f"cannot decode 16-bit image ({error})") from None
    return pixels.astype(np.float32) / UINT16_MAX


def _pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3): uint8 for 8-bit modes, float32 in [0, 1] else."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(image, dtype=np.float32)
        return _gray_to_rgb(np.clip(gray, 0, UINT16_MAX) / UINT16_MAX)
    if mode == "F":
        return _gray_to_rgb(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0))
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Repeat one channel three times, as the model expects colour input."""
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


def apply_exif_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an (H, W, ...) array upright according to an EXIF orientation value (1-8)."""
    # Orientation -> (counter-clockwise quarter turns, then mirror left-right).
    moves = {2: (0, True), 3: (2, False), 4: (2, True), 5: (3, True), 6: (3, False),
             7: (1, True), 8: (1, False)}
    turns, mirror = moves.get(int(orientation), (0, False))
    array = np.rot90(array, turns) if turns else array
    return np.ascontiguousarray(array[:, ::-1] if mirror else array)


def read_png_uint16(
    source: str | os.PathLike[str] | bytes, name: str | None = None
) -> np.ndarray:
    """A single-channel 16-bit PNG as its raw uint16 values (H, W), not yet in metres.

    Depth ground truth is stored as integer units (millimetres, 1/256 m, ...) that only the
    dataset knows how to scale, so nothing is normalised here. `source` is a path or the
    file's bytes (e.g. a tar member); `name` is how it is called in errors (default: the path).
    Unreadable data, several channels, or values that are not integers in 0..65535 raise
    `InputError` naming the source. 8-bit grayscale is accepted (it fits losslessly).
    """
    in_memory = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("PNG data" if in_memory else str(source))
    try:
        with Image.open(BytesIO(source) if in_memory else source) as image:
            array = np.asarray(image)
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise InputError(f"{label}: not a readable PNG ({error})") from None
    return _as_uint16(array, label)


def _as_uint16(array: np.ndarray, label: str) -> np.ndarray:
    """Check that decoded samples are one channel of integers that fit 16 bits, as uint16."""
    if array.ndim != 2:
        raise InputError(f"{label}: expected a single-channel depth PNG, got shape {array.shape}")
    if array.dtype.kind not in "uib":
        raise InputError(f"{label}: expected integer depth values, got {array.dtype}")
    if array.dtype != np.uint16 and array.size and (array.min() < 0 or array.max() > UINT16_MAX):
        raise InputError(f"{label}: values outside the 16-bit range 0..{UINT16_MAX}")
    return array.astype(np.uint16, copy=False)
