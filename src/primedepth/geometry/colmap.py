"""A pure reader of COLMAP sparse models (text and binary), and their depths seen by one image.

A model folder holds ``cameras``, ``images`` and ``points3D`` as ``.bin`` or ``.txt`` (binary
is preferred when both are complete, as COLMAP does); a project folder with ``sparse/0`` or
``sparse`` inside is accepted too. Only what alignment needs is kept: cameras, image poses
with their observations, and point positions.

The known depths of an image are the 3D points *it observed* (its ``POINTS2D`` with a point
id), not every point of the model: points seen only from elsewhere may be hidden behind a
surface in this view. Each is moved into the camera frame (``X_cam = R(q) X + t``, COLMAP poses
are world-to-camera), its z is the depth, and it is projected with the camera's model,
lens distortion included for the pinhole family (SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL,
RADIAL, OPENCV, FULL_OPENCV). For fisheye models the observed keypoint positions are used
instead. COLMAP puts the centre of the top-left pixel at (0.5, 0.5), so the pixel index is
``floor(x)``.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from ..errors import InputError
from .intrinsics import Intrinsics
from .sparse import SparseDepth, check_shape_rule

# Binary model id -> (name, number of parameters), from COLMAP's camera model list.
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
    4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_PARAMS = {name: count for name, count in CAMERA_MODELS.values()}
SINGLE_FOCAL = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"}
PROJECTABLE = {"SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV"}
MODEL_FILES = ("cameras", "images", "points3D")
INVALID_POINT_ID = -1  # COLMAP's uint64 max, read as int64


@dataclass(frozen=True)
class ColmapCamera:
    """One COLMAP camera: model name, the size it was calibrated at, and its parameters."""

    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def intrinsics(self) -> Intrinsics:
        """Its pinhole part in our convention (pixel centres at integers, distortion left out)."""
        p = self.params
        fx, fy, cx, cy = (p[0], p[0], p[1], p[2]) if self.model in SINGLE_FOCAL else p[:4]
        return Intrinsics(fx, fy, cx - 0.5, cy - 0.5, self.width, self.height)


@dataclass(frozen=True)
class ColmapImage:
    """One registered image: world-to-camera pose, camera, name and its 2D observations."""

    image_id: int
    qvec: np.ndarray  # (4,) qw, qx, qy, qz
    tvec: np.ndarray  # (3,)
    camera_id: int
    name: str
    xys: np.ndarray  # (N, 2) keypoint positions in COLMAP pixel coordinates
    point_ids: np.ndarray  # (N,) int64, INVALID_POINT_ID where not triangulated


@dataclass(frozen=True)
class ColmapModel:
    """A sparse model: cameras and images by id, points as id-sorted arrays."""

    folder: Path
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    point_ids: np.ndarray  # (P,) int64, sorted
    point_xyz: np.ndarray  # (P, 3) float64

    def find_image(self, name: str | PurePath) -> ColmapImage:
        """The image registered under `name`: exact relative path, else a unique file name."""
        wanted = PurePath(name).as_posix()
        by_name = {image.name: image for image in self.images.values()}
        if wanted in by_name:
            return by_name[wanted]
        base = PurePath(wanted).name
        matches = [image for image in by_name.values() if PurePath(image.name).name == base]
        suffix = [image for image in matches if wanted.endswith("/" + image.name)]
        if len(matches) == 1 or len(suffix) == 1:
            return (suffix or matches)[0]
        if matches:
            raise InputError(f"COLMAP model {self.folder}: several images are named {base!r}: "
                             f"{', '.join(sorted(image.name for image in matches))}")
        examples = ", ".join(sorted(by_name)[:3]) + (", ..." if len(by_name) > 3 else "")
        raise InputError(f"COLMAP model {self.folder} has no image named {base!r} "
                         f"({len(by_name)} images, e.g. {examples or 'none'})")


# --------------------------------------------------------------------------------------------
# Finding and reading a model


def model_folder(path: Path) -> Path | None:
    """The folder holding the model files: `path` itself, `path/sparse/0` or `path/sparse`."""
    for candidate in (path, path / "sparse" / "0", path / "sparse"):
        if _model_extension(candidate) is not None:
            return candidate
    return None


def _model_extension(folder: Path) -> str | None:
    """'.bin' or '.txt' when all three model files exist in that format (binary first)."""
    for extension in (".bin", ".txt"):
        if all((folder / f"{name}{extension}").is_file() for name in MODEL_FILES):
            return extension
    return None


def read_colmap_model(path: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model (text or binary); cached while the files are unchanged."""
    folder = model_folder(Path(path))
    if folder is None:
        raise InputError(f"{path}: not a COLMAP model (no cameras, images and points3D .bin/.txt "
                         "here or in sparse/0)")
    extension = _model_extension(folder)
    stamp = tuple((folder / f"{name}{extension}").stat().st_mtime_ns for name in MODEL_FILES)
    return _read_model_cached(str(folder), extension, stamp)


