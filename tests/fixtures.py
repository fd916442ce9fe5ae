"""Where the shared official fixtures are, and what happens when they are missing.

`PRIMEDEPTH_FIXTURES` names the fixtures folder (default: ../shared/fixtures next to the
repository). A test that needs a missing fixture is skipped with a message saying where to get
it, except under CI=true, where a missing fixture fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

from .extras import skip_or_fail

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_ROOT = Path(os.environ.get("PRIMEDEPTH_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))
OFFICIAL_FIXTURES = FIXTURES_ROOT / "official"


def require_fixture(path: Path) -> Path:
    """`path` if it exists; otherwise skip the test (fail it under CI=true) saying where to get it."""
    if path.exists():
        return path
    message = (
        f"shared fixture {path} not found: the golden tensors of the official code live in the project's "
        "shared/fixtures folder (set PRIMEDEPTH_FIXTURES to its location)"
    )
    skip_or_fail(message)


def tiny_checkpoint() -> tuple[Path, Path]:
    """The official tiny checkpoint and its config.yaml (skip, or fail under CI=true, when absent)."""
    tiny = OFFICIAL_FIXTURES / "tiny"
    return require_fixture(tiny / "official-tiny.ckpt"), require_fixture(tiny / "config.yaml")
