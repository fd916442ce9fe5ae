"""Where work items come from: local paths, in-memory images and encoded bytes.

Local files, folders, globs and list files are expanded by `primedepth.io.expand_inputs`;
in-memory images and bytes are named ``image_0000``, ``image_0001``... by position, or by the
name given in a ``(name, image_or_bytes)`` pair. Every name goes through the one check
(`primedepth.io.names.safe_output_name`): a bad one fails its own item, never the job. Dataset
rows and URIs become items in `primedepth.distributed.rows`, through the same check.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from .. import io
from ..errors import InputError
from ..io.inputs import invalid_item
from ..io.names import safe_output_name
from .summary import MAX_LISTED_FAILURES

__all__ = ["collect_items", "memory_item"]


def memory_item(value: Any, name: str | PurePosixPath, kind: str = "image", origin: str | None = None) -> io.InputItem:
    """A work item held in memory: encoded bytes of an image or video file, or a decoded image
    (PIL, HxWx3 numpy, 3xHxW tensor); an invalid item when the name is refused."""
    try:
        clean = safe_output_name(name)
    except InputError as error:
        return invalid_item(origin or repr(str(name)), str(error))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return io.InputItem(name=clean, kind=kind, data=bytes(value), origin=origin)
    return io.InputItem(name=clean, image=value, origin=origin)


def collect_items(inputs: Any, recursive: bool = False, output_dir: Path | None = None) -> list[io.InputItem]:
    """Work items for a mix of paths, in-memory images, encoded bytes and (name, value) pairs."""
    if isinstance(inputs, (str, Path, bytes)) or not isinstance(inputs, (list, tuple)) or _is_pair(inputs):
        inputs = [inputs]
    items: list[io.InputItem] = []
    for position, value in enumerate(inputs):
        if isinstance(value, (str, Path)):
            items.extend(io.expand_inputs([value], recursive, output_dir))
        elif _is_pair(value):
            items.append(memory_item(value[1], value[0]))
        else:
            items.append(memory_item(value, f"image_{position:04d}"))
    items = io.deduplicate(items)
    invalid = [item for item in items if item.kind == "invalid"]
    if len(invalid) == len(items):
        problems = "; ".join(f"{item.label}: {item.error}" for item in invalid[:MAX_LISTED_FAILURES])
        raise InputError(
            "no images or videos found in the given inputs "
            "(folders are read without their sub-folders unless recursive)" + (f": {problems}" if problems else "")
        )
    return items


def _is_pair(value: Any) -> bool:
    """A (name, image or bytes) pair: a tuple of a string and something that is not a path."""
    return (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
            and not isinstance(value[1], (str, Path)))
