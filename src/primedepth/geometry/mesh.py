"""Depth to a triangle mesh: grid triangulation without the skins across depth jumps.

Pixels on a regular grid become vertices and each grid square two triangles. A triangle
that joins a foreground object to the background is nearly parallel to the viewing ray, so
a triangle is dropped when the angle between its normal and the ray through its centre
exceeds `max_angle_deg` (default 88 degrees). The test is scale-free and, unlike an
edge-length threshold, does not depend on the depth's unit; 88 degrees keeps a ground plane
seen from 1.5 m up to about 40 m away and cuts a 10% depth jump spread over 3 pixels of a
1000-pixel focal length.

Size: the grid has at most `max_size` samples along the longer side (every `step`-th pixel)
and at most `max_faces` triangles (`DEFAULT_MESH_MAX_FACES`, one million, which Blender,
MeshLab and browsers open without trouble): a larger grid is thinned evenly (decimated) to
that budget. The texture keeps the image's full resolution either way.

Formats, both showing the image as photographed (no shading, full brightness):

- GLB (binary glTF, written with trimesh, an optional extra): the image is the base colour
  texture of an unlit material (``KHR_materials_unlit``; base colour factor 1, metallic 0,
  roughness 1 for viewers without the extension), vertices in glTF's frame (y up, camera
  looking down -z: the scene opens upright);
- OBJ (written here): ``NAME.obj`` with ``v``/``vt``/``f`` records, ``NAME.mtl`` (a material
  with ``Kd 1 1 1`` and ``map_Kd``) and the texture ``NAME_texture.png`` beside it, in the
  frame chosen by `frame` (default y up, see `primedepth.geometry.frames`).
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.outputs import save_png
from .cloud import format_rows, grid_step, image_rgb8
from .frames import DEFAULT_FRAME, FRAME_DESCRIPTIONS, check_frame, from_camera_frame
from .intrinsics import Intrinsics

DEFAULT_MAX_ANGLE_DEG = 88.0
DEFAULT_MESH_MAX_SIZE = 1024  # grid samples along the longer side; the texture keeps full size
DEFAULT_MESH_MAX_FACES = 1_000_000  # opens quickly in Blender, MeshLab and WebGL viewers
TEXTURE_MAX_SIZE = 4096  # longer side of the texture: what WebGL viewers reliably load
MESH_FORMATS = (".glb", ".obj")
OBJ_TEXTURE_SUFFIX = "_texture.png"  # NAME.obj -> NAME_texture.png (and NAME.mtl)
MATERIAL_NAME = "primedepth_image"
GLTF_UNLIT = "KHR_materials_unlit"


@dataclass
class GridMesh:
    """Vertices (camera frame), triangles, and for each vertex its source pixel (row, col)."""

    vertices: np.ndarray  # (V, 3) float32, OpenCV camera frame
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from the camera
    pixels: np.ndarray  # (V, 2) int64 row, col in the full-size image

    def uv(self, height: int, width: int) -> np.ndarray:
        """Texture coordinates of the vertices' pixel centres, v upwards (glTF via trimesh, OBJ)."""
        u = (self.pixels[:, 1] + 0.5) / width
        v = 1.0 - (self.pixels[:, 0] + 0.5) / height
        return np.stack([u, v], axis=1)


def mesh_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every file `save_mesh` writes for `path`: the OBJ's texture and material come first."""
    path = Path(path)
    if path.suffix.lower() != ".obj":
        return [path]
    return [path.with_name(path.stem + OBJ_TEXTURE_SUFFIX), path.with_suffix(".mtl"), path]


def check_max_faces(max_faces: int | None) -> None:
    """Refuse face budgets that cannot hold a single grid square (None: no limit)."""
    if max_faces is None:
        return
    try:
        whole = not isinstance(max_faces, bool) and operator.index(max_faces) >= 2
    except TypeError:
        whole = False
    if not whole:
        raise InputError(f"the mesh face budget must be a whole number of at least 2, got {max_faces!r}")


