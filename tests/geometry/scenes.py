"""Synthetic scenes of known geometry, ray-cast to exact depth with a known camera.

Camera frame as in `primedepth.geometry`: x right, y down, z forward; depth is z. Each scene
is a list of surfaces; a pixel's depth is the nearest positive hit along its ray, so the 3D
point of every pixel is known exactly (``t * ray`` with the ray's z equal to 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from primedepth.geometry import Intrinsics, SparseDepth


@dataclass(frozen=True)
class Plane:
    """Points X with normal . X = offset."""

    normal: tuple[float, float, float]
    offset: float

    def hit(self, rays: np.ndarray) -> np.ndarray:
        facing = rays @ np.asarray(self.normal, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.offset / facing
        return np.where(np.abs(facing) > 1e-12, t, np.inf)


@dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]
    radius: float

    def hit(self, rays: np.ndarray) -> np.ndarray:
        centre = np.asarray(self.centre, dtype=np.float64)
        a = np.einsum("...i,...i->...", rays, rays)
        b = rays @ centre
        disc = b * b - a * (centre @ centre - self.radius**2)
        t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where(disc >= 0, t, np.inf)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box between two corners (slab test)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def hit(self, rays: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.asarray(self.low) / rays
            t2 = np.asarray(self.high) / rays
        near = np.nanmax(np.minimum(t1, t2), axis=-1)
        far = np.nanmin(np.maximum(t1, t2), axis=-1)
        return np.where((near <= far) & (near > 0), near, np.inf)


CAMERA = Intrinsics(fx=110.0, fy=105.0, cx=79.3, cy=59.6, width=160, height=120)


def rays(intrinsics: Intrinsics = CAMERA) -> np.ndarray:
    """(H, W, 3) rays through the pixel centres with z = 1."""
    cols = np.arange(intrinsics.width, dtype=np.float64)
    rows = np.arange(intrinsics.height, dtype=np.float64)
    x = (cols[None, :] - intrinsics.cx) / intrinsics.fx
    y = (rows[:, None] - intrinsics.cy) / intrinsics.fy
    return np.stack(np.broadcast_arrays(x, y, np.ones_like(x * y)), axis=-1)


def render(surfaces: list, intrinsics: Intrinsics = CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth (H, W) and 3D points (H, W, 3); pixels that hit nothing are inf."""
    directions = rays(intrinsics)
    hits = np.stack([surface.hit(directions) for surface in surfaces])
    hits = np.where(hits > 0, hits, np.inf)
    depth = hits.min(axis=0)
    return depth, directions * depth[..., None]


TILTED_PLANE = [Plane((0.0, -0.3, 1.0), 4.0)]
SPHERE_BEFORE_WALL = [Sphere((0.2, -0.1, 3.0), 0.8), Plane((0.0, 0.0, 1.0), 6.0)]
BOXES = [Box((-1.2, -0.2, 3.0), (-0.2, 1.0, 4.0)), Box((0.4, 0.3, 2.5), (1.0, 1.0, 3.2)),
         Plane((0.0, 1.0, 0.0), 1.0), Plane((0.0, 0.0, 1.0), 9.0)]
SCENES = {"tilted_plane": TILTED_PLANE, "sphere_before_wall": SPHERE_BEFORE_WALL, "boxes": BOXES}


def colours(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 texture with distinct neighbouring pixels."""
    rows, cols = np.indices(shape)
    rgb = np.stack([(cols * 7) % 256, (rows * 11) % 256, (rows * 3 + cols * 5 + seed) % 256], axis=-1)
    return rgb.astype(np.uint8)


def affine_prediction(depth: np.ndarray, scale: float, shift: float, noise: float = 0.0,
                      seed: int = 0) -> np.ndarray:
    """What an affine-invariant model would say: ``pred`` with ``scale * pred + shift = 1/depth``.

    `noise` is the standard deviation of Gaussian noise added to the prediction, relative to
    the prediction's range.
    """
    pred = (1.0 / depth - shift) / scale
    if noise:
        pred = pred + np.random.default_rng(seed).normal(0.0, noise * np.ptp(pred), pred.shape)
    return pred.astype(np.float32)


def known_depths(depth: np.ndarray, count: int, outliers: float, one_sided: bool, seed: int = 1) -> SparseDepth:
    """`count` known depths at random pixels with 0.2% sensor noise; a fraction `outliers` of
    them is off by a factor 1.3-3 (too far, or with `one_sided` False also its inverse)."""
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, depth.shape[0], count), rng.integers(0, depth.shape[1], count)
    known = depth[y, x] * rng.normal(1.0, 0.002, count)
    bad = rng.random(count) < outliers
    factor = rng.uniform(1.3, 3.0, int(bad.sum()))
    if not one_sided:
        factor = np.where(rng.random(factor.size) < 0.5, factor, 1.0 / factor)
    known[bad] *= factor
    return SparseDepth(x=x, y=y, depth_m=known, shape=depth.shape, source="test points")
