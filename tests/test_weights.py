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


class _FakeHub:
    """Stands in for the hub's network calls: lists files and 'downloads' local ones."""

    def __init__(self, files: list[str], snapshot=None, checkpoint=None):
        self.files, self.snapshot, self.checkpoint, self.downloads = files, snapshot, checkpoint, []

    def install(self, monkeypatch):
        import huggingface_hub

        hub = self
        monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, repo_id, revision=None: hub.files)
        monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, revision=None: str(hub.snapshot))

        def download(repo_id, filename, revision=None):
            hub.downloads.append(filename)
            return str(hub.checkpoint)

        monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)


def test_hub_repo_in_diffusers_format_is_used_as_it_is(tmp_path, monkeypatch):
    from primedepth.testing import save_tiny_model

    folder = save_tiny_model(tmp_path / "snapshot")
    _FakeHub(["model_index.json", "unet/config.json"], snapshot=folder).install(monkeypatch)
    assert resolve_model_folder("someone/primedepth-diffusers") == folder
    assert PrimeDepthPipeline.from_pretrained("someone/primedepth-diffusers").config.default_prompt == ""


def test_hub_checkpoint_is_downloaded_and_converted_once(private_cache, monkeypatch):
    import primedepth.convert

    hub = _FakeHub(["README.md", "PrimeDepth.ckpt"], checkpoint=TINY / "official-tiny.ckpt")
    hub.install(monkeypatch)
    converted = []

    def fake_convert(checkpoint, output_dir, **kwargs):
        converted.append(checkpoint)
        (output_dir / "model_index.json").parent.mkdir(parents=True, exist_ok=True)
        (output_dir / "model_index.json").write_text("{}")
        return output_dir

    monkeypatch.setattr(primedepth.convert, "convert_checkpoint", fake_convert)
    first = resolve_model_folder("CVL-Heidelberg/PrimeDepth")
    again = resolve_model_folder("CVL-Heidelberg/PrimeDepth")
    assert first == again == private_cache / "hub" / "CVL-Heidelberg--PrimeDepth"
    assert hub.downloads == ["PrimeDepth.ckpt"] and converted == [str(TINY / "official-tiny.ckpt")]
