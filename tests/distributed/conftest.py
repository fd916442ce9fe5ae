"""Shared by the Ray engine tests: the tiny random model, saved once for the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from primedepth.testing import save_tiny_model


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
