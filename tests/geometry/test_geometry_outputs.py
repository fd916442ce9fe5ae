"""What the job engine calls: output names, option checks, and write_geometry_outputs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from primedepth.errors import InputError
from primedepth.geometry import (
    GEOMETRY_OUTPUT_SUFFIXES,
    GeometryOptions,
    check_geometry_request,
    geometry_output_paths,
    write_geometry_outputs,
)

from ..extras import require_extra
from .scenes import CAMERA, SCENES, affine_prediction, colours, render

ALL_KINDS = tuple(GEOMETRY_OUTPUT_SUFFIXES)
INTRINSICS = (CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy)


def _scene(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
    """True depth, prediction, colours, and a CSV of 300 known depths (10% wrong)."""
    depth, _ = render(SCENES["boxes"])
    prediction = affine_prediction(depth, 0.4, 0.12, noise=0.001)
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, CAMERA.width, 300), rng.integers(0, CAMERA.height, 300)
    known = depth[y, x] * np.where(rng.random(300) < 0.1, 2.0, 1.0)
    rows = "\n".join(f"{a},{b},{d:.9g}" for a, b, d in zip(x, y, known))
    (tmp_path / "known.csv").write_text("x,y,depth_m\n" + rows + "\n500,5,3.0\n")
    return depth, prediction, colours(depth.shape), tmp_path / "known.csv"


def test_output_names():
    paths = geometry_output_paths(Path("out"), PurePosixPath("sub/img"), ["ply", "metric_png16"])
    assert paths == {"ply": Path("out/sub/img_points.ply"), "metric_png16": Path("out/sub/img_depth_mm.png")}


def test_aligned_outputs_are_metric_and_say_so(tmp_path):
    plyfile = require_extra("plyfile", "test")
    require_extra("trimesh", "3d")
    depth, prediction, rgb, known = _scene(tmp_path)
    paths = geometry_output_paths(tmp_path / "out", PurePosixPath("img"), ALL_KINDS)
    options = GeometryOptions(align_to=known, intrinsics=INTRINSICS)
    written, report = write_geometry_outputs(paths, prediction, rgb, options, source=None)
    obj_set = [tmp_path / "out" / name for name in ("img_mesh_texture.png", "img_mesh.mtl", "img_mesh.obj")]
    expected = [file for kind, path in paths.items() for file in (obj_set if kind == "obj" else [path])]
    assert written == expected and all(path.is_file() for path in written)
    assert report["scale"] == "metric" and report["intrinsics"]["source"] == "intrinsics"
    fit = report["alignment"]
    assert fit["scale"] == pytest.approx(0.4, rel=0.01) and fit["shift"] == pytest.approx(0.12, rel=0.01)
    assert fit["points"] == 300 and 250 < fit["inliers"] < 300
    assert report["sparse"]["dropped_out_of_bounds"] == 1
    assert any("dropped 1 of 301 points" in warning for warning in report["warnings"])

    metric = np.load(paths["metric"])
    assert metric.dtype == np.float32 and np.median(np.abs(metric - depth) / depth) < 0.01
    with Image.open(paths["metric_png16"]) as image:
        millimetres = np.asarray(image).astype(float)
        assert image.text["depth_unit"] == "mm" and "1/depth_m = 0.4" in image.text["alignment"]
    np.testing.assert_allclose(millimetres / 1000, metric, atol=0.0006)
    ply = plyfile.PlyData.read(str(paths["ply"]))
    assert len(ply["vertex"]) == depth.size and any("metric depth in metres" in c for c in ply.comments)
    assert report["points"] == depth.size and report["mesh"]["faces"] > 0


def test_unaligned_outputs_are_marked_arbitrary(tmp_path):
    plyfile = require_extra("plyfile", "test")
    _, prediction, rgb, _ = _scene(tmp_path)
    paths = geometry_output_paths(tmp_path, PurePosixPath("img"), ["ply", "obj", "normals"])
    written, report = write_geometry_outputs(paths, prediction, rgb.astype(np.float32) / 255, GeometryOptions())
    assert len(written) == 5 and report["scale"] == "arbitrary"  # the OBJ comes with .mtl and texture
    assert report["intrinsics"]["source"] == "default" and "60 degree" in report["warnings"][0]
    assert report["pseudo_depth"]["assumed_far_near_ratio"] == 10.0
    comments = plyfile.PlyData.read(str(paths["ply"])).comments
    note = "RELATIVE SHAPE, not metric: unaligned affine-invariant prediction; its unknown shift was fixed"
    assert any(note in comment and "10x as far as the nearest" in comment and "--near/--far" in comment
               for comment in comments)
    assert note in paths["obj"].read_text().splitlines()[0]
    z = plyfile.PlyData.read(str(paths["ply"]))["vertex"]["z"]
    assert -z.max() == pytest.approx(1.0) and -z.min() == pytest.approx(10.0)  # pseudo-depth range, looking down -z


def test_near_and_far_set_the_assumed_ratio_and_frame_the_camera_frame(tmp_path):
    plyfile = require_extra("plyfile", "test")
    _, prediction, rgb, _ = _scene(tmp_path)
    paths = geometry_output_paths(tmp_path, PurePosixPath("img"), ["ply"])
    options = GeometryOptions(pseudo_near=2.0, pseudo_far=5.0, frame="opencv", intrinsics=INTRINSICS)
    _, report = write_geometry_outputs(paths, prediction, rgb, options)
    ply = plyfile.PlyData.read(str(paths["ply"]))
    z = ply["vertex"]["z"]
    assert z.min() == pytest.approx(2.0) and z.max() == pytest.approx(5.0)  # OpenCV: z forward
    assert any("2.5x as far as the nearest (near 2, far 5" in comment for comment in ply.comments)
    assert report["pseudo_depth"]["assumed_far_near_ratio"] == 2.5 and "y down" in report["frames"]["ply"]


def test_existing_files_are_kept_unless_overwrite(tmp_path):
    _, prediction, rgb, _ = _scene(tmp_path)
    paths = geometry_output_paths(tmp_path, PurePosixPath("img"), ["normals", "ply"])
    paths["normals"].write_bytes(b"old")
    written, _ = write_geometry_outputs(paths, prediction, rgb, GeometryOptions(fov=60.0))
    assert written == [paths["ply"]] and paths["normals"].read_bytes() == b"old"
    assert write_geometry_outputs(paths, prediction, rgb, GeometryOptions(fov=60.0))[0] == []
    written, _ = write_geometry_outputs(paths, prediction, rgb, GeometryOptions(fov=60.0), overwrite=True)
    assert len(written) == 2 and paths["normals"].read_bytes()[:4] == b"\x89PNG"


def test_bad_sparse_input_raises_before_anything_is_written(tmp_path):
    _, prediction, rgb, _ = _scene(tmp_path)
    np.save(tmp_path / "wrong_size.npy", np.ones((10, 10)))
    paths = geometry_output_paths(tmp_path / "out", PurePosixPath("img"), ["ply", "metric"])
    with pytest.raises(InputError, match="size 10x10 does not match the image's 160x120"):
        write_geometry_outputs(paths, prediction, rgb, GeometryOptions(align_to=tmp_path / "wrong_size.npy"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kinds", "options", "message"), [
    (["mesh"], GeometryOptions(), "unknown geometry output"),
    (["metric"], GeometryOptions(), "metric outputs need known depths"),
    (["ply"], GeometryOptions(fov=60.0, intrinsics=(1.0, 1.0, 0.0, 0.0)), "either a field of view or intrinsics"),
    (["ply"], GeometryOptions(fov=0.0), "between 0 and 180"),
    (["ply"], GeometryOptions(align_to=Path("/no/such/dir")), "no such file or folder"),
    (["ply"], GeometryOptions(min_depth=2.0, max_depth=1.0), "min depth < max depth"),
    (["glb"], GeometryOptions(mesh_max_angle=0.0), "discontinuity angle"),
    (["obj"], GeometryOptions(mesh_max_faces=1), "face budget must be a whole number of at least 2"),
    (["ply"], GeometryOptions(frame="z-up"), "unknown coordinate frame"),
    (["ply"], GeometryOptions(pseudo_near=5.0, pseudo_far=5.0), "need 0 < near < far"),
])
def test_check_geometry_request_refuses_early(kinds, options, message):
    with pytest.raises(InputError, match=message):
        check_geometry_request(kinds, options)


def test_optional_packages_are_not_imported_with_the_module():
    import subprocess
    import sys

    code = "import sys, primedepth.geometry; print(sorted({'trimesh', 'OpenEXR'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_missing_optional_packages_are_named(tmp_path, monkeypatch):
    import importlib.util
    import sys

    from primedepth.geometry import read_sparse_file

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trimesh" else real_find_spec(name, *a))
    with pytest.raises(InputError, match=r"glb output needs trimesh: pip install 'primedepth\[3d\]'"):
        check_geometry_request(["glb"], GeometryOptions())
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # makes `import OpenEXR` fail
    (tmp_path / "d.exr").write_bytes(b"not really")
    with pytest.raises(InputError, match="reading .exr needs the OpenEXR package"):
        read_sparse_file(tmp_path / "d.exr", (4, 4))
