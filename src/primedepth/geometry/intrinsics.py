"""Pinhole camera intrinsics: given, from a field of view, from EXIF, or a stated default.

Conventions used throughout `primedepth.geometry`:

- pixel (column ``u``, row ``v``) is 0-based from the top-left, and pixel *centres* sit at
  integer coordinates, so the centre of a W x H image is ``((W - 1) / 2, (H - 1) / 2)``;
- the camera frame is OpenCV's: x right, y down, z forward; depth is z-depth (distance along
  the optical axis, as the model predicts), not the distance along the ray.

Without any calibration the focal length is a guess: `DEFAULT_FOV_DEG` (60 degrees
horizontal) sits between a phone's main camera (about 65-70 degrees) and a 50 mm-equivalent
lens (about 40 degrees), and is what most people mean by "a normal photo"; the geometry is then
only right up to that assumption, which is why a warning is always reported.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import InputError

DEFAULT_FOV_DEG = 60.0

# The 35 mm equivalent focal length is defined through the diagonal of a 36 x 24 mm frame
# (the "crop factor"), so it maps to pixels through the image diagonal, which also makes it
# independent of the EXIF orientation.
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)

EXIF_IFD_TAG = 0x8769  # pointer to the Exif sub-IFD
FOCAL_LENGTH_35MM_TAG = 0xA405  # "FocalLengthIn35mmFilm", integer millimetres


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels of a `width` x `height` image."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        """Refuse cameras that cannot project (zero, negative or non-finite values)."""
        if not (self.fx > 0 and self.fy > 0 and math.isfinite(self.fx) and math.isfinite(self.fy)):
            raise InputError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise InputError(f"principal point must be finite, got cx={self.cx}, cy={self.cy}")

    @classmethod
    def from_fov(cls, width: int, height: int, fov_deg: float) -> Intrinsics:
        """Square pixels, centred principal point, and the given horizontal field of view."""
        check_fov(fov_deg)
        focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_focal_35mm(cls, width: int, height: int, focal_35mm: float) -> Intrinsics:
        """From a 35 mm equivalent focal length, through the image diagonal (see module)."""
        focal = focal_35mm * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
        return cls(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @property
    def horizontal_fov_deg(self) -> float:
        """The horizontal field of view these intrinsics imply (for reports)."""
        return math.degrees(2.0 * math.atan((self.width / 2.0) / self.fx))

    def resized(self, width: int, height: int) -> Intrinsics:
        """The same camera for an image resampled to `width` x `height` (pixel-centre exact)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
            width, height,
        )

    def as_dict(self) -> dict[str, float]:
        """Plain numbers for reports and file headers."""
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy,
                "width": self.width, "height": self.height}


def check_fov(fov_deg: float) -> float:
    """Refuse fields of view a pinhole camera cannot have."""
    if not (isinstance(fov_deg, (int, float)) and 0.0 < fov_deg < 180.0):
        raise InputError(f"field of view must be between 0 and 180 degrees (exclusive), got {fov_deg}")
    return float(fov_deg)


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """Parse ``"fx,fy,cx,cy"`` (commas or spaces) as given on the command line."""
    parts = text.replace(",", " ").split()
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(value) for value in values):
        raise InputError(f"intrinsics must be four numbers 'fx,fy,cx,cy' in pixels, got {text!r}")
    if values[0] <= 0 or values[1] <= 0:
        raise InputError(f"focal lengths fx and fy must be positive, got {text!r}")
    return values  # type: ignore[return-value]


def exif_focal_35mm(path: str | os.PathLike[str]) -> float | None:
    """The EXIF 35 mm equivalent focal length in millimetres, or None when absent/unreadable."""
    try:
        with Image.open(path) as image:
            value = image.getexif().get_ifd(EXIF_IFD_TAG).get(FOCAL_LENGTH_35MM_TAG)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    try:
        focal = float(value) if value is not None else 0.0
    except (TypeError, ValueError):
        return None
    return focal if focal > 0 else None


def resolve_intrinsics(
    width: int,
    height: int,
    intrinsics: tuple[float, float, float, float] | Intrinsics | None = None,
    fov_deg: float | None = None,
    source: Path | None = None,
    calibrated: Intrinsics | None = None,
) -> tuple[Intrinsics, str, list[str]]:
    """The camera to unproject with, where it came from, and warnings.

    Priority: explicit `intrinsics` (pixels of this image), then `fov_deg`, then a
    `calibrated` camera (e.g. the COLMAP model's, rescaled to this size), then the EXIF 35 mm
    focal length of `source`, then `DEFAULT_FOV_DEG` with a warning.
    """
    if isinstance(intrinsics, Intrinsics):
        return intrinsics.resized(width, height), "intrinsics", []
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics
        return Intrinsics(fx, fy, cx, cy, width, height), "intrinsics", []
    if fov_deg is not None:
        return Intrinsics.from_fov(width, height, fov_deg), "fov", []
    if calibrated is not None:
        return calibrated.resized(width, height), "colmap", []
    focal_35mm = exif_focal_35mm(source) if source is not None and Path(source).is_file() else None
    if focal_35mm is not None:
        return Intrinsics.from_focal_35mm(width, height, focal_35mm), "exif", []
    warning = (
        f"no intrinsics, field of view or EXIF focal length: assuming a {DEFAULT_FOV_DEG:g} degree "
        "horizontal field of view, so the 3D shape is only right up to that assumption "
        "(give --fov or --intrinsics fx,fy,cx,cy)"
    )
    return Intrinsics.from_fov(width, height, DEFAULT_FOV_DEG), "default", [warning]
