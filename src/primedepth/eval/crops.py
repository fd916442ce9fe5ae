"""Evaluation crops: which ground-truth pixels count, and the KITTI benchmark image crop.

Two different things are called "crop" in the literature:

- an *evaluation crop* keeps the full arrays and only removes pixels from the valid mask
  (NYU Eigen crop, KITTI Eigen and Garg masks);
- the *KITTI benchmark (KB) crop* cuts image and ground truth to 352 x 1216 before inference.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from ..errors import InputError

# NYUv2 Eigen crop, in pixels of the 480 x 640 frames: rows [45, 471), cols [41, 601).
NYU_FRAME_SHAPE = (480, 640)
NYU_EIGEN_ROWS = (45, 471)
NYU_EIGEN_COLS = (41, 601)

# KITTI evaluation masks as fractions of the (KB-cropped) ground-truth size.
KITTI_EIGEN_ROWS = (0.3324324, 0.91351351)
KITTI_EIGEN_COLS = (0.0359477, 0.96405229)
KITTI_GARG_ROWS = (0.40810811, 0.99189189)
KITTI_GARG_COLS = (0.03594771, 0.96405229)

# KITTI benchmark crop: bottom-aligned, horizontally centred 352 x 1216 window.
KB_CROP_HEIGHT = 352
KB_CROP_WIDTH = 1216

# A crop is a named protocol crop or explicit pixel bounds (top, bottom, left, right).
Crop = Union[str, tuple[int, int, int, int]]
NAMED_CROPS = ("nyu_eigen", "kitti_eigen", "kitti_garg")


def _fraction_window(
    shape: tuple[int, int], rows: tuple[float, float], cols: tuple[float, float]
) -> tuple[int, int, int, int]:
    """Pixel bounds of a window given as fractions of the image size (truncated, as upstream)."""
    height, width = shape
    return (int(rows[0] * height), int(rows[1] * height), int(cols[0] * width), int(cols[1] * width))


def crop_bounds(crop: Crop, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel bounds, end-exclusive, of `crop` for an image `shape`."""
    if isinstance(crop, str):
        if crop == "nyu_eigen":
            if tuple(shape) != NYU_FRAME_SHAPE:
                raise InputError(
                    f"the NYU Eigen crop is defined for {NYU_FRAME_SHAPE} frames, got {tuple(shape)}"
                )
            return (*NYU_EIGEN_ROWS, *NYU_EIGEN_COLS)
        if crop == "kitti_eigen":
            return _fraction_window(shape, KITTI_EIGEN_ROWS, KITTI_EIGEN_COLS)
        if crop == "kitti_garg":
            return _fraction_window(shape, KITTI_GARG_ROWS, KITTI_GARG_COLS)
        raise InputError(f"unknown crop {crop!r}; expected one of {', '.join(NAMED_CROPS)} or 4 ints")
    if len(crop) != 4 or not all(isinstance(v, (int, np.integer)) for v in crop):
        raise InputError(f"a pixel crop is (top, bottom, left, right) as 4 ints, got {crop!r}")
    top, bottom, left, right = (int(v) for v in crop)
    if not (0 <= top < bottom <= shape[0] and 0 <= left < right <= shape[1]):
        raise InputError(f"crop {crop!r} does not fit inside an image of shape {tuple(shape)}")
    return top, bottom, left, right


def crop_mask(crop: Crop | None, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask that is True inside the evaluation crop (everywhere when `crop` is None)."""
    if crop is None:
        return np.ones(shape, dtype=bool)
    top, bottom, left, right = crop_bounds(crop, shape)
    mask = np.zeros(shape, dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def kb_crop(array: np.ndarray) -> np.ndarray:
    """KITTI benchmark crop of an (H, W) or (H, W, C) array to 352 x 1216."""
    height, width = array.shape[:2]
    if height < KB_CROP_HEIGHT or width < KB_CROP_WIDTH:
        raise InputError(
            f"KITTI benchmark crop needs at least {KB_CROP_HEIGHT}x{KB_CROP_WIDTH}, got {height}x{width}"
        )
    top = height - KB_CROP_HEIGHT
    left = (width - KB_CROP_WIDTH) // 2
    return array[top : top + KB_CROP_HEIGHT, left : left + KB_CROP_WIDTH]