def grid_samples(height: int, width: int, max_size: int | None = DEFAULT_MESH_MAX_SIZE,
                 max_faces: int | None = DEFAULT_MESH_MAX_FACES) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the mesh grid: every `step`-th pixel (`max_size` along the longer
    side), thinned evenly when the grid would have more than `max_faces` triangles."""
    check_max_faces(max_faces)
    step = grid_step(height, width, max_size)
    rows, cols = np.arange(0, height, step), np.arange(0, width, step)
    squares = (rows.size - 1) * (cols.size - 1)
    if max_faces is None or 2 * squares <= max_faces:
        return rows, cols
    shrink = math.sqrt(max_faces / (2.0 * squares))
    count_rows = max(2, int((rows.size - 1) * shrink) + 1)
    count_cols = max(2, int((cols.size - 1) * shrink) + 1)
    while 2 * (count_rows - 1) * (count_cols - 1) > max_faces:  # only for very thin images
        if count_rows >= count_cols:
            count_rows -= 1
        else:
            count_cols -= 1
    return (np.unique(np.rint(np.linspace(0, height - 1, count_rows)).astype(np.int64)),
            np.unique(np.rint(np.linspace(0, width - 1, count_cols)).astype(np.int64)))


def _points_at(depth: np.ndarray, intrinsics: Intrinsics, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(len(rows), len(cols), 3) camera-frame points of the grid pixels, float32."""
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth is {depth.shape[1]}x{depth.shape[0]} but the intrinsics are for "
                         f"{intrinsics.width}x{intrinsics.height}")
    z = depth[np.ix_(rows, cols)].astype(np.float64)
    points = np.empty(z.shape + (3,), dtype=np.float32)
    points[..., 0] = ((cols - intrinsics.cx) / intrinsics.fx)[None, :] * z
    points[..., 1] = ((rows - intrinsics.cy) / intrinsics.fy)[:, None] * z
    points[..., 2] = z
    return points


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
              max_angle_deg: float = DEFAULT_MAX_ANGLE_DEG, max_size: int | None = DEFAULT_MESH_MAX_SIZE,
              max_faces: int | None = DEFAULT_MESH_MAX_FACES) -> GridMesh:
    """Triangulate the pixel grid of a depth map (see `grid_samples`), cut at depth jumps."""
    if not 0 < max_angle_deg <= 90:
        raise InputError(f"the discontinuity angle must be in (0, 90] degrees, got {max_angle_deg}")
    depth = np.asarray(depth_m)
    rows, cols = grid_samples(depth.shape[0], depth.shape[1], max_size, max_faces)
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    ok = ok[np.ix_(rows, cols)]
    points = _points_at(depth, intrinsics, rows, cols)
    index = np.full(ok.shape, -1, dtype=np.int64)
    index[ok] = np.arange(int(ok.sum()))
    vertices = points[ok]
    faces = _grid_triangles(index)
    faces = faces[~_grazing(vertices, faces, max_angle_deg)]
    grid_rows, grid_cols = np.nonzero(ok)
    pixels = np.stack([rows[grid_rows], cols[grid_cols]], axis=1)
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
    max_faces: int | None = DEFAULT_MESH_MAX_FACES,
    frame: str = DEFAULT_FRAME,
    comments: Sequence[str] = (),
    metadata: dict[str, object] | None = None,
) -> GridMesh:
    """Write the depth map as a textured triangle mesh, GLB or OBJ by the file's extension.

    `image`: (H, W, 3) uint8 (or floats in [0, 1]) of the depth's size, the texture. `frame`:
    the OBJ's coordinate frame (a GLB is always in glTF's y-up frame). `comments` go into the
    OBJ header, `metadata` into the GLB scene's extras. The OBJ's material and texture are
    written beside it (`mesh_files`). Written atomically; returns the mesh (camera frame).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_FORMATS:
        raise InputError(f"{path}: unsupported mesh format; use {' or '.join(MESH_FORMATS)}")
    rgb = image_rgb8(image)
    if rgb.shape[:2] != np.asarray(depth_m).shape:
        raise InputError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but depth is "
                         f"{np.asarray(depth_m).shape[1]}x{np.asarray(depth_m).shape[0]}")
    check_frame(frame)  # before any work
    mesh = grid_mesh(depth_m, intrinsics, valid, max_angle_deg, max_size, max_faces)
    if suffix == ".glb":
        payload = _glb_bytes(mesh, rgb, metadata or {})
        with atomic_path(path) as temporary:
            temporary.write_bytes(payload)
    else:
        _write_obj(Path(path), mesh, rgb, comments, frame)
    return mesh


def _texture(rgb: np.ndarray) -> Image.Image:
    """The image as a PIL texture, at most `TEXTURE_MAX_SIZE` on its longer side."""
    texture = Image.fromarray(rgb)
    if max(texture.size) > TEXTURE_MAX_SIZE:
        texture.thumbnail((TEXTURE_MAX_SIZE, TEXTURE_MAX_SIZE), Image.Resampling.LANCZOS)
    return texture


def _mark_unlit(tree: dict) -> None:
    """Declare every material unlit: viewers then show the texture as is, without shading."""
    for material in tree.get("materials", []):
        material.setdefault("extensions", {})[GLTF_UNLIT] = {}
    used = tree.setdefault("extensionsUsed", [])
    if GLTF_UNLIT not in used:
        used.append(GLTF_UNLIT)


def _glb_bytes(mesh: GridMesh, rgb: np.ndarray, metadata: dict[str, object]) -> bytes:
    """A GLB of the mesh in glTF's frame, textured with the image by an unlit white material."""
    try:
        import trimesh  # lazy: optional extra
    except ImportError:
        raise InputError("writing GLB needs trimesh: pip install 'primedepth[3d]' (or ask for obj)") from None
    material = trimesh.visual.material.PBRMaterial(
        name=MATERIAL_NAME, baseColorTexture=_texture(rgb), baseColorFactor=[255, 255, 255, 255],
        metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True)
    visual = trimesh.visual.TextureVisuals(uv=mesh.uv(*rgb.shape[:2]), material=material)
    shape = trimesh.Trimesh(vertices=from_camera_frame(mesh.vertices, "opengl"), faces=mesh.faces,
                            visual=visual, process=False, validate=False)
    scene = trimesh.Scene(shape)
    scene.metadata.update(metadata)
    scene.metadata["frame"] = FRAME_DESCRIPTIONS["opengl"]
    return scene.export(file_type="glb", tree_postprocessor=_mark_unlit)


