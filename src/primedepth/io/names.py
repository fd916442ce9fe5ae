"""Output names from outside: the one check every source's names go through.

An output name is a relative path below the output folder, without suffix (``a/b`` writes
``OUT/a/b_depth.png``). Names come from local inputs, in-memory items, dataset rows, URIs and
uploads; each is checked here, so none can write outside the output folder or hide control
characters in file names. A bad name fails its own item with the reason, never the job.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath

from ..errors import InputError

__all__ = ["safe_output_name"]


def _has_control_character(text: str) -> bool:
    return any(unicodedata.category(character) in ("Cc", "Cf") for character in text)


def safe_output_name(raw: str | PurePosixPath) -> PurePosixPath:
    """The output name `raw` as a clean relative POSIX path, or `InputError` saying why not.

    Backslashes count as separators (Windows-style names), repeated and trailing separators and
    ``.`` parts are dropped. Refused: empty names, absolute names (``/x``, ``C:/x``), ``..``
    parts, and control or invisible format characters (newlines, NUL, bidi overrides).
    """
    text = str(raw)
    shown = repr(text)
    if _has_control_character(text):
        raise InputError(f"output name {shown} contains control characters")
    normalised = text.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":" and normalised[0].isalpha()):
        raise InputError(f"output name {shown} is absolute; names must be relative to the output folder")
    parts = [part for part in normalised.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InputError(f"output name {shown} contains '..'; names must stay inside the output folder")
    if not parts or not parts[-1].strip():
        raise InputError(f"output name {shown} is empty")
    return PurePosixPath(*parts)
