"""Where results go: one small interface, whatever the destination.

The engine hands every result to a *sink*:

- `FolderSink`: the output files in a local folder, each written atomically;
- `BytesSink`: the same files encoded in memory (an HTTP answer; no temporary file);
- `StreamSink`: each prediction, arrays included, handed on as soon as it is final (the
  iterator of `predict(..., stream=True)`): memory stays bounded by a batch;
- `primedepth.distributed.parquet.ParquetSink`: rows of a Parquet dataset, in bounded chunks;
- `Sink` itself: nothing is written (results stay in the job's summary when it keeps them).

Resume asks the sink which outputs exist (`Sink.finished`) and which clips were completed
(`Sink.completed_clips`), so every destination resumes by the same rule
(`primedepth.engine.resume`). Writers that need a real folder (3D outputs, the
depth video, video frames by the clip's normalisation) use `Sink.folder`, None elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .. import io
from ..errors import InputError
from ..io.atomic import discard_temporary, new_temporary_file
from .options import JobOptions, check_items
from .record import completed_clips, read_job_record
from .summary import Prediction

__all__ = ["Sink", "FolderSink", "BytesSink", "StreamSink", "sink_for", "prepare_output_dir"]


class Sink:
    """The interface, and the sink that writes nothing (in-memory jobs)."""

    folder: Path | None = None

    def finished(self, relative: Sequence[str]) -> bool:
        """Whether every output named (relative to the destination) is complete already."""
        return False

    def write_image(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None,
                    options: JobOptions, png_text: dict[str, str]) -> list[Any]:
        """The per-image outputs of one image or frame; returns what was written."""
        return []

    def add(self, prediction: Prediction) -> None:
        """Every final prediction (status 'done', with its arrays), in order."""

    def completed_clips(self) -> dict[str, frozenset[str]]:
        """Clips whose frames all have their outputs, with those kinds (`resume.completed_clips`)."""
        return {}

    def finish_clip(self, name: str) -> None:
        """The clip called `name` ended with every frame handed over (`add`)."""

    def close(self) -> None:
        """The job ended (normally or not): flush what is buffered."""


class FolderSink(Sink):
    """Output files under a local folder (`primedepth.io`'s names and atomic writers)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._clips: dict[str, frozenset[str]] | None = None

    def finished(self, relative: Sequence[str]) -> bool:
        return all((self.folder / name).exists() for name in relative)

    def write_image(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None,
                    options: JobOptions, png_text: dict[str, str]) -> list[Any]:
        paths = io.output_paths(self.folder, name, options.frame_kinds)
        return io.write_outputs(paths, depth, segmentation, options.colormap, options.overwrite, png_text=png_text)

    def completed_clips(self) -> dict[str, frozenset[str]]:
        if self._clips is None:  # read once per job: the record changes only when the job ends
            self._clips = completed_clips(read_job_record(self.folder))
        return self._clips


class BytesSink(Sink):
    """The output files of each image encoded in memory, by file name (``NAME_depth.png``...),
    byte for byte what `FolderSink` writes."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}  # output name -> file name -> content

    def write_image(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None,
                    options: JobOptions, png_text: dict[str, str]) -> list[Any]:
        encoded = io.encode_outputs(options.frame_kinds, depth, segmentation, options.colormap, png_text)
        files = {f"{name.name}{io.OUTPUT_SUFFIXES[kind]}": data for kind, data in encoded.items()}
        self.files[str(name)] = files
        return list(files)


class StreamSink(Sink):
    """Hands each final prediction to `consume` at once, keeping nothing itself; files, resume
    and markers go to `inner` (say a `FolderSink`) when given."""

    def __init__(self, consume: Callable[[Prediction], None], inner: Sink | None = None,
                 close: Callable[[], None] | None = None) -> None:
        self.consume, self.inner, self._close = consume, inner or Sink(), close
        self.folder = self.inner.folder

    def finished(self, relative: Sequence[str]) -> bool:
        return self.inner.finished(relative)

    def write_image(self, name: PurePosixPath, depth: np.ndarray, segmentation: np.ndarray | None,
                    options: JobOptions, png_text: dict[str, str]) -> list[Any]:
        return self.inner.write_image(name, depth, segmentation, options, png_text)

    def add(self, prediction: Prediction) -> None:
        self.consume(prediction)

    def completed_clips(self) -> dict[str, frozenset[str]]:
        return self.inner.completed_clips()

    def finish_clip(self, name: str) -> None:
        self.inner.finish_clip(name)

    def close(self) -> None:
        self.inner.close()
        if self._close is not None:
            self._close()


def sink_for(options: JobOptions) -> Sink:
    """The default sink of a job: its output folder, or none (results in memory)."""
    return FolderSink(options.output_dir) if options.output_dir is not None else Sink()


def prepare_output_dir(options: JobOptions, items: Sequence[io.InputItem]) -> None:
    """Check, before any model is loaded, that the job can write what it is asked to, and remove
    temporaries that a killed earlier run left (once per job, before any writer starts)."""
    check_items(options, items)
    if options.output_dir is None:
        return
    folder = options.output_dir
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: output path exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        discard_temporary(new_temporary_file(folder / "write-check"))
    except OSError as error:
        raise InputError(f"cannot write to the output folder {folder}: {error.strerror or error}") from None
    io.remove_stale_temporaries(folder)
