"""The one sizing rule (`primedepth.processing.processing_size`), as a property over many sizes.

Every image of at least 2x2 pixels, at every accepted max_size, either gets a processing size
the model can run (both sides >= its minimum, bounded cost, aspect kept) or an InputError that
names the real reason (its aspect ratio beyond MAX_ASPECT_RATIO:1). Nothing divides by zero and
no ordinary photo is refused. Pure arithmetic: no model, runs in well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.processing import MAX_ASPECT_RATIO, MIN_MAX_SIZE, processed_size, processing_size

MAX_SIZES = (MIN_MAX_SIZE, 65, 100, 128, 256, 513, 768, 1024, 2048)
MIN_SIDES = (64, 32, 8)  # Stable Diffusion's, and smaller test models'


def _sizes(count: int, seed: int = 0) -> list[tuple[int, int]]:
    """Random (height, width) with sides in 2..20000 and aspect ratios up to 2000:1 (log-uniform),
    plus the corners of that range."""
    rng = np.random.default_rng(seed)
    sizes = [(2, 2), (2, 3), (20000, 20000), (2, 4000), (10, 20000), (20000, 10), (16, 4000), (4000, 16)]
    while len(sizes) < count:
        ratio = float(np.exp(rng.uniform(0, np.log(2000))))
        short = int(np.exp(rng.uniform(np.log(2), np.log(20000))))
        long = min(20000, max(short, round(short * ratio)))
        sizes.append((short, long) if rng.random() < 0.5 else (long, short))
    return sizes


def _check(height: int, width: int, max_size: int, min_side: int) -> None:
    ratio = max(height, width) / min(height, width)
    try:
        size = processing_size(height, width, max_size, min_side)
    except InputError as error:
        assert ratio > MAX_ASPECT_RATIO, (height, width, max_size, str(error))
        assert f"{MAX_ASPECT_RATIO}:1" in str(error) and "aspect ratio" in str(error)
        return
    assert ratio <= MAX_ASPECT_RATIO, (height, width, max_size, size)
    assert min(size) >= min_side, (height, width, max_size, size)
    cost = max(max(max_size, min_side) ** 2, min_side**2 * MAX_ASPECT_RATIO)
    assert size[0] * size[1] <= cost * 1.05, (height, width, max_size, size)
    if max(height, width) <= max_size and min(height, width) >= min_side:
        assert size == (height, width)  # never resized without a reason
    new_ratio = max(size) / min(size)
    # The shape is kept, up to rounding each side to whole pixels.
    assert abs(new_ratio - ratio) <= (ratio + 1) / (min(size) - 1), (height, width, max_size, size)
    assert (size[0] >= size[1]) == (height >= width) or size[0] == size[1]


def test_every_size_and_aspect_ratio_is_processed_or_refused_for_its_ratio():
    for height, width in _sizes(3000):
        for max_size in MAX_SIZES:
            for min_side in MIN_SIDES:
                _check(height, width, max_size, min_side)


@pytest.mark.parametrize("max_size", MAX_SIZES)
def test_ordinary_photos_are_never_refused(max_size):
    for height, width in ((120, 160), (480, 640), (3000, 4000), (4000, 3000), (1080, 1920), (600, 7200), (2, 2)):
        height_out, width_out = processing_size(height, width, max_size, 64)
        assert min(height_out, width_out) >= 64


def test_the_cases_of_the_issue():
    assert processing_size(120, 160, 64, 64) == (64, 85)  # 160x120 at max_size 64 used to be refused
    with pytest.raises(InputError, match="aspect ratio is 250:1"):
        processing_size(16, 4000, 128, 64)  # used to divide by zero
    assert processed_size(16, 4000, 128)[0] >= 1 and processed_size(4000, 16, 128)[1] >= 1
    assert processed_size(600, 1300, 1024) == (472, 1024)  # the official rule is unchanged
    assert processing_size(64, 64 * MAX_ASPECT_RATIO, 1024, 64) == (64, 64 * MAX_ASPECT_RATIO)
