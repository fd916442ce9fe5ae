"""Segmentation maps in the standard ADE20K colours with a legend (issue 24, point 7).

Before: `NAME_seg.png` used a generated palette and nothing said which class a label is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from primedepth.errors import InputError
from primedepth.io import outputs
from primedepth.io.ade20k import ADE20K_CLASS_COUNT, ADE20K_NAMES, ADE20K_PALETTE, ADE20K_SYNONYMS, ade20k_legend


def test_the_150_classes_and_their_standard_colours() -> None:
    assert ADE20K_CLASS_COUNT == len(ADE20K_NAMES) == len(ADE20K_PALETTE) == 150
    # Spot checks against objectInfo150 (index - 1) and color150.
    expected = {0: ("wall", (120, 120, 120)), 2: ("sky", (6, 230, 230)), 12: ("person", (150, 5, 61)),
                20: ("car", (0, 102, 200)), 44: ("chest of drawers", (6, 51, 255)), 89: ("television", (0, 255, 194)),
                149: ("flag", (92, 0, 255))}
    for channel, (name, rgb) in expected.items():
        assert (ADE20K_NAMES[channel], ADE20K_PALETTE[channel]) == (name, rgb)
    assert "television receiver" in ADE20K_SYNONYMS[89]
    assert all(len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) for rgb in ADE20K_PALETTE)
    # The standard palette repeats one colour: road (6) and skyscraper (48).
    repeated = [i for i, rgb in enumerate(ADE20K_PALETTE) if ADE20K_PALETTE.index(rgb) != i]
    assert repeated == [48] and ADE20K_PALETTE[6] == ADE20K_PALETTE[48]
    assert ade20k_legend()["149"] == {"name": "flag", "rgb": [92, 0, 255]} and len(ade20k_legend()) == 150
    with pytest.raises(InputError, match="not an ADE20K class"):
        ade20k_legend([150])


def test_seg_png_has_the_palette_the_labels_and_a_legend(tmp_path: Path) -> None:
    labels = np.zeros((6, 8), dtype=np.int64)
    labels[2:, :4], labels[4:, 4:] = 2, 12  # wall, sky, person
    logits = np.eye(ADE20K_CLASS_COUNT, dtype=np.float32)[labels].transpose(2, 0, 1)
    outputs.save_segmentation(tmp_path / "x_seg.png", logits)
    with Image.open(tmp_path / "x_seg.png") as image:
        assert image.mode == "P"
        np.testing.assert_array_equal(np.asarray(image), labels)  # pixel values are the labels
        palette = image.getpalette()[: 3 * ADE20K_CLASS_COUNT]
        rgb = np.asarray(image.convert("RGB"))
    assert palette == [c for colour in ADE20K_PALETTE for c in colour]
    assert tuple(rgb[5, 7]) == ADE20K_PALETTE[12]
    assert outputs.read_segmentation_legend(tmp_path / "x_seg.png") == {
        "0": {"name": "wall", "rgb": [120, 120, 120]},
        "2": {"name": "sky", "rgb": [6, 230, 230]},
        "12": {"name": "person", "rgb": [150, 5, 61]},
    }


def test_labels_beyond_ade20k_keep_distinct_colours() -> None:
    palette = outputs.label_palette()
    assert len(palette) == 768 and palette[:450] == [c for colour in ADE20K_PALETTE for c in colour]
    legend = outputs.segmentation_legend(np.array([[0, 200]]))
    assert legend["200"] == {"name": "class 200", "rgb": palette[600:603]}


def test_predict_writes_the_legend(tmp_path: Path, capsys) -> None:
    from primedepth.cli import main
    from primedepth.testing import save_tiny_model

    model = save_tiny_model(tmp_path / "tiny")
    Image.fromarray((np.random.RandomState(0).rand(48, 64, 3) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--model", str(model), "-o", str(tmp_path / "out"),
                 "--outputs", "seg", "--segmentation"])
    assert code == 0, capsys.readouterr().err
    legend = outputs.read_segmentation_legend(tmp_path / "out" / "a_seg.png")
    with Image.open(tmp_path / "out" / "a_seg.png") as image:
        present = sorted(str(v) for v in np.unique(np.asarray(image)))
    assert sorted(legend) == present and all(legend[k]["name"] == ADE20K_NAMES[int(k)] for k in legend)
