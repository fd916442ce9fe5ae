"""Tiny evaluation archives in the exact layout and encoding of the official ones.

Each RGB image encodes a per-pixel level k in its red channel (R = LEVEL_STEP * k), and the
ground truth at that pixel is DEPTH_LEVELS[k] metres, a value every encoding stores exactly
(mm PNG, 1/256 m PNG, float32). `LevelModel` decodes the image back, so it predicts an exact
affine transform of the truth in its output space: a model the harness must score perfectly.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

DEPTH_LEVELS = np.array([0.75, 1.0, 2.0, 2.5, 4.0, 5.0])
LEVEL_STEP = 40
BLOCK = 8

NYU_SHAPE = (480, 640)
KITTI_SHAPE = (375, 1242)
ETH3D_SHAPE = (24, 36)
SCANNET_SHAPE = (48, 64)
DIODE_SHAPE = (48, 64)


def levels(shape: tuple[int, int], offset: int = 0) -> np.ndarray:
    """A blocky map of level indices, varied enough for a well-posed affine fit."""
    rows, cols = np.indices(shape)
    return (rows // BLOCK + 2 * (cols // BLOCK) + offset) % len(DEPTH_LEVELS)


def rgb_of(level_map: np.ndarray) -> np.ndarray:
    """RGB image whose red channel encodes the levels."""
    image = np.zeros((*level_map.shape, 3), dtype=np.uint8)
    image[..., 0] = level_map * LEVEL_STEP
    image[..., 1] = 100
    return image


def depth_of(level_map: np.ndarray) -> np.ndarray:
    """Ground-truth depth of a level map, in metres."""
    return DEPTH_LEVELS[level_map]


class LevelModel:
    """Deterministic test model: decodes the levels and returns depth or disparity, affinely."""

    def __init__(
        self, output_space: str = "disparity", name: str | None = None, predicts: str | None = None
    ) -> None:
        self.output_space = output_space
        self.predicts = predicts or output_space  # differs only to test a mislabelled model
        self.name = name or f"level-{output_space}"
        self.calls: list[tuple[int, int]] = []

    def __call__(self, image: np.ndarray) -> np.ndarray:
        self.calls.append(image.shape[:2])
        level = np.clip(np.rint(image[..., 0] / LEVEL_STEP).astype(int), 0, len(DEPTH_LEVELS) - 1)
        depth = DEPTH_LEVELS[level]
        value = 1.0 / depth if self.predicts == "disparity" else depth
        return (3.0 * value + 7.0).astype(np.float32)


def png_bytes(array: np.ndarray) -> bytes:
    """Lossless PNG (uint16 single channel or uint8 RGB)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=98, subsampling=0)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """Uncompressed tar whose names start with './', as in the official archives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def build_nyu(root: Path) -> dict:
    """Two test frames (one with a hole in the depth) and a train frame to be ignored."""
    members, truth = {}, {}
    for offset, (scene, number) in enumerate([("kitchen_0004", "0001"), ("office_0005", "0009")]):
        lv = levels(NYU_SHAPE, offset)
        depth = depth_of(lv)
        depth[:10, :10] = 0.0  # missing measurements
        folder = f"test/{scene}"
        members[f"{folder}/rgb_{number}.png"] = png_bytes(rgb_of(lv))
        members[f"{folder}/depth_{number}.png"] = png_bytes(np.rint(depth * 1000).astype(np.uint16))
        members[f"{folder}/filled_{number}.png"] = png_bytes(np.full(NYU_SHAPE, 1500, np.uint16))
        truth[f"{folder}/rgb_{number}.png"] = depth
    lv = levels(NYU_SHAPE)
    members["train/bedroom_0001/rgb_0100.png"] = png_bytes(rgb_of(lv))
    members["train/bedroom_0001/depth_0100.png"] = png_bytes(np.full(NYU_SHAPE, 1000, np.uint16))
    write_tar(root / "nyuv2" / "nyu_labeled_extracted.tar", members)
    return truth


KITTI_FRAMES = [
    ("2011_09_26_drive_0002_sync", "0000000069", True),
    ("2011_09_26_drive_0002_sync", "0000000054", False),  # no ground truth: dropped
    ("2011_09_26_drive_0009_sync", "0000000042", True),
]


def build_kitti(root: Path) -> dict:
    """Full-size frames, sparse ground truth (every third pixel) stored as uint16 / 256."""
    members, truth = {}, {}
    for offset, (drive, frame, has_gt) in enumerate(KITTI_FRAMES):
        lv = levels(KITTI_SHAPE, offset)
        rgb_name = f"2011_09_26/{drive}/image_02/data/{frame}.png"
        members[rgb_name] = png_bytes(rgb_of(lv))
        if has_gt:
            depth = depth_of(lv)
            depth[:, 1::3] = 0.0
            gt_name = f"{drive}/proj_depth/groundtruth/image_02/{frame}.png"
            members[gt_name] = png_bytes(np.rint(depth * 256).astype(np.uint16))
            truth[rgb_name] = depth
    write_tar(root / "kitti" / "kitti_eigen_split_test.tar", members)
    return truth


def kitti_split_lines() -> list[str]:
    """The official three-column format, with 'None' for frames without ground truth."""
    lines = []
    for drive, frame, has_gt in KITTI_FRAMES:
        gt = f"{drive}/proj_depth/groundtruth/image_02/{frame}.png" if has_gt else "None"
        lines.append(f"2011_09_26/{drive}/image_02/data/{frame}.png {gt} 721.5377")
    return lines


def build_eth3d(root: Path) -> dict:
    """Raw little-endian float32 depth named .JPG, inf where there is no measurement."""
    members, truth = {}, {}
    for offset, (scene, frame) in enumerate([("office", "DSC_0219"), ("courtyard", "DSC_0286")]):
        lv = levels(ETH3D_SHAPE, offset)
        depth = depth_of(lv).astype(np.float32)
        raw = depth.copy()
        raw[0, :5] = np.inf
        depth[0, :5] = 0.0
        rgb_name = f"rgb/{scene}/images/dslr_images/{frame}.JPG"
        members[rgb_name] = jpg_bytes(rgb_of(lv))
        members[f"depth/{scene}_dslr_depth/{scene}/ground_truth_depth/dslr_images/{frame}.JPG"] = (
            raw.astype("<f4").tobytes()
        )
        truth[rgb_name] = depth
    write_tar(root / "eth3d" / "eth3d.tar", members)
    return truth


def build_scannet(root: Path) -> dict:
    members, truth = {}, {}
    for offset, (scene, frame) in enumerate([("scene0406_02", "000300"), ("scene0088_02", "001100")]):
        lv = levels(SCANNET_SHAPE, offset)
        depth = depth_of(lv)
        depth[-3:, :] = 0.0
        members[f"{scene}/color/{frame}.jpg"] = jpg_bytes(rgb_of(lv))
        members[f"{scene}/depth/{frame}.png"] = png_bytes(np.rint(depth * 1000).astype(np.uint16))
        truth[f"{scene}/color/{frame}.jpg"] = depth
    write_tar(root / "scannet" / "scannet_val_sampled_800_1.tar", members)
    return truth


DIODE_STEMS = [
    "indoors/scene_00021/scan_00189/00021_00189_indoors_200_010",
    "indoors/scene_00021/scan_00189/00021_00189_indoors_240_030",
    "outdoor/scene_00022/scan_00196/00022_00196_outdoor_350_020",
]


def build_diode(root: Path) -> dict:
    """Depth as (H, W, 1) float32 .npy and the shipped validity mask as (H, W) .npy."""
    members, truth = {}, {}
    for offset, stem in enumerate(DIODE_STEMS):
        lv = levels(DIODE_SHAPE, offset)
        depth = depth_of(lv).astype(np.float32)
        mask = np.ones(DIODE_SHAPE, dtype=np.float32)
        mask[:, :4] = 0.0
        members[f"{stem}.png"] = png_bytes(rgb_of(lv))
        members[f"{stem}_depth.npy"] = npy_bytes(depth[..., None])
        members[f"{stem}_depth_mask.npy"] = npy_bytes(mask)
        truth[f"{stem}.png"] = (depth, mask.astype(bool))
    write_tar(root / "diode" / "diode_val.tar", members)
    return truth


def build_all(root: Path) -> dict:
    """Every archive in the layout of the official download folder."""
    return {
        "nyu": build_nyu(root),
        "kitti": build_kitti(root),
        "eth3d": build_eth3d(root),
        "scannet": build_scannet(root),
        "diode": build_diode(root),
    }
