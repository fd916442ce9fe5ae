"""Crop and mask boundaries, index by index: NYU Eigen crop, KITTI KB crop and Eigen/Garg masks."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.eval import crop_mask, kb_crop


def _edges(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_nyu_eigen_crop_rows_45_to_470_cols_41_to_600():
    mask = crop_mask("nyu_eigen", (480, 640))
    assert _edges(mask) == (45, 470, 41, 600)
    assert not mask[44, 300] and mask[45, 300] and mask[470, 300] and not mask[471, 300]
    assert not mask[200, 40] and mask[200, 41] and mask[200, 600] and not mask[200, 601]
    assert mask.sum() == 426 * 560
    with pytest.raises(InputError, match="480, 640"):
        crop_mask("nyu_eigen", (481, 640))


def test_kitti_eigen_mask_on_the_kb_crop():
    mask = crop_mask("kitti_eigen", (352, 1216))
    # int(0.3324324*352)=117, int(0.91351351*352)=321, int(0.0359477*1216)=43, int(0.96405229*1216)=1172
    assert _edges(mask) == (117, 320, 43, 1171)
    assert not mask[116, 500] and mask[117, 500] and mask[320, 500] and not mask[321, 500]
    assert not mask[200, 42] and mask[200, 43] and mask[200, 1171] and not mask[200, 1172]
    assert mask.sum() == (321 - 117) * (1172 - 43)


def test_kitti_garg_mask():
    mask = crop_mask("kitti_garg", (352, 1216))
    # int(0.40810811*352)=143, int(0.99189189*352)=349
    assert _edges(mask) == (143, 348, 43, 1171)


def test_pixel_crop_and_none():
    mask = crop_mask((2, 5, 1, 3), (6, 4))
    assert _edges(mask) == (2, 4, 1, 2)
    assert crop_mask(None, (3, 3)).all()
    with pytest.raises(InputError, match="does not fit"):
        crop_mask((0, 7, 0, 2), (6, 4))


@pytest.mark.parametrize("width, left", [(1242, 13), (1241, 12), (1224, 4), (1216, 0)])
def test_kb_crop_is_bottom_aligned_and_centred(width, left):
    height = 375
    rows, cols = np.indices((height, width))
    coords = rows * 10000 + cols
    cropped = kb_crop(coords)
    assert cropped.shape == (352, 1216)
    assert cropped[0, 0] == (height - 352) * 10000 + left  # top = 23
    assert cropped[-1, -1] == (height - 1) * 10000 + left + 1215
    rgb = np.stack([coords] * 3, axis=-1)
    np.testing.assert_array_equal(kb_crop(rgb)[..., 1], cropped)


def test_kb_crop_rejects_small_frames():
    with pytest.raises(InputError, match="352x1216"):
        kb_crop(np.zeros((300, 1242)))
