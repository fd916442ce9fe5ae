"""Depth to 3D: unprojection, surface normals, and coloured point clouds as PLY.

Points are computed in the OpenCV camera frame of `primedepth.geometry.intrinsics` (x right,
y down, z forward, in the depth's unit) and written in the file frame of
`primedepth.geometry.frames` (by default y up, camera looking down -z, so viewers open them
upright). The PLY writer is a few lines of numpy (a header plus one packed record per point),
so point clouds need no extra package; any PLY reader (plyfile, trimesh, Open3D, MeshLab,
CloudCompare) loads them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from .frames import DEFAULT_FRAME, FRAME_DESCRIPTIONS, from_camera_frame
from .intrinsics import Intrinsics

PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def grid_step(height: int, width: int, max_size: int | None) -> int:
    """Integer pixel stride so that the longer side has at most `max_size` samples (None: 1)."""
    if not max_size:
        return 1
    return max(1, -(-max(height, width) // int(max_size)))


def pixel_rays(intrinsics: Intrinsics, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ray directions (x/z, y/z) of every `step`-th pixel centre, (h, 1) and (1, w)."""
    cols = np.arange(0, intrinsics.width, step, dtype=np.float64)
    rows = np.arange(0, intrinsics.height, step, dtype=np.float64)
    return ((rows - intrinsics.cy) / intrinsics.fy)[:, None], ((cols - intrinsics.cx) / intrinsics.fx)[None, :]


def unproject(depth_m: np.ndarray, intrinsics: Intrinsics, step: int = 1,
              dtype: np.dtype | type = np.float32) -> np.ndarray:
    """(H, W, 3) camera-frame points of a z-depth map (every `step`-th pixel with step > 1).

    Computed in float64 and returned as `dtype`; non-finite depths give non-finite points.
    """
    depth = np.asarray(depth_m)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the intrinsics are for "
                         f"{intrinsics.width}x{intrinsics.height}")
    z = depth[::step, ::step].astype(np.float64)
    ray_y, ray_x = pixel_rays(intrinsics, step)
    points = np.empty(z.shape + (3,), dtype=dtype)
    points[..., 0] = ray_x * z
    points[..., 1] = ray_y * z
    points[..., 2] = z
    return points


