"""Example photos for the demo, drawn at start-up (nothing is downloaded or shipped).

Three small synthetic scenes with clear depth cues: a tiled floor running to the horizon, shaded
spheres in front of a wall, and a staircase. They make the demo usable offline at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_examples", "EXAMPLE_SIZE"]

EXAMPLE_SIZE = (192, 256)  # height, width


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [0, 1]: rows (down) and columns (right)."""
    height, width = EXAMPLE_SIZE
    return np.mgrid[0:height, 0:width].astype(np.float32) / np.array([height - 1, width - 1], np.float32)[:, None, None]


def _as_image(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8))


def tiled_floor() -> Image.Image:
    """A checkered floor in perspective under a sky gradient."""
    rows, cols = _grid()
    horizon = 0.4
    below = np.maximum(rows - horizon, 1e-3)
    depth = 1.0 / below  # distance along the floor grows towards the horizon
    lateral = (cols - 0.5) * depth
    checks = (np.floor(depth * 2) + np.floor(lateral * 2)) % 2
    floor = (0.35 + 0.45 * checks)[..., None] * np.array([0.9, 0.8, 0.6], np.float32)
    sky = np.stack([0.5 + 0.3 * rows, 0.7 + 0.2 * rows, np.ones_like(rows)], axis=-1)
    return _as_image(np.where((rows > horizon)[..., None], floor, sky))


def spheres() -> Image.Image:
    """Three shaded spheres of different sizes before a plain wall."""
    rows, cols = _grid()
    aspect = EXAMPLE_SIZE[1] / EXAMPLE_SIZE[0]
    rgb = np.stack([0.75 - 0.2 * rows, 0.72 - 0.2 * rows, 0.68 - 0.2 * rows], axis=-1)
    for (cy, cx, radius, colour) in ((0.6, 0.25, 0.3, (0.8, 0.2, 0.2)), (0.45, 0.62, 0.2, (0.2, 0.5, 0.8)),
                                     (0.35, 0.85, 0.1, (0.3, 0.7, 0.3))):
        dy, dx = (rows - cy) / radius, (cols - cx) * aspect / radius
        inside = dx**2 + dy**2 < 1
        shade = np.sqrt(np.clip(1 - dx**2 - dy**2, 0, 1)) * 0.8 + 0.2 - 0.3 * (dx + dy) / 2
        rgb = np.where(inside[..., None], np.clip(shade, 0, 1)[..., None] * np.array(colour, np.float32), rgb)
    return _as_image(rgb)


def staircase() -> Image.Image:
    """Steps rising away from the viewer, lit from the left."""
    rows, cols = _grid()
    steps = 8
    index = np.floor((1 - rows) * steps)
    tread = ((1 - rows) * steps - index) < 0.35
    light = 0.45 + 0.4 * (1 - cols) * (1 - index / steps)
    rgb = np.where(tread[..., None], light[..., None] * np.array([0.85, 0.8, 0.7], np.float32),
                   (light * 0.6)[..., None] * np.array([0.7, 0.7, 0.75], np.float32))
    return _as_image(rgb)


def write_examples(folder: Path) -> list[Path]:
    """Write the example photos as PNGs into `folder` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("tiled_floor", tiled_floor), ("spheres", spheres), ("staircase", staircase)):
        path = folder / f"{name}.png"
        draw().save(path)
        paths.append(path)
    return paths
