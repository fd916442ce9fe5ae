"""Videos in the Parquet output: frames stream through the actor into numbered parts of a bounded
number of rows, each row with its frame index, time, scale, shift and raw prediction; a clip cut
short is redone whole without duplicates, a finished one is skipped, a failed one leaves no rows.
(A video through Ray itself: `test_ray_engine.test_parquet_in_parquet_out...`.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ..extras import require_extra

require_extra("ray.data", "ray")
pq = require_extra("pyarrow.parquet", "ray")

from primedepth import cli  # noqa: E402
from primedepth.distributed import actor, parquet, rows  # noqa: E402
from primedepth.distributed.actor import DepthPredictor, WorkerSpec  # noqa: E402
from primedepth.distributed.storage import Destination  # noqa: E402
from primedepth.engine.summary import Prediction  # noqa: E402
from primedepth.jobs import JobOptions  # noqa: E402

from .helpers import assert_same_depth, make_video  # noqa: E402

FRAMES = 6
FPS = 8  # make_video's


def _frame(index: int, video: str = "clip", size: tuple[int, int] = (4, 6)) -> Prediction:
    """A frame's prediction as the engine hands it to sinks (raw, then aligned by 2x + 1)."""
    raw = np.random.default_rng(index).random(size, dtype=np.float32)
    return Prediction(name=f"{video}_frames/{index:06d}", source=Path(f"{video}.mp4"), status="done",
                      depth=2 * raw + 1, raw_depth=raw, temporal={"scale": 2.0, "shift": 1.0}, video=video,
                      frame_index=index, time=index / FPS)


def _rows(folder: Path) -> list[dict]:
    return sorted(pq.read_table(folder).to_pylist(), key=lambda row: (row["video"] or "", row["frame"] or 0))


# ------------------------------------------------------------------------------------ the sink alone


def test_frame_rows_carry_the_raw_prediction_and_images_none(tmp_path):
    destination = Destination.of(tmp_path / "depth")
    sink = parquet.ParquetSink(destination, chunk_rows=3)
    still = Prediction(name="still", source=Path("still.png"), status="done", depth=np.ones((4, 6), np.float32))
    sink.add(still)
    sink.close()  # the image's own part, before the clip's
    for index in range(7):
        sink.add(_frame(index))
    sink.finish_clip("clip")
    assert sink.parts[1:] == [parquet.clip_part_name("clip", ordinal) for ordinal in range(3)]  # 3 + 3 + 1 rows
    table = _rows(tmp_path / "depth")
    assert parquet.read_raw_depth(table[0]) is None and table[0]["raw_depth"] is None  # the image
    for row in table[1:]:
        expected = _frame(row["frame"])
        np.testing.assert_array_equal(parquet.read_raw_depth(row), expected.raw_depth)
        np.testing.assert_array_equal(parquet.read_depth(row), expected.depth)
        assert (row["time"], row["frame_scale"], row["frame_shift"]) == (row["frame"] / FPS, 2.0, 1.0)
    assert parquet.finished_names(destination) == {"still", "clip"}
    bad = _frame(0)
    bad.raw_depth = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="differ in size"):
        parquet.ParquetSink(destination).add(bad)


def test_a_clip_written_again_in_other_chunks_replaces_its_parts(tmp_path):
    destination = Destination.of(tmp_path / "depth")
    first = parquet.ParquetSink(destination, chunk_rows=2)
    for index in range(5):
        first.add(_frame(index))
    first.close()  # cut short: three parts, no marker
    assert parquet.finished_names(destination) == frozenset()
    again = parquet.ParquetSink(destination, chunk_rows=4)
    for index in range(5):
        again.add(_frame(index))
    again.finish_clip("clip")
    assert sorted(path.name for path in (tmp_path / "depth").glob("part-*")) == sorted(again.parts)
    assert [row["frame"] for row in _rows(tmp_path / "depth")] == list(range(5))  # the third old part is gone
    assert parquet.finished_names(destination) == {"clip"}


def test_large_frames_make_parts_of_fewer_rows(tmp_path):
    """The bound is in bytes too: 7 frames of 2 x 96 bytes (depth and raw) in parts of 3, 3, 1."""
    sink = parquet.ParquetSink(Destination.of(tmp_path / "depth"), chunk_rows=100, chunk_bytes=3 * 2 * 96)
    for index in range(7):
        sink.add(_frame(index))
    sink.finish_clip("clip")
    assert [pq.ParquetFile(tmp_path / "depth" / part).metadata.num_rows for part in sink.parts] == [3, 3, 1]


