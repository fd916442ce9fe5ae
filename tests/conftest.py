"""Shared test setup: offline hub, one thread, the shared official fixtures (see `fixtures`)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from .fixtures import OFFICIAL_FIXTURES, require_fixture  # noqa: E402


@pytest.fixture(scope="session")
def official_fixtures() -> Path:
    return require_fixture(OFFICIAL_FIXTURES)
