"""Inputs and outputs beyond plain local paths: any filesystem pyarrow reaches (``s3://``,
``gs://``, ``hdfs://``, ``file://``), the same filesystems Ray Data reads.

A job's output root is a `Destination`. A local folder is written in place by the local
engine's own writers (temporary name, then rename). A URI is written by staging each file on
local disk with those same writers and then copying it up: an object store makes an object
visible only once its upload is complete, so readers and a resumed run never see half a file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from .. import io
from ..errors import InputError

URI_MARK = "://"
# Query options that hold credentials: never shown in messages.
SECRET_OPTION = re.compile(r"((?:secret_key|session_token|access_key)[^=&]*)=[^&]*", re.IGNORECASE)
# "(Request ID: ...)" and the like in AWS errors: noise in a one-line message.
REQUEST_ID = re.compile(r"\s*\((?:Request ID|RequestId)[^)]*\)", re.IGNORECASE)
# How object stores say "no permission".
DENIED = re.compile(r"ACCESS_DENIED|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|\b403\b|Forbidden")
# What the output check writes and removes under a URI root.
WRITE_CHECK = "_primedepth_write_check"


def is_uri(text: str | os.PathLike[str]) -> bool:
    """Whether `text` names a location by URI (``s3://...``) rather than a local path."""
    return URI_MARK in str(text)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of a URI and the path inside it; a user-facing error otherwise.
    Query options (``?endpoint_override=...&region=...``) configure the filesystem."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:
        raise InputError(f"{shown(uri)}: cannot open this location ({cause_of(error)})") from None


def split_query(uri: str) -> tuple[str, str]:
    """A URI without its query string, and the query string ('' when none)."""
    base, _, query = uri.partition("?")
    return base, query


def join_uri(root: str, relative: str | PurePosixPath) -> str:
    """`root` URI plus a relative POSIX path; the root's query options stay at the end."""
    base, query = split_query(root)
    joined = f"{base.rstrip('/')}/{relative}"
    return f"{joined}?{query}" if query else joined


def shown(uri: str) -> str:
    """A URI as messages show it: secrets in its query options replaced by '***'."""
    return SECRET_OPTION.sub(lambda match: f"{match.group(1)}=***", str(uri))


def cause_of(error: BaseException) -> str:
    """The first line of a storage error, without the request ids that make it unreadable, and
    what a refused request means."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = REQUEST_ID.sub("", text).strip()
    if DENIED.search(text):
        text += " (no permission: check the credentials and the bucket's policy)"
    return text


def _scheme(uri: str) -> str:
    return uri.split(URI_MARK, 1)[0]


def list_media(uri: str, recursive: bool) -> list[tuple[str, PurePosixPath, str]]:
    """(URI, output name, kind) of the images and videos at a URI: one file, or a folder's files
    named by their path below it without the suffix, as the local CLI names folder contents.
    The URI's query options are kept on every file's URI (each is opened with them)."""
    return list(iter_media(uri, recursive))


def iter_media(uri: str, recursive: bool) -> Iterator[tuple[str, PurePosixPath, str]]:
    """`list_media` as a generator, sorted by path (what the streaming listing consumes)."""
    filesystem, root = resolve(uri)
    info = _file_info(filesystem, root, uri)
    if info.type == pafs.FileType.File:
        kind = io.media_kind(Path(root))
        if kind is None:
            raise InputError(f"{shown(uri)}: not an image or video (by its extension)")
        yield uri, PurePosixPath(PurePosixPath(root).stem), kind
        return
    if info.type != pafs.FileType.Directory:
        raise InputError(f"{shown(uri)}: no such file or folder")
    _, query = split_query(uri)
    base = root.rstrip("/") or "/"
    for entry in sorted(_file_info(filesystem, pafs.FileSelector(root, recursive=recursive), uri),
                        key=lambda entry: entry.path):
        kind = io.media_kind(Path(entry.path))
        if entry.type != pafs.FileType.File or kind is None:
            continue
        relative = PurePosixPath(entry.path).relative_to(base)
        found = f"{_scheme(uri)}{URI_MARK}{entry.path}"
        yield (f"{found}?{query}" if query else found), relative.with_suffix(""), kind


def _file_info(filesystem: pafs.FileSystem, what: Any, uri: str) -> Any:
    """`get_file_info`, with a listing error (unreachable endpoint, no permission) as one
    user-facing line naming the location."""
    try:
        return filesystem.get_file_info(what)
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(uri)}: cannot list this location ({cause_of(error)})") from None


def fetch(uri: str, destination: Path) -> None:
    """Copy the object at `uri` to a local file (inputs are decoded from local files)."""
    filesystem, path = resolve(uri)
    try:
        with filesystem.open_input_stream(path) as source, destination.open("wb") as target:
            shutil.copyfileobj(source, target)
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(uri)}: cannot read ({cause_of(error)})") from None


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

    def check_writable(self) -> None:
        """Fail before any model loads when outputs cannot be written here: for a URI, the
        location is resolved, its bucket must exist, and an empty object is written and removed
        (an unreachable endpoint, a missing bucket or no permission all fail here, in one line
        naming the location and the cause; an object store keeps an empty folder marker, as
        after `mkdir`). A local folder is created and written to."""
        if self.is_local:
            folder = self.local_dir
            if folder.exists() and not folder.is_dir():
                raise InputError(f"{folder}: output path exists and is not a folder")
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".primedepth-write-check-"):
                    pass
            except OSError as error:
                raise InputError(f"cannot write to the output folder {folder}: {error.strerror or error}") from None
            return
        filesystem, root = resolve(self.root)
        bucket = root.strip("/").split("/", 1)[0]
        try:
            if bucket and not isinstance(filesystem, pafs.LocalFileSystem):
                if filesystem.get_file_info(bucket).type == pafs.FileType.NotFound:
                    raise InputError(f"cannot write to the output location {shown(self.root)}: "
                                     f"the bucket '{bucket}' does not exist")
            if filesystem.get_file_info(root).type == pafs.FileType.File:
                raise InputError(f"{shown(self.root)}: output location exists and is not a folder")
            probe = f"{root.rstrip('/')}/{WRITE_CHECK}"
            if isinstance(filesystem, pafs.LocalFileSystem):
                filesystem.create_dir(root, recursive=True)
            with filesystem.open_output_stream(probe) as stream:
                stream.write(b"")
            filesystem.delete_file(probe)
        except (OSError, ValueError) as error:
            if isinstance(error, InputError):
                raise
            raise InputError(f"cannot write to the output location {shown(self.root)}: {cause_of(error)}") from None

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

    def download(self, relative: str, local: Path) -> None:
        """Copy a file under the root to a local path."""
        if self.is_local:
            shutil.copyfile(self.local_dir / relative, local)
        else:
            fetch(self.location(relative), local)

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
