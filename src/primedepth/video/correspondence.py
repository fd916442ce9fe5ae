"""Which pixel of the previous frame each pixel of the current frame shows, at a small working size.

Alignment only needs a scale and a shift per frame, so it runs on block-averaged copies of the
frames and depth maps (a few hundred pixels a side) and applies the result at full size: the
cost per frame stays small at any resolution.

- "same-pixel" correspondence (`--temporal align`): pixel p shows what p showed before, which holds
  for a still camera; pixels whose colour changed are left out.
- optical flow (`--temporal flow`, and `--temporal global` when OpenCV is there): OpenCV's
  Farneback (default) or DIS flow from the current to the previous frame; a pixel is used where
  the colour it points to matches its own (`coalign` also checks the flow forwards and backwards).

OpenCV comes from the optional extra ``primedepth[video]``; only the flow mode needs it (the
global mode falls back to the same pixel without it).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..errors import InputError

FLOW_METHODS = ("farneback", "dis")
# Farneback by measurement: on the synthetic clips' repetitive textures DIS (any preset) lost
# the flow on a third of the frame at the working size, Farneback on 4% (benchmarks/video_stability.py).
DEFAULT_FLOW = "farneback"
# A pixel whose grey value (0..1) differs by more than this from what it corresponds to is not
# trusted for alignment: it moved (same-pixel), or the flow is wrong there.
COLOUR_TOLERANCE = 0.1


def block_factor(height: int, width: int, work_size: int) -> int:
    """The integer block side that brings the longer side down to about `work_size`."""
    return max(1, int(np.ceil(max(height, width) / work_size)))


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean over `factor` x `factor` blocks (edges that do not fill a block are dropped)."""
    if factor == 1:
        return np.asarray(array, dtype=np.float32)
    height, width = array.shape[0] // factor * factor, array.shape[1] // factor * factor
    if height == 0 or width == 0:
        return np.asarray(array, dtype=np.float32)
    cropped = np.asarray(array[:height, :width], dtype=np.float32)
    blocks = cropped.reshape(height // factor, factor, width // factor, factor, *cropped.shape[2:])
    return blocks.mean(axis=(1, 3))


def to_gray(frame: np.ndarray) -> np.ndarray:
    """(H, W) grey in [0, 1] of an (H, W, 3) or (H, W) frame, uint8 or float in [0, 1]."""
    array = np.asarray(frame)
    scale = 1.0 / 255.0 if array.dtype == np.uint8 else 1.0
    if array.ndim == 2:
        return array.astype(np.float32) * np.float32(scale)
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32) * np.float32(scale)
    return array[..., 0] * weights[0] + array[..., 1] * weights[1] + array[..., 2] * weights[2]


def flow_available() -> bool:
    """Whether OpenCV (the optional extra ``primedepth[video]``) can be imported."""
    return importlib.util.find_spec("cv2") is not None


def resolve_temporal(mode: str | None) -> str:
    """The temporal mode to run: as asked, or by default the best measured, "global"
    (benchmarks/video_stability.py), which uses optical flow when OpenCV is installed and the
    same pixel otherwise."""
    return "global" if mode is None else mode


def _opencv() -> Any:
    """OpenCV, or a clear error naming the extra that provides it."""
    try:
        import cv2  # lazy: optional extra
    except ImportError:
        raise InputError(
            "--temporal flow needs OpenCV: pip install 'primedepth[video]' (opencv-python-headless), "
            "or use --temporal align"
        ) from None
    return cv2


class FlowEstimator:
    """Backward optical flow (current -> previous frame) of small grey frames."""

    def __init__(self, method: str = DEFAULT_FLOW) -> None:
        if method not in FLOW_METHODS:
            raise InputError(f"unknown flow method {method!r}; choose from {', '.join(FLOW_METHODS)}")
        self.cv2 = _opencv()
        self.method = method
        self._grids: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._dis = None
        if method == "dis":
            self._dis = self.cv2.DISOpticalFlow_create(self.cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, gray: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """(H, W, 2) flow: pixel (x, y) of `gray` shows pixel (x + fx, y + fy) of `previous`."""
        current8 = np.clip(gray * 255.0, 0, 255).astype(np.uint8)
        previous8 = np.clip(previous * 255.0, 0, 255).astype(np.uint8)
        if self._dis is not None:
            return self._dis.calc(current8, previous8, None)
        return self.cv2.calcOpticalFlowFarneback(current8, previous8, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def warp(self, image: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """`image` (in the previous frame's pixels) seen from the current frame; NaN outside."""
        height, width = flow.shape[:2]
        if (height, width) not in self._grids:  # the working size and the full size
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            self._grids[(height, width)] = (xs, ys)
        xs, ys = self._grids[(height, width)]
        map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
        return self.cv2.remap(np.asarray(image, dtype=np.float32), map_x, map_y, self.cv2.INTER_LINEAR,
                              borderMode=self.cv2.BORDER_CONSTANT, borderValue=float("nan"))


def upsample_flow(flow: np.ndarray, factor: int, shape: tuple[int, ...]) -> np.ndarray:
    """Flow of `block_mean` copies brought back to full size (H, W, 2) in full-size pixels."""
    if factor == 1 and flow.shape[:2] == tuple(shape[:2]):
        return flow
    cv2 = _opencv()
    height, width = flow.shape[0] * factor, flow.shape[1] * factor
    full = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) * float(factor)
    pad = ((0, shape[0] - height), (0, shape[1] - width), (0, 0))
    return np.pad(full, pad, mode="edge")


def stable_pixels(gray: np.ndarray | None, previous_seen: np.ndarray | None) -> np.ndarray | None:
    """Pixels whose colour matches what they correspond to in the previous frame (None: no frames)."""
    if gray is None or previous_seen is None:
        return None
    with np.errstate(invalid="ignore"):
        return np.abs(gray - previous_seen) <= COLOUR_TOLERANCE
