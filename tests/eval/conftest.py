"""Fixtures of the evaluation tests: one folder of tiny archives in the official layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from .eval_archive_builders import build_all


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> tuple[Path, dict]:
    """(download folder, ground truth per dataset and image) built once per session."""
    root = tmp_path_factory.mktemp("evaluation_dataset")
    return root, build_all(root)
