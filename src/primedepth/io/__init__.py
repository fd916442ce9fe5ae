"""Reading images and videos, finding inputs, and writing depth outputs safely.

Everything that touches files for `primedepth predict` lives in this package, so that the
Python API, the command line, the server and the Ray actors read and write exactly the same way
(readers take a path or the file's bytes; writers encode into any binary stream, or atomically
into a file):

- `images`: `read_image` (upright RGB at full precision) and `read_png_uint16` (raw 16-bit
  depth ground truth);
- `inputs`: files, folders, globs and list files as named `InputItem` work items;
- `outputs`: the output files of one input ``NAME`` -- ``NAME_depth.png`` (16-bit, min/max in
  text chunks), ``NAME_depth.npy``, ``NAME_depth_color.png``, ``NAME_seg.png`` and, for videos,
  ``NAME_depth.mp4`` plus ``NAME_frames/000000_*``; the full table is in its docstring;
- `video`: probing, decoding and the atomic `DepthVideoWriter`;
- `names`: `safe_output_name`, the one check of output names from any source;
- `atomic`: the one atomic writer (`atomic_path`, `atomic_directory`, `save_npy_atomic`), so an
  interrupted run never leaves a half-written file or folder.

Every name is re-exported here, so ``from primedepth import io; io.read_image(...)`` works.
"""

from __future__ import annotations

from .atomic import atomic_directory, atomic_path, remove_stale_temporaries, save_npy_atomic
from .images import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    ORIENTATION_TAG,
    UINT16_MAX,
    apply_exif_orientation,
    check_readable_file,
    read_image,
    read_png_uint16,
)
from .names import safe_output_name
from .inputs import (
    LIST_EXTENSIONS,
    VIDEO_EXTENSIONS,
    InputItem,
    deduplicate,
    expand_inputs,
    looks_like_output,
    media_kind,
)
from .outputs import (
    ALL_OUTPUT_SUFFIXES,
    GEOMETRY_OUTPUT_SUFFIXES,
    DEFAULT_COLORMAP,
    DEFAULT_OUTPUTS,
    DEPTH_QUANTITY,
    FRAME_OUTPUT_KINDS,
    OUTPUT_SUFFIXES,
    PNG16_DECODE,
    PNG16_MAX,
    check_colormap,
    colorize_depth,
    depth_to_png16,
    encode_output,
    encode_outputs,
    frame_name,
    label_palette,
    labels_to_image,
    normalize_depth,
    output_paths,
    read_depth_png16,
    save_color,
    save_depth_npy,
    save_depth_png16,
    save_segmentation,
    segmentation_labels,
    write_outputs,
)
from .video import DepthVideoWriter, VideoInfo, probe_video, read_video_frames

__all__ = [
    "DEFAULT_COLORMAP",
    "DEFAULT_OUTPUTS",
    "DEPTH_QUANTITY",
    "FRAME_OUTPUT_KINDS",
    "ALL_OUTPUT_SUFFIXES",
    "GEOMETRY_OUTPUT_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "LIST_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "ORIENTATION_TAG",
    "OUTPUT_SUFFIXES",
    "PNG16_DECODE",
    "PNG16_MAX",
    "UINT16_MAX",
    "VIDEO_EXTENSIONS",
    "DepthVideoWriter",
    "InputItem",
    "VideoInfo",
    "apply_exif_orientation",
    "atomic_directory",
    "atomic_path",
    "remove_stale_temporaries",
    "check_colormap",
    "check_readable_file",
    "colorize_depth",
    "deduplicate",
    "depth_to_png16",
    "encode_output",
    "encode_outputs",
    "expand_inputs",
    "frame_name",
    "label_palette",
    "labels_to_image",
    "looks_like_output",
    "media_kind",
    "normalize_depth",
    "output_paths",
    "probe_video",
    "read_depth_png16",
    "read_image",
    "read_png_uint16",
    "read_video_frames",
    "save_color",
    "save_depth_npy",
    "save_depth_png16",
    "save_npy_atomic",
    "safe_output_name",
    "save_segmentation",
    "segmentation_labels",
    "write_outputs",
]
