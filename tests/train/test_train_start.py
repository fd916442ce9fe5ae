"""What `primedepth train` says at start (issue 24, points 3 and 8).

Before: missing weights named `--model PATH` (a flag `train` does not have) and exited 2 instead of
the documented 3; `tensorboard: true` without TensorBoard was silently ignored; casting the frozen
parts to bf16 logged diffusers' "should be kept in float32: []" warning once per module.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import yaml

from primedepth.cli import main
from primedepth.train.config import ConfigError, config_from_dict
from primedepth.train.loop import Trainer, use_tensorboard

from .test_train_loop import reset_accelerate
from .train_scenes import write_hypersim


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    yield
    reset_accelerate()


def _config(tmp_path: Path, pretrained: str, **logging_options) -> Path:
    scenes = write_hypersim(tmp_path / "hypersim", count=2, size=(64, 64))
    raw = {
        "output_dir": str(tmp_path / "run"),
        "model": {"pretrained": pretrained},
        "data": {"train": [{"kind": "hypersim", "root": str(scenes.root), "split": str(scenes.split)}],
                 "crop_size": [64, 64], "num_workers": 0},
        "batch_size": 1, "gradient_accumulation_steps": 1, "max_steps": 1, "mixed_precision": "no",
        "logging": {"validate_every": 0, "checkpoint_every": 0, **logging_options},
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_missing_weights_name_trains_own_flag_and_exit_3(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, "nobody/missing-model", tensorboard=False)
    assert main(["train", "--config", str(config)]) == 3
    error = capsys.readouterr().err
    assert "model.pretrained:" in error and "--set model.pretrained=PATH" in error
    assert "--model PATH" not in error


def test_tensorboard_true_without_the_package_fails_at_start(tmp_path: Path, monkeypatch, capsys) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args))
    with pytest.raises(ConfigError, match="tensorboard package is not installed"):
        use_tensorboard(True)
    assert use_tensorboard(None) is False and use_tensorboard(False) is False
    # Checked before the model loads: a missing model would otherwise exit 3.
    config = _config(tmp_path, "nobody/missing-model", tensorboard=True)
    assert main(["train", "--config", str(config)]) == 2
    assert "--set logging.tensorboard=false" in capsys.readouterr().err


def test_bf16_frozen_parts_cast_without_empty_fp32_warning(tmp_path: Path) -> None:
    from primedepth.testing import save_tiny_model, tiny_prompt_embeds

    model = save_tiny_model(tmp_path / "tiny")
    raw = yaml.safe_load(_config(tmp_path, str(model), tensorboard=False).read_text())
    raw["mixed_precision"] = "bf16"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    diffusers_logger = logging.getLogger("diffusers.models.modeling_utils")
    diffusers_logger.addHandler(handler)
    try:
        trainer = Trainer(config_from_dict(raw), prompt_embeds=tiny_prompt_embeds(1))
    finally:
        diffusers_logger.removeHandler(handler)
    assert str(trainer.pipeline.unet.dtype) == "torch.bfloat16"
    assert not [r for r in records if "kept in float32" in r.getMessage()]


def test_cli_process_drops_only_the_empty_fp32_warning(capsys) -> None:
    """`primedepth convert --dtype bf16` and others cast through diffusers; the CLI drops the
    empty-list warning for its process, a real list of float32 modules still warns."""
    from primedepth.casting import EMPTY_FP32_MESSAGE, drop_empty_fp32_warning

    logger = logging.getLogger("diffusers.models.modeling_utils")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        main(["info"])
        drop_empty_fp32_warning()  # idempotent
        logger.warning("There are modules in X %s", EMPTY_FP32_MESSAGE)
        logger.warning("There are modules in X that should be kept in float32: ['norm']")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["There are modules in X that should be kept in float32: ['norm']"]
    assert [type(f).__name__ for f in logger.filters].count("_EmptyFp32Filter") == 1
