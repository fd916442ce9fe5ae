"""A small run of `benchmarks/ray_scale.py` as a user runs it, so that the scale benchmark does not
rot: the Ray engine in its own process on generated PNGs, measured and written as JSON. Only that
the run completes and its numbers are consistent; never a timing assertion."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import require_extra

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ray_scale.py"


@pytest.fixture(autouse=True)
def _extras() -> None:
    require_extra("ray", "ray")
    require_extra("psutil", "test")


def test_small_scale_run_writes_complete_consistent_numbers(tmp_path: Path) -> None:
    results = tmp_path / "runs.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--counts", "24", "--compare", "0", "--work", str(tmp_path / "work"),
         "--json", str(results)],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    runs = json.loads(results.read_text())
    assert len(runs) == 1
    run = runs[0]
    assert run["engine"] == "ray" and run["complete"]
    assert run["inputs"] == 24 and run["done"] == 24 and run["images"] == 24
    assert run["driver_peak_rss_mib"] > 50  # the sampler saw the driver process itself
    assert 0 < run["first_result_s"] <= run["wall_s"]
    assert math.isfinite(run["steady_s_per_image"]) and run["steady_s_per_image"] > 0
    assert "| ray | 24 | 24 |" in completed.stdout
    assert not (tmp_path / "work" / "out").exists()  # the outputs of the run are removed
