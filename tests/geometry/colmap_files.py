"""Writing small COLMAP sparse models for the tests, in COLMAP's documented text and binary formats.

Text: ``cameras.txt`` (``CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]``), ``images.txt`` (a pose line
``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` then a line of ``X Y POINT3D_ID`` triples) and
``points3D.txt`` (``POINT3D_ID X Y Z R G B ERROR TRACK[]``), with ``#`` comment headers.
Binary: little-endian counts (uint64) followed by the same records.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}


@dataclass
class Camera:
    camera_id: int
    model: str
    width: int
    height: int
    params: list[float]


@dataclass
class Image:
    image_id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray  # (N, 2)
    point_ids: np.ndarray  # (N,), -1 for untriangulated


@dataclass
class Model:
    cameras: list[Camera]
    images: list[Image]
    points: dict[int, np.ndarray]  # id -> xyz
    tracks: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def write_text(model: Model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    lines += [f"{c.camera_id} {c.model} {c.width} {c.height} " + " ".join(repr(p) for p in c.params)
              for c in model.cameras]
    (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list with two lines of data per image:",
             "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
             "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
    for image in model.images:
        pose = " ".join(repr(float(v)) for v in (*image.qvec, *image.tvec))
        lines.append(f"{image.image_id} {pose} {image.camera_id} {image.name}")
        lines.append(" ".join(f"{x!r} {y!r} {int(i)}" for (x, y), i in zip(image.xys.tolist(), image.point_ids)))
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list with one line of data per point:",
             "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for point_id, xyz in model.points.items():
        track = " ".join(f"{i} {k}" for i, k in model.tracks.get(point_id, []))
        lines.append(f"{point_id} " + " ".join(repr(float(v)) for v in xyz) + f" 128 64 32 0.5 {track}")
    (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def write_binary(model: Model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = struct.pack("<Q", len(model.cameras))
    for c in model.cameras:
        data += struct.pack("<iiQQ", c.camera_id, MODEL_IDS[c.model], c.width, c.height)
        data += struct.pack(f"<{len(c.params)}d", *c.params)
    (folder / "cameras.bin").write_bytes(data)
    data = struct.pack("<Q", len(model.images))
    for image in model.images:
        data += struct.pack("<I7dI", image.image_id, *image.qvec, *image.tvec, image.camera_id)
        data += image.name.encode() + b"\x00" + struct.pack("<Q", len(image.point_ids))
        for (x, y), point_id in zip(image.xys.tolist(), image.point_ids.tolist()):
            data += struct.pack("<ddQ", x, y, point_id % 2**64)  # -1 is written as uint64 max
    (folder / "images.bin").write_bytes(data)
    data = struct.pack("<Q", len(model.points))
    for point_id, xyz in model.points.items():
        track = model.tracks.get(point_id, [])
        data += struct.pack("<Q3d3BdQ", point_id, *xyz, 128, 64, 32, 0.5, len(track))
        data += b"".join(struct.pack("<II", i, k) for i, k in track)
    (folder / "points3D.bin").write_bytes(data)


def quaternion(axis: tuple[float, float, float], angle: float) -> np.ndarray:
    """(qw, qx, qy, qz) of a rotation by `angle` radians about `axis`."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a unit quaternion, written independently of the package's (via Rodrigues)."""
    angle = 2 * np.arccos(np.clip(q[0], -1, 1))
    if angle < 1e-12:
        return np.eye(3)
    k = q[1:] / np.linalg.norm(q[1:])
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
