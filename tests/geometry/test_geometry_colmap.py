"""The COLMAP reader (text and binary) and the known depths it gives one image."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.geometry import align_to_sparse, read_colmap_model, sparse_for_image, sparse_from_colmap

from . import colmap_files as cf
from .scenes import CAMERA, SCENES, affine_prediction, render

SHAPE = (CAMERA.height, CAMERA.width)


def _scene_model() -> tuple[cf.Model, dict]:
    """Two views of the sphere before a wall; view A sees 80 scene points at known pixels."""
    depth, points = render(SCENES["sphere_before_wall"])
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, SHAPE[0], 80), rng.integers(0, SHAPE[1], 80)
    keep = np.unique(rows * SHAPE[1] + cols, return_index=True)[1]
    rows, cols = rows[keep], cols[keep]
    q_a, t_a = cf.quaternion((0.2, 1.0, 0.1), 0.3), np.array([0.4, -0.2, 1.5])
    r_a = cf.rotation(q_a)
    world = (points[rows, cols] - t_a) @ r_a  # X_cam = R X + t  ->  X = R^T (X_cam - t)
    ids = np.arange(101, 101 + world.shape[0])
    cam_a = cf.Camera(1, "PINHOLE", SHAPE[1], SHAPE[0], [CAMERA.fx, CAMERA.fy, CAMERA.cx + 0.5, CAMERA.cy + 0.5])
    cam_b = cf.Camera(2, "SIMPLE_RADIAL", 320, 240, [200.0, 160.0, 120.0, 0.05])
    xys_a = np.concatenate([np.stack([cols + 0.5, rows + 0.5], axis=1), [[3.0, 4.0]]])
    view_a = cf.Image(1, q_a, t_a, 1, "frames/view_a.jpg", xys_a, np.concatenate([ids, [-1]]))
    view_b = cf.Image(2, cf.quaternion((0, 1, 0), -0.1), np.array([0.1, 0.0, 0.3]), 2, "view_b.jpg",
                      np.zeros((5, 2)), ids[:5])
    model = cf.Model([cam_a, cam_b], [view_a, view_b], dict(zip(ids.tolist(), world)),
                     {int(i): [(1, k), (2, k)] for k, i in enumerate(ids[:5])})
    truth = {"rows": rows, "cols": cols, "depth": depth[rows, cols], "world": world, "depth_map": depth}
    return model, truth


@pytest.fixture(params=["text", "binary"])
def model_dir(request, tmp_path):
    model, truth = _scene_model()
    folder = tmp_path / "project" / "sparse" / "0"
    (cf.write_text if request.param == "text" else cf.write_binary)(model, folder)
    return tmp_path / "project", truth


def test_both_formats_read_the_same_model(tmp_path):
    model, truth = _scene_model()
    cf.write_text(model, tmp_path / "txt")
    cf.write_binary(model, tmp_path / "bin")
    text, binary = read_colmap_model(tmp_path / "txt"), read_colmap_model(tmp_path / "bin")
    for read in (text, binary):
        assert sorted(read.cameras) == [1, 2] and sorted(read.images) == [1, 2]
        assert read.cameras[2].model == "SIMPLE_RADIAL" and read.cameras[2].params == (200.0, 160.0, 120.0, 0.05)
        assert read.images[1].name == "frames/view_a.jpg"
        assert read.images[1].point_ids[-1] == -1
        np.testing.assert_array_equal(read.point_ids, np.arange(101, 101 + truth["world"].shape[0]))
        np.testing.assert_allclose(read.point_xyz, truth["world"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(text.images[1].xys, binary.images[1].xys)


def test_observed_points_land_on_their_pixels_with_their_depths(model_dir):
    project, truth = model_dir
    sparse = sparse_for_image(project, project / "images" / "frames" / "view_a.jpg", SHAPE)
    assert sparse.count == truth["rows"].size  # the untriangulated keypoint is not a point
    np.testing.assert_array_equal(sparse.x, truth["cols"])
    np.testing.assert_array_equal(sparse.y, truth["rows"])
    np.testing.assert_allclose(sparse.depth_m, truth["depth"], rtol=1e-9)
    assert sparse.intrinsics.fx == CAMERA.fx and sparse.intrinsics.cx == pytest.approx(CAMERA.cx)


def test_an_image_three_times_the_calibrated_size_gets_scaled_positions(model_dir):
    project, truth = model_dir
    sparse = sparse_for_image(project, project / "view_a.jpg", (3 * SHAPE[0], 3 * SHAPE[1]))
    # the pixel centre u + 0.5 (COLMAP coordinates) lands at 3u + 1.5, inside pixel 3u + 1
    np.testing.assert_array_equal(sparse.x, 3 * truth["cols"] + 1)
    np.testing.assert_array_equal(sparse.y, 3 * truth["rows"] + 1)


def test_radial_distortion_is_applied_when_projecting(model_dir):
    project, truth = model_dir
    model = read_colmap_model(project)
    sparse = sparse_from_colmap(model, "view_b.jpg", (240, 320))
    image = model.images[2]
    cam = (truth["world"][:5] @ cf.rotation(image.qvec).T) + image.tvec
    u, v = cam[:, 0] / cam[:, 2], cam[:, 1] / cam[:, 2]
    radial = 1 + 0.05 * (u * u + v * v)
    x, y = 200.0 * u * radial + 160.0, 200.0 * v * radial + 120.0
    inside = (x >= 0) & (x < 320) & (y >= 0) & (y < 240)
    np.testing.assert_array_equal(sparse.x, np.floor(x[inside]).astype(int))
    np.testing.assert_array_equal(sparse.y, np.floor(y[inside]).astype(int))
    np.testing.assert_allclose(sparse.depth_m, cam[inside, 2])
    assert any("distortion is ignored when unprojecting" in note for note in sparse.notes)


def test_alignment_to_a_colmap_model(model_dir):
    project, truth = model_dir
    prediction = affine_prediction(truth["depth_map"], 0.3, 0.2)
    sparse = sparse_for_image(project, project / "view_a.jpg", SHAPE)
    result = align_to_sparse(prediction, sparse)
    assert result.scale == pytest.approx(0.3, rel=1e-5) and result.shift == pytest.approx(0.2, rel=1e-5)


def test_model_without_the_image_names_what_it_has(model_dir):
    project, _ = model_dir
    with pytest.raises(InputError, match=r"has no image named 'missing.jpg' \(2 images, e.g. frames/view_a.jpg"):
        sparse_for_image(project, project / "missing.jpg", SHAPE)


def test_camera_of_another_aspect_ratio_is_refused(model_dir):
    project, _ = model_dir
    with pytest.raises(InputError, match="size 160x120 does not match the image's 100x100"):
        sparse_for_image(project, project / "view_a.jpg", (100, 100))


def test_damaged_and_incomplete_models(tmp_path):
    model, _ = _scene_model()
    cf.write_binary(model, tmp_path / "bin")
    data = (tmp_path / "bin" / "images.bin").read_bytes()
    (tmp_path / "bin" / "images.bin").write_bytes(data[:100])
    with pytest.raises(InputError, match="damaged or not in COLMAP's format"):
        read_colmap_model(tmp_path / "bin")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "cameras.txt").write_text("1 PINHOLE 10 10 1 1 5 5\n")
    with pytest.raises(InputError, match="not a COLMAP model"):
        read_colmap_model(tmp_path / "half")
    (tmp_path / "bad").mkdir()
    for name, text in (("cameras", "1 PINHOLE 10 10 1 1\n"), ("images", ""), ("points3D", "")):
        (tmp_path / "bad" / f"{name}.txt").write_text(text)
    with pytest.raises(InputError, match="PINHOLE needs 4 parameters, got 2"):
        read_colmap_model(tmp_path / "bad")
