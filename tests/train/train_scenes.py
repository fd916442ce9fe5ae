"""Helpers for the training tests: small generated scenes with known depth, in each data format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from primedepth.train.data import HYPERSIM_FOCAL_PX, HYPERSIM_WIDTH


def scene_depth(height: int, width: int, seed: int) -> np.ndarray:
    """Planar depth (m) of a tilted floor with a box in front: smooth, with one depth edge."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    depth = 2.0 + 6.0 * (1.0 - y / height) + rng.uniform(0, 1) * x / width
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    depth[top : top + height // 3, left : left + width // 3] = rng.uniform(1.0, 1.8)
    return depth


def scene_rgb(depth: np.ndarray) -> np.ndarray:
    """Colours that follow the depth (near = bright), so a model can learn the mapping."""
    disparity = 1.0 / depth
    level = (disparity - disparity.min()) / (np.ptp(disparity) + 1e-9)
    rgb = np.stack([level, 1.0 - level, 0.5 * level + 0.25], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def scene_labels(depth: np.ndarray) -> np.ndarray:
    """ADE20K-style labels: 0 (unlabelled) on the far part, classes 1 and 2 elsewhere."""
    labels = np.where(depth < 2.0, 2, 1).astype(np.uint8)
    labels[depth > 7.0] = 0
    return labels


def save_uint16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(values, 0, 65535).round().astype(np.uint16)).save(path)


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


def planar_to_distance(planar: np.ndarray) -> np.ndarray:
    """Inverse of the Hypersim conversion, to write ray-distance files with known planar depth."""
    height, width = planar.shape
    focal = HYPERSIM_FOCAL_PX * width / HYPERSIM_WIDTH
    x = np.arange(width) - (width - 1) / 2.0
    y = np.arange(height) - (height - 1) / 2.0
    return planar * np.sqrt(x[None] ** 2 + y[:, None] ** 2 + focal**2) / focal


@dataclass
class Scenes:
    root: Path
    split: Path
    depths: list[np.ndarray]


def write_hypersim(root: Path, count: int = 3, size=(48, 64), kind: str = "planar", labels: bool = True) -> Scenes:
    """Marigold's layout: `<scene>/rgb_cam_00_frXXXX.png` and `depth_plane_...png` (mm)."""
    lines, depths = [], []
    for i in range(count):
        depth = scene_depth(*size, seed=i)
        depth[0, 0] = 0.0  # missing geometry
        if kind == "planar":  # (as ray distance it would overflow the uint16 millimetres)
            depth[0, 1] = 70.0  # beyond the 65 m range
        name = "depth_plane" if kind == "planar" else "depth_meters"
        stored = depth if kind == "planar" else planar_to_distance(depth)
        rgb_rel, depth_rel = f"ai_001_00{i}/rgb_cam_00_fr{i:04d}.png", f"ai_001_00{i}/{name}_cam_00_fr{i:04d}.png"
        save_rgb(root / rgb_rel, scene_rgb(np.where(depth > 0, depth, 1.0)))
        save_uint16(root / depth_rel, stored * 1000.0)
        line = f"{rgb_rel} {depth_rel}"
        if labels:
            seg_rel = f"ai_001_00{i}/semantic_cam_00_fr{i:04d}.png"
            save_rgb(root / seg_rel, scene_labels(depth))
            line += f" {seg_rel}"
        lines.append(line)
        depths.append(depth)
    split = root / "split.txt"
    split.write_text("# generated\n" + "\n".join(lines) + "\n")
    return Scenes(root, split, depths)


def write_vkitti(root: Path, count: int = 2, size=(40, 96)) -> Scenes:
    """vKITTI layout: `rgb/.../rgb_XXXXX.jpg` and `depth/.../depth_XXXXX.png` (cm, sky 65535)."""
    lines, depths = [], []
    for i in range(count):
        depth = scene_depth(*size, seed=10 + i) * 5.0
        depth[: size[0] // 5] = 655.35  # sky
        rgb_rel = f"rgb/Scene01/clone/frames/rgb/Camera_0/rgb_{i:05d}.jpg"
        depth_rel = f"depth/Scene01/clone/frames/depth/Camera_0/depth_{i:05d}.png"
        save_rgb(root / rgb_rel, scene_rgb(depth))
        save_uint16(root / depth_rel, depth * 100.0)
        lines.append(f"{rgb_rel} {depth_rel}")
        depths.append(depth)
    lines.append("rgb/Scene01/clone/frames/rgb/Camera_0/rgb_99999.jpg None")
    split = root / "vkitti_train.txt"
    split.write_text("\n".join(lines) + "\n")
    return Scenes(root, split, depths)


def write_unlabelled(root: Path, count: int = 3, size=(32, 40)) -> list[Path]:
    """A folder of plain images (ADE20K-like names) and their depth, for pseudo-labels."""
    paths = []
    for i in range(count):
        path = root / "images" / f"ADE_train_{i:08d}.jpg"
        save_rgb(path, scene_rgb(scene_depth(*size, seed=20 + i)))
        paths.append(path)
    return paths
