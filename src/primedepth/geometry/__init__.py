"""3D and metric depth from PrimeDepth's affine-invariant inverse depth.

- `align_to_sparse` fits ``1 / d ~ s * pred + t`` robustly to a few known depths (from
  `sparse_for_image`: a depth image, a points file, or a COLMAP model) and returns metric depth;
  `pseudo_depth` is the stated arbitrary-scale conversion used without known depths;
- `Intrinsics` / `resolve_intrinsics`: the camera, from fx fy cx cy, a field of view, EXIF or
  a stated default; `unproject` and `normals_from_depth` turn depth into 3D;
- `save_point_cloud` (PLY), `save_mesh` (GLB/OBJ), `save_metric_npy`, `save_metric_png16`,
  `save_normals_png` write files atomically; the 3D files are written in a frame viewers show
  upright (`FRAMES`: y up by default, see `primedepth.geometry.frames`);
- `GEOMETRY_OUTPUT_SUFFIXES`, `GeometryOptions`, `check_geometry_request` and
  `write_geometry_outputs` are what the job engine calls per image.

Only numpy and Pillow are needed at import time; GLB writing needs trimesh and ``.exr``
reading OpenEXR (the ``3d`` extra), both imported when first used.
"""

from __future__ import annotations

from .align import AlignmentResult, align_to_sparse, pseudo_depth
from .cloud import normals_from_depth, normals_to_rgb, save_point_cloud, unproject
from .frames import DEFAULT_FRAME, FRAME_DESCRIPTIONS, FRAMES, from_camera_frame
from .colmap import ColmapModel, read_colmap_model, sparse_from_colmap
from .intrinsics import DEFAULT_FOV_DEG, Intrinsics, parse_intrinsics, resolve_intrinsics
from .maps import save_metric_npy, save_metric_png16, save_normals_png
from .mesh import DEFAULT_MESH_MAX_FACES, GridMesh, grid_mesh, grid_samples, mesh_files, save_mesh
from .outputs import (
    GEOMETRY_OUTPUT_SUFFIXES,
    GeometryOptions,
    check_geometry_request,
    geometry_output_paths,
    sparse_for_image,
    write_geometry_outputs,
)
from .sparse import SparseDepth, read_sparse_file, sparse_from_map

__all__ = [
    "DEFAULT_FOV_DEG",
    "DEFAULT_FRAME",
    "DEFAULT_MESH_MAX_FACES",
    "FRAMES",
    "FRAME_DESCRIPTIONS",
    "GEOMETRY_OUTPUT_SUFFIXES",
    "AlignmentResult",
    "ColmapModel",
    "GeometryOptions",
    "GridMesh",
    "Intrinsics",
    "SparseDepth",
    "align_to_sparse",
    "check_geometry_request",
    "from_camera_frame",
    "geometry_output_paths",
    "grid_mesh",
    "grid_samples",
    "mesh_files",
    "normals_from_depth",
    "normals_to_rgb",
    "parse_intrinsics",
    "pseudo_depth",
    "read_colmap_model",
    "read_sparse_file",
    "resolve_intrinsics",
    "save_mesh",
    "save_metric_npy",
    "save_metric_png16",
    "save_normals_png",
    "save_point_cloud",
    "sparse_for_image",
    "sparse_from_colmap",
    "sparse_from_map",
    "unproject",
    "write_geometry_outputs",
]
