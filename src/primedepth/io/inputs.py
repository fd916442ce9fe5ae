"""Finding inputs: files, folders, globs and list files become named work items.

Each item's name is its output name (path relative to the input folder, without extension),
so outputs mirror the input tree and two inputs never silently write the same files.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError
from .images import IMAGE_EXTENSIONS
from .names import safe_output_name
from .outputs import ALL_OUTPUT_SUFFIXES, COMPANION_OUTPUT_SUFFIXES

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
    kind: str = "image"  # "image", "video", or "invalid" (then `error` says why)
    image: Any = None  # in-memory image (PIL, numpy or tensor) when `path` is None
    error: str | None = None  # why an input cannot be processed; the job reports it and goes on
    data: bytes | None = field(default=None, repr=False)  # the encoded file (an upload, a dataset row)
    origin: str | None = None  # where `data` came from (a URI, a row's path), for messages

    @property
    def label(self) -> str:
        """How the item is named in messages: where it came from, its path, or its output name."""
        if self.origin is not None:
            return self.origin
        return str(self.path) if self.path is not None else str(self.name)

    @property
    def source(self) -> Path | bytes | None:
        """What readers decode: the bytes when the item holds them (decoded in memory, no
        temporary file), else the file."""
        return self.data if self.data is not None else self.path


def invalid_item(label: str, reason: str) -> InputItem:
    """An input that cannot be processed (missing, unreadable, clashing): reported as failed by
    the job, like a bad image, while the other inputs go on."""
    return InputItem(name=PurePosixPath(label), path=Path(label), kind="invalid", error=reason)


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
    outputs as inputs. An input that cannot be used (a missing path or list entry, a glob that
    matches nothing, an unreadable folder or list, an unsupported file, two files that would
    write the same outputs) becomes an `invalid_item`: the job reports it and goes on.
    """
    exclude = Path(output_dir).resolve() if output_dir is not None else None
    items: list[InputItem] = []
    for raw in inputs:
        try:
            items.extend(_expand_one(str(raw), recursive, exclude))
        except InputError as error:
            items.append(invalid_item(str(raw), _without_label(str(error), str(raw))))
    return deduplicate([_checked_name(item) for item in items])


def _checked_name(item: InputItem) -> InputItem:
    """The item with its name through the one check (`names.safe_output_name`), or invalid."""
    if item.kind == "invalid":
        return item
    try:
        return replace(item, name=safe_output_name(item.name))
    except InputError as error:
        return invalid_item(item.label, str(error))


def _without_label(message: str, label: str) -> str:
    return message[len(label) + 2:] if message.startswith(f"{label}: ") else message


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
    """Media files of a folder, named by their path relative to it; folders that cannot be
    read (the folder itself, or sub-folders with `recursive`) are reported, not skipped silently."""
    unreadable: list[InputItem] = []

    def report(error: OSError) -> None:
        unreadable.append(invalid_item(str(error.filename), f"cannot read this folder ({error.strerror})"))

    if not os.access(root, os.R_OK | os.X_OK):
        return [invalid_item(str(root), "cannot read this folder (permission denied)")]
    candidates: list[Path] = []
    for folder, subfolders, files in os.walk(root, onerror=report):
        candidates += [Path(folder, name) for name in files]
        if not recursive:
            break
    return [*unreadable, *_items_below(root, sorted(candidates), exclude)]


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
    suffixes = (*ALL_OUTPUT_SUFFIXES.values(), *COMPANION_OUTPUT_SUFFIXES)
    return in_frames_folder or relative.name.endswith(suffixes)


def _read_list_file(list_file: Path) -> list[str]:
    """The lines of a list file; a binary, non-UTF-8 or unreadable file is one clear error."""
    try:
        data = list_file.read_bytes()
    except OSError as error:
        raise InputError(f"{list_file}: cannot read this list file ({error.strerror})") from None
    if b"\0" in data:
        raise InputError(f"{list_file}: not a text list of paths (binary data)")
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise InputError(f"{list_file}: not a UTF-8 text list of paths (byte {error.start})") from None


def _expand_list_file(list_file: Path) -> list[InputItem]:
    """Entries of a text file, one path per line; relative ones mirror their written path.
    Every missing or unsupported entry is named (an invalid item) and the others go on."""
    items = []
    for number, line in enumerate(_read_list_file(list_file), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        written = Path(entry).expanduser()
        path = written if written.is_absolute() else list_file.parent / written
        if not path.is_file():
            items.append(invalid_item(f"{list_file}, line {number}: {entry}", "no such file"))
            continue
        inside = not written.is_absolute() and ".." not in written.parts
        name = PurePosixPath(written.with_suffix("").as_posix() if inside else written.stem)
        try:
            items.append(_file_item(path, name))
        except InputError as error:
            items.append(invalid_item(f"{list_file}, line {number}: {entry}", _without_label(str(error), str(path))))
    return items


def deduplicate(items: list[InputItem]) -> list[InputItem]:
    """Drop repeats of the same file. Two different files that would write the same outputs
    (same name and kind, e.g. twin.jpg and twin.png) are both reported as invalid and the rest
    goes on; an image and a video of the same name write different files and both run."""
    first: dict[tuple[PurePosixPath, str], int] = {}
    seen_paths: set[Path] = set()
    unique: list[InputItem] = []
    for item in items:
        resolved = item.path.resolve() if item.path is not None and item.kind != "invalid" else None
        if resolved is not None and resolved in seen_paths:
            continue
        key = (item.name, item.kind)
        if item.kind != "invalid" and key in first:
            earlier_index = first[key]
            earlier = unique[earlier_index]
            reason = _clash_reason(earlier, item)
            unique[earlier_index] = invalid_item(earlier.label, reason)
            unique.append(invalid_item(item.label, reason))
            continue
        if item.kind != "invalid":
            first[key] = len(unique)
        if resolved is not None:
            seen_paths.add(resolved)
        unique.append(item)
    return unique


def _clash_reason(earlier: InputItem, later: InputItem) -> str:
    """Why two files cannot both run, with advice that fits how they were given."""
    if earlier.path is not None and later.path is not None and earlier.path.parent == later.path.parent:
        advice = "rename one of them (or move it to another folder)"
    else:
        advice = "pass their common folder instead, or run them separately"
    return f"{earlier.label} and {later.label} would both write outputs named '{later.name}'; {advice}"
