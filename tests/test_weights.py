"""Weights resolution: model folders, official checkpoints converted once, clear offline errors."""

from __future__ import annotations

import pytest

from primedepth import PrimeDepthPipeline
from primedepth.cli import main
from primedepth.errors import InputError, WeightsNotFoundError
from primedepth import weights
from primedepth.weights import WeightsSource, resolve_source

from .fixtures import tiny_checkpoint
from .official import TINY, assert_close, load_cases


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIMEDEPTH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_official_checkpoint_is_converted_once_and_cached(private_cache, capsys):
    checkpoint, config = tiny_checkpoint()
    kwargs = dict(original_config=config, text_encoder_from_hub=False)
    pipeline = PrimeDepthPipeline.from_pretrained(checkpoint, **kwargs)
    assert "converting" in capsys.readouterr().out
    case = load_cases(TINY / "cases.safetensors", "b")
    raw = pipeline.predict_raw(case["image"], case["context"], case["posterior_noise"], case["step_noise"])
    assert_close(raw.depth, case["depth_raw"], "depth_raw")
    folders = list((private_cache / "converted").iterdir())
    assert len(folders) == 1
    PrimeDepthPipeline.from_pretrained(checkpoint, **kwargs)
    assert "converting" not in capsys.readouterr().out
    assert list((private_cache / "converted").iterdir()) == folders


def test_offline_hub_gives_one_clear_error():
    with pytest.raises(WeightsNotFoundError) as error:
        PrimeDepthPipeline.from_pretrained()  # the official repo; tests run with HF_HUB_OFFLINE=1
    message = str(error.value)
    assert "CVL-Heidelberg/PrimeDepth" in message and "HF_HUB_OFFLINE" in message and "--model" in message


def test_missing_paths_and_non_model_folders(tmp_path):
    with pytest.raises(InputError, match="model not found"):
        resolve_source(tmp_path / "missing.ckpt")
    with pytest.raises(InputError, match="not a PrimeDepth model folder"):
        resolve_source(tmp_path)


def test_download_command_offline_exits_non_zero_with_message(capsys):
    assert main(["download"]) == 3
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err


class _FakeHub:
    """Stands in for the hub's network calls: lists files and 'downloads' local ones."""

    def __init__(self, files: list[str], snapshot=None, checkpoint=None):
        self.files, self.snapshot, self.checkpoint, self.downloads = files, snapshot, checkpoint, []

    def install(self, monkeypatch):
        hub = self

        class Api:
            def list_repo_files(self, repo_id, revision=None):
                return hub.files

        def download(repo_id, filename, revision=None, cache_dir=None):
            hub.downloads.append(filename)
            return str(hub.checkpoint)

        monkeypatch.setattr(weights.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(weights, "hub_reachable", lambda: True)
        monkeypatch.setattr(weights, "HfApi", Api)
        monkeypatch.setattr(weights, "snapshot_download", lambda repo_id, revision=None, cache_dir=None: str(hub.snapshot))
        monkeypatch.setattr(weights, "hf_hub_download", download)


def test_hub_repo_in_diffusers_format_is_used_as_it_is(tmp_path, monkeypatch):
    from primedepth.testing import save_tiny_model

    folder = save_tiny_model(tmp_path / "snapshot")
    _FakeHub(["model_index.json", "unet/config.json"], snapshot=folder).install(monkeypatch)
    assert resolve_source("someone/primedepth-diffusers") == WeightsSource(folder)
    assert PrimeDepthPipeline.from_pretrained("someone/primedepth-diffusers").config.default_prompt == ""


def test_hub_checkpoint_is_downloaded_and_converted_once(private_cache, monkeypatch, capsys):
    checkpoint, config = tiny_checkpoint()
    hub = _FakeHub(["README.md", "model.safetensors", "PrimeDepth.ckpt"], checkpoint=checkpoint)
    hub.install(monkeypatch)
    converted = private_cache / "hub" / "CVL-Heidelberg--PrimeDepth"
    assert resolve_source("CVL-Heidelberg/PrimeDepth") == WeightsSource(converted, checkpoint)
    assert hub.downloads == ["PrimeDepth.ckpt"]  # the .ckpt, not the other weights file
    folder = PrimeDepthPipeline.local_model_folder(
        "CVL-Heidelberg/PrimeDepth", original_config=config, text_encoder_from_hub=False
    )
    assert folder == converted and "converting" in capsys.readouterr().out
    assert resolve_source("CVL-Heidelberg/PrimeDepth") == WeightsSource(folder)  # converted: no download
    assert len(hub.downloads) == 2
    assert (folder / "LICENSE-MODEL.md").is_file()


def test_a_missing_folder_under_an_existing_one_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    """`checkpoints/primedepth` in a checkout without it: a clear 'not found', not a hub lookup."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(InputError, match="model not found: checkpoints/primedepth"):
        resolve_source("checkpoints/primedepth")


def test_offline_advice_fits_the_situation(monkeypatch, capsys):
    """HF_HUB_OFFLINE is named only when set; `primedepth download` is not advised to its own user;
    an unreachable hub fails at once (a 3 s TCP probe) instead of after retries."""
    assert main(["download"]) == 3
    err = capsys.readouterr().err
    assert "unset HF_HUB_OFFLINE" in err and "run `primedepth download" not in err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights.constants, "HF_HUB_OFFLINE", False)
    calls = []
    monkeypatch.setattr(weights.socket, "create_connection", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(OSError("unreachable")))
    monkeypatch.setattr(weights, "HfApi", lambda: pytest.fail("no hub call when the hub is unreachable"))
    with pytest.raises(WeightsNotFoundError) as error:
        resolve_source("CVL-Heidelberg/PrimeDepth")
    message = str(error.value)
    assert calls and "cannot reach https://huggingface.co" in message and "connect to the internet" in message
    assert "HF_HUB_OFFLINE" not in message and "primedepth download CVL-Heidelberg/PrimeDepth" in message
