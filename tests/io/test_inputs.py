"""Finding inputs (primedepth.io.inputs): folders, globs, list files, names, exclusions."""

from __future__ import annotations

import os

from pathlib import Path, PurePosixPath

import pytest

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
    [unmatched] = inputs.expand_inputs([str(tree / "*.gif")])
    assert unmatched.kind == "invalid" and "no file matches" in unmatched.error


def test_list_file_resolves_relative_to_itself(tree):
    listing = tree / "list.txt"
    listing.write_text(f"# inputs\nsub/c.webp\n\n{tree / 'a.jpg'}\n")
    items = inputs.expand_inputs([listing])
    assert _names(items) == ["sub/c", "a"]
    assert items[0].path == tree / "sub" / "c.webp"
    listing.write_text("missing.png\nsub/c.webp\nother-missing.jpg\n")
    items = inputs.expand_inputs([listing])
    assert [item.kind for item in items] == ["invalid", "image", "invalid"]  # every missing entry named
    assert items[0].label.endswith("line 1: missing.png") and items[0].error == "no such file"
    assert items[2].label.endswith("line 3: other-missing.jpg")


def test_single_files_duplicates_and_collisions(tree, tmp_path):
    assert _names(inputs.expand_inputs([tree / "a.jpg", tree, tree / "a.jpg"])) == ["a", "b"]
    (tmp_path / "a.png").write_bytes(b"x")
    clash = inputs.expand_inputs([tree / "a.jpg", tmp_path / "a.png", tree / "b.png"])
    assert [item.kind for item in clash] == ["invalid", "invalid", "image"]  # the rest still runs
    assert "both write outputs named 'a'; pass their common folder" in clash[0].error
    (tree / "b.jpg").write_bytes(b"x")  # a clash inside one folder: the advice is to rename
    in_folder = inputs.expand_inputs([tree])
    assert "rename one of them" in next(item.error for item in in_folder if item.kind == "invalid")
    (tmp_path / "shot.jpg").write_bytes(b"x")
    (tmp_path / "shot.mp4").write_bytes(b"x")
    kinds = {item.kind for item in inputs.expand_inputs([tmp_path / "shot.jpg", tmp_path / "shot.mp4"])}
    assert kinds == {"image", "video"}  # same stem, different kind: different outputs, both run


def test_unsupported_and_missing_paths_are_reported(tree):
    unsupported, missing = inputs.expand_inputs([tree / "notes.md", tree / "nope.jpg"])
    assert "unsupported file type '.md'" in unsupported.error and missing.error == "no such file or directory"


@pytest.mark.parametrize("content, reason", [
    (b"\xff\xfe\x00i\x00m\x00g", "binary data"),
    ("café.jpg\n".encode("latin-1"), "not a UTF-8 text list"),
])
def test_bad_list_files_are_one_line_errors(tmp_path, content, reason):
    listing = tmp_path / "list.txt"
    listing.write_bytes(content)
    [item] = inputs.expand_inputs([listing])
    assert item.kind == "invalid" and reason in item.error and str(listing) == item.label


def test_unreadable_folders_are_reported(tree, monkeypatch):
    """Permissions are simulated: the tests may run as root, who reads every folder."""
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == tree / "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = inputs.expand_inputs([tree], recursive=True)
    assert _names([i for i in items if i.kind != "invalid"]) == ["a", "b"]
    [locked] = [i for i in items if i.kind == "invalid"]
    assert locked.label == str(tree / "sub") and "cannot read this folder (Permission denied)" == locked.error
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tree)
    [top] = inputs.expand_inputs([tree])
    assert top.error == "cannot read this folder (permission denied)"


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


def test_the_obj_material_and_texture_are_outputs_never_inputs():
    from primedepth.io import looks_like_output

    assert looks_like_output(PurePosixPath("room_mesh_texture.png"))
    assert looks_like_output(PurePosixPath("room_mesh.mtl"))
    assert not looks_like_output(PurePosixPath("room_texture.png"))
