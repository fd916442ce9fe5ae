"""Finding inputs: files, folders, globs and list files become named work items.

Each item's name is its output name (path relative to the input folder, without extension),
so outputs mirror the input tree and two inputs never silently write the same files.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError
from .images import IMAGE_EXTENSIONS
from .outputs import OUTPUT_SUFFIXES

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm"})
LIST_EXTENSIONS = frozenset({".txt"})


@dataclass(frozen=True)
class InputItem:
    """One unit of work: an image or video file (or an in-memory image) and its output name.

    `name` is the output path relative to the output folder, without suffix; it mirrors the
    input tree so that outputs of ``a/x.jpg`` and ``b/x.jpg`` never collide.
    """

    name: PurePosixPath
    path: Path | None = None
    kind: str = "image"  # "image" or "video"
    image: Any = None  # in-memory image (PIL, numpy or tensor) when `path` is None

    @property
    def label(self) -> str:
        """How the item is named in messages: its path, or its output name if in memory."""
        return str(self.path) if self.path is not None else str(self.name)


def media_kind(path: Path) -> str | None:
    """'image' or 'video' from the file extension, None for anything else."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def expand_inputs(
    inputs: Iterable[str | os.PathLike[str]],
    recursive: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
) -> list[InputItem]:
    """Turn command-line inputs into work items, in a stable order, without duplicates.

    Accepted: image or video files, directories (their direct children, or the whole tree
    with `recursive`), glob patterns (``**`` needs `recursive`), and ``.txt`` files listing one
    path per line (relative paths are relative to the list file; ``#`` starts a comment).
    Files inside `output_dir` are ignored so that re-running on a folder never treats earlier
    outputs as inputs. Raises `InputError` for a missing path, an unsupported file, or two
    inputs that would write the same output.
    """
    exclude = Path(output_dir).resolve() if output_dir is not None else None
    items: list[InputItem] = []
    for raw in inputs:
        items.extend(_expand_one(str(raw), recursive, exclude))
    return deduplicate(items)


def _expand_one(raw: str, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Expand one argument; see `expand_inputs`."""
    path = Path(raw).expanduser()
    if path.is_dir():
        return _expand_directory(path, recursive, exclude)
    if path.is_file():
        if path.suffix.lower() in LIST_EXTENSIONS:
            return _expand_list_file(path)
        return [_file_item(path, PurePosixPath(path.stem))]
    if glob.has_magic(raw):
        return _expand_glob(raw, recursive, exclude)
    raise InputError(f"{raw}: no such file or directory")


def _file_item(path: Path, name: PurePosixPath) -> InputItem:
    """A work item for an explicitly named file; refuses unsupported extensions."""
    kind = media_kind(path)
    if kind is None:
        supported = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | LIST_EXTENSIONS))
        raise InputError(f"{path}: unsupported file type '{path.suffix}' (supported: {supported})")
    return InputItem(name=name, path=path, kind=kind)


def _expand_directory(root: Path, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Media files of a folder, named by their path relative to it."""
    candidates = root.rglob("*") if recursive else root.iterdir()
    return _items_below(root, sorted(candidates), exclude)


def _expand_glob(pattern: str, recursive: bool, exclude: Path | None) -> list[InputItem]:
    """Media files matching a glob, named relative to the pattern's fixed leading folder."""
    matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=recursive))
    if not matches:
        raise InputError(f"{pattern}: no file matches this pattern")
    return _items_below(_glob_base(pattern), matches, exclude)


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard: 'data/*/x*.png' -> 'data'."""
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _items_below(root: Path, candidates: Iterable[Path], exclude: Path | None) -> list[InputItem]:
    """Media files among `candidates`, named relative to `root`, skipping our own outputs."""
    items = []
    for path in candidates:
        kind = media_kind(path)
        if kind is None or not path.is_file() or _is_excluded(path, root, exclude):
            continue
        relative = PurePosixPath(path.relative_to(root).with_suffix("").as_posix())
        items.append(InputItem(name=relative, path=path, kind=kind))
    return items


def _is_excluded(path: Path, root: Path, exclude: Path | None) -> bool:
    """Whether `path` is an earlier output rather than an input.

    When the output folder sits inside the input folder, everything in it is skipped; when it
    is the input folder itself (or above it), files named like our outputs are skipped.
    """
    if exclude is None:
        return False
    resolved, root = path.resolve(), root.resolve()
    if not resolved.is_relative_to(exclude):
        return False
    if root != exclude and not root.is_relative_to(exclude):
        return True
    return looks_like_output(resolved.relative_to(exclude))


def looks_like_output(relative: Path | PurePosixPath) -> bool:
    """Whether a path relative to the output folder is named like one of our outputs."""
    in_frames_folder = any(part.endswith("_frames") for part in relative.parts[:-1])
    return in_frames_folder or relative.name.endswith(tuple(OUTPUT_SUFFIXES.values()))


def _expand_list_file(list_file: Path) -> list[InputItem]:
    """Entries of a text file, one path per line; relative ones mirror their written path."""
    items = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        written = Path(entry).expanduser()
        path = written if written.is_absolute() else list_file.parent / written
        if not path.is_file():
            raise InputError(f"{list_file}, line {number}: {entry}: no such file")
        inside = not written.is_absolute() and ".." not in written.parts
        name = PurePosixPath(written.with_suffix("").as_posix() if inside else written.stem)
        items.append(_file_item(path, name))
    return items


def deduplicate(items: list[InputItem]) -> list[InputItem]:
    """Drop repeats of the same file; refuse two different files with the same output name."""
    by_name: dict[PurePosixPath, InputItem] = {}
    seen_paths: set[Path] = set()
    unique = []
    for item in items:
        resolved = item.path.resolve() if item.path is not None else None
        if resolved in seen_paths:
            continue
        earlier = by_name.get(item.name)
        if earlier is not None:
            raise InputError(
                f"{earlier.label} and {item.label} would both write outputs named "
                f"'{item.name}'; pass their common folder instead, or run them separately"
            )
        by_name[item.name] = item
        if resolved is not None:
            seen_paths.add(resolved)
        unique.append(item)
    return unique
