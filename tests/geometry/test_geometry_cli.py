"""`primedepth predict` with the 3D flags: --frame, --near/--far and --mesh-max-faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from primedepth import cli

from ..extras import require_extra


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from primedepth.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "room.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def _predict(capsys, *args: str | Path) -> tuple[int, str]:
    code = cli.main(["predict", *map(str, args)])
    return code, capsys.readouterr().err


def test_frame_near_far_and_face_budget_reach_the_files(capsys, tiny_model, photo, tmp_path):
    plyfile = require_extra("plyfile", "test")
    require_extra("trimesh", "3d")
    out = tmp_path / "out"
    code, err = _predict(capsys, photo, "-o", out, "--model", tiny_model, "--prompt", "", "--fov", "60",
                         "--outputs", "ply,obj,glb", "--frame", "opencv", "--near", "2", "--far", "5",
                         "--mesh-max-faces", "400")
    assert code == 0, err
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith("primedepth_")) == [
        "room_mesh.glb", "room_mesh.mtl", "room_mesh.obj", "room_mesh_texture.png", "room_points.ply"]
    ply = plyfile.PlyData.read(str(out / "room_points.ply"))
    z = ply["vertex"]["z"]
    assert z.min() == pytest.approx(2.0) and z.max() == pytest.approx(5.0)  # --near/--far, OpenCV frame
    assert any("2.5x as far as the nearest" in comment for comment in ply.comments)
    obj = (out / "room_mesh.obj").read_text()
    assert "# frame: x right, y down, z forward" in obj
    assert 0 < sum(line.startswith("f ") for line in obj.splitlines()) <= 400


@pytest.mark.parametrize(("flags", "message"), [
    (["--near", "5", "--far", "2"], "need 0 < near < far"),
    (["--mesh-max-faces", "-3"], "face budget must be a whole number of at least 2"),
])
def test_bad_3d_flags_are_one_line_errors(capsys, tiny_model, photo, tmp_path, flags, message):
    code, err = _predict(capsys, photo, "-o", tmp_path / "out", "--model", tiny_model, "--prompt", "",
                         "--outputs", "ply,obj", *flags)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "room_points.ply").exists()
