"""`primedepth eval --prompt` and the captioner check (issue 24, points 1 and 3).

Before: eval had no --prompt, so the official model (default prompt "auto") could not be evaluated
without BLIP-2, and a missing captioner failed per image after minutes of retries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants

from primedepth.cli import main
from primedepth.constants import OFFICIAL_REPO_ID
from primedepth.eval.baselines import build_adapter, prompt_tag, uses_official_primedepth


@pytest.fixture(scope="module")
def auto_model(tmp_path_factory) -> Path:
    """A tiny model whose default prompt is "auto", as the official one."""
    from primedepth.testing import tiny_pipeline

    return tiny_pipeline(default_prompt="auto").save_model_folder(tmp_path_factory.mktemp("m") / "tiny")


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path / "hf-cache"


def _eval(data: Path, out: Path, *args: str) -> int:
    return main(["eval", "--no-progress", "--device", "cpu", "--dataset", "nyu", "--max-images", "1",
                 "--data-dir", str(data), "--output-dir", str(out), *args])


def test_empty_prompt_evaluates_without_captioner(eval_data, auto_model: Path, tmp_path: Path, empty_hf_cache) -> None:
    assert _eval(eval_data[0], tmp_path / "out", "--model", str(auto_model), "--prompt", "") == 0
    assert (tmp_path / "out" / "primedepth-tiny-prompt-none" / "nyu" / "summary.json").is_file()


def test_default_auto_prompt_without_captioner_exits_3(eval_data, auto_model: Path, tmp_path: Path,
                                                       empty_hf_cache, capsys) -> None:
    assert _eval(eval_data[0], tmp_path / "out", "--model", str(auto_model)) == 3
    error = capsys.readouterr().err
    assert error.count('--prompt ""') == 1 and "primedepth download --captioner" in error


def test_official_model_is_stopped_before_loading(eval_data, tmp_path: Path, empty_hf_cache, capsys) -> None:
    """The official weights are not cached either: the captioner check comes first, alone."""
    assert _eval(eval_data[0], tmp_path / "out") == 3
    error = capsys.readouterr().err
    assert "captioning is unavailable" in error and "PrimeDepth weights" not in error


def test_prompts_name_their_results() -> None:
    assert prompt_tag("") == "none" and prompt_tag("auto") == "auto"
    tag = prompt_tag("A photo of a room!")
    assert tag.startswith("a-photo-of-a-room-") and tag != prompt_tag("a photo of a room")
    assert build_adapter("some/model", prompt="").name == "primedepth-model-prompt-none"
    assert build_adapter("some/model").name == "primedepth-model"
    assert build_adapter("ensemble", prompt="x").name.startswith("primedepth-prompt-x-")
    assert uses_official_primedepth(OFFICIAL_REPO_ID) and uses_official_primedepth("ensemble")
    assert not uses_official_primedepth("ensemble", "my/model") and not uses_official_primedepth("marigold-v1-1")


def test_cached_predictions_need_no_captioner(eval_data, tmp_path: Path, empty_hf_cache) -> None:
    """The check runs before the first prediction, so recomputing metrics from the cache works offline."""
    from primedepth.errors import CaptionerUnavailableError
    from primedepth.eval.baselines import CaptionerChecked
    from primedepth.eval.runner import run_benchmark

    from .eval_archive_builders import LevelModel

    model = LevelModel("disparity", name="captioned")
    first = run_benchmark(model, ["nyu"], eval_data[0], tmp_path / "out", progress=False)
    checked = CaptionerChecked(LevelModel("disparity", name="captioned"))
    again = run_benchmark(checked, ["nyu"], eval_data[0], tmp_path / "out", progress=False)
    assert again[0].metrics == first[0].metrics and again[0].inferred == 0
    with pytest.raises(CaptionerUnavailableError):
        checked(np.zeros((8, 8, 3), dtype=np.uint8))
    assert checked.adapter.calls == []
