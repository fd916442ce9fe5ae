"""`primedepth predict --engine ray` and `predict_dataset` on a small local Ray instance.

One Ray instance (2 CPUs, a small object store) serves the module; each job starts its own
actors, so every test here costs an actor start-up (the imports of torch and diffusers). The
actors run one torch thread each, as this process does (tests/conftest.py): a different thread
count changes float rounding (about 1e-5 of the depth range), a different engine must not.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ..extras import require_extra

ray = require_extra("ray", "ray")
require_extra("ray.data", "ray")
pa = require_extra("pyarrow", "ray")
pq = require_extra("pyarrow.parquet", "ray")

from primedepth import cli, io  # noqa: E402
from primedepth.distributed import ERRORS_FILE, read_depth, run_ray_job  # noqa: E402
from primedepth.distributed.parquet import CHUNK_ROWS, clip_part_name, read_raw_depth  # noqa: E402
from primedepth.jobs import JobOptions  # noqa: E402

from .doubles import crash_job  # noqa: E402
from .helpers import BAD, GOOD, assert_same_depth, files_below, make_photos, make_video  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _ray(local_ray) -> None:
    """Every test here runs on the package's small local Ray instance (see conftest)."""


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("inputs") / "photos")


@pytest.fixture(scope="module")
def local_outputs(photos: Path, tiny_model: Path, tmp_path_factory) -> Callable[[int], Path]:
    """The local engine's outputs for the photos (seed 0), by batch size: images batched
    together round differently from images predicted alone, so each Ray run is compared with
    the local run that batched the same way."""
    made: dict[int, Path] = {}

    def outputs(batch_size: int) -> Path:
        if batch_size not in made:
            out = tmp_path_factory.mktemp("local") / "out"
            code = cli.main(["predict", str(photos), "-o", str(out), "--model", str(tiny_model), "--seed", "0",
                             "--outputs", "png16,npy,color", "--batch-size", str(batch_size)])
            assert code == 1  # the two bad files
            made[batch_size] = out
        return made[batch_size]

    return outputs


@pytest.fixture(scope="module")
def local_reference(local_outputs) -> Path:
    """Every image predicted alone (the CPU default), as the Ray runs below do."""
    return local_outputs(1)


def _predict(capsys, *args: str | Path) -> tuple[int, str]:
    code = cli.main(["predict", *map(str, args)])
    return code, capsys.readouterr().err


def _assert_matches_local(out: Path, reference: Path, names: list[str]) -> None:
    for name in names:
        assert_same_depth(np.load(out / f"{name}_depth.npy"), np.load(reference / f"{name}_depth.npy"))
        step = float(np.ptp(np.load(reference / f"{name}_depth.npy"))) / 65535
        np.testing.assert_allclose(io.read_depth_png16(out / f"{name}_depth.png"),
                                   io.read_depth_png16(reference / f"{name}_depth.png"), rtol=0, atol=step + 1e-6)


GOOD_NAMES = [f"img{index:02d}" for index in range(GOOD)]


def test_cli_ray_engine_matches_the_local_engine_and_lists_bad_files(capsys, photos, tiny_model, local_outputs,
                                                                      tmp_path):
    """Batches of 2 grouped by size inside each Ray batch, as the local engine groups them."""
    local_reference = local_outputs(2)
    out = tmp_path / "out"
    code, err = _predict(capsys, photos, "-o", out, "--model", tiny_model, "--seed", "0", "--outputs",
                         "png16,npy,color", "--batch-size", "2", "--engine", "ray", "--actors", "2")
    assert code == 1, err
    assert f"done {GOOD}, skipped 0 (outputs existed), failed 2" in err
    assert files_below(out) == sorted([*(f for f in files_below(local_reference)), ERRORS_FILE])
    _assert_matches_local(out, local_reference, GOOD_NAMES)
    errors = [json.loads(line) for line in (out / ERRORS_FILE).read_text().splitlines()]
    assert {Path(error["path"]).name: error["reason"] for error in errors}.keys() == BAD.keys()
    for error in errors:
        assert BAD[Path(error["path"]).name] in error["reason"]


