"""Videos (primedepth.io.video): probing, decoding, and the atomic depth video writer."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.io import video

RNG = np.random.default_rng(0)


def test_depth_video_round_trip_with_odd_size(tmp_path):
    target = tmp_path / "v" / "clip_depth.mp4"
    with video.DepthVideoWriter(target, Fraction(12)) as writer:
        for _ in range(4):
            writer.write(RNG.random((17, 23), dtype=np.float32))
    assert list(target.parent.iterdir()) == [target]
    info = video.probe_video(target)
    assert info.fps == 12 and info.frames == 4
    frames = list(video.read_video_frames(target))
    assert len(frames) == 4 and frames[0].shape == (18, 24, 3) and frames[0].dtype == np.uint8


def test_aborted_video_leaves_no_file(tmp_path):
    target = tmp_path / "clip_depth.mp4"
    with pytest.raises(KeyError):
        with video.DepthVideoWriter(target, Fraction(12)) as writer:
            writer.write(RNG.random((8, 8), dtype=np.float32))
            raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_video_raises_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(InputError, match="bad.mp4"):
        video.probe_video(bad)
    with pytest.raises(InputError, match="bad.mp4"):
        list(video.read_video_frames(bad))
