"""Videos: probing and decoding inputs, and encoding colourised depth videos atomically.

FFmpeg (through PyAV) is imported only when a video is actually touched, since importing it
costs noticeable start-up time for the common image-only runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .atomic import commit_temporary, discard_temporary, new_temporary_file
from .images import check_readable_file
from .outputs import DEFAULT_COLORMAP, colorize_depth


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to mirror the input video, and the frame count for progress."""

    fps: Fraction
    frames: int | None


@contextmanager
def _first_video_stream(path: Path) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) of a video file; FFmpeg errors become InputError."""
    import av  # lazy: start-up speed

    check_readable_file(path)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            yield container, container.streams.video[0]
    except av.error.FFmpegError as error:
        raise InputError(f"{path}: corrupt or unreadable video ({error})") from None


def probe_video(path: Path) -> VideoInfo:
    """Frame rate and (if the container knows it) frame count, without decoding frames."""
    with _first_video_stream(path) as (_, stream):
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(fps=Fraction(fps), frames=stream.frames or None)


def read_video_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream as (H, W, 3) uint8, upright.

    Rotation metadata (phones record portrait video as rotated landscape) is applied.
    """
    with _first_video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            pixels = frame.to_ndarray(format="rgb24")
            turns = round(frame.rotation / 90) % 4
            yield np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _video_codec() -> str:
    """H.264 where FFmpeg has it (plays everywhere), MPEG-4 part 2 otherwise."""
    import av  # lazy: start-up speed

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class DepthVideoWriter:
    """Encode colourised depth frames to a video file, atomically.

    Frames go to a temporary file next to the destination, which is renamed into place by
    `close()`; `abort()` (or an exception inside a ``with`` block) removes it instead. Each
    frame is min/max normalised on its own, since the prediction's scale is per frame.
    """

    def __init__(self, path: Path, fps: Fraction, colormap: str = DEFAULT_COLORMAP) -> None:
        self.path = path
        self.fps = fps
        self.colormap = colormap
        self._temporary = new_temporary_file(path)
        self._container: Any = None
        self._stream: Any = None

    def write(self, depth: np.ndarray) -> None:
        """Append one depth frame."""
        rgb = _pad_to_even(colorize_depth(depth, self.colormap))
        if self._container is None:
            self._open(width=rgb.shape[1], height=rgb.shape[0])
        import av  # lazy: start-up speed

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _open(self, width: int, height: int) -> None:
        """Start the container once the frame size is known."""
        import av  # lazy: start-up speed

        self._container = av.open(str(self._temporary), mode="w", format="mp4")
        codec = _video_codec()
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": "18"}

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            self.abort()
            raise InputError(f"{self.path}: no frames to write")
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        commit_temporary(self._temporary, self.path)

    def abort(self) -> None:
        """Discard the partial video."""
        if self._container is not None:
            with suppress(Exception):
                self._container.close()
        discard_temporary(self._temporary)

    def __enter__(self) -> DepthVideoWriter:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where needed: 4:2:0 video needs even sides."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
