"""Sparse depth readers (primedepth.geometry.sparse) and finding an image's file in a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from primedepth.errors import InputError
from primedepth.geometry import read_sparse_file, sparse_for_image, sparse_from_map

from ..extras import require_extra

SHAPE = (6, 8)


def _depth_map() -> np.ndarray:
    depth = np.zeros(SHAPE)
    depth[1, 2], depth[4, 7], depth[5, 0] = 1.5, 2.25, 30.0
    return depth


def test_png_in_millimetres_npy_in_metres_agree(tmp_path):
    depth = _depth_map()
    Image.fromarray(np.rint(depth * 1000).astype(np.uint16)).save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", depth.astype(np.float32))
    from_png = read_sparse_file(tmp_path / "d.png", SHAPE)
    from_npy = read_sparse_file(tmp_path / "d.npy", SHAPE)
    for sparse in (from_png, from_npy):
        assert sparse.count == 3
        assert sorted(zip(sparse.y.tolist(), sparse.x.tolist())) == [(1, 2), (4, 7), (5, 0)]
        np.testing.assert_allclose(np.sort(sparse.depth_m), [1.5, 2.25, 30.0], rtol=1e-6)


def test_exr_depth_channel(tmp_path):
    openexr = require_extra("OpenEXR", "3d")
    depth = _depth_map().astype(np.float32)
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    with openexr.File(header, {"Z": depth}) as exr:
        exr.write(str(tmp_path / "d.exr"))
    sparse = read_sparse_file(tmp_path / "d.exr", SHAPE)
    np.testing.assert_allclose(np.sort(sparse.depth_m), [1.5, 2.25, 30.0])


def test_smaller_map_of_the_same_aspect_is_scaled_onto_the_image():
    sparse = sparse_from_map(_depth_map(), (12, 16), "half.npy")
    # the image pixel containing the scaled centre: floor((x + 0.5) * 2)
    assert sorted(zip(sparse.y.tolist(), sparse.x.tolist())) == [(3, 5), (9, 15), (11, 1)]
    assert any("resized from 8x6" in note for note in sparse.notes)


def test_other_aspect_ratio_is_an_error_and_rotation_is_pointed_out():
    with pytest.raises(InputError, match=r"size 8x6 does not match the image's 10x6.*resize or crop"):
        sparse_from_map(_depth_map(), (6, 10), "other.npy")
    with pytest.raises(InputError, match="rotated by 90 degrees"):
        sparse_from_map(_depth_map(), (8, 6), "rotated.npy")


@pytest.mark.parametrize("fill", [0.0, np.nan])
def test_empty_maps_say_there_is_nothing_known(fill):
    with pytest.raises(InputError, match="no known depths .*0 or NaN"):
        sparse_from_map(np.full(SHAPE, fill), SHAPE, "empty.npy")


def test_zero_sized_and_multichannel_arrays_are_refused(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 4)))
    with pytest.raises(InputError, match="single-channel depth map"):
        read_sparse_file(tmp_path / "e.npy", SHAPE)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="single-channel"):
        read_sparse_file(tmp_path / "rgb.png", SHAPE)


@pytest.mark.parametrize(("value", "what"), [(np.inf, "infinite"), (-np.inf, "infinite"), (-2.0, "negative")])
def test_infinite_and_negative_depths_are_refused_with_their_place(value, what):
    depth = _depth_map()
    depth[3, 5] = value
    with pytest.raises(InputError, match=f"1 {what} depth value.*x=5, y=3"):
        sparse_from_map(depth, SHAPE, "bad.npy")


def test_csv_points_out_of_bounds_are_dropped_and_counted(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("x, y, depth_m, weight\n2, 1, 1.5, 1\n7.4, 4.6, 2.25, 0.5\n-1, 2, 3, 1\n8, 0, 3, 1\n3, 6, 3, 1\n")
    sparse = read_sparse_file(path, SHAPE)
    assert sparse.count == 2 and sparse.dropped_out_of_bounds == 3
    assert sparse.x.tolist() == [2, 7] and sparse.y.tolist() == [1, 5]
    assert sparse.weight.tolist() == [1.0, 0.5]
    assert "dropped 3 of 5 points outside the 8x6 image" in sparse.notes[0]
    assert sparse.summary()["dropped_out_of_bounds"] == 3


def test_json_points_in_both_layouts(tmp_path):
    rows = [{"x": 1, "y": 1, "depth_m": 2.0}, {"x": 3, "y": 2, "depth_m": 4.0}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text(json.dumps({"points": rows}))
    for name in ("a.json", "b.json"):
        assert read_sparse_file(tmp_path / name, SHAPE).depth_m.tolist() == [2.0, 4.0]


@pytest.mark.parametrize(("text", "message"), [
    ("x,y,depth\n1,1,2\n", "missing depth_m"),
    ("x,y,depth_m\n1,1,abc\n", "point 1: depth_m='abc' is not a number"),
    ("x,y,depth_m\n1,1,2\n1,1,-3\n", "point 2: depth_m=-3 must be positive"),
    ("x,y,depth_m\n1,1,nan\n", "point 1: depth_m='nan' is not finite"),
    ("x,y,depth_m\n", "no points"),
    ("x,y,depth_m\n100,1,2\n", "all 1 points lie outside the 8x6 image"),
])
def test_bad_points_files_get_clear_messages(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_sparse_file(path, SHAPE)


def test_unsupported_and_missing_files(tmp_path):
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(InputError, match="unsupported sparse depth file"):
        read_sparse_file(tmp_path / "d.txt", SHAPE)
    with pytest.raises(InputError, match="no such file or folder"):
        sparse_for_image(tmp_path / "missing.png", None, SHAPE)


def test_folder_of_per_image_files_is_searched_by_name(tmp_path):
    folder = tmp_path / "known"
    (folder / "sub").mkdir(parents=True)
    np.save(folder / "sub" / "img.npy", _depth_map())
    np.save(folder / "other.npy", _depth_map())
    found = sparse_for_image(folder, tmp_path / "images" / "sub" / "img.jpg", SHAPE, name="sub/img")
    assert found.source.endswith("sub/img.npy")
    assert sparse_for_image(folder, tmp_path / "other.jpg", SHAPE).count == 3
    with pytest.raises(InputError, match="no sparse depth for 'missing'"):
        sparse_for_image(folder, tmp_path / "missing.jpg", SHAPE)
    (folder / "other.csv").write_text("x,y,depth_m\n1,1,2\n")
    with pytest.raises(InputError, match="several sparse depth files for 'other'"):
        sparse_for_image(folder, tmp_path / "other.jpg", SHAPE)
