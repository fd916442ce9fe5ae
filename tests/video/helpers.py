"""Small videos for the video tests: synthetic scenes written with PyAV, with the oddities of
real files on request (rotation metadata, audio, variable frame rate, a corrupt frame)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from primedepth.video.synthetic import moving_camera_clip

SIZE = (48, 64)  # height, width of the test clips


def clip_frames(count: int = 6, size: tuple[int, int] = SIZE) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a camera walking through boxes."""
    return moving_camera_clip(frames=count, size=size).frames


def write_video(path: Path, frames: np.ndarray, fps: int = 8, rotation: int | None = None, audio: bool = False,
                times_ms: list[int] | None = None, intra: bool = False) -> Path:
    """An H.264 .mp4 of `frames`; `rotation`: display-matrix degrees (as phones record);
    `times_ms`: explicit frame times (variable frame rate); `intra`: every frame a keyframe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if intra:
            stream.options = {"x264-params": "keyint=1"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=8000) if audio else None
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _add_silence(container, sound)
    return path


def _add_silence(container: av.container.OutputContainer, sound: av.audio.stream.AudioStream) -> None:
    samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    samples.sample_rate, samples.pts = 8000, 0
    for packet in [*sound.encode(samples), *sound.encode()]:
        container.mux(packet)


def corrupt_packet(path: Path, index: int, seed: int = 0) -> None:
    """Overwrite the bytes of video packet `index` with noise: that frame no longer decodes."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(path.read_bytes())
    position, size = packets[index]
    data[position:position + size] = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
