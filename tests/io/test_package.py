"""The package (primedepth.io): every name of the former single module is still there."""

from __future__ import annotations

import pytest

from primedepth import io
from primedepth.io import atomic, images, inputs, outputs, video

# Public names of the former primedepth/io.py, used as `io.NAME` across the code base.
FORMER_NAMES = """
IMAGE_EXTENSIONS VIDEO_EXTENSIONS LIST_EXTENSIONS ORIENTATION_TAG MAX_IMAGE_PIXELS
OUTPUT_SUFFIXES FRAME_OUTPUT_KINDS DEFAULT_COLORMAP PNG16_MAX PNG16_DECODE DEPTH_QUANTITY
read_image apply_exif_orientation InputItem media_kind expand_inputs looks_like_output
deduplicate output_paths frame_name atomic_path normalize_depth check_colormap colorize_depth
depth_to_png16 save_depth_png16 read_depth_png16 save_depth_npy save_color segmentation_labels
label_palette save_segmentation write_outputs VideoInfo probe_video read_video_frames
DepthVideoWriter
""".split()


@pytest.mark.parametrize("name", FORMER_NAMES)
def test_former_names_are_reexported(name):
    assert hasattr(io, name)


def test_every_exported_name_comes_from_a_submodule():
    modules = (atomic, images, inputs, outputs, video)
    for name in io.__all__:
        owners = [m for m in modules if getattr(m, name, None) is getattr(io, name)]
        assert owners, name
    assert set(FORMER_NAMES) <= set(io.__all__)
    assert io.atomic_path is atomic.atomic_path and io.read_png_uint16 is images.read_png_uint16


def test_names_other_modules_import_from_the_submodules():
    assert outputs.DEFAULT_OUTPUTS == ("png16", "color", "video")
    assert set(outputs.DEFAULT_OUTPUTS) <= set(outputs.OUTPUT_SUFFIXES)
    assert callable(outputs.labels_to_image) and callable(atomic.atomic_directory)
