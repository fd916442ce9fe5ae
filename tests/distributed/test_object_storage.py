"""The Ray engine against real object storage: a local S3-compatible server (moto, see conftest).

Inputs, outputs, resume, the errors file, the job record, Parquet output and a killed actor go
through pyarrow's S3 filesystem over HTTP, as against AWS, MinIO, Ceph or R2; bad locations
fail before any model loads, with one line naming the location and the cause (exit status 2).
Only the jobs start the package's Ray instance; the other tests call the actor in this process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from ..extras import require_extra

ray = require_extra("ray", "ray")
require_extra("ray.data", "ray")
pafs = require_extra("pyarrow.fs", "ray")
pq = require_extra("pyarrow.parquet", "ray")

from primedepth import cli  # noqa: E402
from primedepth.distributed import ERRORS_FILE, read_depth  # noqa: E402
from primedepth.distributed.actor import DepthPredictor, WorkerSpec  # noqa: E402
from primedepth.distributed.engine import count_row, record_job  # noqa: E402
from primedepth.distributed.rows import batch_rows, columns_of  # noqa: E402
from primedepth.distributed.storage import Destination, list_media  # noqa: E402
from primedepth.jobs import JobOptions, JobSummary  # noqa: E402

from .conftest import upload_folder  # noqa: E402
from .doubles import crash_job  # noqa: E402
from .helpers import BAD, GOOD, assert_same_depth, make_photos, make_video  # noqa: E402

BUCKET = "primedepth-test"
GOOD_NAMES = [f"img{index:02d}" for index in range(GOOD)]
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens on loopback


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("inputs") / "photos")


@pytest.fixture(scope="module")
def bucket(s3, photos) -> str:
    """The photos (and the two bad files) under s3://BUCKET/photos/."""
    upload_folder(s3, photos, BUCKET, "photos")
    return BUCKET


@pytest.fixture(scope="module")
def reference(photos, tiny_model, tmp_path_factory) -> Path:
    """The local engine's outputs, every image predicted alone (as the Ray runs below)."""
    out = tmp_path_factory.mktemp("local") / "out"
    code = cli.main(["predict", str(photos), "-o", str(out), "--model", str(tiny_model), "--seed", "0",
                     "--outputs", "npy", "--batch-size", "1"])
    assert code == 1  # the two bad files
    return out


def _predict(capsys, *args: str | Path) -> tuple[int, str]:
    code = cli.main(["predict", *map(str, args)])
    return code, capsys.readouterr().err


def _s3_array(s3, key: str, tmp_path: Path) -> np.ndarray:
    local = tmp_path / Path(key).name
    s3.client.download_file(BUCKET, key, str(local))
    return np.load(local)


# ------------------------------------------------------------------------ bad locations, before any model


@pytest.mark.parametrize("output, cause", [
    ("s3://no-such-bucket-pd/depth/", "the bucket 'no-such-bucket-pd' does not exist"),
    (f"s3://{BUCKET}/depth/?endpoint_override={UNREACHABLE}", "Could not connect"),
])
def test_bad_output_locations_fail_before_the_model_loads(capsys, bucket, output, cause, tmp_path):
    """The model does not exist: had it been loaded first, the error would be about it."""
    started = time.monotonic()
    code, err = _predict(capsys, f"s3://{bucket}/photos/", "-o", output, "--model", tmp_path / "no-model",
                         "--engine", "ray")
    assert code == 2, err
    message = [line for line in err.splitlines() if "error:" in line]
    assert len(message) == 1 and output.split("?")[0] in message[0] and cause in message[0], err
    assert "Traceback" not in err and time.monotonic() - started < 60


def test_an_output_without_permission_fails_before_the_model_loads(capsys, s3, bucket, tmp_path):
    s3.set_auth(enforced=True)  # the tests' made-up keys are now refused
    try:
        code, err = _predict(capsys, tmp_path, "-o", f"s3://{bucket}/depth/", "--model", tmp_path / "no-model",
                             "--engine", "ray")
    finally:
        s3.set_auth(enforced=False)
    assert code == 2 and f"cannot write to the output location s3://{bucket}/depth/" in err, err
    assert "no permission" in err and "Traceback" not in err, err