@functools.lru_cache(maxsize=4)
def _read_model_cached(folder: str, extension: str, stamp: tuple[int, ...]) -> ColmapModel:
    """Parse the three files once per folder and modification times (many images, one model)."""
    root = Path(folder)
    readers = (
        (_read_cameras_binary, _read_images_binary, _read_points_binary)
        if extension == ".bin" else (_read_cameras_text, _read_images_text, _read_points_text)
    )
    try:
        cameras, images, (ids, xyz) = (
            reader(root / f"{name}{extension}") for reader, name in zip(readers, MODEL_FILES)
        )
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"COLMAP model {root}: damaged or not in COLMAP's format ({error})") from None
    order = np.argsort(ids, kind="stable")
    return ColmapModel(root, cameras, images, ids[order], xyz[order])


def _data_lines(path: Path) -> list[str]:
    """Lines of a COLMAP text file without its '#' comments (empty lines kept: they mean things)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]


def _camera(camera_id: int, model: str, width: int, height: int, params: list[float]) -> ColmapCamera:
    """A camera, after checking that the model is known and has the right parameter count."""
    if model not in MODEL_PARAMS:
        raise InputError(f"COLMAP camera {camera_id}: unknown camera model {model!r}")
    if len(params) != MODEL_PARAMS[model]:
        raise InputError(f"COLMAP camera {camera_id}: {model} needs {MODEL_PARAMS[model]} parameters, "
                         f"got {len(params)}")
    return ColmapCamera(camera_id, model, width, height, tuple(params))


def _read_cameras_text(path: Path) -> dict[int, ColmapCamera]:
    """cameras.txt: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]`` per line."""
    cameras = {}
    for line in _data_lines(path):
        tokens = line.split()
        if tokens:
            camera_id = int(tokens[0])
            cameras[camera_id] = _camera(camera_id, tokens[1], int(tokens[2]), int(tokens[3]),
                                         [float(value) for value in tokens[4:]])
    return cameras


def _read_images_text(path: Path) -> dict[int, ColmapImage]:
    """images.txt: a pose line ``ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then ``(X Y POINT3D_ID)*``."""
    lines, images, index = _data_lines(path), {}, 0
    while index < len(lines):
        header = lines[index]
        if not header.strip():
            index += 1
            continue
        tokens = header.split(maxsplit=9)
        observations = lines[index + 1].split() if index + 1 < len(lines) else []
        index += 2
        table = np.array(observations, dtype=np.float64).reshape(-1, 3)
        image_id = int(tokens[0])
        images[image_id] = ColmapImage(
            image_id, np.array(tokens[1:5], dtype=np.float64), np.array(tokens[5:8], dtype=np.float64),
            int(tokens[8]), tokens[9].strip(), table[:, :2], table[:, 2].astype(np.int64),
        )
    return images


def _read_points_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """points3D.txt: ``POINT3D_ID X Y Z R G B ERROR TRACK[]`` per line; ids and positions."""
    ids, xyz = [], []
    for line in _data_lines(path):
        tokens = line.split()
        if tokens:
            ids.append(int(tokens[0]))
            xyz.append([float(value) for value in tokens[1:4]])
    return np.array(ids, dtype=np.int64), np.array(xyz, dtype=np.float64).reshape(-1, 3)


def _read_cameras_binary(path: Path) -> dict[int, ColmapCamera]:
    """cameras.bin: count, then per camera int32 id, int32 model, uint64 width, height, params."""
    data, cameras = path.read_bytes(), {}
    (count,), offset = struct.unpack_from("<Q", data, 0), 8
    for _ in range(count):
        camera_id, model_id, width, height = struct.unpack_from("<iiQQ", data, offset)
        offset += 24
        if model_id not in CAMERA_MODELS:
            raise InputError(f"{path}: camera {camera_id} has an unsupported model id {model_id}")
        name, params = CAMERA_MODELS[model_id]
        values = struct.unpack_from(f"<{params}d", data, offset)
        offset += 8 * params
        cameras[camera_id] = _camera(camera_id, name, width, height, list(values))
    return cameras


POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])


def _read_images_binary(path: Path) -> dict[int, ColmapImage]:
    """images.bin: count, then per image the pose, camera id, a NUL-ended name and observations."""
    data, images = path.read_bytes(), {}
    (count,), offset = struct.unpack_from("<Q", data, 0), 8
    for _ in range(count):
        image_id, *pose, camera_id = struct.unpack_from("<I7dI", data, offset)
        offset += 64
        end = data.index(b"\x00", offset)
        name, offset = data[offset:end].decode("utf-8"), end + 1
        (points,), offset = struct.unpack_from("<Q", data, offset), offset + 8
        table = np.frombuffer(data, dtype=POINT2D_DTYPE, count=points, offset=offset)
        offset += points * POINT2D_DTYPE.itemsize
        images[image_id] = ColmapImage(
            image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, name,
            np.stack([table["x"], table["y"]], axis=1), table["id"].astype(np.int64),
        )
    return images


def _read_points_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """points3D.bin: count, then id, xyz, rgb, error, and a track of (image id, point index)."""
    data = path.read_bytes()
    (count,), offset = struct.unpack_from("<Q", data, 0), 8
    ids, xyz = np.empty(count, dtype=np.int64), np.empty((count, 3), dtype=np.float64)
    header = struct.Struct("<Q3d3BdQ")
    for index in range(count):
        point_id, x, y, z, _r, _g, _b, _error, track = header.unpack_from(data, offset)
        offset += header.size + 8 * track
        ids[index], xyz[index] = point_id, (x, y, z)
    if offset > len(data):
        raise InputError(f"{path}: truncated (tracks run past the end of the file)")
    return ids, xyz


# --------------------------------------------------------------------------------------------
# Known depths of one image


def rotation_from_quaternion(qvec: np.ndarray) -> np.ndarray:
    """The rotation matrix of a (qw, qx, qy, qz) quaternion (normalised first)."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _distort(camera: ColmapCamera, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply the lens distortion of a pinhole-family model to normalised coordinates."""
    p, model = camera.params, camera.model
    r2 = u * u + v * v
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return u, v
    if model == "SIMPLE_RADIAL":
        return u * (1 + p[3] * r2), v * (1 + p[3] * r2)
    if model == "RADIAL":
        radial = 1 + p[3] * r2 + p[4] * r2 * r2
        return u * radial, v * radial
    k1, k2, p1, p2 = p[4:8]
    if model == "OPENCV":
        radial = 1 + k1 * r2 + k2 * r2 * r2
    else:  # FULL_OPENCV
        k3, k4, k5, k6 = p[8:12]
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    uv = u * v
    return (u * radial + 2 * p1 * uv + p2 * (r2 + 2 * u * u),
            v * radial + 2 * p2 * uv + p1 * (r2 + 2 * v * v))


