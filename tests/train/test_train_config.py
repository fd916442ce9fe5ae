"""Training configuration: the example loads, mistakes are reported with their path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from primedepth.train.config import ConfigError, TrainConfig, config_from_dict, load_config, save_config

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "train_example.yaml"


def _minimal() -> dict:
    return {
        "output_dir": "runs/x",
        "model": {"pretrained": "some/model"},
        "data": {"train": [{"kind": "hypersim", "root": "d", "split": "s.txt"}]},
    }


def test_example_config_loads_with_the_recipe() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, TrainConfig)
    assert [spec.kind for spec in config.data.train] == ["hypersim", "vkitti"]
    assert [spec.ratio for spec in config.data.train] == [0.9, 0.1]
    assert config.optimizer.lr == pytest.approx(3e-5)
    assert config.batch_size * config.gradient_accumulation_steps == 32
    assert config.mixed_precision == "bf16" and config.ema.enabled


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    config = config_from_dict(_minimal())
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_overrides_and_string_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    raw = _minimal()
    raw["optimizer"] = {"lr": "1e-4"}  # YAML 1.1 reads this as a string
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path, overrides={"max_steps": 7, "loss.gradient_weight": 0.0})
    assert config.optimizer.lr == pytest.approx(1e-4)
    assert config.max_steps == 7 and config.loss.gradient_weight == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_sise": 2}, r"unknown key\(s\) \['batch_sise'\]"),
        ({"batch_size": "two"}, "config.batch_size: expected an integer"),
        ({"mixed_precision": "fp8"}, "mixed_precision must be one of"),
        ({"data": {"train": [{"kind": "vkitti", "root": "d"}], "crop_size": [480, 640]}}, "needs a split list"),
        (
            {"data": {"train": [{"kind": "hypersim", "root": "d", "split": "s"}], "crop_size": [479, 640]}},
            "multiples of 8",
        ),
        ({"data": {"train": []}}, "at least one training dataset"),
        ({"model": {"pretrained": ""}}, "model.pretrained"),
        ({"scheduler": {"decay": "step"}}, "scheduler.decay"),
        ({"ema": {"decay": 1.5}}, "ema.decay"),
        ({"loss": {"ssi_weight": 0.0, "gradient_weight": 0.0}}, "both 0"),
    ],
)
def test_bad_configs_are_reported(change: dict, message: str) -> None:
    raw = _minimal()
    raw.update(change)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_missing_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_the_example_config_of_the_repository_loads_as_written():
    """configs/train_example.yaml names the official weights (not a folder a checkout lacks)."""
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "train_example.yaml")
    assert config.model.pretrained == "CVL-Heidelberg/PrimeDepth" and config.mixed_precision == "bf16"


def test_mixed_precision_no_is_accepted_though_yaml_reads_it_as_false(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output_dir: out\nmodel: {pretrained: some/model}\nmixed_precision: no\n"
                    "data: {train: [{kind: hypersim, root: r, split: s}]}\n")
    assert load_config(path).mixed_precision == "no"
