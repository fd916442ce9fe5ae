"""Tests of optional extras: skip with the install command locally, fail under CI=true.

A test that needs an optional package (Ray, trimesh, plyfile, OpenEXR, OpenCV, FastAPI, Gradio,
Playwright, moto, ...) must say so, not pass silently: CI installs every extra, so a missing one
there means a broken install, and the run fails instead of reporting green with tests skipped.

- `require_extra("trimesh", "3d")` inside a test or at module level returns the module;
- `@pytest.mark.requires_extra("cv2", "video")` on a test or a `pytest.param` does the same
  check before the test runs (registered and applied in `tests/conftest.py`);
- `skip_or_fail(message)` is the one place that decides between the two (also used by
  `tests/fixtures.py` for the shared fixtures).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest

MARK = "requires_extra"


def under_ci() -> bool:
    """Whether missing test prerequisites must fail the run (CI=true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test (or module) with `message`; fail it instead under CI=true."""
    if under_ci():
        pytest.fail(f"{message} (CI=true: required)", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def require_extra(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import `module`, which the optional extra `extra` installs; skip (fail under CI) if missing.

    `purpose` ("the HTTP API") only makes the message say what needs the module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        needed_by = f"{purpose} needs {module}" if purpose else f"{module} is needed"
        skip_or_fail(
            f"{needed_by} but it cannot be imported ({error}); install the extra: pip install 'primedepth[{extra}]' "
            f"(from a checkout: pip install -e '.[{extra}]')"
        )


def check_marks(item: pytest.Item) -> None:
    """Apply every `requires_extra(module, extra)` mark of a collected test before it runs."""
    for mark in item.iter_markers(MARK):
        require_extra(*mark.args, **mark.kwargs)