# ------------------------------------------------------------------------------------ the actor, in this process


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", frames=FRAMES)


@pytest.fixture(scope="module")
def raw_reference(clip: Path, tiny_model: Path, tmp_path_factory) -> Path:
    """The local engine's ``.npy`` frame outputs of the clip: each frame's raw prediction."""
    out = tmp_path_factory.mktemp("local") / "out"
    assert cli.main(["predict", str(clip), "-o", str(out), "--model", str(tiny_model), "--seed", "0",
                     "--outputs", "npy"]) == 0
    return out / "clip_frames"


def _predictor(model: Path, destination: Destination, chunk_rows: int, **options) -> DepthPredictor:
    spec = WorkerSpec(model=str(model), threads=1, options=JobOptions(outputs=(), seed=0, **options),
                      destination=destination, parquet=True, chunk_rows=chunk_rows)
    return DepthPredictor(spec)


def _batch(clip: Path, name: str = "shots/clip") -> dict[str, np.ndarray]:
    return rows.columns_of([{"path": str(clip), "name": name}], ["path", "name"])


def _parts(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("part-*.parquet")}


def test_the_actor_streams_a_clip_in_bounded_chunks_and_resumes_it(clip, raw_reference, tiny_model, tmp_path,
                                                                   monkeypatch):
    destination = Destination.of(tmp_path / "depth")
    # An earlier attempt in chunks of 2 that died before the clip's marker.
    assert list(_predictor(tiny_model, destination, 2)(_batch(clip))["status"]) == ["done"]
    (tmp_path / "depth" / parquet.clip_mark_name("shots/clip")).unlink()
    assert len(_parts(tmp_path / "depth")) == 3
    held, summaries = [], []
    add, run_job = parquet.ParquetSink.add, actor.run_job
    monkeypatch.setattr(parquet.ParquetSink, "add", lambda sink, p: (add(sink, p), held.append(len(sink.records))))
    monkeypatch.setattr(actor, "run_job", lambda *a, **k: summaries.append(run_job(*a, **k)) or summaries[-1])
    result = _predictor(tiny_model, destination, 4)(_batch(clip))  # Ray's retry, on a new actor
    assert list(result["status"]) == ["done"] and list(result["images"]) == [FRAMES]
    # Never more than a chunk of rows held, nothing kept in the job's summary.
    assert len(held) == FRAMES and max(held) < 4 and summaries[0].results == []
    assert sorted(_parts(tmp_path / "depth")) == sorted(parquet.clip_part_name("shots/clip", i) for i in range(2))
    table = _rows(tmp_path / "depth")
    assert [(row["video"], row["frame"]) for row in table] == [("shots/clip", i) for i in range(FRAMES)]
    for row in table:
        assert abs(row["time"] - row["frame"] / FPS) < 1e-6 and row["source"] == str(clip)
        assert row["frame_scale"] is not None and row["frame_shift"] is not None
        assert_same_depth(parquet.read_raw_depth(row), np.load(raw_reference / f"{row['frame']:06d}_depth.npy"))
    written = _parts(tmp_path / "depth")
    again = _predictor(tiny_model, destination, 4)(_batch(clip))
    assert list(again["status"]) == ["skipped"] and _parts(tmp_path / "depth") == written


def test_frame_rows_carry_their_labels_with_segmentation(clip, tiny_model, tmp_path):
    destination = Destination.of(tmp_path / "depth")
    result = _predictor(tiny_model, destination, 4, segmentation=True)(_batch(clip))
    assert list(result["status"]) == ["done"]
    table = _rows(tmp_path / "depth")
    assert len(table) == FRAMES and all(parquet.read_labels(row).shape == (32, 48) for row in table)


def test_a_clip_that_fails_leaves_no_rows(tiny_model, tmp_path):
    destination = Destination.of(tmp_path / "depth")
    sink = parquet.ParquetSink(destination, chunk_rows=1)
    for index in range(2):  # what an earlier attempt wrote before dying
        sink.add(_frame(index, video="shots/clip"))
    broken = tmp_path / "clip.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    result = _predictor(tiny_model, destination, 4)(_batch(broken))
    assert list(result["status"]) == ["failed"] and result["error"][0]
    assert _parts(tmp_path / "depth") == {}
