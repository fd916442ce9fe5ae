"""Smoke tests of the benchmark scripts on tiny models, so they do not rot.

Only that every run completes, gives finite outputs and formats; never any timing assertion.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from primedepth.testing import tiny_pipeline

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CPU = torch.device("cpu")


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_script("benchmark_inference")


@pytest.fixture(scope="module")
def peak():
    return _load_script("peak_tensor_memory")


def _common(result):
    assert result["total"] > 0 and result["peak_memory"] > 0
    assert result["finite"]


def test_primedepth_official_and_floor_runs(bench):
    pipeline = tiny_pipeline()
    inputs = bench.make_inputs(pipeline, batch=2, size=64, device=CPU)
    ours = bench.run_primedepth(pipeline, inputs, torch.float32, CPU, repeats=1, warmup=0)
    _common(ours)
    assert set(ours["stages"]) == {"vae_encode", "unet_preimage", "refiner", "depth_head", "seg_head"}
    official = bench.run_official(pipeline, inputs, CPU, repeats=1, warmup=0, text_encoder=bench.build_text_encoder("tiny", CPU))
    _common(official)
    assert set(official["stages"]) == {"text_encode", "vae_encode", "unet_preimage", "unet_tail", "refiner", "depth_head", "seg_head"}
    capture = bench.run_capture_overhead(pipeline, inputs, torch.float32, CPU, repeats=1, warmup=0)
    _common(capture)
    assert {"unet_preimage", "unet_bare"} <= set(capture["stages"])
    floor = bench.run_floor(pipeline, inputs, torch.float32, CPU, repeats=1, warmup=0)
    _common(floor)
    assert set(floor["stages"]) == {"vae_encode", "unet_bare", "depth_head"}
    common = {"size": 64, "batch": 2, "device": "cpu", "status": "ok"}
    results = [
        dict(capture, mode="capture", dtype="fp32", **common),
        dict(ours, mode="primedepth", dtype="fp32", **common),
        dict(official, mode="official", dtype="fp32", **common),
        dict(floor, mode="floor", dtype="fp32", **common),
    ]
    table = bench.format_tables(results)
    assert "| 64 | fp32 | 2 |" in table and "x |" in table
    json.dumps(results)  # results are JSON-serialisable


def test_unet_tail_timed_for_the_official_path_completes_the_unet(bench):
    """The tail after the last decoder step gives SD's own output: the official path's extra work."""
    from primedepth.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding

    pipeline = tiny_pipeline()
    inputs = bench.make_inputs(pipeline, batch=1, size=64, device=CPU)
    unet = pipeline.unet
    with torch.no_grad():
        latents = encode_latents(pipeline.vae, inputs["pixels"], inputs["posterior_noise"])
        noisy = add_step_noise(pipeline.scheduler, latents, inputs["step_noise"])
        temb = timestep_embedding(unet, noisy)
        last = list(iter_decoder_steps(unet, noisy, temb, inputs["context"]))[-1]
        tail = bench._unet_tail(unet, last.features, temb, inputs["context"])
        full = unet(noisy, torch.ones(1, dtype=torch.long), encoder_hidden_states=inputs["context"]).sample
    torch.testing.assert_close(tail, full, rtol=0, atol=1e-5 * full.abs().max().item())


def test_tables_from_json_files(bench, tmp_path, capsys):
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
    assert bench.main(["--from-json", *map(str, paths), "--markdown", str(markdown)]) == 0
    table = markdown.read_text()
    assert "| 64 | fp32 | 1 | 1.00 |" in table and "timeout > 10 s" in table and "not run: time budget spent" in table


def test_official_style_maps_match_the_fused_capture(bench):
    """The baseline computes the same preimage as the pipeline (else the comparison is unfair)."""
    from primedepth.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding

    pipeline = tiny_pipeline()
    inputs = bench.make_inputs(pipeline, batch=1, size=64, device=CPU)
    with torch.no_grad():
        latents = encode_latents(pipeline.vae, inputs["pixels"], inputs["posterior_noise"])
        noisy = add_step_noise(pipeline.scheduler, latents, inputs["step_noise"])
        temb = timestep_embedding(pipeline.unet, noisy)
        fused = list(iter_decoder_steps(pipeline.unet, noisy, temb, inputs["context"]))
        bench.install_official_style_processors(pipeline.unet)
        explicit = list(iter_decoder_steps(pipeline.unet, noisy, temb, inputs["context"]))
    for a, b in zip(fused, explicit, strict=True):
        torch.testing.assert_close(a.features, b.features, rtol=1e-4, atol=1e-4)
        if a.attention is not None:
            torch.testing.assert_close(a.attention, b.attention, rtol=1e-4, atol=1e-4)


def test_build_from_meta_and_baselines(bench):
    pipeline = bench.build_primedepth("tiny", torch.bfloat16, CPU)
    assert pipeline.unet.dtype == torch.bfloat16 and pipeline.segmentation_head is not None
    inputs = bench.make_inputs(pipeline, batch=1, size=64, device=CPU)
    _common(bench.run_primedepth(pipeline, inputs, torch.bfloat16, CPU, repeats=1, warmup=0, stages=False))
    marigold = bench.build_marigold("tiny", torch.float32, CPU)
    result = bench.run_marigold(marigold, inputs, torch.float32, CPU, repeats=1, warmup=0)
    _common(result)
    assert set(result["extrapolated"]) == set(bench.MARIGOLD_PROTOCOLS)
    dav2 = bench.build_dav2("tiny", torch.float32, CPU)
    _common(bench.run_dav2(dav2, batch=1, dtype=torch.float32, device=CPU, repeats=1, warmup=0, size=56))


def test_cli_plan_and_quick_arguments(bench):
    args = bench.parse_args(["--quick", "--device", "cpu"])
    assert args.sizes == [256] and args.repeats == 1
    modes = {spec["mode"] for spec in bench.plan(args)}
    assert modes == set(bench.MODES)
    assert bench.plan(args)[0]["mode"] == "capture"
    args = bench.parse_args(["--sizes", "512", "768", "--dtypes", "fp32", "bf16", "--batch-sizes", "1", "--device", "cpu"])
    official = [spec for spec in bench.plan(args) if spec["mode"] == "official"]
    assert [spec["dtype"] for spec in official] == ["fp32", "fp32"]  # the baseline is always fp32


def test_live_tensor_tracker_counts_allocations_and_frees(peak):
    tracker = peak.LiveTensorBytes()
    with tracker:
        first = torch.ones(1000)  # 4,000 bytes
        second = first * 2  # +4,000
        view = second[:10]  # same storage: not counted again
        del first
        third = torch.zeros(250)  # +1,000 after 4,000 were freed
    assert tracker.peak == 8000 and tracker.live == 5000
    del second, view, third
    assert tracker.live == 0


def test_live_tensor_tracker_counts_new_storages_only(peak):
    """Views and in-place results of existing tensors (weights) are not new memory; freed ones leave."""
    weight = torch.zeros(1000, 1000)
    with peak.LiveTensorBytes() as tracker:
        weight.t()
        weight.add_(1.0)
        assert tracker.live == 0
        fresh = weight * 2
        assert tracker.live == 4_000_000
        del fresh
        assert tracker.live == 0 and tracker.peak == 4_000_000


def test_peak_memory_script_runs_every_mode(peak, capsys):
    ours = peak.measure("primedepth", 64, "fp32", batch=2, scale="tiny")
    official = peak.measure("official", 64, "fp32", scale="tiny")
    assert ours["activations"] > 0 and official["weights"] > ours["weights"]  # + text tower, segmentation head
    stages = peak.measure_stages(64, "fp32", scale="tiny")
    assert set(stages) == {"VAE encoder", "UNet walk + refiner", "depth head"} and min(stages.values()) > 0
    assert peak.main(["--sizes", "64", "--scale", "tiny", "--stages"]) == 0
    assert "| 64 | bf16 | depth head |" in capsys.readouterr().out
