"""The one atomic writer of the package: files and folders appear whole or not at all.

Everything is first written under a hidden temporary name in the destination's own folder and
then renamed into place. A rename within one folder is atomic, so readers (and a resumed run)
see either the old state or the complete new one, never a half-written output, and an
interruption leaves nothing behind but, at worst, a hidden temporary that the next run ignores.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

from ..errors import InputError

# mkdtemp creates 0700 folders; a finished output folder should be readable like any other.
DIRECTORY_MODE = 0o755


def _default_file_mode() -> int:
    """Permissions a normally created file would get (mkstemp would give 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _default_file_mode()


def new_temporary_file(destination: Path) -> Path:
    """Create an empty hidden temporary file in the destination's folder (made if missing).

    Same folder, so the final `os.replace` is a rename and never a copy across file systems.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(handle)
    return Path(temporary)


def commit_temporary(temporary: Path, destination: Path) -> None:
    """Give the finished temporary file normal permissions and rename it into place."""
    os.chmod(temporary, _FILE_MODE)
    os.replace(temporary, destination)


def discard_temporary(temporary: Path) -> None:
    """Remove an unfinished temporary file (already gone is fine)."""
    with suppress(FileNotFoundError):
        os.unlink(temporary)


@contextmanager
def atomic_path(destination: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `destination`; rename it into place only on success.

    The temporary file is in the same folder, so `os.replace` is an atomic rename: readers
    and later runs see either no file or the whole file, never a partial one. On any
    exception (Ctrl-C included) the temporary file is removed and the exception re-raised.
    """
    destination = Path(destination)
    temporary = new_temporary_file(destination)
    try:
        yield temporary
        commit_temporary(temporary, destination)
    except BaseException:
        discard_temporary(temporary)
        raise


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as ``.npy`` at `path` so that an interruption never leaves a truncated file.

    The array is stored as given (no dtype change). Object arrays are refused: they would need
    pickle, which the readers (``np.load(..., allow_pickle=False)``) rightly do not allow.
    """
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        np.save(file, np.asarray(array), allow_pickle=False)


def _check_replaceable(destination: Path, overwrite: bool) -> None:
    """Refuse, before any work is done, a destination that must not be replaced."""
    if not destination.exists() and not destination.is_symlink():
        return
    if destination.is_symlink() or not destination.is_dir():
        raise InputError(f"{destination} exists and is not a directory")
    if not overwrite and any(destination.iterdir()):
        raise InputError(f"{destination} exists and is not empty (use --overwrite to replace it)")


def _new_staging_directory(destination: Path, role: str) -> Path:
    """A hidden, uniquely named empty folder next to `destination`, with normal permissions."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=f".{role}", dir=destination.parent)
    )
    os.chmod(staging, DIRECTORY_MODE)
    return staging


def _replace_directory(staging: Path, destination: Path, overwrite: bool) -> None:
    """Move the finished staging folder to `destination`, setting any old one aside first.

    The old folder is renamed to a hidden name (not deleted) until the new one is in place, so
    a failure in between puts it back instead of losing both.
    """
    _check_replaceable(destination, overwrite)  # it may have changed while we were writing
    if not destination.exists():
        os.replace(staging, destination)
        return
    old = _new_staging_directory(destination, "old")
    os.replace(destination, old)  # renaming a folder over an empty folder is allowed
    try:
        os.replace(staging, destination)
    except BaseException:
        os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_directory(
    destination: str | os.PathLike[str], overwrite: bool = False
) -> Iterator[Path]:
    """Yield a staging folder next to `destination`; it replaces `destination` only on success.

    Fill the yielded (hidden, same parent) folder; when the block ends without an exception it
    becomes `destination`. An existing destination folder is replaced only with `overwrite`
    (an empty one always); otherwise `InputError` is raised, before anything is written. On
    failure the staging folder is removed and the destination is left as it was.
    """
    destination = Path(destination)
    _check_replaceable(destination, overwrite)
    staging = _new_staging_directory(destination, "tmp")
    try:
        yield staging
        _replace_directory(staging, destination, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# Names of our temporaries: "." + destination name + "." + mkstemp's random part + ".tmp" (files)
# or a role suffix (staging folders). Only these are ever removed as stale.
_TEMPORARY_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|old)$")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporaries of our own naming that an earlier, killed run left under `folder`.

    Call it once per job, before any writer starts (never while another job writes there).
    Returns how many were removed.
    """
    removed = 0
    for path in Path(folder).rglob(".*"):
        if not _TEMPORARY_NAME.match(path.name):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            discard_temporary(path)
        removed += 1
    return removed
