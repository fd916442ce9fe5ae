"""Shared test setup: offline hub, one thread, the shared official fixtures (see `fixtures`) and
the optional extras (see `extras`)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from .extras import MARK, check_marks  # noqa: E402
from .fixtures import OFFICIAL_FIXTURES, require_fixture  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARK}(module, extra): needs an optional extra (see tests/extras.py)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_marks(item)


@pytest.fixture(scope="session")
def official_fixtures() -> Path:
    return require_fixture(OFFICIAL_FIXTURES)
