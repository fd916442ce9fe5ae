"""The job engine's pieces: sinks and sources, the one resume rule (video clips included), name
checks for every source, bounded results in memory, and the job's report."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from primedepth import cli, io
from primedepth.distributed import rows
from primedepth.engine import (
    JOB_KEYWORDS,
    JOB_RECORD,
    BytesSink,
    FolderSink,
    JobOptions,
    collect_items,
    predict,
    run_job,
    write_job_record,
)
from primedepth.engine import api as engine_api
from primedepth.errors import InputError, WeightsNotFoundError
from primedepth.io.names import safe_output_name
from primedepth.serve.uploads import safe_stem

from .helpers import CountingPipeline, rgb, save_png, write_clip


def _job(inputs, out: Path | None, pipeline, **options):
    """The engine as `primedepth predict` runs it, job record included."""
    options = JobOptions(output_dir=out, batch_size=options.pop("batch_size", 4), **options)
    summary = run_job(collect_items(inputs), lambda: pipeline, options)
    write_job_record(options, summary)
    return summary


# -------------------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("in") / "clip.mp4", frames=6)


@pytest.mark.parametrize("first, again", [
    (("png16", "color", "video"), ("png16",)),
    (("png16", "color", "video"), ("color", "video")),
    (("png16",), ("png16",)),
    (("npy", "png16"), ("npy",)),
])
def test_a_finished_clip_predicts_no_frame_whatever_the_output_set(clip, tmp_path, first, again):
    pipeline = CountingPipeline()
    summary = _job([clip], tmp_path, pipeline, outputs=first)
    assert summary.done == 1 and pipeline.predicted == 6
    summary = _job([clip], tmp_path, pipeline, outputs=again)
    assert (summary.done, summary.skipped, pipeline.predicted) == (0, 1, 6)


def test_a_kind_the_clip_never_had_runs_it_again_and_then_it_is_finished(clip, tmp_path):
    pipeline = CountingPipeline()
    _job([clip], tmp_path, pipeline, outputs=("png16",))
    summary = _job([clip], tmp_path, pipeline, outputs=("png16", "npy"))
    assert summary.done == 1 and pipeline.predicted == 12
    assert all((tmp_path / f"clip_frames/{i:06d}_depth.npy").is_file() for i in range(6))
    summary = _job([clip], tmp_path, pipeline, outputs=("npy",))
    assert summary.skipped == 1 and pipeline.predicted == 12
    summary = _job([clip], tmp_path, pipeline, outputs=("npy",), overwrite=True)
    assert summary.done == 1 and pipeline.predicted == 18


def test_an_interrupted_clip_is_not_finished(clip, tmp_path):
    """A clip is listed as complete only when it ended: a failed one runs again."""
    _job([clip], tmp_path, CountingPipeline(fail_with=RuntimeError("boom")), outputs=("png16",))
    assert json.loads((tmp_path / JOB_RECORD).read_text())[-1].get("videos") is None
    pipeline = CountingPipeline()
    assert _job([clip], tmp_path, pipeline, outputs=("png16",)).done == 1 and pipeline.predicted == 6


def test_images_resume_by_their_files(tmp_path):
    images = [save_png(tmp_path / "in" / f"{name}.png") for name in ("a", "b")]
    pipeline = CountingPipeline()
    _job(images, tmp_path / "out", pipeline, outputs=("png16",))
    (tmp_path / "out" / "b_depth.png").unlink()
    summary = _job(images, tmp_path / "out", pipeline, outputs=("png16",))
    assert (summary.done, summary.skipped, pipeline.predicted) == (1, 1, 3)


# ---------------------------------------------------------------------------------- names


@pytest.mark.parametrize("raw, reason", [
    ("/etc/passwd", "absolute"), ("C:\\x\\y", "absolute"), ("a/../../b", "'..'"), ("", "empty"),
    ("a/\x1b[31mred", "control"), ("line\nbreak", "control"), ("bidi\u202etxt", "control"), ("./", "empty"),
])
def test_bad_names_are_refused_with_the_reason(raw, reason):
    with pytest.raises(InputError, match=reason):
        safe_output_name(raw)


def test_names_are_normalised():
    assert safe_output_name("a\\b//c/./d") == PurePosixPath("a/b/c/d")


def test_each_source_refuses_a_bad_name_for_its_item_only(tmp_path):
    good = save_png(tmp_path / "good.png")
    odd = save_png(tmp_path / "odd\x07name.png")
    listed = tmp_path / "list.txt"
    listed.write_text(f"{good}\n{odd}\n")
    local = io.expand_inputs([listed])
    assert [item.kind for item in local] == ["image", "invalid"] and "control" in local[1].error
    memory = collect_items([("../escape", rgb()), ("fine", rgb())])
    assert [item.kind for item in memory] == ["invalid", "image"] and "'..'" in memory[0].error
    row = rows.decode_row({"path": "db/x.png", "name": "/abs/x", "bytes": b"x"}, "bytes", None)
    assert row.error is not None and "absolute" in row.error
    with pytest.raises(InputError, match="absolute"):
        rows.local_item(row)
    assert rows.decode_row({"path": "s3://bucket/a/b.png"}, "bytes", None).name == PurePosixPath("bucket/a/b")
    assert safe_stem("..\\..\\evil\x00.png", "image") == "evil"
    pipeline = CountingPipeline()
    summary = _job([("../escape", rgb()), ("fine", rgb())], tmp_path / "out", pipeline, outputs=("npy",))
    assert (summary.done, summary.failed) == (1, 1) and "'..'" in summary.failures[0][1]
    assert not (tmp_path / "escape_depth.npy").exists() and (tmp_path / "out" / "fine_depth.npy").is_file()


# ------------------------------------------------------------------------ sources and sinks


def test_rows_are_read_in_memory_without_a_file(tmp_path):
    image = save_png(tmp_path / "a.png")
    scratch = tmp_path / "scratch"
    row = rows.Row(PurePosixPath("a"), "db/a.png", "image", image.read_bytes())
    item = rows.local_item(row, scratch, 3)
    assert not scratch.exists() and item.data == image.read_bytes() and item.label == "db/a.png"
    np.testing.assert_array_equal(io.read_image(item.source), io.read_image(image))
    uri = rows.local_item(rows.Row(PurePosixPath("a"), f"file://{image}", "image"))
    assert uri.data == image.read_bytes()


def test_bytes_and_files_give_the_same_depth_and_the_same_output_bytes(tmp_path):
    image = save_png(tmp_path / "a.png")
    pipeline = CountingPipeline()
    [from_file] = predict(str(image), model=pipeline, output_dir=tmp_path / "out", outputs=("png16", "npy"))
    [from_bytes] = predict(("a", image.read_bytes()), model=pipeline)
    np.testing.assert_array_equal(from_file.depth, from_bytes.depth)
    sink = BytesSink()
    options = JobOptions(outputs=("png16", "npy", "color"), batch_size=1)
    summary = run_job(collect_items([("a", image.read_bytes())]), lambda: pipeline, options, sink)
    files = sink.files["a"]
    assert list(files) == ["a_depth.png", "a_depth.npy", "a_depth_color.png"]
    assert files["a_depth.png"] == (tmp_path / "out" / "a_depth.png").read_bytes()
    assert files["a_depth.npy"] == (tmp_path / "out" / "a_depth.npy").read_bytes()
    assert summary.metadata["depth_quantity"] == io.DEPTH_QUANTITY


def test_video_bytes_are_decoded_in_memory(clip):
    items = collect_items([("clip", clip.read_bytes())])
    item = io.InputItem(name=items[0].name, kind="video", data=items[0].data)
    summary = run_job([item], CountingPipeline, JobOptions(outputs=("png16",), batch_size=4))
    assert summary.done == 1 and [p.frame_index for p in summary.results] == list(range(6))


def test_folder_sink_writes_what_write_outputs_writes(tmp_path):
    depth = np.random.default_rng(1).random((8, 12), dtype=np.float32)
    options = JobOptions(outputs=("png16", "color"))
    written = FolderSink(tmp_path).write_image(PurePosixPath("x/y"), depth, None, options, {"k": "v"})
    assert [path.name for path in written] == ["y_depth.png", "y_depth_color.png"]
    encoded = io.encode_outputs(("png16", "color"), depth, None, options.colormap, {"k": "v"})
    assert encoded["png16"] == written[0].read_bytes() and encoded["color"] == written[1].read_bytes()


def test_predict_and_predict_dataset_take_one_keyword_list():
    import inspect

    parameters = inspect.signature(predict).parameters
    assert set(JOB_KEYWORDS) <= set(parameters) and parameters["seed"].default == 0
    with pytest.raises(TypeError, match="colour_map"):
        predict(rgb(), model=CountingPipeline(), colour_map="gray")


# ---------------------------------------------------------------------- bounded memory


def test_a_streamed_video_yields_its_frames_one_by_one(clip, monkeypatch):
    frames = predict(str(clip), model=CountingPipeline(), stream=True, outputs=("png16",), batch_size=2)
    first = next(frames)
    assert first.video == "clip" and first.frame_index == 0 and first.depth.shape == (32, 48)
    rest = list(frames)
    assert [p.frame_index for p in rest] == [1, 2, 3, 4, 5] and all(p.temporal for p in rest)


def test_a_stream_stopped_early_ends_the_job(clip):
    frames = predict(str(clip), model=CountingPipeline(), stream=True, outputs=("png16",), batch_size=1)
    next(frames)
    frames.close()  # the worker thread stops and joins: nothing left running


def test_a_long_video_in_a_list_is_refused_before_any_work(clip, tmp_path, monkeypatch):
    monkeypatch.setattr(engine_api, "MAX_IN_MEMORY_FRAMES", 5)
    pipeline = CountingPipeline()
    with pytest.raises(InputError, match="stream=True"):
        predict(str(clip), model=pipeline)
    assert pipeline.predicted == 0
    assert len(predict(str(clip), model=pipeline, output_dir=tmp_path, outputs=("png16",))) == 6  # to a folder: fine


def test_an_in_memory_clip_leaves_no_spool_behind(clip, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    results = predict(str(clip), model=CountingPipeline(), batch_size=3)
    assert len(results) == 6 and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the report


def test_the_summary_counts_images_clips_and_frames(clip, tmp_path):
    images = [save_png(tmp_path / "in" / f"{i}.png") for i in range(3)]
    summary = _job([*images, clip], tmp_path / "out", CountingPipeline(), outputs=("png16",))
    assert (summary.done, summary.clips, summary.frames, summary.images) == (4, 1, 6, 9)
    text = summary.format()
    assert "done 4, skipped 0 (outputs existed), failed 0" in text
    assert "3 images and 1 clip (6 frames)" in text and "frames/s" in text


def test_3d_outputs_for_a_video_are_refused_at_the_start(clip, tmp_path, capsys):
    code = cli.main(["predict", str(clip), "-o", str(tmp_path / "out"), "--outputs", "png16,ply", "--model", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "images only" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_weights_during_prediction_end_the_job(tmp_path):
    images = [save_png(tmp_path / f"{i}.png") for i in range(3)]
    pipeline = CountingPipeline(fail_with=WeightsNotFoundError("no captioner"))
    with pytest.raises(WeightsNotFoundError):
        run_job(collect_items(images), lambda: pipeline, JobOptions(outputs=("npy",), batch_size=1))


def test_the_captioner_is_checked_once_before_the_first_image(tmp_path, monkeypatch):
    from primedepth.errors import CaptionerUnavailableError
    from primedepth.testing import tiny_pipeline
    from primedepth.text import captioning

    calls = []
    monkeypatch.setattr(captioning, "check_captioner", lambda *a, **k: calls.append(a) or "not cached")
    pipeline = tiny_pipeline()
    images = [rgb() for _ in range(3)]
    with pytest.raises(CaptionerUnavailableError, match="--prompt"):
        run_job(collect_items(images), lambda: pipeline, JobOptions(prompt="auto", batch_size=1))
    assert len(calls) == 1
    summary = run_job(collect_items(images), lambda: pipeline, JobOptions(prompt="", batch_size=3))
    assert summary.done == 3 and len(calls) == 1  # an explicit prompt needs no captioner


# ---------------------------------------------------------------------------------- Parquet


def test_a_clip_streams_into_parquet_parts_that_readers_take_whole(clip, tmp_path):
    import pandas as pd
    import pyarrow.parquet as pq

    from primedepth.distributed import parquet
    from primedepth.distributed.storage import Destination

    destination = Destination.of(tmp_path / "depth")
    image = save_png(tmp_path / "in" / "still.png")
    sink = parquet.ParquetSink(destination, chunk_rows=4)
    summary = run_job(collect_items([str(image), str(clip)]), CountingPipeline,
                      JobOptions(outputs=("png16",), batch_size=2, keep_results=False), sink)
    assert summary.done == 2 and summary.results == [] and len(sink.parts) == 2  # 1 image + 6 frames in 4s
    table = pq.read_table(tmp_path / "depth")
    frame_rows = sorted((row for row in table.to_pylist() if row["video"]), key=lambda row: row["frame"])
    assert [row["frame"] for row in frame_rows] == list(range(6)) and len(pd.read_parquet(tmp_path / "depth")) == 7
    assert all(row["time"] is not None and row["frame_scale"] is not None for row in frame_rows)
    assert abs(frame_rows[1]["time"] - 1 / 8) < 1e-6
    row = frame_rows[3]
    raw = (parquet.read_depth(row) - row["frame_shift"]) / row["frame_scale"]
    assert raw.shape == (32, 48) and np.isfinite(raw).all()
    assert parquet.finished_names(destination) == {"still", "clip"}
    (tmp_path / "depth" / parquet.clip_mark_name("clip")).unlink()  # as if cut short before its end
    assert parquet.finished_names(destination) == {"still"}


def test_without_a_terminal_progress_is_a_plain_line_every_few_seconds(tmp_path, monkeypatch, capsys):
    from primedepth.engine import progress

    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    images = [save_png(tmp_path / f"{i}.png") for i in range(3)]
    run_job(collect_items(images), CountingPipeline, JobOptions(outputs=("npy",), batch_size=1, progress=True))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("primedepth predict:")]
    assert lines[-1].startswith("primedepth predict: 3/3 images and frames") and len(lines) == 3
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 3600.0)
    run_job(collect_items(images), CountingPipeline, JobOptions(outputs=("npy",), batch_size=1, progress=True))
    assert "primedepth predict:" not in capsys.readouterr().err


def test_a_warning_is_shown_once_per_job(tmp_path, capsys):
    images = [save_png(tmp_path / f"{i}.png") for i in range(3)]
    options = JobOptions(output_dir=tmp_path / "out", outputs=("normals",), batch_size=1, progress=True)
    summary = run_job(collect_items(images), CountingPipeline, options)
    err = capsys.readouterr().err
    assert summary.done == 3 and len(summary.warnings) == 1 and "field of view" in summary.warnings[0][1]
    assert err.count("warning:") == 1
