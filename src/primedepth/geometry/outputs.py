"""The geometry outputs of one prediction, for the job engine: names, options, and writing.

==================  ====================  ==================================================
kind                file                  content
==================  ====================  ==================================================
``ply``             ``NAME_points.ply``   coloured point cloud, binary little-endian PLY
                                          (``frame``: y up by default), one point per valid pixel
``glb``             ``NAME_mesh.glb``     textured triangle mesh, unlit, glTF frame (y up)
``obj``             ``NAME_mesh.obj``     textured triangle mesh (``frame``: y up by default)
                                          with ``NAME_mesh.mtl`` and ``NAME_mesh_texture.png``
``normals``         ``NAME_normals.png``  8-bit normal map, ``(n + 1) / 2``
``metric``          ``NAME_depth_m.npy``  float32 metric depth in metres (needs align_to)
``metric_png16``    ``NAME_depth_mm.png`` 16-bit metric depth in millimetres (needs align_to)
==================  ====================  ==================================================

With ``align_to`` the prediction is aligned to the known depths (`align_to_sparse`) and the
3D files are metric. Without it the shape itself is an assumption, and every file says so: the
prediction is inverse depth up to an unknown scale *and shift*, and `pseudo_depth` fixes the
shift by assuming that the farthest pixel is ``pseudo_far / pseudo_near`` (10 by default) times
as far as the nearest; another ratio bends the same prediction into another shape (``--near``
and ``--far`` set it), and the scale stays arbitrary. The coordinate frames are described in
`primedepth.geometry.frames`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.outputs import GEOMETRY_OUTPUT_SUFFIXES
from .align import (
    DEFAULT_INLIER_THRESHOLD, DEFAULT_MAX_DEPTH, DEFAULT_MAX_INVALID_FRACTION, DEFAULT_MIN_DEPTH,
    METHODS, align_to_sparse, pseudo_depth,
)
from .cloud import grid_step, image_rgb8, normals_from_depth, save_point_cloud, unproject
from .colmap import model_folder, read_colmap_model, sparse_from_colmap
from .frames import DEFAULT_FRAME, FRAME_DESCRIPTIONS, check_frame
from .intrinsics import Intrinsics, check_fov, resolve_intrinsics
from .maps import save_metric_npy, save_metric_png16, save_normals_png
from .mesh import (
    DEFAULT_MAX_ANGLE_DEG, DEFAULT_MESH_MAX_FACES, DEFAULT_MESH_MAX_SIZE, check_max_faces, mesh_files, save_mesh,
)
from .sparse import DEPTH_IMAGE_EXTENSIONS, POINTS_EXTENSIONS, SparseDepth, read_sparse_file

METRIC_KINDS = frozenset({"metric", "metric_png16"})
THREE_D_KINDS = frozenset({"ply", "glb", "obj", "normals"})
DEFAULT_PSEUDO_NEAR = 1.0
DEFAULT_PSEUDO_FAR = 10.0
ARBITRARY_SCALE_NOTE = "RELATIVE SHAPE, not metric: unaligned affine-invariant prediction"


def relative_shape_note(near: float, far: float) -> str:
    """What an unaligned 3D file is: a shape that rests on an assumed far:near ratio."""
    return (f"{ARBITRARY_SCALE_NOTE}; its unknown shift was fixed by assuming the farthest pixel is "
            f"{far / near:.4g}x as far as the nearest (near {near:g}, far {far:g}; set with --near/--far), "
            "so the shape is an assumption and the scale arbitrary")


@dataclass(frozen=True)
class GeometryOptions:
    """How to turn a prediction into geometry; the defaults are what the CLI uses."""

    fov: float | None = None  # horizontal field of view in degrees
    intrinsics: tuple[float, float, float, float] | None = None  # fx, fy, cx, cy (input pixels)
    align_to: Path | None = None  # sparse depth file, folder of them, or COLMAP model
    min_depth: float = DEFAULT_MIN_DEPTH
    max_depth: float = DEFAULT_MAX_DEPTH
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION
    align_method: str = "ransac"
    inlier_threshold: float = DEFAULT_INLIER_THRESHOLD
    mesh_max_angle: float = DEFAULT_MAX_ANGLE_DEG  # discontinuity threshold, degrees
    mesh_max_size: int | None = DEFAULT_MESH_MAX_SIZE
    mesh_max_faces: int | None = DEFAULT_MESH_MAX_FACES  # larger grids are thinned evenly; None: no limit
    points_max_size: int | None = None  # None: one point per pixel
    ply_binary: bool = True
    pseudo_near: float = DEFAULT_PSEUDO_NEAR  # unaligned: the nearest pixel's depth
    pseudo_far: float = DEFAULT_PSEUDO_FAR  # unaligned: the farthest pixel's depth (far/near is assumed)
    seed: int = 0
    frame: str = DEFAULT_FRAME  # PLY and OBJ: "opengl" (y up) or "opencv" (y down); GLB is always y up


def geometry_output_paths(output_dir: Path, name: PurePosixPath, kinds: Iterable[str]) -> dict[str, Path]:
    """Where each requested geometry output of the item called `name` goes."""
    return {kind: output_dir / f"{name}{GEOMETRY_OUTPUT_SUFFIXES[kind]}" for kind in kinds}


def check_geometry_request(kinds: Iterable[str], options: GeometryOptions) -> None:
    """Refuse, before a long run, geometry kinds and options that cannot work."""
    kinds = set(kinds)
    unknown = kinds - set(GEOMETRY_OUTPUT_SUFFIXES)
    if unknown:
        raise InputError(f"unknown geometry output(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(GEOMETRY_OUTPUT_SUFFIXES)}")
    if kinds & METRIC_KINDS and options.align_to is None:
        raise InputError("metric outputs need known depths to align to (--align-to PATH); without "
                         "them the 3D outputs are written at an arbitrary scale")
    if options.fov is not None and options.intrinsics is not None:
        raise InputError("give either a field of view or intrinsics, not both")
    if options.fov is not None:
        check_fov(options.fov)
    if options.intrinsics is not None:
        Intrinsics(*options.intrinsics, width=1, height=1)
    if options.align_to is not None and not Path(options.align_to).exists():
        raise InputError(f"{options.align_to}: no such file or folder to align to")
    if options.align_method not in METHODS:
        raise InputError(f"unknown alignment method {options.align_method!r}; use {', '.join(METHODS)}")
    if not 0 < options.min_depth < options.max_depth:
        raise InputError(f"need 0 < min depth < max depth, got {options.min_depth} and {options.max_depth}")
    if not 0 < options.mesh_max_angle <= 90:
        raise InputError(f"the mesh discontinuity angle must be in (0, 90] degrees, got {options.mesh_max_angle}")
    check_max_faces(options.mesh_max_faces)
    check_frame(options.frame)
    if not 0 < options.pseudo_near < options.pseudo_far:
        raise InputError(f"need 0 < near < far for unaligned 3D, got {options.pseudo_near:g} and {options.pseudo_far:g}")
    if "glb" in kinds and importlib.util.find_spec("trimesh") is None:
        raise InputError("the glb output needs trimesh: pip install 'primedepth[3d]'")


def sparse_for_image(align_to: str | Path, image_path: Path | None, image_shape: tuple[int, int],
                     name: PurePath | str | None = None) -> SparseDepth:
    """The known depths for one image from what ``--align-to`` names.

    A single file (depth image or points file) applies to whatever image is given. A COLMAP
    model (or a project folder with ``sparse/0``) is searched for the image by its file name
    (relative path first). Any other folder must hold one file per image named after it:
    ``NAME.png|.npy|.exr|.csv|.json`` with `name` (the item's relative output name) or the
    image's stem.
    """
    align_to = Path(align_to)
    if align_to.is_file():
        return read_sparse_file(align_to, image_shape)
    if not align_to.is_dir():
        raise InputError(f"{align_to}: no such file or folder to align to")
    if model_folder(align_to) is not None:
        if image_path is None and name is None:
            raise InputError(f"{align_to}: a COLMAP model needs the image's file name to find its entry")
        return sparse_from_colmap(read_colmap_model(align_to), str(image_path or name), image_shape)
    return read_sparse_file(_per_image_file(align_to, image_path, name), image_shape)


def _per_image_file(folder: Path, image_path: Path | None, name: PurePath | str | None) -> Path:
    """The one sparse file in `folder` named after the image (by `name`, then by stem)."""
    stems = [str(PurePosixPath(name))] if name is not None else []
    stems += [image_path.stem] if image_path is not None else []
    if not stems:
        raise InputError(f"{folder}: a folder of sparse depths needs the image's name to find its file")
    extensions = DEPTH_IMAGE_EXTENSIONS + POINTS_EXTENSIONS
    for stem in dict.fromkeys(stems):
        found = [folder / f"{stem}{ext}" for ext in extensions if (folder / f"{stem}{ext}").is_file()]
        if len(found) > 1:
            raise InputError(f"{folder}: several sparse depth files for {stem!r}: "
                             f"{', '.join(path.name for path in found)}; keep one")
        if found:
            return found[0]
    raise InputError(f"{folder}: no sparse depth for {stems[-1]!r} "
                     f"(looked for {' or '.join(dict.fromkeys(stems))} with {', '.join(extensions)})")


@dataclass
class _Scene:
    """Everything the writers share for one image."""

    depth_m: np.ndarray
    valid: np.ndarray
    rgb: np.ndarray
    options: GeometryOptions
    metric: bool
    comments: list[str]
    text: dict[str, str]
    intrinsics: Intrinsics | None = None
    camera_note: str = ""
    report: dict[str, object] = field(default_factory=dict)


def _aligned_scene(depth: np.ndarray, options: GeometryOptions, source: Path | None,
                   name: PurePath | str | None, report: dict) -> tuple[np.ndarray, np.ndarray, SparseDepth | None]:
    """Metric depth with `align_to`, else pseudo-depth; fills the report's alignment part."""
    if options.align_to is None:
        depth_m, valid = pseudo_depth(depth, options.pseudo_near, options.pseudo_far)
        report.update(scale="arbitrary", pseudo_depth={
            "near": options.pseudo_near, "far": options.pseudo_far,
            "assumed_far_near_ratio": options.pseudo_far / options.pseudo_near,
            "note": relative_shape_note(options.pseudo_near, options.pseudo_far)})
        return depth_m, valid, None
    sparse = sparse_for_image(options.align_to, source, depth.shape, name)
    result = align_to_sparse(
        depth, sparse, method=options.align_method, inlier_threshold=options.inlier_threshold,
        min_depth=options.min_depth, max_depth=options.max_depth,
        max_invalid_fraction=options.max_invalid_fraction, seed=options.seed,
    )
    report.update(scale="metric", alignment=result.report(), sparse=sparse.summary())
    report["warnings"] += result.warnings
    return result.depth_m, result.valid, sparse


def _build_scene(depth: np.ndarray, rgb: np.ndarray, options: GeometryOptions, source: Path | None,
                 name: PurePath | str | None, kinds: set[str]) -> _Scene:
    """Align (or not), find the camera if a 3D kind needs it, and word the file headers."""
    report: dict[str, object] = {"warnings": []}
    depth_m, valid, sparse = _aligned_scene(depth, options, source, name, report)
    scene = _Scene(depth_m, valid, _matching_rgb(rgb, depth.shape), options, options.align_to is not None,
                   [], {}, report=report)
    if scene.metric:
        fit = report["alignment"]
        scene.text = {"alignment": f"1/depth_m = {fit['scale']!r} * prediction + {fit['shift']!r}",
                      "aligned_to": str(options.align_to)}
        scene.comments = [f"primedepth metric depth in metres, aligned to {options.align_to}",
                          f"fit: 1/depth_m = {fit['scale']:.6g} * prediction + {fit['shift']:.6g}"]
    else:
        scene.comments = [f"primedepth {relative_shape_note(options.pseudo_near, options.pseudo_far)}"]
    if kinds & THREE_D_KINDS:
        calibrated = sparse.intrinsics if sparse is not None else None
        intrinsics, origin, warnings = resolve_intrinsics(depth.shape[1], depth.shape[0], options.intrinsics,
                                                          options.fov, source, calibrated)
        scene.intrinsics = intrinsics
        report["intrinsics"] = dict(intrinsics.as_dict(), source=origin, fov_deg=intrinsics.horizontal_fov_deg)
        report["warnings"] += warnings
        scene.camera_note = (f"camera ({origin}): fx={intrinsics.fx:.6g} fy={intrinsics.fy:.6g} "
                             f"cx={intrinsics.cx:.6g} cy={intrinsics.cy:.6g}")
        scene.comments.append(scene.camera_note)
    return scene


def _matching_rgb(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The image as (H, W, 3) uint8 at the depth's size (resized bilinearly if it differs)."""
    image = image_rgb8(rgb)
    if image.shape[:2] != tuple(shape):
        image = np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    return image


def _write_ply(path: Path, scene: _Scene) -> None:
    """Every valid pixel (or every `points_max_size`-th) as a coloured point."""
    step = grid_step(*scene.depth_m.shape, scene.options.points_max_size)
    depth = np.where(scene.valid, scene.depth_m, np.nan)
    points = unproject(depth, scene.intrinsics, step)
    count = save_point_cloud(path, points, scene.rgb[::step, ::step], scene.options.ply_binary, scene.comments,
                             frame=scene.options.frame)
    scene.report["points"] = count
    scene.report.setdefault("frames", {})["ply"] = FRAME_DESCRIPTIONS[scene.options.frame]


def _write_mesh(path: Path, scene: _Scene) -> None:
    """GLB or OBJ by the path's ending; the scale note goes into the header or scene extras."""
    metadata = {"primedepth": scene.comments, "scale": "metric" if scene.metric else "arbitrary"}
    options = scene.options
    mesh = save_mesh(path, scene.depth_m, scene.rgb, scene.intrinsics, valid=scene.valid,
                     max_angle_deg=options.mesh_max_angle, max_size=options.mesh_max_size,
                     max_faces=options.mesh_max_faces, frame=options.frame, comments=scene.comments,
                     metadata=metadata)
    scene.report["mesh"] = {"vertices": int(mesh.vertices.shape[0]), "faces": int(mesh.faces.shape[0])}
    kind = path.suffix.lower().lstrip(".")
    scene.report.setdefault("frames", {})[kind] = FRAME_DESCRIPTIONS["opengl" if kind == "glb" else options.frame]


def _write_normals(path: Path, scene: _Scene) -> None:
    """The normal map, with the camera it was computed with in a text chunk."""
    depth = np.where(scene.valid, scene.depth_m, np.nan)
    save_normals_png(path, normals_from_depth(depth, scene.intrinsics), {"camera": scene.camera_note})


def _write_metric(path: Path, scene: _Scene) -> None:
    """Float32 metres, as aligned."""
    save_metric_npy(path, scene.depth_m)


def _write_metric_png16(path: Path, scene: _Scene) -> None:
    """Millimetres; pixels beyond the 16-bit range are reported, not silently saturated."""
    too_far = save_metric_png16(path, scene.depth_m, scene.valid, scene.text)
    if too_far:
        scene.report["warnings"].append(f"{too_far} pixels are farther than 65.535 m and are 0 in {path.name}")


_WRITERS = {"ply": _write_ply, "glb": _write_mesh, "obj": _write_mesh, "normals": _write_normals,
            "metric": _write_metric, "metric_png16": _write_metric_png16}


def write_geometry_outputs(
    paths: dict[str, Path],
    depth: np.ndarray,
    rgb: np.ndarray,
    options: GeometryOptions,
    source: Path | None = None,
    overwrite: bool = False,
    name: PurePath | str | None = None,
) -> tuple[list[Path], dict[str, object]]:
    """Write every requested geometry output of one prediction; existing files kept unless `overwrite`.

    `paths`: kind -> destination (see `geometry_output_paths`; other kinds are ignored).
    `depth`: the (H, W) affine-invariant prediction; `rgb`: the input image (H, W, 3), uint8
    or floats in [0, 1]; `source`: the image file (EXIF focal length, COLMAP/folder lookup);
    `name`: the item's relative output name (folder lookup). Returns the written paths and a
    report (scale, alignment numbers, intrinsics, warnings). Bad sparse input raises
    `InputError` before anything is written.
    """
    todo = {kind: Path(path) for kind, path in paths.items()
            if kind in _WRITERS and (overwrite or not Path(path).exists())}
    if not todo:
        return [], {"warnings": [], "skipped": sorted(kind for kind in paths if kind in _WRITERS)}
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InputError(f"expected one (H, W) depth map, got shape {depth.shape}")
    check_geometry_request(todo, options)
    scene = _build_scene(depth, rgb, options, source, name, set(todo))
    scene.report["skipped"] = sorted(kind for kind in paths if kind in _WRITERS and kind not in todo)
    written: list[Path] = []
    for kind, path in todo.items():
        _WRITERS[kind](path, scene)
        written += mesh_files(path) if kind == "obj" else [path]
    return written, scene.report
