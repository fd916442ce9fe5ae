"""End-to-end training on CPU with a tiny random PrimeDepth on generated scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from primedepth.train.config import ConfigError, config_from_dict
from primedepth.train.loop import ParameterEMA, Trainer, learning_rate_factor, list_checkpoints

from .train_scenes import write_hypersim, write_vkitti

CROP = 64  # the tiny UNet downsamples the 8x8 latent three times


def reset_accelerate() -> None:
    """Accelerate keeps process-wide singletons; each run here starts from a clean slate."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    from primedepth.testing import save_tiny_model, tiny_prompt_embeds

    root = tmp_path_factory.mktemp("train_loop")
    hypersim = write_hypersim(root / "hypersim", count=4, size=(96, 128))
    vkitti = write_vkitti(root / "vkitti", count=2, size=(64, 160))
    torch.save(tiny_prompt_embeds(1), root / "context.pt")
    return {
        "root": root,
        "model": save_tiny_model(root / "tiny"),
        "context": root / "context.pt",
        "hypersim_root": hypersim.root,
        "hypersim_split": hypersim.split,
        "vkitti_root": vkitti.root,
        "vkitti_split": vkitti.split,
    }


def make_config(workspace: dict[str, Path], output: Path, **changes) -> dict:
    hypersim = {"kind": "hypersim", "root": str(workspace["hypersim_root"]), "split": str(workspace["hypersim_split"])}
    vkitti = {"kind": "vkitti", "root": str(workspace["vkitti_root"]), "split": str(workspace["vkitti_split"])}
    raw = {
        "output_dir": str(output),
        "model": {"pretrained": str(workspace["model"]), "init": "random", "prompt_embeds": str(workspace["context"])},
        "data": {
            "train": [hypersim, vkitti],
            "val": [dict(hypersim)],
            "crop_size": [CROP, CROP],
            "num_workers": 0,
            "val_max_samples": 4,
        },
        "optimizer": {"lr": 1e-3},
        "scheduler": {"warmup_steps": 2, "decay": "constant"},
        "batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_steps": 30,
        "mixed_precision": "no",
        "logging": {"log_every": 10, "validate_every": 0, "checkpoint_every": 0, "tensorboard": False},
    }
    for key, value in changes.items():
        node = raw
        *parents, last = key.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return raw


def _frozen_state(pipeline) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.clone()
        for name in ("vae", "unet")
        for key, value in getattr(pipeline, name).state_dict().items()
    }


def test_training_lowers_the_loss_keeps_sd_frozen_and_writes_a_loadable_model(workspace, tmp_path: Path) -> None:
    from primedepth.pipeline import PrimeDepthPipeline
    from primedepth.testing import tiny_prompt_embeds

    trainer = Trainer(config_from_dict(make_config(workspace, tmp_path / "run", **{"logging.validate_every": 30})))
    frozen_before = _frozen_state(trainer.pipeline)
    before = trainer.validate()["val/hypersim0/ssi"]
    result = trainer.train()

    # The aligned disparity error on the (training) scenes goes down, and so does the training loss.
    after = result.validation[-1]["val/hypersim0/ssi"]
    assert after < before
    assert np.mean(result.losses[-5:]) < 0.9 * np.mean(result.losses[:5])
    assert {"val/hypersim0/abs_rel", "val/hypersim0/delta1"} <= set(result.validation[-1])

    # Stable Diffusion did not move, bit for bit, and was never in training mode.
    frozen_after = _frozen_state(trainer.pipeline)
    assert all(torch.equal(frozen_before[key], frozen_after[key]) for key in frozen_before)
    assert not trainer.pipeline.unet.training and not trainer.pipeline.vae.training
    assert not any(p.requires_grad for p in trainer.pipeline.unet.parameters())

    # The result is a model folder the pipeline loads and predicts with; frozen weights are the base's.
    loaded = PrimeDepthPipeline.from_pretrained(result.model_dir)
    generator = torch.Generator().manual_seed(0)
    output = loaded(torch.rand(3, 64, 96), prompt_embeds=tiny_prompt_embeds(1), generator=generator)
    assert output.depth[0].shape == (64, 96) and np.isfinite(output.depth[0]).all()
    assert loaded.config.default_prompt == trainer.config.model.prompt  # prompted as trained
    assert torch.equal(loaded.refiner.conv_out.weight, trainer.pipeline.refiner.conv_out.weight)
    assert all(torch.equal(loaded.unet.state_dict()[k], v) for k, v in trainer.pipeline.unet.state_dict().items())
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged if "train/loss" in row] == [10, 20, 30]