def normals_from_depth(depth_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(H, W, 3) unit surface normals in the camera frame, facing the camera; 0 where unknown.

    The cross product of the central differences (one-sided at the border) of the unprojected
    points down the rows and along the columns, so planes get exact normals; a pixel whose depth
    or neighbours are invalid gets a zero vector. With ``x = a(u) z`` and ``y = b(v) z`` only
    four differences are needed. Float32 throughout: directions good to about 1e-5, three times
    faster than float64 on a 12 MP map (memory traffic bound).
    """
    known = np.isfinite(depth_m) & (np.asarray(depth_m) > 0)
    z = np.where(known, np.asarray(depth_m, dtype=np.float32), np.float32(np.nan))
    b, a = (ray.astype(np.float32) for ray in pixel_rays(intrinsics))
    z_down, z_right = np.gradient(z, axis=0), np.gradient(z, axis=1)
    y_down, x_right = np.gradient(b * z, axis=0), np.gradient(a * z, axis=1)
    nx = z_right * (y_down - b * z_down)  # (down x right) points back at the camera
    ny = z_down * (x_right - a * z_right)
    nz = a * b * z_down * z_right - y_down * x_right
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    good = np.isfinite(length) & (length > 0) & known  # the pixel's own depth counts too
    inverse = (1.0 / np.where(good, length, 1.0)).astype(np.float32)
    normal = np.stack([nx * inverse, ny * inverse, nz * inverse], axis=-1)
    normal[~good] = 0.0
    return normal


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """8-bit colours ``(n + 1) / 2`` in the usual normal-map frame (x right, y up, z to viewer).

    The camera frame's y and z are flipped first, so a wall facing the camera is (128, 128,
    255) as in other normal maps; zero (unknown) normals become black.
    """
    display = normals * np.array([1.0, -1.0, -1.0], dtype=np.float32)
    rgb = np.rint((display + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(normals != 0, axis=-1)] = 0
    return rgb


def as_uint8_colors(colors: np.ndarray | None, count: int) -> np.ndarray:
    """(N, 3) uint8 colours from uint8 or [0, 1] floats; grey when none are given."""
    if colors is None:
        return np.full((count, 3), 200, dtype=np.uint8)
    colors = np.asarray(colors)
    colors = colors.reshape(-1, colors.shape[-1])[:, :3] if colors.ndim > 1 else colors.reshape(-1, 1)
    if colors.shape[1] == 1:
        colors = np.repeat(colors, 3, axis=1)
    if colors.shape[0] != count:
        raise InputError(f"{colors.shape[0]} colours for {count} points")
    if colors.dtype == np.uint8:
        return colors
    if colors.dtype.kind == "f":
        return np.rint(np.clip(colors, 0.0, 1.0) * 255).astype(np.uint8)
    return np.clip(colors, 0, 255).astype(np.uint8)


def image_rgb8(image: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, 3/4) image of uint8 or [0, 1] floats as (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise InputError(f"expected an (H, W, 3) image, got shape {image.shape}")
    height, width = image.shape[:2]
    flat = image.reshape(height * width, -1)
    return as_uint8_colors(flat, height * width).reshape(height, width, 3)


def format_rows(rows: np.ndarray, line: str, chunk: int = 100_000) -> bytes:
    """Rows printed with one `line` format each (text PLY, OBJ): one big %-format per chunk,
    about 4x faster than `np.savetxt`."""
    parts = []
    for start in range(0, rows.shape[0], chunk):
        block = rows[start : start + chunk]
        parts.append((line * block.shape[0]) % tuple(block.ravel().tolist()))
    return "".join(parts).encode("ascii")


def _ply_header(count: int, binary: bool, comments: Sequence[str]) -> bytes:
    """The PLY header for `count` coloured float32 vertices."""
    kind = "binary_little_endian" if binary else "ascii"
    lines = ["ply", f"format {kind} 1.0"]
    lines += [f"comment {' '.join(comment.split())}" for comment in comments]
    lines += [f"element vertex {count}"]
    lines += [f"property float {axis}" for axis in "xyz"]
    lines += [f"property uchar {channel}" for channel in ("red", "green", "blue")]
    lines += ["end_header", ""]
    return "\n".join(lines).encode("ascii", "replace")


def save_point_cloud(
    path: str | os.PathLike[str],
    points: np.ndarray,
    colors: np.ndarray | None = None,
    binary: bool = True,
    comments: Sequence[str] = (),
    *,
    frame: str = DEFAULT_FRAME,
) -> int:
    """Write camera-frame points (N, 3) or (H, W, 3) with colours as PLY; non-finite points are skipped.

    `points` are in the OpenCV camera frame (as `unproject` returns them) and are written in
    `frame` (see `primedepth.geometry.frames`: ``"opengl"``, y up, opens upright in viewers;
    ``"opencv"`` writes them unchanged), which a ``comment frame:`` header line states.
    Binary little-endian by default (compact and fast), ASCII with ``binary=False``.
    `comments` become ``comment`` lines of the header (e.g. that the scale is arbitrary).
    Colours are stored as given (8-bit sRGB). Written atomically; returns the number of points.
    """
    xyz = from_camera_frame(np.asarray(points, dtype=np.float32).reshape(-1, 3), frame)
    comments = [*comments, f"frame: {FRAME_DESCRIPTIONS[frame]}"]
    rgb = as_uint8_colors(colors, xyz.shape[0])
    keep = np.isfinite(xyz).all(axis=1)
    if not keep.all():
        xyz, rgb = xyz[keep], rgb[keep]
    records = np.empty(xyz.shape[0], dtype=PLY_VERTEX)
    for index, axis in enumerate("xyz"):
        records[axis] = xyz[:, index]
    for index, channel in enumerate(("red", "green", "blue")):
        records[channel] = rgb[:, index]
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(_ply_header(records.size, binary, comments))
        if binary:
            file.write(records.tobytes())
        else:
            file.write(format_rows(np.column_stack([xyz.astype(np.float64), rgb]), "%.7g %.7g %.7g %d %d %d\n"))
    return int(records.size)
