"""Official checkpoint conversion: complete, safe, and loadable as a diffusers-style folder."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file

from primedepth import PrimeDepthPipeline
from primedepth.cli import main
from primedepth.convert import convert_state_dict, load_official_state_dict
from primedepth.errors import InputError, PrimeDepthError
from primedepth.loading import convert_checkpoint

from ..fixtures import tiny_checkpoint
from ..official import TINY, assert_close, load_cases, tiny_config, tiny_state_dict


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    checkpoint, config = tiny_checkpoint()
    return convert_checkpoint(checkpoint, tmp_path_factory.mktemp("model") / "tiny", config=config, text_encoder=False)


def _count(state_dict, prefix):
    return sum(k.startswith(prefix) for k in state_dict)


def test_every_official_tensor_lands_in_a_component():
    official = tiny_state_dict()
    pipeline = PrimeDepthPipeline(**convert_state_dict(official, tiny_config()))
    ours = {name: len(getattr(pipeline, name).state_dict()) for name in ("unet", "vae", "refiner", "depth_head", "segmentation_head")}
    assert ours["unet"] == _count(official, "model.diffusion_model.") == 684
    assert ours["vae"] == _count(official, "first_stage_model.")
    assert ours["depth_head"] == _count(official, "labeller.depth_predictor.") == 136
    assert ours["segmentation_head"] == _count(official, "labeller.label_predictor.") == 136
    assert ours["refiner"] == _count(official, "labeller.") - 272


def test_group_norm_epsilons_are_the_official_ones():
    """A wrong eps hides under a loose end-to-end tolerance (fixtures README §6): check each."""
    pipeline = PrimeDepthPipeline(**convert_state_dict(tiny_state_dict(), tiny_config()))

    def eps_of(module, kind=torch.nn.GroupNorm):
        return {m.eps for m in module.modules() if isinstance(m, kind)}

    # The frozen VAE is left as diffusers built it; the official encoder eps is applied per call.
    assert pipeline.config.vae_encoder_norm_eps == 1e-5 and eps_of(pipeline.vae.encoder) == {1e-6}
    seen = []
    norm = next(m for m in pipeline.vae.encoder.modules() if isinstance(m, torch.nn.GroupNorm))
    norm.register_forward_pre_hook(lambda module, args: seen.append(module.eps))
    pipeline.predict_raw(torch.zeros(1, 3, 64, 64), torch.zeros(1, 77, pipeline.unet.config.cross_attention_dim),
                         generator=torch.Generator().manual_seed(0), output_segmentation=False)
    assert seen == [1e-5] and eps_of(pipeline.vae.encoder) == {1e-6}
    assert eps_of(pipeline.depth_head) == eps_of(pipeline.segmentation_head) == {1e-5}
    assert eps_of(pipeline.refiner.norm_out) == {1e-5}
    for block in pipeline.refiner.blocks:
        assert eps_of(block.resnet) == {1e-5}
        if block.transformer is not None:
            assert eps_of(block.transformer) == {1e-6}
            assert eps_of(block.transformer, torch.nn.LayerNorm) == {1e-5}
    unet = pipeline.unet
    assert {r.norm1.eps for b in unet.down_blocks for r in b.resnets} == {1e-5}
    assert {a.norm.eps for b in unet.up_blocks for a in getattr(b, "attentions", None) or ()} == {1e-6}


def test_converted_folder_loads_and_reproduces_the_fixture(converted):
    index = json.loads((converted / "model_index.json").read_text())
    assert index["_class_name"] == "PrimeDepthPipeline"
    assert {"vae", "unet", "refiner", "depth_head", "segmentation_head", "scheduler"} <= set(index)
    for component in ("vae", "unet", "refiner", "depth_head", "segmentation_head"):
        assert (converted / component / "config.json").is_file()
        assert (converted / component / "diffusion_pytorch_model.safetensors").is_file()
    pipeline = PrimeDepthPipeline.from_pretrained(converted)
    case = load_cases(TINY / "cases.safetensors", "a")
    raw = pipeline.predict_raw(case["image"], case["context"], case["posterior_noise"], case["step_noise"])
    assert_close(raw.depth, case["depth_raw"], "depth_raw")
    assert_close(raw.segmentation, case["segmentation_raw"], "segmentation_raw")


def test_existing_output_is_not_overwritten_unless_asked(converted):
    marker = converted / "unet" / "config.json"
    before = marker.read_text()
    checkpoint, config = tiny_checkpoint()
    with pytest.raises(InputError, match="--overwrite"):
        convert_checkpoint(checkpoint, converted, config=config, text_encoder=False)
    assert marker.read_text() == before
    convert_checkpoint(checkpoint, converted, config=config, overwrite=True, text_encoder=False)
    assert marker.is_file()


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('x')",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    target = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(target))
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "payload": _Exploit()}, evil, pickle_module=pickle)
    with pytest.raises(PrimeDepthError, match="refusing to load"):
        load_official_state_dict(evil)
    assert not target.exists()


def test_not_a_checkpoint_gives_a_clear_error(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PrimeDepthError):
        load_official_state_dict(junk)
    with pytest.raises(InputError, match="not found"):
        load_official_state_dict(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {"something.else": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(InputError, match="not an official PrimeDepth checkpoint"):
        load_official_state_dict(tmp_path / "other.ckpt")


def test_cli_convert_half_precision_and_errors(tmp_path, capsys):
    out = tmp_path / "fp16"
    checkpoint, config = tiny_checkpoint()
    assert main(["convert", str(checkpoint), str(out), "--config", str(config), "--dtype", "fp16", "--no-text-encoder"]) == 0
    weights = load_file(str(out / "refiner" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    assert main(["convert", str(checkpoint), str(out), "--config", str(config), "--no-text-encoder"]) != 0
    assert "--overwrite" in capsys.readouterr().err
    # The tiny model's 32-wide context has no public text encoder: a clear message, no traceback.
    assert main(["convert", str(checkpoint), str(tmp_path / "text"), "--config", str(config)]) != 0
    assert "--no-text-encoder" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "nope.ckpt"), str(tmp_path / "x")]) != 0
    assert "not found" in capsys.readouterr().err


def test_info_lists_components_and_the_licence(converted, capsys):
    assert main(["info", str(converted)]) == 0
    out = capsys.readouterr().out
    assert "unet" in out and "UNet2DConditionModel" in out and "refiner" in out
    assert "CreativeML Open RAIL++-M" in out and "total" in out
    refiner_line = next(line for line in out.splitlines() if line.startswith("refiner"))
    expected = sum(p.numel() for p in PrimeDepthPipeline.from_pretrained(converted).refiner.parameters())
    assert f"{expected:,}" in refiner_line
    assert main(["info", str(converted / "unet")]) != 0