def _mtl_text(texture_name: str) -> str:
    """A material that shows the texture at full brightness and without highlights."""
    return (f"# primedepth: the photo as an unshaded texture\nnewmtl {MATERIAL_NAME}\n"
            "Ka 0 0 0\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n"
            f"map_Kd {texture_name}\n")


def _write_obj(path: Path, mesh: GridMesh, rgb: np.ndarray, comments: Sequence[str], frame: str) -> None:
    """Texture, material, then the OBJ (last: its presence means the set is complete)."""
    texture_path, mtl_path, _ = mesh_files(path)
    save_png(texture_path, np.asarray(_texture(rgb)))
    with atomic_path(mtl_path) as temporary:
        temporary.write_text(_mtl_text(texture_path.name), encoding="utf-8")
    lines = [*comments, f"frame: {FRAME_DESCRIPTIONS[frame]}"]
    header = "".join(f"# {' '.join(comment.split())}\n" for comment in lines)
    header += f"mtllib {mtl_path.name}\nusemtl {MATERIAL_NAME}\n"
    vertices = from_camera_frame(mesh.vertices.astype(np.float64), frame)
    index = mesh.faces + 1
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(header.encode("utf-8", "replace"))
        file.write(format_rows(vertices, "v %.6g %.6g %.6g\n"))
        file.write(format_rows(mesh.uv(*rgb.shape[:2]), "vt %.5f %.5f\n"))
        file.write(format_rows(np.repeat(index, 2, axis=1), "f %d/%d %d/%d %d/%d\n"))
