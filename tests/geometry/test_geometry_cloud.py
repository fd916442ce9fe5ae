"""Intrinsics, unprojection, normals and PLY point clouds read back by external readers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from primedepth.errors import InputError
from primedepth.geometry import (
    DEFAULT_FOV_DEG,
    Intrinsics,
    normals_from_depth,
    parse_intrinsics,
    resolve_intrinsics,
    save_normals_png,
    save_point_cloud,
    unproject,
)

from ..extras import require_extra
from .scenes import CAMERA, SCENES, Plane, colours, render


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_unprojecting_the_true_depth_gives_the_scene_points(scene):
    depth, points = render(SCENES[scene])
    unprojected = unproject(depth, CAMERA)
    assert unprojected.shape == depth.shape + (3,) and unprojected.dtype == np.float32
    np.testing.assert_allclose(unprojected, points, rtol=2e-7, atol=0)
    np.testing.assert_allclose(unproject(depth, CAMERA, dtype=np.float64), points, rtol=1e-14, atol=1e-14)


def test_planes_stay_planar():
    depth, _ = render(SCENES["tilted_plane"])
    points = unproject(depth, CAMERA, dtype=np.float64).reshape(-1, 3)
    centred = points - points.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    assert np.abs(centred @ normal).max() < 1e-12
    expected = np.array([0.0, -0.3, 1.0]) / math.hypot(0.3, 1.0)
    assert abs(abs(normal @ expected) - 1.0) < 1e-12


def test_normals_of_a_tilted_plane_and_a_facing_wall():
    depth, _ = render(SCENES["tilted_plane"])
    normals = normals_from_depth(depth, CAMERA)
    expected = -np.array([0.0, -0.3, 1.0]) / math.hypot(0.3, 1.0)  # facing the camera
    np.testing.assert_allclose(normals.reshape(-1, 3), np.broadcast_to(expected, (depth.size, 3)), atol=1e-5)
    wall, _ = render([Plane((0.0, 0.0, 1.0), 3.0)])
    wall[5, 5] = np.nan
    normals = normals_from_depth(wall, CAMERA)
    assert (normals[5, 5] == 0).all() and (normals[5, 6] == 0).all()  # unknown and its neighbour
    np.testing.assert_allclose(normals[20, 20], [0.0, 0.0, -1.0], atol=1e-6)


def test_normals_png_uses_the_usual_colours(tmp_path):
    wall, _ = render([Plane((0.0, 0.0, 1.0), 3.0)])
    wall[0, 0] = 0.0
    save_normals_png(tmp_path / "n.png", normals_from_depth(wall, CAMERA))
    with Image.open(tmp_path / "n.png") as image:
        rgb = np.asarray(image)
        assert image.mode == "RGB" and "normals_decode" in image.text
    assert rgb[30, 30].tolist() == [128, 128, 255]
    assert rgb[0, 0].tolist() == [0, 0, 0]


def test_ply_binary_and_ascii_are_read_by_plyfile_and_trimesh(tmp_path):
    plyfile = require_extra("plyfile", "test")
    trimesh = require_extra("trimesh", "3d")
    depth, points = render(SCENES["sphere_before_wall"])
    rgb = colours(depth.shape)
    cloud = unproject(depth, CAMERA)
    cloud[0, :10] = np.nan  # unknown points are left out
    for binary in (True, False):
        path = tmp_path / f"cloud_{binary}.ply"
        count = save_point_cloud(path, cloud, rgb, binary=binary, comments=["scale is ARBITRARY", "two\nlines"])
        assert count == depth.size - 10
        ply = plyfile.PlyData.read(str(path))
        vertex = ply["vertex"]
        assert len(vertex) == count and "scale is ARBITRARY" in ply.comments and "two lines" in ply.comments
        assert any(comment.startswith("frame: x right, y up") for comment in ply.comments)
        xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1)
        expected = points.reshape(-1, 3)[10:] * [1.0, -1.0, -1.0]  # y up, camera looking down -z
        np.testing.assert_allclose(xyz, expected, rtol=1e-6)
        colour = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
        np.testing.assert_array_equal(colour, rgb.reshape(-1, 3)[10:])
        loaded = trimesh.load(path)
        assert len(loaded.vertices) == count
        np.testing.assert_allclose(loaded.bounds, [expected.min(0), expected.max(0)], rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(loaded.colors)[:, :3], rgb.reshape(-1, 3)[10:])


def test_ply_in_the_opencv_frame_keeps_the_camera_frame(tmp_path):
    plyfile = require_extra("plyfile", "test")
    depth, points = render(SCENES["tilted_plane"])
    save_point_cloud(tmp_path / "c.ply", unproject(depth, CAMERA), frame="opencv")
    ply = plyfile.PlyData.read(str(tmp_path / "c.ply"))
    xyz = np.stack([ply["vertex"][axis] for axis in "xyz"], axis=1)
    np.testing.assert_allclose(xyz, points.reshape(-1, 3), rtol=1e-6)
    assert any(comment.startswith("frame: x right, y down, z forward") for comment in ply.comments)
    with pytest.raises(InputError, match="unknown coordinate frame 'z-up'; use opengl or opencv"):
        save_point_cloud(tmp_path / "d.ply", points, frame="z-up")


def test_point_colours_may_be_floats_and_must_match_in_number(tmp_path):
    points = np.zeros((4, 3))
    save_point_cloud(tmp_path / "p.ply", points, np.full((4, 3), 0.5))
    with pytest.raises(InputError, match="3 colours for 4 points"):
        save_point_cloud(tmp_path / "q.ply", points, np.zeros((3, 3), np.uint8))


def test_intrinsics_from_fov_exif_and_default(tmp_path):
    camera = Intrinsics.from_fov(640, 480, 90.0)
    assert camera.fx == pytest.approx(320.0) and (camera.cx, camera.cy) == (319.5, 239.5)
    assert camera.horizontal_fov_deg == pytest.approx(90.0)
    resized = camera.resized(320, 240)
    assert resized.fx == pytest.approx(160.0) and (resized.cx, resized.cy) == (159.5, 119.5)

    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    Image.new("RGB", (400, 300)).save(tmp_path / "phone.jpg", exif=exif)
    found, origin, warnings = resolve_intrinsics(400, 300, source=tmp_path / "phone.jpg")
    assert origin == "exif" and not warnings
    assert found.fx == pytest.approx(26 * 500 / math.hypot(36, 24))

    Image.new("RGB", (400, 300)).save(tmp_path / "plain.jpg")
    found, origin, warnings = resolve_intrinsics(400, 300, source=tmp_path / "plain.jpg")
    assert origin == "default" and found.horizontal_fov_deg == pytest.approx(DEFAULT_FOV_DEG)
    assert "assuming a 60 degree horizontal field of view" in warnings[0]

    assert resolve_intrinsics(400, 300, fov_deg=50.0, source=tmp_path / "phone.jpg")[1] == "fov"
    given, origin, _ = resolve_intrinsics(400, 300, intrinsics=(300.0, 310.0, 200.0, 150.0), fov_deg=50.0)
    assert origin == "intrinsics" and given.fy == 310.0


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "0,1,2,3", "1,1,nan,2"])
def test_bad_intrinsics_are_refused(text):
    with pytest.raises(InputError, match="intrinsics must be|must be positive"):
        parse_intrinsics(text)
    assert parse_intrinsics("500, 500 320,240") == (500.0, 500.0, 320.0, 240.0)


def test_bad_fov_and_mismatched_depth_are_refused():
    with pytest.raises(InputError, match="between 0 and 180"):
        Intrinsics.from_fov(10, 10, 180.0)
    with pytest.raises(InputError, match="intrinsics are for 160x120"):
        unproject(np.ones((10, 10)), CAMERA)