def _pixel_positions(camera: ColmapCamera, image: ColmapImage, cam_xyz: np.ndarray,
                     observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the points land in COLMAP pixel coordinates: projected, or observed for fisheyes."""
    if camera.model not in PROJECTABLE:
        return image.xys[observed, 0], image.xys[observed, 1]
    intr = camera.intrinsics()
    u, v = _distort(camera, cam_xyz[:, 0] / cam_xyz[:, 2], cam_xyz[:, 1] / cam_xyz[:, 2])
    return intr.fx * u + intr.cx + 0.5, intr.fy * v + intr.cy + 0.5


def _observed_points(model: ColmapModel, image: ColmapImage) -> tuple[np.ndarray, np.ndarray, int]:
    """Indices into the image's observations and world positions of its triangulated points."""
    observed = np.nonzero(image.point_ids != INVALID_POINT_ID)[0]
    slots = np.searchsorted(model.point_ids, image.point_ids[observed])
    slots = np.minimum(slots, max(model.point_ids.size - 1, 0))
    found = model.point_ids.size > 0
    known = (model.point_ids[slots] == image.point_ids[observed]) if found else np.zeros(observed.size, bool)
    return observed[known], model.point_xyz[slots[known]], int((~known).sum())


def sparse_from_colmap(model: ColmapModel, name: str | PurePath, image_shape: tuple[int, int]) -> SparseDepth:
    """The known depths of the image called `name`, at its pixels in an image of `image_shape`."""
    image = model.find_image(name)
    camera = model.cameras.get(image.camera_id)
    label = f"COLMAP model {model.folder}, image {image.name!r}"
    if camera is None:
        raise InputError(f"{label}: its camera {image.camera_id} is not in cameras")
    check_shape_rule((camera.height, camera.width), image_shape, f"{label} (camera {camera.camera_id})")
    observed, world, missing = _observed_points(model, image)
    cam_xyz = world @ rotation_from_quaternion(image.qvec).T + image.tvec
    front = cam_xyz[:, 2] > 0
    px, py = _pixel_positions(camera, image, cam_xyz[front], observed[front])
    height, width = image_shape
    col = np.floor(px * (width / camera.width)).astype(np.int64)
    row = np.floor(py * (height / camera.height)).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    sparse = SparseDepth(x=col[inside], y=row[inside], depth_m=cam_xyz[front, 2][inside],
                         shape=tuple(image_shape), source=label,
                         dropped_out_of_bounds=int((~inside).sum()), intrinsics=camera.intrinsics())
    _add_colmap_notes(sparse, camera, missing, int((~front).sum()))
    if sparse.count == 0:
        raise InputError(f"{label}: none of its {image.point_ids.size} observations is a triangulated "
                         "point in front of the camera and inside the image")
    return sparse


def _add_colmap_notes(sparse: SparseDepth, camera: ColmapCamera, missing: int, behind: int) -> None:
    """Say what was dropped or approximated, so the report explains the point count."""
    if missing:
        sparse.notes.append(f"{missing} observed point ids are missing from points3D")
    if behind:
        sparse.notes.append(f"{behind} points lie behind the camera and were dropped")
    if sparse.dropped_out_of_bounds:
        sparse.notes.append(f"{sparse.dropped_out_of_bounds} points project outside the image and were dropped")
    if camera.model not in PROJECTABLE:
        sparse.notes.append(f"{camera.model} camera: used the observed keypoint positions instead of projecting")
    if camera.model not in ("SIMPLE_PINHOLE", "PINHOLE"):
        sparse.notes.append(f"{camera.model} lens distortion is ignored when unprojecting to 3D")
    sparse.notes.append("COLMAP depths are in the model's units, which are metres only if the model was scaled")
