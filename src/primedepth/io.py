"""Reading images and videos, finding inputs, and writing depth outputs safely.

Everything that touches files for `primedepth predict` lives here, so that the Python API and
the command line read and write exactly the same way.

Output files of one input named ``NAME`` (its path relative to the input folder, without the
extension) inside the output folder:

==========  ==========================  ==================================================
kind        file                        content
==========  ==========================  ==================================================
``png16``   ``NAME_depth.png``          16-bit grayscale PNG of the min/max-normalised
                                        prediction; min and max are stored in the PNG
                                        text chunks ``depth_min`` / ``depth_max``, so
                                        ``raw = depth_min + value / 65535 * (depth_max -
                                        depth_min)`` recovers the prediction to 16-bit
                                        precision (see `read_depth_png16`).
``npy``     ``NAME_depth.npy``          float32 prediction, exactly as returned.
``color``   ``NAME_depth_color.png``    8-bit RGB, min/max normalised through a matplotlib
                                        colormap (``Spectral`` as the official release).
``seg``     ``NAME_seg.png``            per-pixel argmax of the segmentation logits, as a
                                        palette PNG whose pixel values are the labels.
``video``   ``NAME_depth.mp4``          colourised depth video (video inputs only).
==========  ==========================  ==================================================

Frames of a video ``NAME.mp4`` get the per-image outputs under ``NAME_frames/000000_depth.png``
and so on. The prediction is affine-invariant inverse depth: larger values are closer.

Files are written atomically: to a hidden temporary file in the destination folder, then
renamed over the destination, so an interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import colorsys
import glob
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm"})
LIST_EXTENSIONS = frozenset({".txt"})

ORIENTATION_TAG = 0x0112  # EXIF "Orientation"

# Larger images are refused before decoding: they would need gigabytes just to be read.
MAX_IMAGE_PIXELS = 100_000_000

# Output kinds, in the order they are documented and written, with their file-name endings.
OUTPUT_SUFFIXES: dict[str, str] = {
    "png16": "_depth.png",
    "npy": "_depth.npy",
    "color": "_depth_color.png",
    "seg": "_seg.png",
    "video": "_depth.mp4",
}
FRAME_OUTPUT_KINDS = ("png16", "npy", "color", "seg")
DEFAULT_COLORMAP = "Spectral"
PNG16_MAX = 65535
PNG16_DECODE = "raw = depth_min + value / 65535 * (depth_max - depth_min)"
DEPTH_QUANTITY = "affine-invariant inverse depth (larger = closer)"


# --------------------------------------------------------------------------------------------
# Reading images


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image file as an RGB array, upright as a viewer would show it.

    Returns ``uint8`` (H, W, 3) for 8-bit files and ``float32`` (H, W, 3) in [0, 1] for 16-bit
    and float files, so their extra precision reaches the model. Grayscale is repeated to three
    channels, palettes are expanded, alpha is dropped (the colour under it is kept, as other
    depth tools do) and the EXIF orientation is applied. Any problem raises `InputError` naming
    the file and the reason.
    """
    path = Path(path)
    _check_readable_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixel_count(image.size, max_pixels)
                orientation = image.getexif().get(ORIENTATION_TAG, 1)
                if _has_16bit_colour(image, path):
                    array = _read_16bit_colour(path)
                else:
                    image.load()
                    array = _pil_to_rgb_array(image)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    except Image.DecompressionBombError as error:
        raise InputError(f"{path}: image is too large to decode safely ({error})") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file, or an unsupported format") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InputError(f"{path}: corrupt or truncated image ({error})") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{path}: image has zero width or height")
    return apply_exif_orientation(array, orientation)


def _check_readable_file(path: Path) -> None:
    """Fail early, with a plain reason, for paths that cannot hold an image at all."""
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


