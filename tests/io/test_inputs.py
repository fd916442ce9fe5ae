"""Finding inputs (primedepth.io.inputs): folders, globs, list files, names, exclusions."""

from __future__ import annotations

from pathlib import Path

import pytest

from primedepth.errors import InputError
from primedepth.io import inputs


@pytest.fixture()
def tree(tmp_path) -> Path:
    """data/a.jpg, data/b.png, data/notes.md, data/sub/c.webp, data/sub/clip.mp4"""
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.webp", "sub/clip.mp4"):
        (root / name).write_bytes(b"x")
    (root / "notes.md").write_text("not an input")
    return root


def _names(items) -> list[str]:
    return [str(item.name) for item in items]


def test_directory_lists_direct_media_files(tree):
    assert _names(inputs.expand_inputs([tree])) == ["a", "b"]


def test_recursive_directory_mirrors_the_tree(tree):
    items = inputs.expand_inputs([tree], recursive=True)
    assert _names(items) == ["a", "b", "sub/c", "sub/clip"]
    assert [item.kind for item in items] == ["image", "image", "image", "video"]


def test_glob_is_named_relative_to_its_fixed_folder(tree):
    items = inputs.expand_inputs([str(tree / "**" / "*.webp")], recursive=True)
    assert _names(items) == ["sub/c"]
    with pytest.raises(InputError, match="no file matches"):
        inputs.expand_inputs([str(tree / "*.gif")])


def test_list_file_resolves_relative_to_itself(tree):
    listing = tree / "list.txt"
    listing.write_text(f"# inputs\nsub/c.webp\n\n{tree / 'a.jpg'}\n")
    items = inputs.expand_inputs([listing])
    assert _names(items) == ["sub/c", "a"]
    assert items[0].path == tree / "sub" / "c.webp"
    listing.write_text("missing.png\n")
    with pytest.raises(InputError, match="line 1"):
        inputs.expand_inputs([listing])


def test_single_files_duplicates_and_collisions(tree, tmp_path):
    assert _names(inputs.expand_inputs([tree / "a.jpg", tree, tree / "a.jpg"])) == ["a", "b"]
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="both write outputs named 'a'"):
        inputs.expand_inputs([tree / "a.jpg", tmp_path / "a.png"])


def test_unsupported_and_missing_paths_are_refused(tree):
    with pytest.raises(InputError, match="unsupported file type '.md'"):
        inputs.expand_inputs([tree / "notes.md"])
    with pytest.raises(InputError, match="no such file or directory"):
        inputs.expand_inputs([tree / "nope.jpg"])


def test_earlier_outputs_are_not_taken_as_inputs(tree):
    inner = tree / "out"
    (inner / "x").mkdir(parents=True)
    (inner / "a_depth_color.png").write_bytes(b"x")
    assert _names(inputs.expand_inputs([tree], recursive=True, output_dir=inner)) == [
        "a", "b", "sub/c", "sub/clip"
    ]
    for name in ("a_depth.png", "a_depth_color.png", "clip_frames/000000_depth.png"):
        (tree / name).parent.mkdir(exist_ok=True)
        (tree / name).write_bytes(b"x")
    items = inputs.expand_inputs([tree], recursive=True, output_dir=tree)
    assert "a_depth" not in _names(items) and "clip_frames/000000_depth" not in _names(items)
    assert "a" in _names(items)
