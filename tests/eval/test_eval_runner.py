"""Runner: predictions cached and resumed, protocol resolutions, output files, summary table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from .eval_archive_builders import LevelModel

from primedepth.errors import InputError
from primedepth.eval import EvalDataset, format_table, run_benchmark, run_dataset
from primedepth.adapters import CallableAdapter
from primedepth.eval.runner import resize_image


class Exploding:
    """An adapter that must never run: proves that a run was served from the cache."""

    def __init__(self, name, output_space="disparity"):
        self.name, self.output_space = name, output_space

    def __call__(self, image):
        raise AssertionError("the model ran although every prediction was cached")


@pytest.mark.parametrize("space", ["disparity", "depth"])
def test_exact_model_scores_perfectly_and_files_are_written(eval_data, tmp_path, space):
    model = LevelModel(space)
    result = run_dataset(model, EvalDataset("nyu", eval_data[0]), tmp_path, progress=False)
    assert result.num_images == 2 and result.inferred == 2
    assert result.metrics["abs_rel"] < 1e-6 and result.metrics["delta1"] == 1.0
    folder = tmp_path / model.name / "nyu"
    assert (folder / "predictions/test/kitchen_0004/pred_0001.npy").is_file()
    assert (folder / "predictions/test/office_0005/pred_0009.npy").is_file()
    with open(folder / "per_image_metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["sample"] for r in rows] == ["test/kitchen_0004/rgb_0001.png", "test/office_0005/rgb_0009.png"]
    assert float(rows[0]["delta1"]) == 1.0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["protocol"]["eval_crop"] == "nyu_eigen" and summary["output_space"] == space
    assert any("protocol has 654" in w for w in summary["warnings"])


def test_wrong_space_is_penalised(eval_data, tmp_path):
    model = LevelModel("depth", name="liar", predicts="disparity")
    result = run_dataset(model, EvalDataset("scannet", eval_data[0]), tmp_path, progress=False)
    assert result.metrics["abs_rel"] > 0.05


def test_resume_and_cache(eval_data, tmp_path):
    dataset = EvalDataset("kitti", eval_data[0])
    model = LevelModel("disparity", name="resumable")
    first = run_dataset(model, dataset, tmp_path, max_images=1, progress=False)
    assert first.num_images == 1 and len(model.calls) == 1
    second = run_dataset(model, dataset, tmp_path, progress=False)
    assert second.num_images == 2 and second.inferred == 1 and len(model.calls) == 2
    assert model.calls == [(352, 1216)] * 2  # the KB crop is what the model sees
    third = run_dataset(Exploding("resumable"), dataset, tmp_path, progress=False)
    assert third.metrics == second.metrics and third.inferred == 0
    # a truncated prediction (killed mid-write elsewhere) is redone, not trusted
    cached = sorted((tmp_path / "resumable" / "kitti" / "predictions").rglob("pred_*.npy"))
    assert len(cached) == 2
    cached[0].write_bytes(cached[0].read_bytes()[:20])
    fourth = run_dataset(model, dataset, tmp_path, progress=False)
    assert fourth.inferred == 1 and fourth.metrics == second.metrics
    assert not list(cached[0].parent.glob("*.partial"))


def test_cache_from_other_settings_is_refused(eval_data, tmp_path):
    dataset = EvalDataset("scannet", eval_data[0])
    run_dataset(LevelModel("disparity", name="m"), dataset, tmp_path, progress=False)
    with pytest.raises(InputError, match="another --output-dir"):
        run_dataset(LevelModel("depth", name="m"), dataset, tmp_path, progress=False)


def test_processing_resolution_per_dataset(eval_data, tmp_path):
    for name, seen in [("eth3d", (504, 756)), ("diode", (480, 640)), ("scannet", (48, 64))]:
        model = LevelModel("disparity", name=f"res-{name}")
        result = run_dataset(model, EvalDataset(name, eval_data[0]), tmp_path, progress=False)
        assert set(model.calls) == {seen}
        assert np.isfinite(list(result.metrics.values())).all()
        assert result.metrics["delta1"] > 0.9  # upsampling only blurs level borders


def test_resize_image_keeps_native_size_and_uint8():
    image = np.full((24, 36, 3), 200, np.uint8)
    assert resize_image(image, None) is image
    out = resize_image(image, 756)
    assert out.shape == (504, 756, 3) and out.dtype == np.uint8 and (out == 200).all()


def test_bad_adapter_output_is_reported(eval_data, tmp_path):
    bad = CallableAdapter(lambda image: np.ones((3, 3)), name="bad", output_space="disparity")
    with pytest.raises(InputError, match="returned a map of shape"):
        run_dataset(bad, EvalDataset("scannet", eval_data[0]), tmp_path, progress=False)


def test_benchmark_over_all_five_and_table(eval_data, tmp_path):
    model = LevelModel("disparity", name="bench")
    names = ["nyu", "kitti", "eth3d", "scannet", "diode"]
    results = run_benchmark(model, names, eval_data[0], tmp_path, progress=False)
    assert [r.dataset for r in results] == names
    for result in results[:2] + results[3:4]:  # native-resolution datasets are exact
        assert result.metrics["abs_rel"] < 1e-6 and result.metrics["delta1"] == 1.0
    with open(tmp_path / "bench" / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["dataset"] for r in rows] == names
    table = format_table(results)
    assert "AbsRel x100" in table and "delta1 x100" in table
    nyu_line = next(line for line in table.splitlines() if line.startswith("NYUv2"))
    assert nyu_line.split()[1:] == ["2", "0.0", "100.0"]
    # a later single-dataset run updates the summary instead of replacing it
    run_benchmark(model, ["diode_indoor"], eval_data[0], tmp_path, progress=False)
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert list(summary) == [*names, "diode_indoor"]
    with pytest.raises(InputError, match="--split-file applies to one dataset"):
        run_benchmark(model, names, eval_data[0], tmp_path, split_file="x.txt")
