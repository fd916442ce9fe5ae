"""The GPU check on the CPU with the tiny model: every part runs and is written; guards hold.

A smoke run only (about half a minute): no timing or memory assertion.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the benchmark package lives beside its scripts, not in src/
    sys.path.append(str(BENCHMARKS))

from primedepth_bench import check_report, gpu_check


def test_gpu_check_smoke_on_cpu(tmp_path):
    argv = [str(tmp_path), "--device", "cpu", "--scale", "tiny", "--sizes", "64", "--batch-sizes", "1", "--rounds", "2",
            "--warmup", "0", "--pause", "0", "--compile-modules", "head", "--threads", "1"]
    assert gpu_check.main(argv) == 0
    saved = json.loads((tmp_path / "gpu-check.json").read_text())
    assert {row["part"] for row in saved["rows"]} == set(gpu_check.PARTS)
    bad = [row for row in saved["rows"] if row["status"] != "ok"]
    assert not bad, bad
    assert set(saved["data"]["precision"]) == {"fp16", "bf16"} and len(saved["data"]["memory"]) == 2
    table = (tmp_path / "gpu-check.md").read_text()
    assert table.count("| part | configuration |") == 1  # one table
    assert "vs official (time)" in table and "eager / compiled" in table and "relative RMS: refiner" in table


def test_a_failing_configuration_is_a_row_and_the_rest_runs():
    report = check_report.CheckReport()

    def out_of_memory():
        raise RuntimeError("CUDA out of memory. Tried to allocate 40.00 GiB")

    check_report.guarded(report, "timing", "1024 batch 8", out_of_memory)
    check_report.guarded(report, "timing", "512 batch 1", lambda: report.add("timing", "512 batch 1", "x", "1"))
    assert [row["status"] for row in report.rows] == ["out of memory", "ok"]


def test_the_budget_stops_a_long_call():
    budget = check_report.Budget(0.2)
    with pytest.raises(check_report.BudgetSpent), check_report.alarm_at_end_of(budget):
        while True:
            time.sleep(0.01)
    time.sleep(0.3)  # the alarm is off again: nothing fires here


def test_a_part_that_fails_or_has_no_time_left_is_reported(monkeypatch, tmp_path):
    def broken(args, report, budget, state):
        raise ValueError("compile error")

    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "precision", broken)
    args = gpu_check.parse_args([str(tmp_path), "--device", "cpu", "--scale", "tiny"])
    report = check_report.CheckReport()
    gpu_check.run_part("precision", args, report, check_report.Budget(100), {})
    gpu_check.run_part("timing", args, report, check_report.Budget(1), {})
    assert [row["status"] for row in report.rows] == ["failed: ValueError: compile error", "not run: time budget spent"]


def test_the_shell_wrapper_reaches_the_check_in_one_command():
    """`bash benchmarks/gpu_check.sh ...` with an interpreter that has primedepth: no install, a
    note on the GPU it sees, then gpu_check.py with the arguments (here --help: the smoke run
    above covers the check itself)."""
    import os
    import subprocess

    env = dict(os.environ, PYTHON=sys.executable)
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_check.sh"), "--help"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "installing" not in done.stderr and "gpu_check:" in done.stderr
    assert "--parts" in done.stdout
