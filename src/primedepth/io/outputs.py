"""Depth and segmentation outputs: their names, encodings, and writing them atomically.

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
                                        palette PNG whose pixel values are the labels, in
                                        the standard ADE20K colours; its text chunk
                                        ``legend`` is JSON {"label": {"name", "rgb"}} of
                                        the classes present (`primedepth.io.ade20k`).
``video``   ``NAME_depth.mp4``          colourised depth video (video inputs only).
==========  ==========================  ==================================================

Frames of a video ``NAME.mp4`` get the per-image outputs under ``NAME_frames/000000_depth.png``
and so on. The prediction is affine-invariant inverse depth: larger values are closer.

Files are written through `primedepth.io.atomic`: to a hidden temporary file in the destination
folder, then renamed over the destination, so an interrupted run never leaves a half-written
output.
"""

from __future__ import annotations

import colorsys
import json
import os
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from ..errors import InputError
from .ade20k import ADE20K_CLASS_COUNT, ADE20K_PALETTE, ade20k_legend
from .atomic import atomic_path, save_npy_atomic
from .images import UINT16_MAX

# Output kinds, in the order they are documented and written, with their file-name endings.
OUTPUT_SUFFIXES: dict[str, str] = {
    "png16": "_depth.png",
    "npy": "_depth.npy",
    "color": "_depth_color.png",
    "seg": "_seg.png",
    "video": "_depth.mp4",
}
FRAME_OUTPUT_KINDS = ("png16", "npy", "color", "seg")
# 3D and metric outputs of an image (written by `primedepth.geometry`), named here with the others
# so that every output file name has one definition (and is never read back as an input).
GEOMETRY_OUTPUT_SUFFIXES: dict[str, str] = {
    "ply": "_points.ply",
    "glb": "_mesh.glb",
    "obj": "_mesh.obj",
    "normals": "_normals.png",
    "metric": "_depth_m.npy",
    "metric_png16": "_depth_mm.png",
}
ALL_OUTPUT_SUFFIXES: dict[str, str] = {**OUTPUT_SUFFIXES, **GEOMETRY_OUTPUT_SUFFIXES}
# Files written beside an output (the OBJ's material and texture): never inputs either.
COMPANION_OUTPUT_SUFFIXES = ("_mesh.mtl", "_mesh_texture.png")
# What `primedepth predict` writes unless told: what a person looks at, plus the 16-bit PNG.
DEFAULT_OUTPUTS = ("png16", "color", "video")
# zlib level of every PNG we write: level 1 wrote a 24-megapixel depth map about twice as fast
# as Pillow's default 6, for files a few percent larger (benchmarks/output_writing.py).
PNG_COMPRESS_LEVEL = 1
DEFAULT_COLORMAP = "Spectral_r"  # near = red, as the field shows depth; "Spectral" = official look
PNG16_MAX = UINT16_MAX
PNG16_DECODE = "raw = depth_min + value / 65535 * (depth_max - depth_min)"
DEPTH_QUANTITY = "affine-invariant inverse depth (larger = closer)"


# --------------------------------------------------------------------------------------------
# Output names


def output_paths(output_dir: Path, name: PurePosixPath, kinds: Iterable[str]) -> dict[str, Path]:
    """Where each requested output of the item called `name` goes."""
    return {kind: output_dir / f"{name}{OUTPUT_SUFFIXES[kind]}" for kind in kinds}


def frame_name(video_name: PurePosixPath, index: int) -> PurePosixPath:
    """Output name of frame `index` of a video: 'clip' -> 'clip_frames/000012'."""
    return video_name.parent / f"{video_name.name}_frames" / f"{index:06d}"


# --------------------------------------------------------------------------------------------
# Encoding depth


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
    """Raise `InputError` unless `name` is a matplotlib colormap (checked before a long run)."""
    from matplotlib import colormaps  # lazy: start-up speed

    if name not in colormaps:
        raise InputError(
            f"unknown colormap '{name}'; use a matplotlib name such as Spectral, "
            "Spectral_r, viridis, magma, inferno, turbo or gray"
        )


