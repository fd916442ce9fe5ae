"""Smoke tests of the benchmark package on tiny models, so that it does not rot.

Only that every run completes, gives finite outputs and formats, and that the official-style
reference computes what PrimeDepth computes; never any timing assertion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:  # the benchmark package lives beside its scripts, not in src/
    sys.path.append(str(BENCHMARKS))

from primedepth_bench import (
    builders,
    official_style,
    runners,
    suite,
    tables,
    tensor_memory,
)
from primedepth_bench.builders import make_inputs
from primedepth_bench.stages import encode_call, walk_call

import primedepth.pipeline
from primedepth.model.forward import forward
from primedepth.model.preimage import add_step_noise
from primedepth.testing import tiny_pipeline

CPU = torch.device("cpu")
FP32 = torch.float32


def _common(result):
    assert result["total"] > 0 and result["peak_memory"] > 0
    assert result["finite"]


def _walk(pipeline, inputs, processor=None):
    """The walk of the inputs (fused capture unless `processor` is given), its steps materialised."""
    latents = encode_call(pipeline, inputs, FP32)()
    return latents, walk_call(pipeline, latents, inputs.context, inputs.noise.step, processor)()


def test_primedepth_official_floor_and_capture_runs():
    pipeline = tiny_pipeline()
    inputs = make_inputs(pipeline, batch=2, size=64, device=CPU)
    ours = runners.run_primedepth(pipeline, inputs, FP32, CPU, repeats=1, warmup=0)
    _common(ours)
    assert set(ours["stages"]) == {"vae_encode", "unet_preimage", "refiner", "depth_head", "seg_head"}
    text_encoder = builders.build_text_encoder("tiny", CPU)
    official = official_style.run_official(pipeline, inputs, CPU, repeats=1, warmup=0, text_encoder=text_encoder)
    _common(official)
    assert set(official["stages"]) == {"text_encode", "vae_encode", "unet_preimage", "unet_tail", "refiner", "depth_head", "seg_head"}
    capture = runners.run_capture_overhead(pipeline, inputs, FP32, CPU, repeats=1, warmup=0)
    _common(capture)
    assert {"unet_preimage", "unet_bare"} <= set(capture["stages"])
    floor = runners.run_floor(pipeline, inputs, FP32, CPU, repeats=1, warmup=0)
    _common(floor)
    assert set(floor["stages"]) == {"vae_encode", "unet_bare", "depth_head"}
    common = {"size": 64, "batch": 2, "device": "cpu", "status": "ok"}
    results = [
        dict(capture, mode="capture", dtype="fp32", **common),
        dict(ours, mode="primedepth", dtype="fp32", **common),
        dict(official, mode="official", dtype="fp32", **common),
        dict(floor, mode="floor", dtype="fp32", **common),
    ]
    table = tables.format_tables(results)
    assert "| 64 | fp32 | 2 |" in table and "x |" in table
    json.dumps(results)  # results are JSON-serialisable


def test_primedepth_is_timed_through_the_model_forward():
    """The end-to-end timing runs `primedepth.model.forward` (via `predict_raw`), not a copy of it."""
    pipeline = tiny_pipeline()
    inputs = make_inputs(pipeline, batch=1, size=64, device=CPU)
    with mock.patch.object(primedepth.pipeline, "forward", wraps=forward) as spy:
        runners.run_primedepth(pipeline, inputs, FP32, CPU, repeats=2, warmup=1, stages=False)
    assert spy.call_count == 3


def test_unet_tail_timed_for_the_official_path_completes_the_unet():
    """The tail after the last decoder step gives SD's own output: the official path's extra work."""
    pipeline = tiny_pipeline()
    inputs = make_inputs(pipeline, batch=1, size=64, device=CPU)
    with torch.no_grad():
        latents, preimage = _walk(pipeline, inputs)
        tail = official_style.unet_tail(pipeline.unet, preimage.steps[-1], preimage.temb, preimage.context)
        noisy = add_step_noise(pipeline.scheduler, latents, inputs.noise.step)
        full = pipeline.unet(noisy, torch.ones(1, dtype=torch.long), encoder_hidden_states=inputs.context).sample
    torch.testing.assert_close(tail, full, rtol=0, atol=1e-5 * full.abs().max().item())


def test_official_style_maps_match_the_fused_capture():
    """The reference computes the same preimage as the pipeline (else the comparison is unfair),
    really with its own attention, and gives the UNet its processors back."""
    pipeline = tiny_pipeline()
    inputs = make_inputs(pipeline, batch=1, size=64, device=CPU)
    own = pipeline.unet.attn_processors
    with torch.no_grad():
        _, fused = _walk(pipeline, inputs)
        with official_style.official_style_attention(pipeline.unet) as processor:
            _, explicit = _walk(pipeline, inputs, processor)
    assert processor.recorded > 0
    assert pipeline.unet.attn_processors == own
    for a, b in zip(fused.steps, explicit.steps, strict=True):
        torch.testing.assert_close(a.features, b.features, rtol=1e-4, atol=1e-4)
        if a.attention is not None:
            torch.testing.assert_close(a.attention, b.attention, rtol=1e-4, atol=1e-4)


def test_tables_from_json_files(tmp_path):
    """--from-json merges result files (a later one replaces the same configuration) and reports failures."""
    row = {"size": 64, "batch": 1, "device": "cpu", "dtype": "fp32", "peak_memory": 2**30, "resident_before": 2**29,
           "finite": True}
    first = [dict(row, mode="primedepth", status="ok", total=2.0, stages={"unet_preimage": 1.0}),
             dict(row, mode="official", status="timeout > 10 s")]
    second = [dict(row, mode="primedepth", status="ok", total=1.0, stages={"unet_preimage": 0.5}),
              dict(row, mode="marigold", status="not run: time budget spent")]
    paths = []
    for index, results in enumerate((first, second)):
        paths.append(tmp_path / f"r{index}.json")
        paths[-1].write_text(json.dumps({"machine": "test machine", "results": results}))
    markdown = tmp_path / "table.md"
    assert suite.main(["--from-json", *map(str, paths), "--markdown", str(markdown)]) == 0
    table = markdown.read_text()
    assert "| 64 | fp32 | 1 | 1.00 |" in table and "timeout > 10 s" in table and "not run: time budget spent" in table


def test_build_from_meta_and_baselines():
    pipeline = builders.build_primedepth("tiny", torch.bfloat16, CPU)
    assert pipeline.unet.dtype == torch.bfloat16 and pipeline.segmentation_head is not None
    inputs = make_inputs(pipeline, batch=1, size=64, device=CPU)
    _common(runners.run_primedepth(pipeline, inputs, torch.bfloat16, CPU, repeats=1, warmup=0, stages=False))
    marigold = builders.build_marigold("tiny", FP32, CPU)
    result = runners.run_marigold(marigold, make_inputs(marigold, batch=1, size=64, device=CPU), FP32, CPU, repeats=1, warmup=0)
    _common(result)
    assert set(result["extrapolated"]) == set(runners.MARIGOLD_PROTOCOLS)
    dav2 = builders.build_dav2("tiny", FP32, CPU)
    _common(runners.run_dav2(dav2, batch=1, dtype=FP32, device=CPU, repeats=1, warmup=0, size=56))


def test_cli_plan_and_quick_arguments():
    args = suite.parse_args(["--quick", "--device", "cpu"])
    assert args.sizes == [256] and args.repeats == 1
    specs = suite.plan(args)
    assert {spec["mode"] for spec in specs} == set(suite.MODES)
    assert specs[0]["mode"] == "capture"
    assert [spec["size"] for spec in specs if spec["mode"] == "dav2"] == [252]
    args = suite.parse_args(["--sizes", "512", "768", "--dtypes", "fp32", "bf16", "--batch-sizes", "1", "--device", "cpu"])
    official = [spec for spec in suite.plan(args) if spec["mode"] == "official"]
    assert [spec["dtype"] for spec in official] == ["fp32", "fp32"]  # the baseline is always fp32


def test_suite_runs_a_configuration_in_a_subprocess(tmp_path):
    """The whole isolated command: plan, one worker subprocess, JSON and markdown written."""
    output = tmp_path / "results.json"
    argv = ["--isolated", "--scale", "tiny", "--sizes", "64", "--dtypes", "fp32", "--batch-sizes", "1", "--repeats", "1",
            "--warmup", "0", "--modes", "primedepth", "--device", "cpu", "--threads", "1", "--json", str(output)]
    assert suite.main(argv) == 0
    (result,) = json.loads(output.read_text())["results"]
    assert result["status"] == "ok", result["status"]
    _common(result)


def test_live_tensor_tracker_counts_allocations_and_frees():
    tracker = tensor_memory.LiveTensorBytes()
    with tracker:
        first = torch.ones(1000)  # 4,000 bytes
        second = first * 2  # +4,000
        view = second[:10]  # same storage: not counted again
        del first
        third = torch.zeros(250)  # +1,000 after 4,000 were freed
    assert tracker.peak == 8000 and tracker.live == 5000
    del second, view, third
    assert tracker.live == 0


def test_live_tensor_tracker_counts_new_storages_only():
    """Views and in-place results of existing tensors (weights) are not new memory; freed ones leave."""
    weight = torch.zeros(1000, 1000)
    with tensor_memory.LiveTensorBytes() as tracker:
        weight.t()
        weight.add_(1.0)
        assert tracker.live == 0
        fresh = weight * 2
        assert tracker.live == 4_000_000
        del fresh
        assert tracker.live == 0 and tracker.peak == 4_000_000


def test_peak_memory_script_runs_every_mode(capsys):
    ours = tensor_memory.measure("primedepth", 64, "fp32", batch=2, scale="tiny")
    official = tensor_memory.measure("official", 64, "fp32", scale="tiny")
    assert ours["activations"] > 0 and official["weights"] > ours["weights"]  # + text tower, segmentation head
    stages = tensor_memory.measure_stages(64, "fp32", scale="tiny")
    assert set(stages) == {"VAE encoder", "UNet walk + refiner", "depth head"} and min(stages.values()) > 0
    assert tensor_memory.main(["--sizes", "64", "--scale", "tiny", "--stages"]) == 0
    assert "| 64 | bf16 | depth head |" in capsys.readouterr().out
