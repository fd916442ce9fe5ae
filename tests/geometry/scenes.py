"""Synthetic scenes of known geometry, ray-cast to exact depth with a known camera.

They live in `primedepth.testing` (the benchmarks use them too, and must not import tests/);
this module keeps the names the geometry tests import. Camera frame as in `primedepth.geometry`:
x right, y down, z forward; depth is z.
"""

from __future__ import annotations

from primedepth.testing import (
    BOXES,
    SCENES,
    SPHERE_BEFORE_WALL,
    TILTED_PLANE,
    Box,
    Plane,
    Sphere,
    affine_prediction,
    colours,
    known_depths,
    rays,
    render,
)
from primedepth.testing import SCENE_CAMERA as CAMERA

__all__ = [
    "BOXES", "CAMERA", "SCENES", "SPHERE_BEFORE_WALL", "TILTED_PLANE", "Box", "Plane", "Sphere",
    "affine_prediction", "colours", "known_depths", "rays", "render",
]
