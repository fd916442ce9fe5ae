"""Which way is up in the 3D files: the coordinate frame each format is written in.

Everything in `primedepth.geometry` computes in the OpenCV camera frame (x right, y down,
z forward), which is what calibration tools and COLMAP use. Viewers disagree with it: glTF
fixes +y up with the camera looking down -z, and MeshLab, Open3D, three.js and Blender's OBJ
importer (its default "Up: Y, Forward: -Z") show files the same way. A file in the camera
frame therefore opens upside down, so the files are written in one of two frames:

- ``"opengl"`` (default for PLY and OBJ, always for GLB): x right, y up, z towards the viewer;
  the camera sits at the origin looking down -z. The scene opens upright and seen from the
  front in MeshLab, Open3D, three.js-based viewers and Blender's OBJ importer. Blender's PLY
  importer assumes z up instead: pick "Up: Y, Forward: -Z" in its dialog (or rotate by 90
  degrees about x).
- ``"opencv"``: the camera frame itself (x right, y down, z forward), for combining the points
  with OpenCV/COLMAP camera poses.

Going from one to the other negates y and z: a rotation by 180 degrees about x, so nothing is
mirrored and triangles keep their winding.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

FRAMES = ("opengl", "opencv")
DEFAULT_FRAME = "opengl"
FRAME_DESCRIPTIONS = {
    "opengl": "x right, y up, z towards the viewer (camera at the origin looking down -z; glTF/OpenGL)",
    "opencv": "x right, y down, z forward (the OpenCV camera frame; camera at the origin)",
}
_FROM_OPENCV = {"opengl": np.array([1.0, -1.0, -1.0]), "opencv": np.array([1.0, 1.0, 1.0])}


def check_frame(frame: str) -> str:
    """Refuse frames other than `FRAMES`."""
    if frame not in FRAMES:
        raise InputError(f"unknown coordinate frame {frame!r}; use {' or '.join(FRAMES)}")
    return frame


def from_camera_frame(points: np.ndarray, frame: str) -> np.ndarray:
    """Points (..., 3) in the OpenCV camera frame turned into `frame` (same dtype)."""
    points = np.asarray(points)
    signs = _FROM_OPENCV[check_frame(frame)]
    if frame == "opencv":
        return points
    return points * signs.astype(points.dtype if points.dtype.kind == "f" else np.float64)
