"""Fixtures for the training tests (the scene writers live in `train_scenes`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from .train_scenes import Scenes, write_hypersim, write_vkitti


@pytest.fixture
def hypersim_scenes(tmp_path: Path) -> Scenes:
    return write_hypersim(tmp_path / "hypersim")


@pytest.fixture
def vkitti_scenes(tmp_path: Path) -> Scenes:
    return write_vkitti(tmp_path / "vkitti")
