"""Answers of `POST /v1/depth`: the files and the metadata `primedepth predict` records.

One image and one output kind: the file itself (``image/png`` or ``application/x-npy``).
Anything more: a zip of the files with ``metadata.json``. Either way the metadata is also in the
``PrimeDepth-Metadata`` header (JSON, ASCII-escaped), so a client reading a single PNG still
learns the model, seed, prompt and processing size, and that depth is affine-invariant.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import Response

from ..io.outputs import DEPTH_QUANTITY, PNG16_DECODE
from .encoding import ZIP_MEDIA_TYPE, encode_outputs, media_type, zip_files
from .options import DepthRequest
from .service import DepthResult

__all__ = ["METADATA_HEADER", "depth_metadata", "encode_answer", "build_response", "unique_names"]

METADATA_HEADER = "PrimeDepth-Metadata"
ZIP_NAME = "primedepth_depth.zip"
ImageSizes = tuple[tuple[int, int], tuple[int, int]]
DEPTH_NOTE = ("relative depth: the scale and shift are unknown, so align it to known depths "
              "(least squares on a few points) before reading metres")


def unique_names(stems: Sequence[str]) -> list[str]:
    """Output names for the images of one request: their stems, numbered when repeated."""
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _image_entry(name: str, sizes: ImageSizes, result: DepthResult, files: list[str]) -> dict[str, Any]:
    """What one image's answer is: sizes, the prompt used and its file names."""
    (height, width), (processed_height, processed_width) = sizes
    return {
        "name": name,
        "input_size": {"width": width, "height": height},
        "processing_size": {"width": processed_width, "height": processed_height},
        "prompt": result.prediction.prompt,
        "files": files,
    }


def depth_metadata(model_info: dict[str, Any], request: DepthRequest, images: list[dict[str, Any]],
                   run: dict[str, str] | None = None) -> dict[str, Any]:
    """The response metadata: the run metadata every output carries (`primedepth.engine.run_metadata`:
    the PNG text chunks, the job record and Parquet rows hold the same), then model, revision,
    seed, prompt, sizes, and what the depth means."""
    return {
        **(run or {}),
        **model_info,
        "depth": DEPTH_QUANTITY,
        "affine_invariant": True,
        "note": DEPTH_NOTE,
        "png16_decode": PNG16_DECODE,
        "seed": request.seed,
        "prompt": request.prompt,
        "max_size": request.max_size,
        "colormap": request.colormap,
        "outputs": list(request.outputs),
        "images": images,
    }


def encode_answer(model_info: dict[str, Any], request: DepthRequest, names: Sequence[str], sizes: Sequence[ImageSizes],
                  results: Sequence[DepthResult]) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every requested file of every image (with the package's writers) and the metadata.

    `sizes`: ((height, width) of the input, (height, width) it was processed at) per image."""
    files: dict[str, bytes] = {}
    entries = []
    for name, size, result in zip(names, sizes, results):
        encoded = encode_outputs(name, result, request.outputs, request.colormap)
        files.update(encoded)
        entries.append(_image_entry(name, size, result, list(encoded)))
    run = dict(results[0].png_text) if results else None
    return files, depth_metadata(model_info, request, entries, run)


def build_response(files: dict[str, bytes], metadata: dict[str, Any]) -> Response:
    """A single file for a single output, else a zip; the metadata in a header either way."""
    if len(files) == 1:
        [(filename, content)] = files.items()
        kind = media_type(filename)
    else:
        filename, content, kind = ZIP_NAME, zip_files(files, metadata), ZIP_MEDIA_TYPE
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        METADATA_HEADER: json.dumps(metadata, ensure_ascii=True, separators=(",", ":")),
    }
    return Response(content=content, media_type=kind, headers=headers)
