"""Fixtures of the serving tests: a tiny model folder, its reference pipeline, live servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from primedepth.loading import load_pipeline
from primedepth.testing import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("serve") / "tiny-model")


@pytest.fixture(scope="session")
def reference(tiny_model: Path) -> Any:
    """The pipeline `primedepth.predict` runs in the comparisons (loaded apart from any server's)."""
    return load_pipeline(tiny_model, "cpu")
