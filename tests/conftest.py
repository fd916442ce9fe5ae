"""Shared test setup: offline hub, one thread, paths to the shared official fixtures."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFICIAL_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "official"


@pytest.fixture(scope="session")
def official_fixtures() -> Path:
    if not OFFICIAL_FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {OFFICIAL_FIXTURES}")
    return OFFICIAL_FIXTURES