def _has_16bit_colour(image: Image.Image, path: Path) -> bool:
    """True for 16-bit RGB(A) PNG/TIFF files, which Pillow would silently cut to 8 bit."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    if image.format == "PNG":
        with path.open("rb") as file:
            header = file.read(26)  # signature (8) + IHDR length/type (8) + w, h (8) + depth
        return len(header) == 26 and header[24] == 16
    if image.format == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return False


def _read_16bit_colour(path: Path) -> np.ndarray:
    """Decode a 16-bit colour PNG/TIFF at full precision through FFmpeg (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            pixels = frame.to_ndarray(format="rgb48le")  # alpha, if any, is dropped here
    except (av.error.FFmpegError, StopIteration) as error:
        raise InputError(f"cannot decode 16-bit image ({error})") from None
    return pixels.astype(np.float32) / PNG16_MAX


def _pil_to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to (H, W, 3): uint8 for 8-bit modes, float32 in [0, 1] else."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(image, dtype=np.float32)
        return _gray_to_rgb(np.clip(gray, 0, PNG16_MAX) / PNG16_MAX)
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


# --------------------------------------------------------------------------------------------
# Finding inputs


@dataclass(frozen=True)
class InputItem:
    """One unit of work: an image or video file (or an in-memory image) and its output name.

    `name` is the output path relative to the output folder, without suffix; it mirrors the
    input tree so that outputs of ``a/x.jpg`` and ``b/x.jpg`` never collide.
    """

    name: PurePosixPath
    path: Path | None = None
    kind: str = "image"  # "image" or "video"
    image: Any = None  # in-memory image (PIL, numpy or tensor) when `path` is None

    @property
    def label(self) -> str:
        """How the item is named in messages: its path, or its output name if in memory."""
        return str(self.path) if self.path is not None else str(self.name)


def media_kind(path: Path) -> str | None:
    """'image' or 'video' from the file extension, None for anything else."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    recursive: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
) -> list[InputItem]:
    """Turn command-line inputs into work items, in a stable order, without duplicates.

    Accepted: image or video files, directories (their direct children, or the whole tree
    with `recursive`), glob patterns (``**`` needs `recursive`), and ``.txt`` files listing one
    path per line (relative paths are relative to the list file; ``#`` starts a comment).
    Files inside `output_dir` are ignored so that re-running on a folder never treats earlier
    outputs as inputs. Raises `InputError` for a missing path, an unsupported file, or two
    inputs that would write the same output.
    """
    exclude = Path(output_dir).resolve() if output_dir is not None else None
    items: list[InputItem] = []
    for raw in inputs:
        items.extend(_expand_one(str(raw), recursive, exclude))
    return deduplicate(items)


def _expand_one(raw: str, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Expand one argument; see `expand_inputs`."""
    path = Path(raw).expanduser()
    if path.is_dir():
        return _expand_directory(path, recursive, exclude)
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS:
            return _expand_list_file(path)
        return [_file_item(path, PurePosixPath(path.stem))]
    if glob.has_magic(raw):
        return _expand_glob(raw, recursive, exclude)
    raise InputError(f"{raw}: no such file or directory")


def _file_item(path: Path, name: PurePosixPath) -> InputItem:
    """A work item for an explicitly named file; refuses unsupported extensions."""
    kind = media_kind(path)
    if kind is None:
        supported = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | LIST_EXTENSIONS))
        raise InputError(f"{path}: unsupported file type '{path.suffix}' (supported: {supported})")
    return InputItem(name=name, path=path, kind=kind)


def _expand_directory(root: Path, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Media files of a folder, named by their path relative to it."""
    candidates = root.rglob("*") if recursive else root.iterdir()
    return _items_below(root, sorted(candidates), exclude)


def _expand_glob(pattern: str, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Media files matching a glob, named relative to the pattern's fixed leading folder."""
    matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=recursive))
    if not matches:
        raise InputError(f"{pattern}: no file matches this pattern")
    return _items_below(_glob_base(pattern), matches, exclude)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: 'data/*/x*.png' -> 'data'."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _items_below(root: Path, candidates: Iterable[Path], exclude: Path | None) -> list[InputItem]:
    """Media files among `candidates`, named relative to `root`, skipping our own outputs."""
    items = []
    for path in candidates:
        kind = media_kind(path)
        if kind is None or not path.is_file() or _is_excluded(path, root, exclude):
            continue
        relative = PurePosixPath(path.relative_to(root).with_suffix("").as_posix())
        items.append(InputItem(name=relative, path=path, kind=kind))
    return items


