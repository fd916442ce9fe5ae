"""Weights resolution: model folders, official checkpoints converted once, clear offline errors."""

from __future__ import annotations

import pytest

from primedepth import PrimeDepthPipeline
from primedepth.cli import main
from primedepth.errors import InputError, WeightsNotFoundError
from primedepth.weights import resolve_model_folder

from .official import TINY, assert_close, load_cases


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIMEDEPTH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_official_checkpoint_is_converted_once_and_cached(private_cache, capsys):
    kwargs = dict(original_config=TINY / "config.yaml", text_encoder_from_hub=False)
    pipeline = PrimeDepthPipeline.from_pretrained(TINY / "official-tiny.ckpt", **kwargs)
    assert "converting" in capsys.readouterr().out
    case = load_cases(TINY / "cases.safetensors", "b")
    raw = pipeline.predict_raw(case["image"], case["context"], case["posterior_noise"], case["step_noise"])
    assert_close(raw.depth, case["depth_raw"], "depth_raw")
    folders = list((private_cache / "converted").iterdir())
    assert len(folders) == 1
    PrimeDepthPipeline.from_pretrained(TINY / "official-tiny.ckpt", **kwargs)
    assert "converting" not in capsys.readouterr().out
    assert list((private_cache / "converted").iterdir()) == folders


def test_offline_hub_gives_one_clear_error():
    with pytest.raises(WeightsNotFoundError) as error:
        PrimeDepthPipeline.from_pretrained()  # the official repo; tests run with HF_HUB_OFFLINE=1
    message = str(error.value)
    assert "CVL-Heidelberg/PrimeDepth" in message and "HF_HUB_OFFLINE" in message and "--model" in message


def test_missing_paths_and_non_model_folders(tmp_path):
    with pytest.raises(InputError, match="model not found"):
        resolve_model_folder(tmp_path / "missing.ckpt")
    with pytest.raises(InputError, match="not a PrimeDepth model folder"):
        resolve_model_folder(tmp_path)


def test_download_command_offline_exits_non_zero_with_message(capsys):
    assert main(["download"]) == 3
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
