"""Grid meshes without skins across depth jumps, written as GLB and OBJ and read back by trimesh."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from primedepth.errors import InputError
from primedepth.geometry import grid_mesh, grid_samples, mesh_files, save_mesh

from ..extras import require_extra
from .scenes import CAMERA, SCENES, colours, render

trimesh = require_extra("trimesh", "3d")

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


def _glb_json(path) -> dict:
    """The JSON chunk of a GLB file (header: magic, version, length; then length + type + JSON)."""
    data = path.read_bytes()
    assert data[:4] == b"glTF" and int.from_bytes(data[12:16], "little") and data[16:20] == b"JSON"
    return json.loads(data[20 : 20 + int.from_bytes(data[12:16], "little")])


def test_glb_material_shows_the_texture_at_full_brightness(tmp_path):
    depth, _ = render(SCENES["boxes"])
    save_mesh(tmp_path / "m.glb", depth, colours(depth.shape), CAMERA, max_size=80)
    tree = _glb_json(tmp_path / "m.glb")
    [material] = tree["materials"]
    pbr = material["pbrMetallicRoughness"]
    assert pbr.get("baseColorFactor", [1.0] * 4) == [1.0, 1.0, 1.0, 1.0]  # not trimesh's 0.4 grey
    assert "baseColorTexture" in pbr and pbr["metallicFactor"] == 0.0 and pbr["roughnessFactor"] == 1.0
    assert material["extensions"] == {"KHR_materials_unlit": {}} and "KHR_materials_unlit" in tree["extensionsUsed"]
    assert "y up" in tree["scenes"][0]["extras"]["frame"]


def test_obj_is_textured_with_mtl_and_png_and_upright(tmp_path):
    depth, points = render(SCENES["boxes"])
    rgb = colours(depth.shape, seed=9)
    mesh = save_mesh(tmp_path / "m.obj", depth, rgb, CAMERA, max_size=80, comments=["scale is ARBITRARY"])
    assert mesh_files(tmp_path / "m.obj") == [tmp_path / "m_texture.png", tmp_path / "m.mtl", tmp_path / "m.obj"]
    text = (tmp_path / "m.obj").read_text()
    assert text.startswith("# scale is ARBITRARY\n# frame: x right, y up") and "mtllib m.mtl\n" in text
    mtl = (tmp_path / "m.mtl").read_text()
    assert "Kd 1 1 1" in mtl and "map_Kd m_texture.png" in mtl
    with Image.open(tmp_path / "m_texture.png") as texture:
        np.testing.assert_array_equal(np.asarray(texture), rgb)  # full size, lossless
    loaded = trimesh.load(tmp_path / "m.obj", process=False)
    assert len(loaded.vertices) == mesh.vertices.shape[0] and len(loaded.faces) == mesh.faces.shape[0]
    expected = points[mesh.pixels[:, 0], mesh.pixels[:, 1]] * GLTF_FROM_OPENCV  # y up by default
    np.testing.assert_allclose(loaded.vertices, expected, rtol=1e-5, atol=1e-5)
    sampled = loaded.visual.to_color().vertex_colors[:, :3].astype(int)
    assert np.abs(sampled - rgb[mesh.pixels[:, 0], mesh.pixels[:, 1]]).max() <= 1  # the vertex's own pixel

    save_mesh(tmp_path / "c.obj", depth, rgb, CAMERA, max_size=80, frame="opencv")
    camera_frame = trimesh.load(tmp_path / "c.obj", process=False)
    np.testing.assert_allclose(camera_frame.vertices, expected * GLTF_FROM_OPENCV, rtol=1e-5, atol=1e-5)


def test_face_budget_thins_the_grid_evenly():
    depth, _ = render(SCENES["tilted_plane"])  # 160 x 120: 37842 triangles in the full grid
    full = grid_mesh(depth, CAMERA, max_size=None, max_faces=None)
    assert full.faces.shape[0] == 2 * 159 * 119
    for budget in (20_000, 5_000, 2):
        rows, cols = grid_samples(120, 160, None, budget)
        assert 2 * (rows.size - 1) * (cols.size - 1) <= budget
        assert rows[0] == 0 and rows[-1] == 119 and cols[0] == 0 and cols[-1] == 159  # still the whole image
        thinned = grid_mesh(depth, CAMERA, max_size=None, max_faces=budget)
        assert 0.8 * budget <= thinned.faces.shape[0] <= budget
    assert grid_samples(120, 160, None, 10**6)[0].size == 120  # under the budget: untouched
    with pytest.raises(InputError, match="face budget"):
        grid_samples(120, 160, None, 0)


def test_bad_mesh_requests(tmp_path):
    depth, _ = render(SCENES["boxes"])
    with pytest.raises(InputError, match="unsupported mesh format"):
        save_mesh(tmp_path / "m.stl", depth, colours(depth.shape), CAMERA)
    with pytest.raises(InputError, match="image is 10x10 but depth is 160x120"):
        save_mesh(tmp_path / "m.obj", depth, np.zeros((10, 10, 3), np.uint8), CAMERA)
    with pytest.raises(InputError, match=r"discontinuity angle must be in \(0, 90\]"):
        grid_mesh(depth, CAMERA, max_angle_deg=120.0)
