"""Inputs and outputs beyond plain local paths: any filesystem pyarrow reaches (``s3://``,
``gs://``, ``hdfs://``, ``file://``), the same filesystems Ray Data reads.

A job's output root is a `Destination`. A local folder is written in place by the local
engine's own writers (temporary name, then rename). A URI is written by staging each file on
local disk with those same writers and then copying it up: an object store makes an object
visible only once its upload is complete, so readers and a resumed run never see half a file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from .. import io
from ..errors import InputError

URI_MARK = "://"


def is_uri(text: str | os.PathLike[str]) -> bool:
    """Whether `text` names a location by URI (``s3://...``) rather than a local path."""
    return URI_MARK in str(text)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a URI and the path inside it; a user-facing error otherwise."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:
        raise InputError(f"{uri}: cannot open this location ({error})") from None


def join_uri(root: str, relative: str | PurePosixPath) -> str:
    """`root` URI plus a relative POSIX path."""
    return f"{root.rstrip('/')}/{relative}"


def _scheme(uri: str) -> str:
    return uri.split(URI_MARK, 1)[0]


def list_media(uri: str, recursive: bool) -> list[tuple[str, PurePosixPath, str]]:
    """(URI, output name, kind) of the images and videos at a URI: one file, or a folder's files
    named by their path below it without the suffix, as the local CLI names folder contents."""
    filesystem, root = resolve(uri)
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.File:
        kind = io.media_kind(Path(root))
        if kind is None:
            raise InputError(f"{uri}: not an image or video (by its extension)")
        return [(uri, PurePosixPath(PurePosixPath(root).stem), kind)]
    if info.type != pafs.FileType.Directory:
        raise InputError(f"{uri}: no such file or folder")
    selector = pafs.FileSelector(root, recursive=recursive)
    found = []
    for entry in sorted(filesystem.get_file_info(selector), key=lambda entry: entry.path):
        kind = io.media_kind(Path(entry.path))
        if entry.type != pafs.FileType.File or kind is None:
            continue
        relative = PurePosixPath(entry.path).relative_to(root.rstrip("/") or "/")
        found.append((f"{_scheme(uri)}{URI_MARK}{entry.path}", relative.with_suffix(""), kind))
    return found


def fetch(uri: str, destination: Path) -> None:
    """Copy the object at `uri` to a local file (inputs are decoded from local files)."""
    filesystem, path = resolve(uri)
    try:
        with filesystem.open_input_stream(path) as source, destination.open("wb") as target:
            shutil.copyfileobj(source, target)
    except (OSError, ValueError) as error:
        raise InputError(f"{uri}: cannot read ({error})") from None


@dataclass(frozen=True)
class Destination:
    """Where a job's outputs go: a local folder or a URI (see the module docstring)."""

    root: str

    @classmethod
    def of(cls, location: str | os.PathLike[str]) -> Destination:
        """Local paths are made absolute: Ray workers may run in another folder."""
        text = str(location)
        return cls(text if is_uri(text) else str(Path(text).expanduser().resolve()))

    @property
    def is_local(self) -> bool:
        return not is_uri(self.root)

    @property
    def local_dir(self) -> Path:
        """The output folder itself (local destinations only)."""
        return Path(self.root)

    def exists(self, relative: list[str]) -> list[bool]:
        """Whether each relative path exists, in one round trip for object stores."""
        if self.is_local:
            return [(self.local_dir / path).exists() for path in relative]
        filesystem, root = resolve(self.root)
        infos = filesystem.get_file_info([f"{root.rstrip('/')}/{path}" for path in relative])
        return [info.type != pafs.FileType.NotFound for info in infos]

    def list_files(self, suffix: str) -> list[str]:
        """Relative paths of the files directly inside the root ending with `suffix`."""
        if self.is_local:
            folder = self.local_dir
            return sorted(p.name for p in folder.glob(f"*{suffix}") if p.is_file()) if folder.is_dir() else []
        filesystem, root = resolve(self.root)
        selector = pafs.FileSelector(root, allow_not_found=True)
        names = (PurePosixPath(info.path).name for info in filesystem.get_file_info(selector))
        return sorted(name for name in names if name.endswith(suffix))

    def location(self, relative: str) -> str:
        """The local path or URI of a file under the root, as pyarrow readers take it."""
        return str(self.local_dir / relative) if self.is_local else join_uri(self.root, relative)

    @contextmanager
    def atomic_file(self, relative: str) -> Iterator[Path]:
        """Yield a local temporary path; on success it becomes `relative` under the root, whole."""
        if self.is_local:
            with io.atomic_path(self.local_dir / relative) as temporary:
                yield temporary
            return
        with tempfile.TemporaryDirectory(prefix="primedepth-upload-") as folder:
            temporary = Path(folder) / PurePosixPath(relative).name
            yield temporary
            self.upload(temporary, relative)

    def upload(self, local: Path, relative: str) -> None:
        """Copy a finished local file to `relative` under a URI root (one complete object)."""
        filesystem, root = resolve(self.root)
        target = f"{root.rstrip('/')}/{relative}"
        if isinstance(filesystem, pafs.LocalFileSystem):  # file:// : a real rename, as io.atomic
            filesystem.create_dir(str(PurePosixPath(target).parent), recursive=True)
            staged = f"{PurePosixPath(target).parent}/.{PurePosixPath(target).name}.upload"
            pafs.copy_files(str(local), staged, destination_filesystem=filesystem)
            filesystem.move(staged, target)
            return
        pafs.copy_files(str(local), target, destination_filesystem=filesystem)

    def remove(self, relative: str) -> None:
        """Delete a file under the root if it is there."""
        if self.is_local:
            (self.local_dir / relative).unlink(missing_ok=True)
            return
        filesystem, root = resolve(self.root)
        target = f"{root.rstrip('/')}/{relative}"
        if filesystem.get_file_info(target).type != pafs.FileType.NotFound:
            filesystem.delete_file(target)


def local_folder(destination: Destination | None) -> Path | None:
    """The folder the local engine writes into itself: a local destination's (URIs are staged)."""
    return destination.local_dir if destination is not None and destination.is_local else None