def test_resume_predicts_only_what_is_missing(capsys, photos, tiny_model, local_reference, tmp_path):
    """An interrupted run left half of the outputs; the re-run keeps them and does the rest."""
    out = tmp_path / "out"
    out.mkdir()
    for name in GOOD_NAMES[: GOOD // 2]:
        shutil.copy(local_reference / f"{name}_depth.npy", out)
    kept = out / f"{GOOD_NAMES[0]}_depth.npy"
    kept.write_bytes(b"not recomputed")
    code, err = _predict(capsys, photos, "-o", out, "--model", tiny_model, "--seed", "0", "--outputs", "npy",
                         "--engine", "ray", "--actors", "2")
    assert code == 1 and f"done {GOOD - GOOD // 2}, skipped {GOOD // 2} (outputs existed), failed 2" in err, err
    assert kept.read_bytes() == b"not recomputed"
    for name in GOOD_NAMES[GOOD // 2:]:
        assert_same_depth(np.load(out / f"{name}_depth.npy"), np.load(local_reference / f"{name}_depth.npy"))


def test_a_killed_actor_is_replaced_and_every_output_is_written_once(photos, tiny_model, local_reference, tmp_path):
    marker = tmp_path / "crash"
    marker.write_text("armed")  # the actor dies after writing its second batch, before answering
    rows = [{"path": str(photos / f"{name}.png"), "name": name} for name in GOOD_NAMES]
    out = tmp_path / "out"
    results = crash_job(ray.data.from_items(rows), tiny_model, str(out), marker, 2)
    assert not marker.exists() and Path(f"{marker}.fired").exists()  # it did crash
    assert sorted(row["name"] for row in results) == GOOD_NAMES
    statuses = [row["status"] for row in results]
    # The rows of the retried task had been written by the first attempt: found finished.
    assert statuses.count("done") + statuses.count("skipped") == GOOD and statuses.count("skipped") % 3 == 0
    assert statuses.count("skipped") >= 3
    assert files_below(out) == [f"{name}_depth.npy" for name in GOOD_NAMES]  # once each, no temporaries
    for name in GOOD_NAMES:
        assert_same_depth(np.load(out / f"{name}_depth.npy"), np.load(local_reference / f"{name}_depth.npy"))


def _parquet_of_media(photos: Path, clip: Path, path: Path) -> Path:
    table = {"path": [], "image": []}
    for source in [*(next(photos.glob(f"{name}.*")) for name in [*GOOD_NAMES, *(Path(bad).stem for bad in BAD)]), clip]:
        table["path"].append(f"shots/{source.name}")
        table["image"].append(source.read_bytes())
    pq.write_table(pa.table(table), path)
    return path


def _parquet_args(source: str, out: str, model: Path) -> tuple[argparse.Namespace, JobOptions]:
    args = cli.build_parser().parse_args(["predict", source, "-o", out, "--model", str(model), "--seed", "0",
                                          "--outputs", "parquet", "--engine", "ray", "--actors", "2"])
    args.input_column = "image"
    return args, JobOptions(outputs=(), seed=0, keep_results=False)


def test_parquet_in_parquet_out_through_object_storage_uris(photos, tiny_model, local_reference, tmp_path):
    """Encoded images and a video longer than a Parquet chunk in a Parquet file -> depth rows in
    a Parquet dataset, both by file:// URI (the object-storage code path: staged locally, then
    copied up), then a resumed run; every reader takes the dataset folder whole."""
    frames = CHUNK_ROWS + 2
    source = _parquet_of_media(photos, make_video(tmp_path / "long.mp4", frames), tmp_path / "media.parquet")
    out = tmp_path / "depth"
    args, options = _parquet_args(f"file://{source}", f"file://{out}", tiny_model)
    summary = run_ray_job(None, args, options)
    assert (summary.done, summary.skipped, summary.failed, summary.images) == (GOOD + 1, 0, 2, GOOD + frames)
    table = pq.read_table(out).to_pylist()
    images = [row for row in table if row["video"] is None]
    assert sorted(row["name"] for row in images) == sorted(f"shots/{name}" for name in GOOD_NAMES)
    for row in images:
        expected = np.load(local_reference / f"{Path(row['name']).name}_depth.npy")
        assert_same_depth(read_depth(row), expected)
        assert row["source"].endswith(".png") and read_raw_depth(row) is None
    # The video: its frames in two numbered parts (a chunk of rows, then the rest), every row
    # with its index, time, scale, shift and raw prediction.
    clip_rows = sorted((row for row in table if row["video"] == "shots/long"), key=lambda row: row["frame"])
    assert [row["frame"] for row in clip_rows] == list(range(frames)) and len(table) == GOOD + frames
    assert {clip_part_name("shots/long", 0), clip_part_name("shots/long", 1)} <= {p.name for p in out.iterdir()}
    for row in clip_rows:
        assert abs(row["time"] - row["frame"] / 8) < 1e-6 and row["frame_scale"] is not None
        assert read_raw_depth(row).shape == (32, 48) and row["source"] == "shots/long.mp4"
    assert len((out / ERRORS_FILE).read_text().splitlines()) == 2
    again = run_ray_job(None, args, options)
    assert (again.done, again.skipped, again.failed) == (0, GOOD + 1, 2)
    assert len(pq.read_table(out)) == GOOD + frames  # nothing written twice
    # Nothing but Parquet parts (and '_' files, which readers skip) in the dataset folder.
    assert {p.name for p in out.iterdir() if not p.name.startswith(("part-", "_clip-"))} == {
        ERRORS_FILE, "_primedepth_job.json"}
    pandas = require_extra("pandas", "ray")  # ray[data] installs it
    assert len(pandas.read_parquet(out)) == GOOD + frames
    duckdb = require_extra("duckdb", "test")
    counted = duckdb.sql(f"SELECT count(*), count(raw_depth), count(DISTINCT frame) "
                         f"FROM read_parquet('{out}/*.parquet')").fetchall()
    assert counted == [(GOOD + frames, frames, frames)]
    runs = json.loads((out / "_primedepth_job.json").read_text())
    assert [(run["done"], run["skipped"]) for run in runs] == [(GOOD + 1, 0)]  # a run that did nothing is not recorded
    # --overwrite starts the dataset anew: an earlier run's part under a name this run does not
    # write (another batching) would otherwise add its rows a second time.
    first_image_part = next(p for p in out.iterdir() if p.name.startswith("part-") and "long" not in p.name)
    shutil.copyfile(first_image_part, out / "part-0000000000000000earlier.parquet")
    assert len(pq.read_table(out)) > GOOD + frames
    redone = run_ray_job(None, args, replace(options, overwrite=True))
    assert (redone.done, redone.skipped) == (GOOD + 1, 0)
    assert len(pq.read_table(out)) == GOOD + frames
    assert not (out / "part-0000000000000000earlier.parquet").exists()


def test_predict_dataset_overwrite_replaces_an_earlier_parquet_dataset(photos, tiny_model, tmp_path):
    """`predict_dataset(..., overwrite=True)` starts the Parquet dataset anew, as the CLI does: an
    earlier run's part under a name this run does not write is gone, no row is counted twice."""
    from primedepth.distributed import predict_dataset

    sources = sorted(str(next(photos.glob(f"{name}.*"))) for name in GOOD_NAMES[:3])
    out = tmp_path / "depth"
    out.mkdir()
    earlier = pa.table({"name": ["img00", "stale"], "video": [None, None]})
    pq.write_table(earlier, out / "part-0000000000000000earlier.parquet")
    (out / "_notes.txt").write_text("not ours")
    rows = predict_dataset(ray.data.from_items([{"path": path} for path in sources]), tiny_model, output_dir=out,
                           outputs=("parquet",), seed=0, overwrite=True, root=str(photos)).take_all()
    assert sorted(row["status"] for row in rows) == ["done"] * 3
    names = pq.read_table(out, columns=["name"]).column("name").to_pylist()
    assert sorted(names) == sorted(Path(path).stem for path in sources)
    assert (out / "_notes.txt").read_text() == "not ours"  # only parts and clip markers are removed
