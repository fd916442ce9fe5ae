"""Grid meshes without skins across depth jumps, written as GLB and OBJ and read back by trimesh."""

from __future__ import annotations

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.geometry import grid_mesh, save_mesh

from .scenes import CAMERA, SCENES, colours, render

trimesh = pytest.importorskip("trimesh")

GLTF_FROM_OPENCV = np.array([1.0, -1.0, -1.0])


def test_a_plane_keeps_every_triangle_facing_the_camera():
    depth, _ = render(SCENES["tilted_plane"])
    mesh = grid_mesh(depth, CAMERA, max_size=None)
    height, width = depth.shape
    assert mesh.vertices.shape[0] == depth.size
    assert mesh.faces.shape[0] == 2 * (height - 1) * (width - 1)
    a, b, c = (mesh.vertices[mesh.faces[:, k]].astype(np.float64) for k in range(3))
    normals = np.cross(b - a, c - a)
    assert (np.einsum("ij,ij->i", normals, a) < 0).all()  # counter-clockwise seen from the camera


def test_no_triangle_bridges_the_sphere_and_the_wall():
    depth, _ = render(SCENES["sphere_before_wall"])
    mesh = grid_mesh(depth, CAMERA, max_size=None)
    z = mesh.vertices[mesh.faces][..., 2]
    assert (z.max(axis=1) / z.min(axis=1)).max() < 1.2  # the jump is 6 m / ~2.5 m
    on_sphere = (z < 5.9).any(axis=1)
    assert on_sphere.sum() > 1000 and (~on_sphere).sum() > 10000  # both surfaces are kept
    everything = grid_mesh(depth, CAMERA, max_angle_deg=90.0, max_size=None)
    assert everything.faces.shape[0] == 2 * (depth.shape[0] - 1) * (depth.shape[1] - 1)


def test_grid_is_subsampled_to_the_size_limit():
    depth, _ = render(SCENES["boxes"])
    mesh = grid_mesh(depth, CAMERA, max_size=40)  # 160 px wide -> every 4th pixel
    assert mesh.vertices.shape[0] <= 40 * 30
    assert (mesh.pixels % 4 == 0).all()


def test_glb_is_textured_upright_and_loads_in_trimesh(tmp_path):
    depth, points = render(SCENES["sphere_before_wall"])
    rgb = colours(depth.shape)
    mesh = save_mesh(tmp_path / "m.glb", depth, rgb, CAMERA, max_size=None, metadata={"scale": "metric"})
    scene = trimesh.load(tmp_path / "m.glb")
    loaded = next(iter(scene.geometry.values()))
    assert len(loaded.vertices) == mesh.vertices.shape[0] and len(loaded.faces) == mesh.faces.shape[0]
    expected = points[mesh.pixels[:, 0], mesh.pixels[:, 1]] * GLTF_FROM_OPENCV
    np.testing.assert_allclose(loaded.vertices, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded.bounds, [expected.min(0), expected.max(0)], rtol=1e-6)
    sampled = loaded.visual.to_color().vertex_colors[:, :3].astype(int)
    truth = rgb[mesh.pixels[:, 0], mesh.pixels[:, 1]].astype(int)
    assert np.abs(sampled - truth).max() <= 1  # the texture is sampled at the vertex's own pixel
    assert scene.metadata["scale"] == "metric"  # glTF scenes[0].extras


def test_obj_has_vertex_colours_and_comments(tmp_path):
    depth, points = render(SCENES["boxes"])
    rgb = colours(depth.shape, seed=9)
    mesh = save_mesh(tmp_path / "m.obj", depth, rgb, CAMERA, max_size=80, comments=["scale is ARBITRARY"])
    assert (tmp_path / "m.obj").read_text().startswith("# scale is ARBITRARY\n")
    loaded = trimesh.load(tmp_path / "m.obj", process=False)
    assert len(loaded.vertices) == mesh.vertices.shape[0] and len(loaded.faces) == mesh.faces.shape[0]
    expected = points[mesh.pixels[:, 0], mesh.pixels[:, 1]]
    np.testing.assert_allclose(loaded.bounds, [expected.min(0), expected.max(0)], rtol=1e-5)
    colours_read = loaded.visual.vertex_colors[:, :3].astype(int)
    assert np.abs(colours_read - rgb[mesh.pixels[:, 0], mesh.pixels[:, 1]]).max() <= 1


def test_bad_mesh_requests(tmp_path):
    depth, _ = render(SCENES["boxes"])
    with pytest.raises(InputError, match="unsupported mesh format"):
        save_mesh(tmp_path / "m.stl", depth, colours(depth.shape), CAMERA)
    with pytest.raises(InputError, match="image is 10x10 but depth is 160x120"):
        save_mesh(tmp_path / "m.obj", depth, np.zeros((10, 10, 3), np.uint8), CAMERA)
    with pytest.raises(InputError, match=r"discontinuity angle must be in \(0, 90\]"):
        grid_mesh(depth, CAMERA, max_angle_deg=120.0)
