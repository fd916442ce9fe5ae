"""Videos: probing and decoding inputs, and encoding colourised depth videos atomically.

FFmpeg (through PyAV) is imported only when a video is actually touched, since importing it
costs noticeable start-up time for the common image-only runs.

Decoding (`read_video`) reads the first video stream only (audio and other streams are never
decoded), turns frames upright from the rotation metadata of phone videos, gives each frame its
presentation time, and reports a frame that cannot be decoded (with its index) instead of
stopping: the clip goes on. `DepthVideoWriter` can colour every frame by one clip-wide range and
write each frame at its source time (variable frame rate, gaps left by skipped frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from fractions import Fraction
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .atomic import commit_temporary, discard_temporary, new_temporary_file
from .images import check_readable_file
from .outputs import DEFAULT_COLORMAP, colorize_depth, colormap_table


@dataclass(frozen=True)
class VideoInfo:
    """What the writer needs to mirror the input video, and the frame count for progress."""

    fps: Fraction
    frames: int | None


@contextmanager
def _first_video_stream(path: Path | bytes) -> Iterator[tuple[Any, Any]]:
    """(container, first video stream) of a video file or its bytes (decoded in memory, no
    temporary file); FFmpeg errors become InputError."""
    import av  # lazy: start-up speed

    label = "<video bytes>" if isinstance(path, bytes) else path
    if isinstance(path, bytes):
        if not path:
            raise InputError(f"{label}: file is empty (0 bytes)")
    else:
        check_readable_file(path)
    try:
        with av.open(BytesIO(path) if isinstance(path, bytes) else str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{label}: no video stream")
            yield container, container.streams.video[0]
    except av.error.FFmpegError as error:
        raise InputError(f"{label}: corrupt or unreadable video ({error})") from None


def probe_video(path: Path | bytes) -> VideoInfo:
    """Frame rate and (if the container knows it) frame count, without decoding frames."""
    with _first_video_stream(path) as (_, stream):
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        return VideoInfo(fps=Fraction(fps), frames=stream.frames or None)


def read_video_frames(path: Path) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream as (H, W, 3) uint8, upright.

    Rotation metadata (phones record portrait video as rotated landscape) is applied. A frame
    that cannot be decoded raises `InputError` (`read_video` reports it and goes on instead).
    """
    for frame in read_video(path):
        if frame.image is None:
            raise InputError(f"{path}: corrupt or unreadable video ({frame.error})")
        yield frame.image


@dataclass(frozen=True)
class DecodedFrame:
    """One frame of a video: `index` counts every frame of the stream (undecodable ones too, so
    indices match the source); `image` is (H, W, 3) uint8 upright, or None with `error` saying
    why it could not be decoded; `time` is seconds since the stream's first frame (None if the
    container gives no timestamp)."""

    index: int
    image: np.ndarray | None
    time: float | None
    error: str | None = None


def read_video(path: Path | bytes) -> Iterator[DecodedFrame]:
    """Every frame of the first video stream, packet by packet, going on after a corrupt one.

    Indices are in decoding order; for streams with B-frames the index of an undecodable frame
    is therefore approximate (within the decoder's reordering delay).
    """
    import av  # lazy: start-up speed

    with _first_video_stream(path) as (container, stream):
        # Slice threading only: with frame threading a corrupt packet's error surfaces packets
        # later, and the frame it belongs to could no longer be named.
        stream.thread_type = "SLICE"
        index, start = 0, None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as error:
                    yield DecodedFrame(index, None, _seconds(packet.pts, stream.time_base, start), _first_line(error))
                    index += 1
                    continue
                for frame in frames:
                    start = frame.time if start is None and frame.time is not None else start
                    yield DecodedFrame(index, _upright(frame), _seconds(frame.pts, frame.time_base, start))
                    index += 1
        except av.error.FFmpegError as error:  # the container itself breaks off: what was read stands
            yield DecodedFrame(index, None, None, _first_line(error))


def _upright(frame: Any) -> np.ndarray:
    """RGB pixels with the frame's rotation metadata applied (counter-clockwise degrees)."""
    pixels = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels


def _seconds(pts: int | None, time_base: Fraction | None, start: float | None) -> float | None:
    """Presentation time in seconds since the first decoded frame (None without a timestamp)."""
    if pts is None or time_base is None:
        return None
    return float(pts * time_base) - (start or 0.0)


def _first_line(error: BaseException) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _video_codec() -> str:
    """H.264 where FFmpeg has it (plays everywhere), MPEG-4 part 2 otherwise."""
    import av  # lazy: start-up speed

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


# Time base of videos written with explicit frame times: milliseconds, which every codec takes.
TIMED_TIME_BASE = Fraction(1, 1000)


class DepthVideoWriter:
    """Encode colourised depth frames to a video file, atomically.

    Frames go to a temporary file next to the destination, which is renamed into place by
    `close()`; `abort()` (or an exception inside a ``with`` block) removes it instead. Each
    frame is min/max normalised on its own, unless `value_range` gives one (low, high) for the
    whole clip. With `timed`, every frame is written at the time given to `write` (variable
    frame rate, gaps kept); otherwise frames follow each other at `fps`.
    """

    def __init__(self, path: Path, fps: Fraction, colormap: str = DEFAULT_COLORMAP,
                 value_range: tuple[float, float] | None = None, timed: bool = False) -> None:
        self.path = path
        self.fps = fps
        self.colormap = colormap
        self.value_range = value_range
        self.timed = timed
        self._last_pts = -1
        self._temporary = new_temporary_file(path)
        self._container: Any = None
        self._stream: Any = None

    def write(self, depth: np.ndarray, time: float | None = None) -> None:
        """Append one depth frame (`time`: its presentation time in seconds, for a timed writer)."""
        if self.value_range is None:
            rgb = colorize_depth(depth, self.colormap)
        else:
            rgb = colorize_in_range(depth, *self.value_range, self.colormap)
        rgb = _pad_to_even(rgb)
        if self._container is None:
            self._open(width=rgb.shape[1], height=rgb.shape[0])
        import av  # lazy: start-up speed

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.timed:
            guess = self._last_pts + round(1000 / self.fps) if time is None else round(time * 1000)
            self._last_pts = frame.pts = max(guess, self._last_pts + 1)  # strictly increasing
            frame.time_base = TIMED_TIME_BASE
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
        if self.timed:
            self._stream.codec_context.time_base = TIMED_TIME_BASE
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


def colorize_in_range(depth: np.ndarray, low: float, high: float, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W, 3) uint8 colours of depth normalised by one fixed range (clip-wide), with the
    colormap's own table as `colorize_depth` uses it; values outside the range saturate."""
    table = colormap_table(colormap)
    normalized = normalize_to_range(depth, low, high)
    indices = np.minimum((normalized * np.float32(len(table))).astype(np.int32), len(table) - 1)
    return table[indices]


def normalize_to_range(depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map [low, high] to [0, 1] as float32 (clipping outside, NaN to 0); a flat range maps to 0."""
    span = high - low
    if not np.isfinite(span) or span <= 0:
        return np.zeros(np.shape(depth), dtype=np.float32)
    scaled = (np.asarray(depth, dtype=np.float32) - np.float32(low)) * np.float32(1.0 / span)
    return np.clip(np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Repeat the last row/column where needed: 4:2:0 video needs even sides."""
    pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
    if not (pad_h or pad_w):
        return rgb
    return np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
