"""The interleaved benchmark mode: rounds, ratio statistics, the worker on the tiny model, tables.

Only that rounds rotate and survive failures, that ratios are summarised as documented, that
every path runs and renders; never any timing assertion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the benchmark package lives beside its scripts, not in src/
    sys.path.append(str(BENCHMARKS))

from primedepth_bench import interleaved, interleaved_tables, paths, ratios, rounds, suite
from primedepth_bench.builders import make_inputs
from primedepth_bench.timing import Elapsed, ModuleClock

import primedepth.pipeline
from primedepth.model.forward import forward
from primedepth.testing import tiny_pipeline

CPU = torch.device("cpu")


def _fixed(name: str, seconds: float, calls: list[str]) -> paths.TimedPath:
    """A path that takes no time but reports `seconds`, and records that it was called."""

    def call():
        calls.append(name)
        return {"total": Elapsed(seconds, seconds), "stages": {"part": Elapsed(seconds / 2, seconds / 2)}}

    return paths.TimedPath(name, call)


def test_rounds_rotate_the_order_and_drop_a_failing_path():
    calls: list[str] = []

    def broken():
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    timed = [_fixed("a", 1.0, calls), _fixed("b", 2.0, calls), paths.TimedPath("c", broken)]
    outcome = rounds.run_rounds(timed, rounds.RoundPlan(warmup=1, min_rounds=3, max_rounds=3, pause=0))
    assert [r["order"] for r in outcome["rounds"]] == [["a", "b"], ["b", "a"], ["a", "b"]]
    assert outcome["failed"] == {"c": "out of memory"}
    assert len(outcome["warmup"]) == 1 and calls.count("a") == 4
    assert outcome["rounds"][0]["seconds"] == {"a": 1.0, "b": 2.0}
    assert outcome["rounds"][0]["cpu_stages"]["b"] == {"part": 1.0}


def test_rounds_adapt_to_the_budget_but_run_the_minimum():
    timed = [_fixed("a", 1.0, [])]
    plan = rounds.RoundPlan(warmup=0, min_rounds=2, max_rounds=50, budget=0.0, pause=0)
    assert len(rounds.run_rounds(timed, plan)["rounds"]) == 2
    plan = rounds.RoundPlan(warmup=0, min_rounds=2, max_rounds=5, budget=60.0, pause=0)
    assert len(rounds.run_rounds(timed, plan)["rounds"]) == 5


def test_ratio_statistics_and_ties():
    stats = ratios.ratio_stats([2.0, 4.0, 3.0], [1.0, 1.0, 2.0])
    assert (stats.median, stats.low, stats.high, stats.rounds) == (2.0, 1.5, 4.0, 3)
    assert stats.min_min == 2.0 and not stats.tie
    assert ratios.format_ratio(stats) == "2.00x [1.50-4.00]"
    tie = ratios.ratio_stats([0.9, 1.2, None], [1.0, 1.0, 1.0])
    assert tie.tie and tie.rounds == 2
    assert ratios.format_ratio(tie).startswith("tie (noise) 1.05x [0.90-1.20]")
    assert ratios.ratio_stats([None], [1.0]) is None and ratios.format_ratio(None) == ratios.DASH


def test_derived_floor_and_marigold_extrapolation_per_round():
    one_round = {"seconds": {"marigold:fp32": 10.0},
                 "stages": {"primedepth:fp32": {"vae_encode": 1.0, "depth_head": 2.0}, "capture:fp32": {"unet_bare": 3.0},
                            "marigold:fp32": {"unet": 4.0, "vae_decode": 5.0}}}
    assert ratios.floor_seconds("fp32")(one_round) == 6.0
    assert ratios.marigold_seconds("fp32", 4, 1)(one_round) == 10.0 + 3 * 4.0
    assert ratios.marigold_seconds("fp32", 50, 10)(one_round) == 10.0 + 499 * 4.0 + 9 * 5.0
    assert ratios.floor_seconds("bf16")(one_round) is None


def test_bf16_rows_compare_with_fp32_of_the_same_rounds():
    one_round = {"seconds": {"primedepth:fp32": 3.0, "primedepth:bf16": 2.0}, "cpu_seconds": {"primedepth:bf16": 4.0}}
    numerator, denominator = ratios.comparisons("bf16")["vs PrimeDepth fp32"]
    assert numerator(one_round) / denominator(one_round) == 1.5
    numerator, _ = ratios.comparisons("bf16", "cpu")["vs PrimeDepth fp32"]
    assert numerator(one_round) is None  # not on that clock: the ratio is missing, not wrong
    assert "vs PrimeDepth fp32" not in ratios.comparisons("fp32")


def test_module_clock_counts_nested_modules_once():
    inner = torch.nn.Linear(4, 4)
    outer = torch.nn.Sequential(inner, torch.nn.ReLU())
    with ModuleClock(CPU, {"both": [outer, inner], "alone": [inner]}) as clock:
        outer(torch.ones(1, 4))
        outer(torch.ones(1, 4))
    assert 0 < clock.elapsed["alone"].wall <= clock.elapsed["both"].wall
    assert not outer._forward_hooks and not inner._forward_pre_hooks  # removed on exit


def test_primedepth_path_calls_the_model_forward_and_times_its_stages_inside():
    pipeline = tiny_pipeline()
    path = paths.primedepth_path("p", pipeline, make_inputs(pipeline, 1, 64, CPU), CPU)
    with mock.patch.object(primedepth.pipeline, "forward", wraps=forward) as spy:
        measured = path.call()
    assert spy.call_count == 1 and measured["finite"]
    assert set(measured["stages"]) == {"vae_encode", "depth_head", "walk_refiner"}
    assert all(measured["stages"][name].wall > 0 for name in ("vae_encode", "depth_head"))


def _spec(**extra):
    spec = {"device": "cpu", "scale": "tiny", "dtypes": ["fp32"], "settings": [[64, 1]], "channels_last": True,
            "modes": list(suite.MODES), "dav2_size": 56, "warmup": 0, "min_rounds": 2, "max_rounds": 2, "pause": 0}
    return dict(spec, **extra)


def test_worker_times_every_path_in_rounds_and_renders():
    events: list[dict] = []
    interleaved.run_worker(_spec(), events.append)
    built, setting = events
    assert built["event"] == "built" and setting["event"] == "setting"
    assert not setting["failed"] and len(setting["rounds"]) == 2
    expected = {f"{mode}:fp32" for mode in ("primedepth", "capture", "marigold", "dav2", "official")}
    assert set(setting["rounds"][0]["seconds"]) == expected
    report = {"kind": "interleaved", "workers": [{"spec": _spec(), "status": "ok", "events": events}]}
    text = interleaved_tables.format_interleaved(report)
    assert "| 64 | fp32 | 1 | 2 |" in text and "floor (derived)" in text and "CPU time" in text
    assert "min/min" in text and "Not measured" not in text
    json.dumps(report)


def test_models_are_shared_in_fp32():
    models = interleaved.build_models(_spec(dtypes=["fp32", "bf16"]))
    fp32 = models.primedepth["fp32"]
    assert fp32.unet is models.official.unet and fp32.vae is not models.official.vae  # channels-last copy
    assert models.marigold["fp32"].vae is models.official.vae and models.marigold["bf16"].vae is not models.official.vae
    assert models.primedepth["bf16"].segmentation_head is None


@pytest.mark.parametrize("processes, workers", [("per-dtype", 2), ("one", 1), ("per-setting", 4)])
def test_worker_grouping(processes, workers):
    args = suite.parse_args(["--scale", "tiny", "--sizes", "64", "96", "--batch-sizes", "1", "--dtypes", "fp32", "bf16", "--processes", processes,
                             "--device", "cpu"])
    specs = interleaved.worker_specs(args)
    assert len(specs) == workers
    pairs = sorted((tuple(setting), dtype) for spec in specs for setting in spec["settings"] for dtype in spec["dtypes"])
    assert pairs == sorted(((size, 1), dtype) for size in (64, 96) for dtype in ("fp32", "bf16"))


def test_interleaved_command_and_re_rendering(tmp_path):
    """The whole default command (one worker subprocess), then --from-json gives the same tables."""
    output, markdown = tmp_path / "run.json", tmp_path / "run.md"
    argv = ["--scale", "tiny", "--sizes", "64", "--dtypes", "fp32", "--batch-sizes", "1", "--rounds", "2", "--warmup", "0",
            "--pause", "0", "--modes", "primedepth", "official", "--device", "cpu", "--threads", "1", "--dav2-size", "56",
            "--json", str(output), "--markdown", str(markdown)]
    assert suite.main(argv) == 0
    saved = json.loads(output.read_text())
    assert saved["kind"] == "interleaved" and saved["workers"][0]["status"] == "ok"
    assert "Load average" in markdown.read_text() and "vs official (time)" in markdown.read_text()
    again = tmp_path / "again.md"
    assert suite.main(["--from-json", str(output), "--markdown", str(again)]) == 0
    tables = markdown.read_text().split("Load average", 1)[1]
    assert tables in again.read_text()


def test_capture_path_times_each_kernel_and_renders_their_ratio():
    """With both capture kernels the walk runs once per kernel; `unet_preimage` is the default
    kernel's walk (not a third run), and the tables show the kernel ratio and rows."""
    events: list[dict] = []
    interleaved.run_worker(_spec(modes=["capture"], capture_kernels=["chunked", "padded-sdpa"]), events.append)
    setting = events[-1]
    assert set(setting["rounds"][0]["seconds"]) == {"capture:fp32"}  # capture alone needs no PrimeDepth call
    stages = setting["rounds"][0]["stages"]["capture:fp32"]
    assert {"unet_preimage[chunked]", "unet_preimage[padded-sdpa]", "unet_preimage", "refiner", "unet_bare"} == set(stages)
    default = paths.default_self_capture(CPU, torch.float32, 8 * 8)
    assert stages["unet_preimage"] == stages[f"unet_preimage[{default}]"]
    report = {"kind": "interleaved", "workers": [{"spec": _spec(), "status": "ok", "events": events}]}
    text = interleaved_tables.format_interleaved(report)
    assert "capture chunked / padded SDPA" in text and "capture, chunked kernel" in text and "capture, padded-sdpa kernel" in text
