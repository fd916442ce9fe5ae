"""`primedepth eval` end to end, with a user model adapter loaded from a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from primedepth.cli import main

ADAPTER_SOURCE = '''
from tests.eval.eval_archive_builders import LevelModel


def make():
    return LevelModel("disparity", name="user-model")


def broken():
    return object()
'''


@pytest.fixture
def adapter_file(tmp_path) -> Path:
    path = tmp_path / "my_adapter.py"
    path.write_text(ADAPTER_SOURCE)
    return path


def _eval(*args: str) -> int:
    return main(["eval", "--no-progress", "--device", "cpu", *args])


def test_all_datasets_with_a_user_adapter(eval_data, tmp_path, adapter_file, capsys):
    out = tmp_path / "out"
    rc = _eval("--datasets", "all", "--data-dir", str(eval_data[0]), "--model", f"{adapter_file}:make",
               "--output-dir", str(out))
    assert rc == 0
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0] == "Model: user-model (aligned in disparity space)"
    assert table[1].startswith("Protocol: Marigold affine-invariant protocol")  # every number names it
    titles = [line.split()[0] for line in table[4:9]]
    assert titles == ["NYUv2", "KITTI", "ETH3D", "ScanNet", "DIODE"]
    assert table[4].split()[1:] == ["2", "0.0", "100.0"]
    assert "protocol has 654" in printed.err  # tiny archives are flagged as not comparable
    summary = json.loads((out / "user-model" / "summary.json").read_text())
    assert set(summary) == {"nyu", "kitti", "eth3d", "scannet", "diode"}
    assert summary["kitti"]["metrics"]["delta1"] == 1.0


def test_single_dataset_max_images_and_split_file(eval_data, tmp_path, adapter_file, capsys):
    split = tmp_path / "list.txt"
    split.write_text("scene0088_02/color/001100.jpg scene0088_02/depth/001100.png\n"
                     "scene0406_02/color/000300.jpg scene0406_02/depth/000300.png\n")
    rc = _eval("--dataset", "scannet", "--data-dir", str(eval_data[0]), "--model", f"{adapter_file}:make",
               "--output-dir", str(tmp_path / "o"), "--split-file", str(split), "--max-images", "1")
    assert rc == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("ScanNet"))
    assert line.split()[1] == "1"
    cached = list((tmp_path / "o" / "user-model" / "scannet" / "predictions").rglob("*.npy"))
    assert [p.name for p in cached] == ["pred_001100.npy"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "nyu", "--data-dir", "{empty}"], "NYUv2 archive not found"),
        (["--datasets", "nyu,foo", "--data-dir", "{data}"], "unknown dataset 'foo'"),
        (["--datasets", "all", "--data-dir", "{data}", "--split-file", "x.txt"], "applies to one dataset"),
        (["--dataset", "nyu", "--data-dir", "{data}", "--max-images", "0"], "at least 1"),
        (["--dataset", "nyu", "--data-dir", "{data}", "--model", "{adapter}:nothing"], "no attribute"),
        (["--dataset", "nyu", "--data-dir", "{data}", "--model", "{adapter}:broken"], "not a depth adapter"),
        (["--dataset", "nyu", "--data-dir", "{data}", "--model", "no_such_module_xyz:make"], "cannot import"),
    ],
)
def test_user_errors_print_cleanly(eval_data, tmp_path, adapter_file, capsys, args, message):
    values = {"empty": str(tmp_path), "data": str(eval_data[0]), "adapter": str(adapter_file)}
    args = [a.format(**values) for a in args] + ["--output-dir", str(tmp_path / "o")]
    assert _eval(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("primedepth eval: error: ") and message in err
    assert "Traceback" not in err


def test_dataset_choices_are_validated_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--dataset", "middlebury", "--data-dir", "."])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
