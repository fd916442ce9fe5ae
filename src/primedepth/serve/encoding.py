"""Response files: encoded by the package's own writers, in memory.

`encode_outputs` calls `primedepth.io.encode_outputs`, the encoder `primedepth predict` writes
its files with, straight into memory (no temporary file per request): a PNG or ``.npy`` from the
server has the same bytes as the file the CLI writes for the same depth. Several files travel as
one zip archive with a ``metadata.json`` beside them.
"""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import PurePosixPath
from typing import Any

from ..io import outputs as io_outputs

__all__ = ["encode_outputs", "zip_files", "media_type", "METADATA_FILE", "ZIP_MEDIA_TYPE"]

METADATA_FILE = "metadata.json"
ZIP_MEDIA_TYPE = "application/zip"
_MEDIA_TYPES = {".png": "image/png", ".npy": "application/x-npy", ".json": "application/json",
                ".ply": "application/octet-stream", ".glb": "model/gltf-binary", ".mp4": "video/mp4"}


def media_type(filename: str) -> str:
    """The Content-Type of a response file, from its name."""
    return _MEDIA_TYPES.get(PurePosixPath(filename).suffix, "application/octet-stream")


def encode_outputs(name: str, result: Any, kinds: tuple[str, ...], colormap: str) -> dict[str, bytes]:
    """The requested output files of one image (a `DepthResult`), by file name, in order.

    The PNGs carry the text chunks of the job that predicted them, as the CLI's do."""
    prediction = result.prediction
    encoded = io_outputs.encode_outputs(kinds, prediction.depth, prediction.segmentation, colormap, result.png_text)
    return {f"{PurePosixPath(name).name}{io_outputs.OUTPUT_SUFFIXES[kind]}": data for kind, data in encoded.items()}


def zip_files(files: dict[str, bytes], metadata: dict[str, Any]) -> bytes:
    """One zip archive of `files` plus ``metadata.json`` (PNGs stored, the rest deflated)."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for filename, data in files.items():
            compression = zipfile.ZIP_STORED if filename.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(filename, data, compress_type=compression)
        archive.writestr(METADATA_FILE, json.dumps(metadata, indent=2), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
