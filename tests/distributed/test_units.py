"""The Ray engine's parts without a Ray instance: rows, storage, resume, Parquet, and the actor
called in this process (what every Ray worker runs per batch)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest

from ..extras import require_extra

require_extra("ray.data", "ray")
pq = require_extra("pyarrow.parquet", "ray")

from primedepth import cli, io  # noqa: E402
from primedepth.distributed import parquet, rows  # noqa: E402
from primedepth.distributed.actor import DepthPredictor, WorkerSpec  # noqa: E402
from primedepth.distributed.dataset import PoolSpec, rows_per_batch, split_outputs  # noqa: E402
from primedepth.distributed.engine import ERRORS_FILE, collect_inputs, write_errors  # noqa: E402
from primedepth.distributed.listing import Listing, MediaListing, list_rows  # noqa: E402
from primedepth.distributed.resume import is_finished  # noqa: E402
from primedepth.distributed.storage import Destination, list_media  # noqa: E402
from primedepth.errors import InputError  # noqa: E402
from primedepth.jobs import JobOptions, predict  # noqa: E402

from .helpers import assert_same_depth, make_photos, make_video  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("inputs") / "photos", count=4)


def _batch(row_dicts: list[dict]) -> dict[str, np.ndarray]:
    """Rows as the numpy batch Ray Data hands an actor."""
    return rows.columns_of(row_dicts, list(row_dicts[0]))


# -------------------------------------------------------------------------------------------- rows


@pytest.mark.parametrize("path, root, name", [
    ("s3://bucket/shots/a/b.jpg", "s3://bucket/shots", "a/b"),
    ("s3://bucket/shots/a/b.jpg", None, "bucket/shots/a/b"),
    ("/data/x.png", "/elsewhere", "data/x"),
    ("clip.mp4", None, "clip"),
])
def test_output_names_follow_the_path_below_the_root(path, root, name):
    assert rows.default_name(path, root) == PurePosixPath(name)


def test_rows_need_a_name_and_something_to_read():
    with pytest.raises(InputError, match="'path' or a 'name'"):
        rows.decode_row({"bytes": b"x"}, "bytes", None)
    with pytest.raises(InputError, match="neither a 'bytes' column nor a 'path'"):
        rows.decode_row({"name": "a"}, "bytes", None)
    row = rows.decode_row({"path": "x/clip.MP4", "bytes": b"data", "name": float("nan")}, "bytes", "x")
    assert (row.name, row.kind, row.data) == (PurePosixPath("clip"), "video", b"data")


def test_bytes_are_read_in_memory_by_the_local_reader(photos, tmp_path):
    data = (photos / "img00.png").read_bytes()
    item = rows.local_item(rows.Row(PurePosixPath("a"), "db/img.png", "image", data), tmp_path, 3)
    assert item.data == data and item.label == "db/img.png" and not list(tmp_path.iterdir())  # no file
    np.testing.assert_array_equal(io.read_image(data), io.read_image(photos / "img00.png"))


# -------------------------------------------------------------------------------------------- storage


def test_uri_folders_are_listed_and_named_like_local_folders(photos):
    (photos / "sub").mkdir(exist_ok=True)
    (photos / "sub" / "deep.png").write_bytes((photos / "img00.png").read_bytes())
    (photos / "notes.txt").write_text("not media")
    flat = list_media(f"file://{photos}", recursive=False)
    deep = list_media(f"file://{photos}", recursive=True)
    assert [str(name) for _, name, _ in flat] == ["broken", "empty", "img00", "img01", "img02", "img03"]
    assert ("sub/deep", "image") in [(str(name), kind) for _, name, kind in deep]
    assert all(uri.startswith("file:///") for uri, _, _ in deep)
    with pytest.raises(InputError, match="no such file or folder"):
        list_media(f"file://{photos}/missing", recursive=False)


def test_uri_destinations_write_whole_files_and_report_existence(tmp_path):
    destination = Destination.of(f"file://{tmp_path}/out")
    with destination.atomic_file("a/b.txt") as temporary:
        temporary.write_text("hello")
    assert (tmp_path / "out" / "a" / "b.txt").read_text() == "hello"
    assert destination.exists(["a/b.txt", "a/c.txt"]) == [True, False]
    assert not list((tmp_path / "out" / "a").glob(".*"))  # no staged leftovers
    with pytest.raises(RuntimeError), destination.atomic_file("a/c.txt") as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert destination.exists(["a/c.txt"]) == [False]
    destination.remove("a/b.txt")
    assert destination.exists(["a/b.txt"]) == [False]


def test_errors_file_lists_failures_and_goes_away_when_none(tmp_path):
    destination = Destination.of(tmp_path)
    write_errors(destination, [("x.png", "file is empty (0 bytes)")])
    lines = (tmp_path / ERRORS_FILE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"path": "x.png", "reason": "file is empty (0 bytes)"}]
    write_errors(destination, [])
    assert not (tmp_path / ERRORS_FILE).exists()


# -------------------------------------------------------------------------------------------- options and resume


def test_parquet_is_an_output_of_its_own_and_batches_hold_whole_pipeline_batches():
    assert split_outputs(("png16", "npy")) == (("png16", "npy"), False)
    assert split_outputs(("parquet",)) == ((), True)
    with pytest.raises(InputError, match="output of its own"):
        split_outputs(("parquet", "png16"))
    assert rows_per_batch(JobOptions(outputs=("npy",)), PoolSpec()) == 8
    assert rows_per_batch(JobOptions(outputs=("npy",), batch_size=3), PoolSpec()) == 9
    assert rows_per_batch(JobOptions(outputs=("npy",), batch_size=16), PoolSpec(rows_per_batch=5)) == 5
    with pytest.raises(InputError, match="at least 1"):
        PoolSpec(actors=0)


def test_resume_rule_for_local_and_object_storage_outputs(tmp_path):
    options = JobOptions(output_dir=tmp_path, outputs=("png16", "video"))
    local = Destination.of(tmp_path)
    remote = Destination.of(f"file://{tmp_path}")
    name = PurePosixPath("a/b")
    assert not is_finished(name, "image", None, options, remote)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b_depth.png").write_bytes(b"x")
    assert is_finished(name, "image", None, options, remote)
    assert is_finished(name, "image", tmp_path / "b.png", options, local)  # the local engine's own rule
    assert not is_finished(name, "video", None, options, remote)  # its depth video is written last
    (tmp_path / "a" / "b_depth.mp4").write_bytes(b"x")
    assert not is_finished(name, "video", None, options, remote)  # and its frames: the record says
    (tmp_path / "primedepth_job.json").write_text(json.dumps([{"outputs": ["png16"], "videos": [{"video": "a/b"}]}]))
    assert is_finished(name, "video", None, options, remote)
    assert is_finished(name, "video", None, JobOptions(output_dir=tmp_path, outputs=("png16",)), remote)
    assert not is_finished(name, "video", None, JobOptions(output_dir=tmp_path, outputs=("npy",)), remote)
    overwrite = JobOptions(output_dir=tmp_path, outputs=("png16",), overwrite=True)
    assert not is_finished(name, "image", None, overwrite, remote)
    assert is_finished(name, "image", None, options, remote, parquet_names=frozenset({"a/b"}))
    assert not is_finished(PurePosixPath("c"), "image", None, options, remote, parquet_names=frozenset({"a/b"}))


def test_inputs_are_checked_on_the_driver_and_listed_in_the_listing_task(photos, tmp_path, capsys):
    inputs = collect_inputs([str(photos / "img00.png"), f"file://{photos}/img01.png", "shots.parquet"],
                            recursive=False, output_dir=str(tmp_path / "out"), input_column=None)
    assert inputs.parquet == [str(Path("shots.parquet").resolve())]
    assert "2 input locations (listed as the job runs), 1 Parquet datasets" in capsys.readouterr().err
    assert sorted(row["name"] for row in list_rows(inputs.listing)) == ["img00", "img01"]
    with pytest.raises(InputError, match="missing.png: no such file or directory"):
        collect_inputs([str(photos / "missing.png")], False, str(tmp_path), None)
    with pytest.raises(InputError, match="no such file or folder"):
        collect_inputs([f"file://{photos}/missing/"], False, str(tmp_path), None)
    clash = list_rows(Listing(local=(str(photos / "img00.png"), str(photos / "img01.png")),
                              uris=(f"file://{photos}/img00.png",)))
    assert [row["name"] for row in clash if row["error"] is None] == ["img01"]  # the rest goes on
    failed = [row for row in clash if row["error"] is not None]
    assert sorted(row["path"] for row in failed) == sorted([f"file://{photos}/img00.png", str(photos / "img00.png")])
    assert all("would all write outputs named 'img00'" in row["error"] for row in failed)


def test_the_listing_is_a_ray_datasource_of_blocks(photos):
    listing = Listing(local=(str(photos),), output_dir=str(photos / "out"))
    tasks = MediaListing(listing, block_rows=4).get_read_tasks(8)
    assert len(tasks) == 1
    blocks = list(tasks[0]())
    assert [block.num_rows for block in blocks] == [4, 2]  # 4 images, broken.jpg and empty.png
    assert blocks[0].column_names == ["path", "name", "kind", "error"]


# -------------------------------------------------------------------------------------------- the actor


def _spec(model: Path, **kwargs) -> WorkerSpec:
    return WorkerSpec(model=str(model), threads=1, **kwargs)


def test_actor_writes_the_local_engines_files_to_object_storage(photos, tiny_model, tmp_path):
    """Bytes rows, staged and copied up to a URI; a bad row fails alone; a retry skips."""
    destination = Destination.of(f"file://{tmp_path}/out")
    spec = _spec(tiny_model, options=JobOptions(outputs=("npy", "color"), seed=0), destination=destination)
    batch = _batch([{"path": f"db/{name}", "bytes": (photos / name).read_bytes()}
                    for name in ("img00.png", "img01.png", "broken.jpg")])
    result = DepthPredictor(spec)(batch)
    assert list(result["status"]) == ["done", "done", "failed"]
    assert "corrupt or truncated image" in result["error"][2] and str(tmp_path) not in result["error"][2]
    assert json.loads(result["metadata"][0])["seed"] == "0"
    expected = predict([photos / "img00.png", photos / "img01.png"], model=tiny_model, seed=0, batch_size=1)
    for prediction in expected:
        assert_same_depth(np.load(tmp_path / "out" / "db" / f"{prediction.name}_depth.npy"), prediction.depth)
        assert (tmp_path / "out" / "db" / f"{prediction.name}_depth_color.png").exists()
    again = DepthPredictor(spec)(batch)
    assert list(again["status"]) == ["skipped", "skipped", "failed"]


def test_actor_without_output_folder_returns_depth_rows(photos, tiny_model):
    spec = _spec(tiny_model, options=JobOptions(outputs=(), seed=0, segmentation=True))
    batch = _batch([{"path": str(photos / "img01.png"), "name": "one"}, {"path": str(photos / "empty.png")}])
    result = DepthPredictor(spec)(batch)
    assert list(result["status"]) == ["done", "failed"] and "file is empty" in result["error"][1]
    expected = predict(photos / "img01.png", model=tiny_model, seed=0, segmentation=True, batch_size=1)[0]
    assert_same_depth(result["depth"][0], expected.depth)
    np.testing.assert_array_equal(result["segmentation"][0], io.segmentation_labels(expected.segmentation))
    assert result["depth"][1].shape == (0, 0) and result["frame"][0] is None


def test_actor_writes_one_parquet_part_per_batch_and_a_retry_replaces_it(photos, tiny_model, tmp_path):
    destination = Destination.of(tmp_path / "depth")
    spec = _spec(tiny_model, options=JobOptions(outputs=(), seed=0), destination=destination, parquet=True)
    batch = _batch([{"path": str(photos / f"img0{i}.png"), "name": f"img0{i}"} for i in range(2)])
    DepthPredictor(spec)(batch)
    DepthPredictor(spec)(batch)  # a retried batch: the same part, not a second one
    parts = parquet.part_files(destination)
    assert len(parts) == 1 and parts[0] == parquet.part_name(["img00", "img01"])
    table = pq.read_table(tmp_path / "depth" / parts[0]).to_pylist()
    expected = predict(photos / "img00.png", model=tiny_model, seed=0, batch_size=1)[0].depth
    assert_same_depth(parquet.read_depth(table[0]), expected)
    assert parquet.read_labels(table[0]) is None
    assert parquet.finished_names(destination) == {"img00", "img01"}


def test_videos_give_frames_and_a_depth_video_in_object_storage_or_frame_rows_in_parquet(tiny_model, tmp_path):
    clip = make_video(tmp_path / "clip.mp4")
    batch = _batch([{"path": str(clip), "name": "shots/clip"}])
    remote = Destination.of(f"file://{tmp_path}/out")
    files = DepthPredictor(_spec(tiny_model, options=JobOptions(outputs=("png16", "video"), seed=0),
                                 destination=remote))(batch)
    assert list(files["status"]) == ["done"] and list(files["images"]) == [3]
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written == ["shots/clip_depth.mp4"] + [f"shots/clip_frames/00000{i}_depth.png" for i in range(3)]
    assert is_finished(PurePosixPath("shots/clip"), "video", None, JobOptions(outputs=("video",)), remote)
    table = Destination.of(tmp_path / "depth")
    DepthPredictor(_spec(tiny_model, options=JobOptions(outputs=(), seed=0), destination=table, parquet=True))(batch)
    rows_out = pq.read_table(tmp_path / "depth").to_pylist()
    assert [(row["video"], row["frame"]) for row in rows_out] == [("shots/clip", index) for index in range(3)]
    assert rows_out[2]["name"] == "shots/clip_frames/000002"
    # The row holds its frame (frames differ by the whole range; two runs by float rounding).
    span = float(rows_out[1]["depth_max"] - rows_out[1]["depth_min"])
    np.testing.assert_allclose(parquet.read_depth(rows_out[1]),
                               io.read_depth_png16(tmp_path / "out" / "shots/clip_frames/000001_depth.png"),
                               rtol=0, atol=1e-4 * span)


def test_without_ray_the_engine_says_how_to_install_it(photos, tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("ray") else real(name, *a))
    code = cli.main(["predict", str(photos / "img00.png"), "-o", str(tmp_path / "out"), "--engine", "ray"])
    assert code == 1 and "pip install 'primedepth[ray]'" in capsys.readouterr().err
