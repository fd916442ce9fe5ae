"""Fixtures of the engine tests: the tiny random model, saved once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from primedepth.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