@pytest.mark.parametrize("source, cause", [
    ("s3://{bucket}/missing/", "no such file or folder"),
    (f"s3://{{bucket}}/photos/?endpoint_override={UNREACHABLE}", "cannot list this location"),
])
def test_bad_input_locations_fail_before_the_model_loads(capsys, bucket, source, cause, tmp_path):
    code, err = _predict(capsys, source.format(bucket=bucket), "-o", tmp_path / "out", "--model",
                         tmp_path / "no-model", "--engine", "ray")
    assert code == 2 and cause in err and "Traceback" not in err, err


def test_uri_options_survive_listing_reading_and_writing(s3, bucket, photos, tiny_model, tmp_path, monkeypatch):
    """With the variable pointing nowhere, only the URIs' own option reaches the server: each
    listed file keeps it, and so does every output (the actor runs in this process here)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", UNREACHABLE)
    option = {"endpoint_override": s3.endpoint}
    listed = list_media(s3.uri(bucket, "photos/", **option), recursive=False)
    assert [str(name) for _, name, _ in listed] == sorted(["broken", "empty", *GOOD_NAMES])
    assert all(uri.endswith(f"?endpoint_override={s3.endpoint}") for uri, _, _ in listed)
    destination = Destination.of(s3.uri(bucket, "options/", **option))
    destination.check_writable()
    spec = WorkerSpec(model=str(tiny_model), threads=1, options=JobOptions(outputs=("npy",), seed=0),
                      destination=destination)
    rows = [{"path": uri, "name": str(name), "kind": kind} for uri, name, kind in listed if str(name) in GOOD_NAMES[:2]]
    result = DepthPredictor(spec)(columns_of(rows, ["path", "name", "kind"]))
    assert list(result["status"]) == ["done", "done"]
    assert sorted(s3.keys(bucket, "options/")) == [f"options/{name}_depth.npy" for name in GOOD_NAMES[:2]]


def test_a_finished_clip_on_s3_predicts_no_frame_again_whatever_the_outputs(s3, bucket, tiny_model, tmp_path):
    """The local engine's resume rule on object storage: the driver's job record lists the
    clip as complete; a re-run (another actor, another output set) skips it."""
    clip = make_video(tmp_path / "clip.mp4")
    destination = Destination.of(s3.uri(bucket, "clips/"))
    batch = columns_of([{"path": str(clip), "name": "shots/clip"}], ["path", "name"])

    def run(outputs: tuple[str, ...]) -> dict:
        spec = WorkerSpec(model=str(tiny_model), threads=1, options=JobOptions(outputs=outputs, seed=0),
                          destination=destination)
        return DepthPredictor(spec)(batch)

    first = run(("png16", "video"))
    assert list(first["status"]) == ["done"] and list(first["images"]) == [3]
    summary = JobSummary()
    for row in batch_rows(first):
        count_row(row, summary)
    record_job(WorkerSpec(model=str(tiny_model), options=JobOptions(outputs=("png16", "video")),
                          destination=destination), summary)
    written = s3.keys(bucket, "clips/")
    assert sorted(written) == ["clips/primedepth_job.json", "clips/shots/clip_depth.mp4",
                               *(f"clips/shots/clip_frames/00000{i}_depth.png" for i in range(3))]
    for outputs in (("png16",), ("png16", "video")):
        assert list(run(outputs)["status"]) == ["skipped"]
    assert s3.keys(bucket, "clips/") == written  # nothing rewritten
    assert list(run(("npy",))["status"]) == ["done"]  # a kind never made runs the clip for it


# ------------------------------------------------------------------------ jobs on the S3 server


def test_cli_reads_and_writes_s3_and_resumes_only_what_is_missing(capsys, local_ray, s3, bucket, tiny_model,
                                                                  reference, tmp_path):
    out = f"s3://{bucket}/depth/"
    args = [f"s3://{bucket}/photos/", "-o", out, "--model", tiny_model, "--seed", "0", "--outputs", "npy",
            "--engine", "ray", "--actors", "2"]
    code, err = _predict(capsys, *args)
    assert code == 1 and f"done {GOOD}, skipped 0 (outputs existed), failed 2" in err, err
    written = s3.keys(bucket, "depth/")
    outputs = sorted(key for key in written if key.endswith(".npy"))
    assert outputs == [f"depth/{name}_depth.npy" for name in GOOD_NAMES]
    assert set(written) == {*outputs, f"depth/{ERRORS_FILE}", "depth/primedepth_job.json"}  # nothing else
    for name in GOOD_NAMES:
        assert_same_depth(_s3_array(s3, f"depth/{name}_depth.npy", tmp_path),
                          np.load(reference / f"{name}_depth.npy"))
    errors = s3.client.get_object(Bucket=bucket, Key=f"depth/{ERRORS_FILE}")["Body"].read().decode().splitlines()
    assert sorted(Path(json.loads(line)["path"]).name for line in errors) == sorted(BAD)

    removed = [f"depth/{name}_depth.npy" for name in GOOD_NAMES[3:5]]
    s3.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in removed]})
    time.sleep(1.1)  # last-modified times have one-second resolution
    code, err = _predict(capsys, *args)
    assert code == 1 and f"done 2, skipped {GOOD - 2} (outputs existed), failed 2" in err, err
    again = s3.keys(bucket, "depth/")
    for key in outputs:
        if key in removed:
            assert key in again and again[key] > written[key]
        else:
            assert again[key] == written[key], key  # untouched
    record = json.loads(s3.client.get_object(Bucket=bucket, Key="depth/primedepth_job.json")["Body"].read())
    assert [(run["done"], run["skipped"], run["failed"]) for run in record] == [(GOOD, 0, 2), (2, GOOD - 2, 2)]


def test_parquet_output_on_s3_is_read_by_parquet_readers(capsys, local_ray, s3, bucket, tiny_model, reference,
                                                          tmp_path):
    code, err = _predict(capsys, f"s3://{bucket}/photos/", "-o", f"s3://{bucket}/arrays/", "--model", tiny_model,
                         "--seed", "0", "--outputs", "parquet", "--engine", "ray", "--actors", "2")
    assert code == 1 and f"done {GOOD}, skipped 0 (outputs existed), failed 2" in err, err
    keys = s3.keys(bucket, "arrays/")
    assert all(Path(key).name.startswith(("part-", "_")) for key in keys), keys
    assert f"arrays/{ERRORS_FILE}" in keys and "arrays/_primedepth_job.json" in keys
    filesystem, path = pafs.FileSystem.from_uri(f"s3://{bucket}/arrays/")
    table = pq.read_table(path, filesystem=filesystem).to_pylist()
    assert sorted(row["name"] for row in table) == GOOD_NAMES
    for row in table:
        assert_same_depth(read_depth(row), np.load(reference / f"{row['name']}_depth.npy"))


def test_a_killed_actor_writing_to_s3_ends_with_every_output_once(local_ray, s3, bucket, tiny_model, reference,
                                                                 tmp_path):
    """`predict_dataset`'s actors on Ray Data's own S3 reader; one actor dies mid-job."""
    marker = tmp_path / "crash"
    marker.write_text("armed")
    frames = ray.data.read_binary_files(f"s3://{bucket}/photos/", include_paths=True)
    results = crash_job(frames, tiny_model, f"s3://{bucket}/crashed/", marker, 2, root=f"s3://{bucket}/photos/")
    assert Path(f"{marker}.fired").exists()  # it did crash
    statuses = {row["name"]: row["status"] for row in results}
    assert sorted(name for name, status in statuses.items() if status != "failed") == GOOD_NAMES
    assert sorted(s3.keys(bucket, "crashed/")) == [f"crashed/{name}_depth.npy" for name in GOOD_NAMES]
    for name in GOOD_NAMES[::5]:
        assert_same_depth(_s3_array(s3, f"crashed/{name}_depth.npy", tmp_path),
                          np.load(reference / f"{name}_depth.npy"))

