"""Videos through the job engine: one conditioning per clip, clip-wide normalisation, resume at
frame granularity, and the bad inputs real videos bring (corrupt frame, rotation, audio, VFR)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from primedepth import cli, io
from primedepth.io.video import read_video
from primedepth.video.correspondence import resolve_temporal
from primedepth.jobs import JOB_RECORD, JobOptions, collect_items, predict, run_job, write_job_record
from primedepth.video.synthetic import static_camera_clip

from .helpers import SIZE, clip_frames, corrupt_packet, write_video


class FakePipeline:
    """A stand-in model (depth = mean colour) that records the keyword arguments of every call."""

    segmentation_head = None

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls: list[dict] = []
        self.interrupt_at = interrupt_at

    def __call__(self, images, **kwargs):
        self.calls.append({"count": len(images), **kwargs})
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        depth = [np.asarray(image, np.float32).mean(-1) / 255 + 0.1 for image in images]
        prompt = kwargs.get("prompt")
        return SimpleNamespace(depth=depth, segmentation=None, prompts=None if prompt is None else [prompt] * len(images))

    @property
    def predicted(self) -> int:
        return sum(call["count"] for call in self.calls)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != JOB_RECORD)


def _run(clip: Path, out: Path, pipeline, **options) -> object:
    """The engine as `primedepth predict` runs it, job record included."""
    options = JobOptions(output_dir=out, batch_size=options.pop("batch_size", 2), **options)
    summary = run_job(collect_items([clip]), lambda: pipeline, options)
    write_job_record(options, summary)
    return summary


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("in") / "clip.mp4", clip_frames(6))


@pytest.mark.parametrize("temporal", ["align", None])  # None: the default, global co-alignment
def test_one_normalisation_per_clip_and_raw_values_recoverable(clip, tmp_path, temporal):
    out = tmp_path / "out"
    summary = _run(clip, out, FakePipeline(), outputs=("png16", "color", "npy", "video"), temporal=temporal)
    assert summary.ok and summary.images == 6
    names = [f"clip_frames/{i:06d}_depth{s}" for i in range(6) for s in (".npy", ".png", "_color.png")]
    assert _files(out) == sorted(["clip_depth.mp4", *names])  # the hidden work folder is gone
    texts = [Image.open(out / f"clip_frames/{i:06d}_depth.png").text for i in range(6)]
    assert len({(t["depth_min"], t["depth_max"]) for t in texts}) == 1  # one range for the clip
    colours = [Image.open(out / f"clip_frames/{i:06d}_depth_color.png").text for i in range(6)]
    assert len({(t["display_min"], t["display_max"]) for t in colours}) == 1
    for index, text in enumerate(texts):
        aligned = io.read_depth_png16(out / f"clip_frames/{index:06d}_depth.png")
        raw = (aligned - float(text["frame_shift"])) / float(text["frame_scale"])
        span = (float(text["depth_max"]) - float(text["depth_min"])) / float(text["frame_scale"])
        np.testing.assert_allclose(raw, np.load(out / f"clip_frames/{index:06d}_depth.npy"), atol=span / 65535)
    values = np.stack([np.asarray(Image.open(out / f"clip_frames/{i:06d}_depth.png")) for i in range(6)])
    assert (values.min(), values.max()) == (0, 65535)  # both passes aligned the frames alike
    record = json.loads((out / JOB_RECORD).read_text())[-1]["videos"][0]
    assert record["temporal"] == (temporal or "global") and [frame[0] for frame in record["frames"]] == list(range(6))
    assert record["frames"][3][2] == pytest.approx(float(texts[3]["frame_scale"]))


def test_resume_after_interruption_predicts_only_the_missing_frames(clip, tmp_path):
    whole = tmp_path / "whole"
    _run(clip, whole, FakePipeline(), outputs=("png16", "video"))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(clip, out, FakePipeline(interrupt_at=2), outputs=("png16", "video"))
    assert _files(out) == [".clip_temporal/clip.json", ".clip_temporal/raw/000000.npy", ".clip_temporal/raw/000001.npy"]
    resumed = FakePipeline()
    summary = _run(clip, out, resumed, outputs=("png16", "video"))
    assert summary.ok and resumed.predicted == 4 and summary.images == 4
    assert _files(out) == _files(whole)
    values = [np.asarray(Image.open(whole / f"clip_frames/{i:06d}_depth.png")) for i in range(6)]
    assert (min(v.min() for v in values), max(v.max() for v in values)) == (0, 65535)  # flow: passes agree
    for index in range(6):
        name = f"clip_frames/{index:06d}_depth.png"
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), values[index])


def test_stored_predictions_of_other_settings_are_not_reused(clip, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(clip, tmp_path, FakePipeline(interrupt_at=2), outputs=("png16",), seed=1)
    again = FakePipeline()
    assert _run(clip, tmp_path, again, outputs=("png16",), seed=2).ok and again.predicted == 6


def test_interrupted_video_alone_leaves_nothing(clip, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(clip, tmp_path, FakePipeline(interrupt_at=2), outputs=("video",))
    assert _files(tmp_path) == []


def test_one_caption_and_one_noise_draw_per_clip(clip, tmp_path, monkeypatch):
    from primedepth.testing import tiny_pipeline

    pipeline = tiny_pipeline()
    captioned: list[tuple] = []
    pipeline.captioner = SimpleNamespace(caption=lambda images: captioned.append(images[0].shape) or ["a red car"])
    calls = []
    real_call = type(pipeline).__call__
    monkeypatch.setattr(type(pipeline), "__call__", lambda self, images, **kw: calls.append(kw) or real_call(self, images, **kw))
    results = predict(clip, model=pipeline, prompt="auto", seed=None, batch_size=4, outputs=())
    assert len(captioned) == 1 and [r.prompt for r in results] == ["a red car"] * 6
    assert [call["prompt"] for call in calls] == ["a red car", "a red car"]  # batches of 4 and 2
    noises = [noise for call in calls for noise in call["posterior_noise"]]
    assert len(noises) == 6 and all(torch_equal(noise, noises[0]) for noise in noises)
    steps = [noise for call in calls for noise in call["step_noise"]]
    assert all(torch_equal(noise, steps[0]) for noise in steps)
    assert all(result.temporal["mode"] == resolve_temporal(None) for result in results)  # flow with OpenCV


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_corrupt_middle_frame_is_reported_and_the_clip_finishes(tmp_path, capsys):
    clip = write_video(tmp_path / "broken.mp4", clip_frames(6), intra=True)
    corrupt_packet(clip, 3)
    out = tmp_path / "out"
    summary = _run(clip, out, FakePipeline(), outputs=("png16", "video"))
    assert summary.ok and summary.done == 1 and summary.images == 5
    assert len(summary.warnings) == 1 and "frame 3 (t = 0.375 s) could not be decoded" in summary.warnings[0][1]
    assert "skipped" in summary.warnings[0][1] and "warning:" in summary.format()
    assert not (out / "broken_frames/000003_depth.png").exists()
    assert (out / "broken_frames/000004_depth.png").exists()
    times = [frame.time for frame in read_video(out / "broken_depth.mp4")]
    assert times == pytest.approx([0.0, 0.125, 0.25, 0.5, 0.625], abs=1e-3)  # the gap is kept


def test_rotated_phone_video_comes_out_upright(tmp_path):
    clip = write_video(tmp_path / "phone.mp4", clip_frames(3), rotation=90)
    out = tmp_path / "out"
    assert _run(clip, out, FakePipeline(), outputs=("png16", "video")).ok
    assert io.read_depth_png16(out / "phone_frames/000000_depth.png").shape == (SIZE[1], SIZE[0])
    assert next(iter(io.read_video_frames(out / "phone_depth.mp4"))).shape[:2] == (SIZE[1], SIZE[0])


def test_single_frame_clip_with_audio(tmp_path):
    clip = write_video(tmp_path / "one.mp4", clip_frames(1), audio=True)
    out = tmp_path / "out"
    summary = _run(clip, out, FakePipeline(), outputs=("png16", "color", "video"))
    assert summary.ok and summary.images == 1
    assert _files(out) == ["one_depth.mp4", "one_frames/000000_depth.png", "one_frames/000000_depth_color.png"]


def test_variable_frame_rate_keeps_the_source_timing(tmp_path):
    times = [0, 40, 80, 200, 240, 400]
    clip = write_video(tmp_path / "vfr.mp4", clip_frames(6), times_ms=times)
    out = tmp_path / "out"
    assert _run(clip, out, FakePipeline(), outputs=("video",)).ok
    written = [frame.time for frame in read_video(out / "vfr_depth.mp4")]
    assert written == pytest.approx([t / 1000 for t in times], abs=2e-3)


def test_none_keeps_per_frame_normalisation(clip, tmp_path):
    out = tmp_path / "out"
    fake = FakePipeline()
    _run(clip, out, fake, outputs=("png16",), temporal="none")
    texts = [Image.open(out / f"clip_frames/{i:06d}_depth.png").text for i in range(6)]
    assert len({text["depth_max"] for text in texts}) > 1  # each frame its own min/max, as before alignment
    assert not any("temporal_mode" in text for text in texts)
    assert {g.initial_seed() for call in fake.calls for g in call["generator"]} == {0}  # one seed for the clip


def test_in_memory_results_carry_the_aligned_depth_and_its_scale(clip):
    results = predict(clip, model=FakePipeline(), temporal="align", temporal_smoothing=0.0)
    assert [r.name for r in results] == [f"clip_frames/{i:06d}" for i in range(6)]
    raw = (results[2].depth - results[2].temporal["shift"]) / results[2].temporal["scale"]
    frame = next(f.image for f in read_video(clip) if f.index == 2)
    np.testing.assert_allclose(raw, frame.astype(np.float32).mean(-1) / 255 + 0.1, rtol=1e-4)


def test_cli_video_options_reach_the_job(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(importlib.import_module("primedepth.loading"), "load_pipeline",
                        lambda *args, **kwargs: FakePipeline())
    out = tmp_path / "out"
    code = cli.main(["predict", str(clip), "-o", str(out), "--outputs", "png16", "--temporal", "align",
                     "--temporal-window", "2", "--temporal-smoothing", "0.5"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / JOB_RECORD).read_text())[-1]["videos"][0]
    assert (record["temporal"], record["window"], record["smoothing"]) == ("align", 2, 0.5)
    assert cli.main(["predict", str(clip), "-o", str(out / "default"), "--outputs", "png16"]) == 0
    record = json.loads((out / "default" / JOB_RECORD).read_text())[-1]["videos"][0]
    assert record["temporal"] == "global"  # the default: global co-alignment
    assert cli.main(["predict", str(clip), "-o", str(out), "--temporal-smoothing", "1.5"]) == 2
    assert "smoothing must be in [0, 1)" in capsys.readouterr().err
    assert cli.main(["predict", str(clip), "-o", str(out), "--temporal-filter", "-1"]) == 2
    assert "filter radius must be a whole number >= 0" in capsys.readouterr().err
    assert cli.main(["predict", str(clip), "-o", str(out / "unfiltered"), "--outputs", "png16",
                     "--temporal-filter", "0"]) == 0
    record = json.loads((out / "unfiltered" / JOB_RECORD).read_text())[-1]["videos"][0]
    assert (record["temporal"], record["temporal_filter"]) == ("global", 0)


def test_filtered_frames_say_so_and_keep_the_raw_prediction(tmp_path):
    """The default global mode filters the aligned depth over time: the PNGs say the raw value is
    no longer exactly (value - shift) / scale, the .npy and `Prediction.raw_depth` keep it."""
    still = write_video(tmp_path / "still.mp4", static_camera_clip(frames=8, size=SIZE).frames)
    out = tmp_path / "out"
    summary = _run(still, out, FakePipeline(), outputs=("png16", "npy"))
    assert summary.ok
    texts = [Image.open(out / f"still_frames/{i:06d}_depth.png").text for i in range(8)]
    assert {text["temporal_filter"] for text in texts} == {"radius 4"}
    assert all("not exactly" in text["raw_decode"] for text in texts)
    record = json.loads((out / JOB_RECORD).read_text())[-1]["videos"][0]
    assert record["temporal_filter"] == 4
    results = predict(still, model=FakePipeline())
    frames = {f.index: f.image for f in read_video(still)}
    for result in results:
        raw = frames[result.frame_index].astype(np.float32).mean(-1) / 255 + 0.1  # what FakePipeline predicts
        np.testing.assert_allclose(result.raw_depth, raw, rtol=1e-6)
        assert result.temporal["temporal_filter"] == 4 and result.temporal["filter_neighbours"] > 1
        affine = result.temporal["scale"] * result.raw_depth + result.temporal["shift"]
        assert 0 < np.abs(result.depth - affine).max() < 0.05 * np.ptp(affine)  # filtered: a small change
        np.testing.assert_allclose(np.load(out / f"{result.name}_depth.npy"), result.raw_depth, rtol=1e-6)
    aligned = predict(still, model=FakePipeline(), temporal="align", temporal_smoothing=0.0)
    assert all(r.temporal["temporal_filter"] == 0 and r.raw_depth is not None for r in aligned)
    for result in predict(still, model=FakePipeline(), temporal_filter=0):  # global, filter off: exact again
        assert result.temporal["temporal_filter"] == 0
        np.testing.assert_allclose(result.depth, result.temporal["scale"] * result.raw_depth + result.temporal["shift"],
                                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stream", [True, False])
def test_frame_labels_reach_every_result_path(clip, stream):
    """Segmentation of video frames, kept between the passes on disk (not in memory): streamed and
    listed results both carry every frame's labels, the same ones."""
    from primedepth.testing import tiny_pipeline

    pipeline = tiny_pipeline()
    results = list(predict(clip, model=pipeline, segmentation=True, prompt="", stream=stream))
    assert [r.frame_index for r in results] == list(range(6))
    for result in results:
        assert result.segmentation is not None and result.segmentation.shape[-2:] == result.depth.shape
    if stream:
        listed = predict(clip, model=pipeline, segmentation=True, prompt="")
        for a, b in zip(results, listed):
            np.testing.assert_array_equal(a.segmentation, b.segmentation)
