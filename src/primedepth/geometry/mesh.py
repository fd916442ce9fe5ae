"""Depth to a triangle mesh: grid triangulation without the skins across depth jumps.

Every `step`-th valid pixel becomes a vertex and each grid square two triangles. A triangle
that joins a foreground object to the background is nearly parallel to the viewing ray, so
a triangle is dropped when the angle between its normal and the ray through its centre
exceeds `max_angle_deg` (default 88 degrees). The test is scale-free and, unlike an
edge-length threshold, does not depend on the depth's unit; 88 degrees keeps a ground plane
seen from 1.5 m up to about 40 m away and cuts a 10% depth jump spread over 3 pixels of a
1000-pixel focal length.

Formats: GLB (binary glTF, textured with the image, written with trimesh, an optional
extra) and OBJ (one file, vertex colours as ``v x y z r g b``, written here). glTF looks down
its -z axis with y up, so GLB vertices are turned into that frame (y and z negated: a
rotation, so nothing is mirrored) and the scene opens upright in viewers; OBJ keeps the
OpenCV camera frame of the point clouds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.atomic import atomic_path
from .cloud import format_rows, grid_step, image_rgb8, unproject
from .intrinsics import Intrinsics

DEFAULT_MAX_ANGLE_DEG = 88.0
DEFAULT_MESH_MAX_SIZE = 1024  # grid samples along the longer side; the texture keeps full size
TEXTURE_MAX_SIZE = 4096  # longer side of the GLB texture: what WebGL viewers reliably load
MESH_FORMATS = (".glb", ".obj")
GLTF_FROM_OPENCV = np.array([1.0, -1.0, -1.0], dtype=np.float32)


@dataclass
class GridMesh:
    """Vertices (camera frame), triangles, and for each vertex its source pixel (row, col)."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from the camera
    pixels: np.ndarray  # (V, 2) int64 row, col in the full-size image

    def uv(self, height: int, width: int) -> np.ndarray:
        """Texture coordinates of the vertices' pixel centres, v upwards (trimesh's convention)."""
        u = (self.pixels[:, 1] + 0.5) / width
        v = 1.0 - (self.pixels[:, 0] + 0.5) / height
        return np.stack([u, v], axis=1)


def _grid_triangles(index: np.ndarray) -> np.ndarray:
    """Two triangles per grid square whose four corners are valid (index >= 0)."""
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    first = np.stack([top_left, bottom_left, top_right], axis=-1).reshape(-1, 3)
    second = np.stack([bottom_left, bottom_right, top_right], axis=-1).reshape(-1, 3)
    faces = np.concatenate([first, second])
    return faces[(faces >= 0).all(axis=1)]


def _grazing(vertices: np.ndarray, faces: np.ndarray, max_angle_deg: float) -> np.ndarray:
    """True for triangles seen more obliquely than `max_angle_deg` (or degenerate)."""
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    normal = np.cross(b - a, c - a)
    centre = (a + b + c) / 3.0
    dot = np.abs(np.einsum("ij,ij->i", normal, centre))
    norms = np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1)
    return ~(dot > math.cos(math.radians(max_angle_deg)) * norms)


def grid_mesh(depth_m: np.ndarray, intrinsics: Intrinsics, valid: np.ndarray | None = None,
              max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG, max_size: int | None = DEFAULT_MESH_MAX_SIZE) -> GridMesh:
    """Triangulate the pixel grid (every `step`-th pixel, see `grid_step`) of a depth map."""
    if not 0 < max_angle_deg <= 90:
        raise InputError(f"the discontinuity angle must be in (0, 90] degrees, got {max_angle_deg}")
    depth = np.asarray(depth_m)
    step = grid_step(depth.shape[0], depth.shape[1], max_size)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    ok = ok[::step, ::step]
    points = unproject(depth, intrinsics, step)
    index = np.full(ok.shape, -1, dtype=np.int64)
    index[ok] = np.arange(int(ok.sum()))
    vertices = points[ok]
    faces = _grid_triangles(index)
    faces = faces[~_grazing(vertices, faces, max_angle_deg)]
    rows, cols = np.nonzero(ok)
    pixels = np.stack([rows * step, cols * step], axis=1)
    used = np.zeros(vertices.shape[0], dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return GridMesh(vertices[used], remap[faces], pixels[used])


def save_mesh(
    path: str | os.PathLike[str],
    depth_m: np.ndarray,
    image: np.ndarray,
    intrinsics: Intrinsics,
    *,
    valid: np.ndarray | None = None,
    max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG,
    max_size: int | None = DEFAULT_MESH_MAX_SIZE,
    comments: Sequence[str] = (),
    metadata: dict[str, object] | None = None,
) -> GridMesh:
    """Write the depth map as a coloured triangle mesh, GLB or OBJ by the file's extension.

    `image`: (H, W, 3) uint8 (or floats in [0, 1]) of the depth's size: the GLB texture and
    the OBJ vertex colours. `comments` go into the OBJ header, `metadata` into the GLB scene's
    extras. Written atomically; returns the mesh.
    """
    suffix = os.fspath(path).lower()[-4:]
    if suffix not in MESH_FORMATS:
        raise InputError(f"{path}: unsupported mesh format; use {' or '.join(MESH_FORMATS)}")
    rgb = image_rgb8(image)
    if rgb.shape[:2] != np.asarray(depth_m).shape:
        raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                         f"{np.asarray(depth_m).shape[1]}x{np.asarray(depth_m).shape[0]}")
    mesh = grid_mesh(depth_m, intrinsics, valid, max_angle_deg, max_size)
    payload = (_glb_bytes(mesh, rgb, metadata or {}) if suffix == ".glb"
               else _obj_bytes(mesh, rgb[mesh.pixels[:, 0], mesh.pixels[:, 1]], comments))
    with atomic_path(path) as temporary:
        temporary.write_bytes(payload)
    return mesh


def _texture(rgb: np.ndarray) -> Image.Image:
    """The image as a PIL texture, at most `TEXTURE_MAX_SIZE` on its longer side."""
    texture = Image.fromarray(rgb)
    if max(texture.size) > TEXTURE_MAX_SIZE:
        texture.thumbnail((TEXTURE_MAX_SIZE, TEXTURE_MAX_SIZE), Image.Resampling.LANCZOS)
    return texture


def _glb_bytes(mesh: GridMesh, rgb: np.ndarray, metadata: dict[str, object]) -> bytes:
    """A textured GLB of the mesh, in glTF's y-up frame (see the module docstring)."""
    try:
        import trimesh  # lazy: optional extra
    except ImportError:
        raise InputError("writing GLB needs trimesh: pip install 'primedepth[3d]' (or ask for obj)") from None
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv(*rgb.shape[:2]), image=_texture(rgb))
    shape = trimesh.Trimesh(vertices=mesh.vertices * GLTF_FROM_OPENCV, faces=mesh.faces,
                            visual=visual, process=False, validate=False)
    scene = trimesh.Scene(shape)
    scene.metadata.update(metadata)
    return scene.export(file_type="glb")


def _obj_bytes(mesh: GridMesh, colors: np.ndarray, comments: Sequence[str]) -> bytes:
    """OBJ text: comments, ``v x y z r g b`` (colours in [0, 1]) and 1-based ``f a b c``."""
    header = "".join(f"# {' '.join(comment.split())}\n" for comment in comments)
    table = np.column_stack([mesh.vertices.astype(np.float64), colors / 255.0])
    return (header.encode("utf-8", "replace") + format_rows(table, "v %.6g %.6g %.6g %.4g %.4g %.4g\n")
            + format_rows(mesh.faces + 1, "f %d %d %d\n"))