def colormap_table(colormap: str) -> np.ndarray:
    """The colormap's (N, 3) uint8 table: matplotlib's own entries, alpha dropped, truncated to 8 bit."""
    from matplotlib import colormaps  # lazy: start-up speed

    check_colormap(colormap)
    table = colormaps[colormap]
    return (table(np.arange(table.N))[:, :3] * 255).astype(np.uint8)


def colorize_depth(depth: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Colourise a depth map as (H, W, 3) uint8.

    Min/max normalisation, then a lookup in the colormap's table with matplotlib's own index rule
    (entry floor(x * N)), so the colours equal a matplotlib call at a fraction of its time and
    memory on large images. With inverse depth, 'Spectral_r' (the default, as Marigold and Depth
    Anything show depth) makes near red and far blue; 'Spectral' is the official release's look.
    """
    table = colormap_table(colormap)
    normalized, _, _ = normalize_depth(depth)
    indices = np.minimum((normalized * np.float32(len(table))).astype(np.int32), len(table) - 1)
    return table[indices]


def depth_to_png16(depth: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Quantise depth to uint16 via min/max normalisation; returns (values, min, max)."""
    normalized, low, high = normalize_depth(depth)
    return np.round(normalized * PNG16_MAX).astype(np.uint16), low, high


# --------------------------------------------------------------------------------------------
# Writing and reading back


Target = str | os.PathLike[str] | BinaryIO  # a file (written atomically) or any binary stream


def _is_stream(target: Target) -> bool:
    return hasattr(target, "write")


def save_png(path: Target, image: np.ndarray | Image.Image, text: dict[str, str] | None = None) -> None:
    """The one PNG writer: atomically (or into a binary stream), at `PNG_COMPRESS_LEVEL`, with
    `text` chunks so that a file carries what is needed to interpret it."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, str(value))
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if _is_stream(path):
        picture.save(path, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
        return
    with atomic_path(path) as temporary:
        picture.save(temporary, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)


def save_depth_png16(path: Target, depth: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write depth as a 16-bit PNG with its min/max in text chunks (see `read_depth_png16`).

    `text`: extra text chunks (e.g. that the depth is an ensemble)."""
    values, low, high = depth_to_png16(depth)
    save_png(path, values, {**(text or {}), "depth_min": repr(low), "depth_max": repr(high),
                            "depth_decode": PNG16_DECODE, "depth_quantity": DEPTH_QUANTITY})


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


def save_depth_npy(path: Target, depth: np.ndarray) -> None:
    """Write the raw prediction as float32 ``.npy`` (a file, atomically, or a binary stream)."""
    if _is_stream(path):
        np.save(path, np.asarray(depth, dtype=np.float32), allow_pickle=False)
        return
    save_npy_atomic(path, np.asarray(depth, dtype=np.float32))


def save_color(
    path: Target,
    depth: np.ndarray,
    colormap: str = DEFAULT_COLORMAP,
    text: dict[str, str] | None = None,
) -> None:
    """Write the colourised depth as an 8-bit RGB PNG (`text`: extra text chunks)."""
    save_png(path, colorize_depth(depth, colormap), text)


# --------------------------------------------------------------------------------------------
# Segmentation


def segmentation_labels(segmentation: np.ndarray) -> np.ndarray:
    """Per-pixel class index of (C, H, W) logits; (H, W) labels are returned as they are."""
    return segmentation if segmentation.ndim == 2 else np.argmax(segmentation, axis=0)


def label_palette(count: int = 256) -> list[int]:
    """Flat RGB list: the standard ADE20K colours for labels 0-149 (PrimeDepth's 150 classes, see
    `primedepth.io.ade20k`), then distinct deterministic colours (golden-ratio hue steps)."""
    palette = [channel for rgb in ADE20K_PALETTE[:count] for channel in rgb]
    for label in range(len(ADE20K_PALETTE), count):
        hue = (label * 0.618033988749895) % 1.0
        value = 0.95 if label % 2 == 0 else 0.7
        palette.extend(round(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.75, value))
    return palette


def labels_to_image(segmentation: np.ndarray) -> Image.Image:
    """(H, W) labels, or the argmax of (C, H, W) logits, as an image whose pixel values are the labels.

    A palette image (viewable, values = labels) up to 256 classes; 16-bit grayscale above,
    since a palette cannot index more.
    """
    labels = segmentation_labels(segmentation)
    classes = segmentation.shape[0] if segmentation.ndim == 3 else int(labels.max(initial=0)) + 1
    if classes > 256:
        return Image.fromarray(labels.astype(np.uint16))
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(label_palette())
    return image


def save_segmentation(path: Target, logits: np.ndarray) -> None:
    """Write the argmax labels as a PNG (see `labels_to_image`) carrying its legend as JSON in
    the text chunk ``legend`` (see `segmentation_legend`, `read_segmentation_legend`)."""
    legend = json.dumps(segmentation_legend(logits), separators=(",", ":"))
    save_png(path, labels_to_image(logits), {SEGMENTATION_LEGEND_KEY: legend})


# The PNG text chunk holding a segmentation's legend.
SEGMENTATION_LEGEND_KEY = "legend"


def segmentation_legend(segmentation: np.ndarray) -> dict[str, dict]:
    """{"label": {"name", "rgb"}} for the labels present in a map (or in the argmax of logits):
    ADE20K names and colours, "class N" and the PNG's colour for labels beyond the 150."""
    present = np.unique(segmentation_labels(segmentation)).tolist()
    legend = ade20k_legend(label for label in present if label < ADE20K_CLASS_COUNT)
    palette = label_palette()
    for label in (label for label in present if ADE20K_CLASS_COUNT <= label < 256):
        legend[str(label)] = {"name": f"class {label}", "rgb": palette[3 * label : 3 * label + 3]}
    return legend


def read_segmentation_legend(path: str | os.PathLike[str]) -> dict[str, dict]:
    """The legend a ``NAME_seg.png`` carries (empty for files written without one)."""
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(SEGMENTATION_LEGEND_KEY)
    return json.loads(text) if text else {}


# --------------------------------------------------------------------------------------------
# All per-image outputs of one prediction


def encode_output(kind: str, stream: BinaryIO, depth: np.ndarray, segmentation: np.ndarray | None = None,
                  colormap: str = DEFAULT_COLORMAP, png_text: dict[str, str] | None = None) -> bool:
    """Encode one per-image output into a binary stream; False when there is nothing to encode
    (``seg`` without segmentation, or a kind that is not per image, such as ``video``)."""
    if kind == "png16":
        save_depth_png16(stream, depth, png_text)
    elif kind == "npy":
        save_depth_npy(stream, depth)
    elif kind == "color":
        save_color(stream, depth, colormap, png_text)
    elif kind == "seg" and segmentation is not None:
        save_segmentation(stream, segmentation)
    else:
        return False
    return True


def encode_outputs(kinds: Iterable[str], depth: np.ndarray, segmentation: np.ndarray | None = None,
                   colormap: str = DEFAULT_COLORMAP, png_text: dict[str, str] | None = None) -> dict[str, bytes]:
    """Each requested per-image output as bytes, by kind, in memory: the bytes of the file
    `write_outputs` writes (an HTTP answer, a dataset row: no temporary file)."""
    encoded = {}
    for kind in kinds:
        buffer = BytesIO()
        if encode_output(kind, buffer, depth, segmentation, colormap, png_text):
            encoded[kind] = buffer.getvalue()
    return encoded


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
    `png_text` goes into the depth PNGs (16-bit and colour) as text chunks. Each file is encoded
    straight into its hidden temporary (`encode_output`), then renamed into place.
    """
    written = []
    for kind, path in paths.items():
        if path.exists() and not overwrite:
            continue
        if kind not in FRAME_OUTPUT_KINDS or (kind == "seg" and segmentation is None):
            continue
        with atomic_path(path) as temporary, temporary.open("wb") as file:
            encode_output(kind, file, depth, segmentation, colormap, png_text)
        written.append(path)
    return written