def _is_excluded(path: Path, root: Path, exclude: Path | None) -> bool:
    """Whether `path` is an earlier output rather than an input.

    When the output folder sits inside the input folder, everything in it is skipped; when it
    is the input folder itself (or above it), files named like our outputs are skipped.
    """
    if exclude is None:
        return False
    resolved, root = path.resolve(), root.resolve()
    if not resolved.is_relative_to(exclude):
        return False
    if root != exclude and not root.is_relative_to(exclude):
        return True
    return looks_like_output(resolved.relative_to(exclude))


def looks_like_output(relative: Path | PurePosixPath) -> bool:
    """Whether a path relative to the output folder is named like one of our outputs."""
    in_frames_folder = any(part.endswith("_frames") for part in relative.parts[:-1])
    return in_frames_folder or relative.name.endswith(tuple(OUTPUT_SUFFIXES.values()))


def _expand_list_file(list_file: Path) -> list[InputItem]:
    """Entries of a text file, one path per line; relative ones mirror their written path."""
    items = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        written = Path(entry).expanduser()
        path = written if written.is_absolute() else list_file.parent / written
        if not path.is_file():
            raise InputError(f"{list_file}, line {number}: {entry}: no such file")
        inside = not written.is_absolute() and ".." not in written.parts
        name = PurePosixPath(written.with_suffix("").as_posix() if inside else written.stem)
        items.append(_file_item(path, name))
    return items


def deduplicate(items: list[InputItem]) -> list[InputItem]:
    """Drop repeats of the same file; refuse two different files with the same output name."""
    by_name: dict[PurePosixPath, InputItem] = {}
    seen_paths: set[Path] = set()
    unique = []
    for item in items:
        resolved = item.path.resolve() if item.path is not None else None
        if resolved in seen_paths:
            continue
        earlier = by_name.get(item.name)
        if earlier is not None:
            raise InputError(
                f"{earlier.label} and {item.label} would both write outputs named "
                f"'{item.name}'; pass their common folder instead, or run them separately"
            )
        by_name[item.name] = item
        if resolved is not None:
            seen_paths.add(resolved)
        unique.append(item)
    return unique


# --------------------------------------------------------------------------------------------
# Output names and atomic writing


def output_paths(output_dir: Path, name: PurePosixPath, kinds: Iterable[str]) -> dict[str, Path]:
    """Where each requested output of the item called `name` goes."""
    return {kind: output_dir / f"{name}{OUTPUT_SUFFIXES[kind]}" for kind in kinds}


def frame_name(video_name: PurePosixPath, index: int) -> PurePosixPath:
    """Output name of frame `index` of a video: 'clip' -> 'clip_frames/000012'."""
    return video_name.parent / f"{video_name.name}_frames" / f"{index:06d}"


def _default_file_mode() -> int:
    """Permissions a normally created file would get (mkstemp would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def _temporary_next_to(destination: Path) -> Path:
    """Create an empty hidden temporary file in the destination's folder."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    return Path(temporary)


def _commit(temporary: Path, destination: Path) -> None:
    """Give the finished temporary file normal permissions and rename it into place."""
    os.chmod(temporary, _FILE_MODE)
    os.replace(temporary, destination)


def _discard(temporary: Path) -> None:
    """Remove an unfinished temporary file."""
    with suppress(FileNotFoundError):
        os.unlink(temporary)


@contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path next to `destination`; rename it into place only on success.

    The temporary file is in the same folder, so `os.replace` is an atomic rename: readers
    and later runs see either no file or the whole file, never a partial one.
    """
    temporary = _temporary_next_to(destination)
    try:
        yield temporary
        _commit(temporary, destination)
    except BaseException:
        _discard(temporary)
        raise


# --------------------------------------------------------------------------------------------
# Depth and segmentation outputs


def _finite_range(depth: np.ndarray) -> tuple[float, float]:
    """Min and max over finite values; (0, 0) when there are none."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def normalize_depth(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Min/max-normalise to [0, 1]; constant maps become 0 rather than NaN.

    Returns the normalised float32 map with the min and max used, which are needed to
    recover the raw values later.
    """
    low, high = _finite_range(depth)
    span = high - low
    scaled = (depth.astype(np.float64) - low) / span if span > 0 else np.zeros(depth.shape)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32), low, high


def check_colormap(name: str) -> None:
    """Raise `InputError` unless `name` is a matplotlib colormap."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise InputError(
            f"unknown colormap '{name}'; use a matplotlib name such as Spectral, "
            "Spectral_r, viridis, magma, inferno, turbo or gray"
        )


def colorize_depth(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Colourise a depth map as (H, W, 3) uint8, like the official release.

    Min/max normalisation, then the matplotlib colormap's 256-entry table, alpha dropped and
    values truncated to 8 bit. With inverse depth and 'Spectral', near is blue and far is red.
    """
    from matplotlib import colormaps

    check_colormap(colormap)
    normalized, _, _ = normalize_depth(depth)
    rgba = colormaps[colormap](normalized)
    return (rgba[..., :3] * 255).astype(np.uint8)


def depth_to_png16(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Quantise depth to uint16 via min/max normalisation; returns (values, min, max)."""
    normalized, low, high = normalize_depth(depth)
    return np.round(normalized * PNG16_MAX).astype(np.uint16), low, high


def _png_info(text: dict[str, str] | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    return info


def save_depth_png16(path: Path, depth: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write depth as a 16-bit PNG with its min/max in text chunks (see `read_depth_png16`).

    `text`: extra text chunks (e.g. that the depth is an ensemble)."""
    values, low, high = depth_to_png16(depth)
    info = _png_info(text)
    info.add_text("depth_min", repr(low))
    info.add_text("depth_max", repr(high))
    info.add_text("depth_decode", PNG16_DECODE)
    info.add_text("depth_quantity", DEPTH_QUANTITY)
    with atomic_path(path) as temporary:
        Image.fromarray(values).save(temporary, format="PNG", pnginfo=info)


def read_depth_png16(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a `save_depth_png16` file back as float32 raw prediction values.

    Applies ``raw = depth_min + value / 65535 * (depth_max - depth_min)``; without the text
    chunks (another tool's PNG) the normalised values in [0, 1] are returned.
    """
    with Image.open(path) as image:
        values = np.asarray(image, dtype=np.float64) / PNG16_MAX
        text = getattr(image, "text", {})
    if "depth_min" not in text or "depth_max" not in text:
        return values.astype(np.float32)
    low, high = float(text["depth_min"]), float(text["depth_max"])
    return (low + values * (high - low)).astype(np.float32)


def save_depth_npy(path: Path, depth: np.ndarray) -> None:
    """Write the raw prediction as float32 ``.npy``."""
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.save(file, np.asarray(depth, dtype=np.float32))


def save_color(path: Path, depth: np.ndarray, colormap: str = DEFAULT_COLORMAP, text: dict[str, str] | None = None) -> None:
    """Write the colourised depth as an 8-bit RGB PNG (`text`: extra text chunks)."""
    with atomic_path(path) as temporary:
        Image.fromarray(colorize_depth(depth, colormap)).save(temporary, format="PNG", pnginfo=_png_info(text))


def segmentation_labels(logits: np.ndarray) -> np.ndarray:
    """Per-pixel class index of (C, H, W) logits."""
    return np.argmax(logits, axis=0)


def label_palette(count: int = 256) -> list[int]:
    """Distinct, deterministic colours for labels (golden-ratio hue steps), flat RGB list."""
    palette = []
    for label in range(count):
        hue = (label * 0.618033988749895) % 1.0
        value = 0.95 if label % 2 == 0 else 0.7
        palette.extend(round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.75, value))
    return palette


def save_segmentation(path: Path, logits: np.ndarray) -> None:
    """Write the argmax labels: a palette PNG (values = labels) or 16-bit above 256 classes."""
    labels = segmentation_labels(logits)
    if logits.shape[0] <= 256:
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        image.putpalette(label_palette())
    else:
        image = Image.fromarray(labels.astype(np.uint16))
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def write_outputs(
    paths: dict[str, Path],
    depth: np.ndarray,
    segmentation: np.ndarray | None = None,
    colormap: str = DEFAULT_COLORMAP,
    overwrite: bool = False,
    png_text: dict[str, str] | None = None,
) -> list[Path]:
    """Write each requested per-image output; existing files are kept unless `overwrite`.

    Returns the paths actually written. The 'video' kind is handled by `DepthVideoWriter`.
    `png_text` goes into the depth PNGs (16-bit and colour) as text chunks.
    """
    written = []
    for kind, path in paths.items():
        if path.exists() and not overwrite:
            continue
        if kind == "png16":
            save_depth_png16(path, depth, png_text)
        elif kind == "npy":
            save_depth_npy(path, depth)
        elif kind == "color":
            save_color(path, depth, colormap, png_text)
        elif kind == "seg" and segmentation is not None:
            save_segmentation(path, segmentation)
        else:
            continue
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# Videos


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to mirror the input video, and the frame count for progress."""

    fps: Fraction
    frames: int | None


@contextmanager
def _first_video_stream(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) of a video file; FFmpeg errors become InputError."""
    import av

    _check_readable_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            yield container, container.streams.video[0]
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: corrupt or unreadable video ({error})") from None


def probe_video(path: Path) -> VideoInfo:
    """Frame rate and (if the container knows it) frame count, without decoding frames."""
    with _first_video_stream(path) as (_, stream):
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(fps=Fraction(fps), frames=stream.frames or None)


def read_video_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream as (H, W, 3) uint8, upright.

    Rotation metadata (phones record portrait video as rotated landscape) is applied.
    """
    with _first_video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            pixels = frame.to_ndarray(format="rgb24")
            turns = round(frame.rotation / 90) % 4
            yield np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _video_codec() -> str:
    """H.264 where FFmpeg has it (plays everywhere), MPEG-4 part 2 otherwise."""
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class DepthVideoWriter:
    """Encode colourised depth frames to a video file, atomically.

    Frames go to a temporary file next to the destination, which is renamed into place by
    `close()`; `abort()` (or an exception inside a ``with`` block) removes it instead. Each
    frame is min/max normalised on its own, since the prediction's scale is per frame.
    """

    def __init__(self, path: Path, fps: Fraction, colormap: str = DEFAULT_COLORMAP) -> None:
        self.path = path
        self.fps = fps
        self.colormap = colormap
        self._temporary = _temporary_next_to(path)
        self._container: Any = None
        self._stream: Any = None

    def write(self, depth: np.ndarray) -> None:
        """Append one depth frame."""
        rgb = _pad_to_even(colorize_depth(depth, self.colormap))
        if self._container is None:
            self._open(width=rgb.shape[1], height=rgb.shape[0])
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, width: int, height: int) -> None:
        """Start the container once the frame size is known."""
        import av

        self._container = av.open(str(self._temporary), mode="w", format="mp4")
        codec = _video_codec()
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": "18"}

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            self.abort()
            raise InputError(f"{self.path}: no frames to write")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        _commit(self._temporary, self.path)

    def abort(self) -> None:
        """Discard the partial video."""
        if self._container is not None:
            with suppress(Exception):
                self._container.close()
        _discard(self._temporary)

    def __enter__(self) -> DepthVideoWriter:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where needed: 4:2:0 video needs even sides."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
