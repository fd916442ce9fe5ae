"""Shared inputs of the Ray engine tests: a folder of images of mixed sizes with two bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [(32, 48), (40, 24), (48, 48), (24, 40)]
GOOD = 18
BAD = {"broken.jpg": "corrupt or truncated image", "empty.png": "file is empty"}


def make_photos(root: Path, count: int = GOOD, seed: int = 0) -> Path:
    """`count` good images (RGB, RGBA and 16-bit gray, four sizes) plus a truncated JPEG and
    a zero-byte PNG."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        height, width = SIZES[index % len(SIZES)]
        if index % 6 == 5:
            image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        else:
            image = Image.fromarray(rng.integers(0, 256, (height, width, 3 + (index % 6 == 4)), dtype=np.uint8))
        image.save(root / f"img{index:02d}.png")
    jpeg = root / "source.jpg"
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(jpeg)
    (root / "broken.jpg").write_bytes(jpeg.read_bytes()[:200])
    jpeg.unlink()
    (root / "empty.png").write_bytes(b"")
    return root


def files_below(folder: Path) -> list[str]:
    """Every file below a folder, hidden ones included, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def assert_same_depth(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal within 1e-6 of the depth range (batches may round differently)."""
    span = float(expected.max() - expected.min()) or 1.0
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6 * span)


def make_video(path: Path, frames: int = 3) -> Path:
    """A short 8 fps clip of random 32x48 frames."""
    from fractions import Fraction

    from primedepth import io

    rng = np.random.default_rng(1)
    with io.DepthVideoWriter(path, Fraction(8)) as writer:
        for _ in range(frames):
            writer.write(rng.random((32, 48), dtype=np.float32))
    return path
