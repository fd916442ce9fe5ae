"""Stand-ins and small inputs for the engine tests: a counting fake model, images, clips."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from ..video.helpers import write_video

RNG = np.random.default_rng(0)
SIZE = (32, 48)  # height, width


class CountingPipeline:
    """Depth = mean colour; counts the images it predicts (a re-run that resumes predicts none)."""

    segmentation_head = None

    def __init__(self, fail_with: BaseException | None = None) -> None:
        self.predicted = 0
        self.fail_with = fail_with

    def __call__(self, images, **kwargs):
        if self.fail_with is not None:
            raise self.fail_with
        self.predicted += len(images)
        depth = [np.asarray(image, np.float32).mean(-1) / 255 + 0.1 for image in images]
        return SimpleNamespace(depth=depth, segmentation=None, prompts=None)


def rgb(height: int = SIZE[0], width: int = SIZE[1]) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def save_png(path: Path, image: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb() if image is None else image).save(path)
    return path


def write_clip(path: Path, frames: int, size: tuple[int, int] = SIZE, fps: int = 8) -> Path:
    """An H.264 .mp4 of smoothly changing frames (`tests.video.helpers.write_video`)."""
    height, width = size
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, None, :, None]
    steps = np.arange(frames, dtype=np.float32)[:, None, None, None] % 50
    pixels = np.broadcast_to(ramp + steps, (frames, height, width, 3)).astype(np.uint8)
    return write_video(path, pixels, fps=fps)