def test_resume_reproduces_an_uninterrupted_run_exactly(workspace, tmp_path: Path) -> None:
    changes = {"max_steps": 4, "gradient_accumulation_steps": 2, "ema.enabled": True, "ema.decay": 0.5,
               "scheduler.decay": "exponential", "loss.segmentation_weight": 0.1}
    straight = Trainer(config_from_dict(make_config(workspace, tmp_path / "a", **changes))).train()
    reset_accelerate()

    changes["logging.checkpoint_every"] = 2
    first = Trainer(config_from_dict(make_config(workspace, tmp_path / "b", **changes))).train(until=3)
    assert first.step == 3 and not (tmp_path / "b" / "model").exists()  # "killed" after step 3
    assert [step for step, _ in list_checkpoints(tmp_path / "b")] == [2]
    reset_accelerate()

    resumed_config = config_from_dict(make_config(workspace, tmp_path / "b", **changes, resume="latest"))
    second = Trainer(resumed_config).train()

    assert second.step == 4
    assert first.losses[:2] + second.losses == straight.losses  # the same batches, noise and updates
    from primedepth.pipeline import PrimeDepthPipeline

    model_a = PrimeDepthPipeline.from_pretrained(straight.model_dir)
    model_b = PrimeDepthPipeline.from_pretrained(second.model_dir)
    for name in ("refiner", "depth_head", "segmentation_head"):
        state_a, state_b = getattr(model_a, name).state_dict(), getattr(model_b, name).state_dict()
        assert all(torch.equal(state_a[key], state_b[key]) for key in state_a), name


def test_existing_checkpoints_need_an_explicit_resume(workspace, tmp_path: Path) -> None:
    (tmp_path / "run" / "checkpoints" / "step-000002").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-000002" / "train_state.json").write_text('{"step": 2}')
    with pytest.raises(ConfigError, match="resume: latest"):
        Trainer(config_from_dict(make_config(workspace, tmp_path / "run")))


@pytest.mark.parametrize(
    ("decay", "expected_end"), [("exponential", 0.01), ("cosine", 0.01), ("linear", 0.01), ("constant", 1.0)]
)
def test_learning_rate_warms_up_then_decays(decay: str, expected_end: float) -> None:
    factors = [learning_rate_factor(step, 10, 110, decay, 0.01) for step in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[110] == pytest.approx(expected_end)
    assert all(b <= a + 1e-12 for a, b in zip(factors[10:], factors[11:]))


def test_parameter_ema_averages_and_restores() -> None:
    weight = torch.nn.Parameter(torch.zeros(3))
    ema = ParameterEMA([weight], decay=0.75)
    with torch.no_grad():
        weight.fill_(4.0)
    ema.update([weight])
    assert torch.allclose(ema.shadow[0], torch.full((3,), 1.0))
    with ema.applied([weight]):
        assert torch.equal(weight.data, torch.full((3,), 1.0))
    assert torch.equal(weight.data, torch.full((3,), 4.0))
    restored = ParameterEMA([weight], decay=0.1)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.75 and torch.equal(restored.shadow[0], ema.shadow[0])


def test_cli_trains_from_a_yaml_config_with_overrides(workspace, tmp_path: Path, capsys) -> None:
    import yaml

    from primedepth.cli import main

    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(make_config(workspace, tmp_path / "run")))
    code = main(["train", "--config", str(config_path), "--set", "max_steps=2", "--set", "logging.log_every=1"])
    assert code == 0
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()
    assert "trained 2 steps" in capsys.readouterr().out

    code = main(["train", "--config", str(config_path), "--set", "optimizer.lr_typo=1"])
    assert code == 2
    assert "unknown key(s) ['lr_typo']" in capsys.readouterr().err
    assert main(["train", "--config", str(config_path), "--set", "no-equals-sign"]) == 2


def test_prompt_is_encoded_once_by_a_local_text_encoder(tmp_path: Path) -> None:
    """Without saved embeddings the prompt goes through the frozen text encoder (a tiny one here)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from primedepth.testing import TINY_CONTEXT_DIM
    from primedepth.text import build_tokenizer
    from primedepth.train.loop import load_prompt_embeds

    chars = byte_level_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    folder = tmp_path / "text_encoder"
    build_tokenizer(vocab, []).save_pretrained(folder)
    text_config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=TINY_CONTEXT_DIM, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=len(vocab) - 2, eos_token_id=len(vocab) - 1,
    )
    CLIPTextModel(text_config).save_pretrained(folder)
    config = config_from_dict(
        {
            "output_dir": str(tmp_path / "run"),
            "model": {"pretrained": str(tmp_path / "unused"), "text_encoder": str(folder), "prompt": "a room"},
            "data": {"train": [{"kind": "pseudo_label", "root": str(tmp_path)}]},
        }
    )
    context = load_prompt_embeds(config)
    assert context.shape == (1, 77, TINY_CONTEXT_DIM) and context.dtype == torch.float32


def byte_level_alphabet() -> list[str]:
    """The 256 characters byte-level BPE uses for bytes: printable Latin-1 as is, others shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(shifted)) for b in range(256)]
