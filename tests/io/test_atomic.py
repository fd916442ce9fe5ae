"""The atomic writer (primedepth.io.atomic): files and folders appear whole or not at all."""

from __future__ import annotations

import os

import numpy as np
import pytest

from primedepth.errors import InputError
from primedepth.io import atomic


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_path_leaves_nothing_on_failure_and_normal_permissions_on_success(tmp_path):
    target = tmp_path / "deep" / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list((tmp_path / "deep").iterdir()) == []
    with atomic.atomic_path(target) as temporary:
        temporary.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(target.parent.iterdir()) == [target]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_save_npy_atomic_writes_the_array_as_given_at_exactly_that_path(tmp_path):
    target = tmp_path / "cache" / "pred_0001.npy"
    array = np.arange(12, dtype=np.float64).reshape(3, 4)
    atomic.save_npy_atomic(target, array)
    loaded = np.load(target, allow_pickle=False)
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, array)
    assert list(target.parent.iterdir()) == [target]


def test_save_npy_atomic_keeps_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "pred.npy"
    atomic.save_npy_atomic(target, np.ones(3))
    with pytest.raises(ValueError):
        atomic.save_npy_atomic(target, np.array([object()], dtype=object))
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_directory_creates_a_new_folder_with_normal_permissions(tmp_path):
    target = tmp_path / "parent" / "model"
    with atomic.atomic_directory(target) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".")
        assert not target.exists()
        (staging / "weights.bin").write_bytes(b"w")
    assert (target / "weights.bin").read_bytes() == b"w"
    assert target.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in target.parent.iterdir()] == ["model"]


def test_atomic_directory_replaces_an_existing_folder_only_with_overwrite(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(InputError) as caught:
        with atomic.atomic_directory(target) as staging:
            pytest.fail("must refuse before yielding")
    assert str(caught.value) == (
        f"{target} exists and is not empty (use --overwrite to replace it)"
    )
    assert (target / "old.txt").read_text() == "old"
    with atomic.atomic_directory(target, overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_directory_fills_an_empty_existing_folder_without_overwrite(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    with atomic.atomic_directory(target) as staging:
        (staging / "a").write_text("a")
    assert (target / "a").read_text() == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_atomic_directory_failure_keeps_the_old_folder_and_no_staging(tmp_path, overwrite):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old")
    if not overwrite:
        (target / "old.txt").unlink()  # empty: allowed without overwrite
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(target, overwrite=overwrite) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert sorted(p.name for p in target.iterdir()) == (["old.txt"] if overwrite else [])


def test_atomic_directory_failure_without_a_destination_leaves_nothing(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_directory(target) as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "x").write_text("x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_refuses_a_file_in_the_way(tmp_path):
    target = tmp_path / "model"
    target.write_text("a file")
    with pytest.raises(InputError, match="not a directory"):
        with atomic.atomic_directory(target, overwrite=True):
            pass
    assert target.read_text() == "a file"
