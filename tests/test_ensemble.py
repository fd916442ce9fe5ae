"""`primedepth predict --ensemble` and `predict(ensemble=...)` on tiny random models, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from primedepth import cli, io
from primedepth.ensemble import ENSEMBLE_PNG_KEY, ensemble_disparity
from primedepth.processing import to_rgb_uint8 as rgb_uint8
from primedepth.errors import WeightsNotFoundError
from primedepth.adapters import DepthAnythingV2Adapter
from primedepth import load_pipeline, predict

SIZE = (32, 48)  # height, width
SEED = 0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from primedepth.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory) -> Path:
    """A random Depth Anything V2 with its image processor, saved like a hub snapshot."""
    from primedepth.testing import save_tiny_depth_anything

    return save_tiny_depth_anything(tmp_path_factory.mktemp("models") / "tiny-depth-anything")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("photos")
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)).save(root / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def expected(tiny_model, tiny_depth_anything, photos) -> dict[str, np.ndarray]:
    """The ensemble of each photo, from the two models run separately."""
    pipeline = load_pipeline(tiny_model, device="cpu")
    depth_anything = DepthAnythingV2Adapter(model_id=str(tiny_depth_anything))
    primedepth_only = predict(sorted(photos.glob("*.png")), model=pipeline, seed=SEED)
    return {
        result.name: ensemble_disparity(result.depth, depth_anything(io.read_image(result.source)))
        for result in primedepth_only
    }


def test_cli_writes_the_ensemble_in_every_output(capsys, tiny_model, tiny_depth_anything, photos,
                                                 expected, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["predict", str(photos), "-o", str(out), "--model", str(tiny_model), "--seed",
                     str(SEED), "--outputs", "png16,npy,color",
                     "--ensemble", "depth-anything-v2-large",
                     "--ensemble-model", str(tiny_depth_anything)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "done 2" in err and "depth is the ensemble PrimeDepth + Depth Anything" in err
    for name, ensemble in expected.items():
        np.testing.assert_allclose(np.load(out / f"{name}_depth.npy"), ensemble, rtol=1e-5, atol=1e-6)
        step = (ensemble.max() - ensemble.min()) / 65535
        np.testing.assert_allclose(io.read_depth_png16(out / f"{name}_depth.png"), ensemble,
                                   atol=step + 1e-6)
        for suffix in ("_depth.png", "_depth_color.png"):
            with Image.open(out / f"{name}{suffix}") as image:
                assert str(tiny_depth_anything) in image.text[ENSEMBLE_PNG_KEY]
                assert "least squares" in image.text[ENSEMBLE_PNG_KEY]
        with Image.open(out / f"{name}_depth.png") as image:
            assert "depth_min" in image.text  # the chunks io wrote are kept


def test_api_with_a_folder_and_with_a_loaded_adapter(tiny_model, tiny_depth_anything, photos,
                                                      expected):
    pipeline = load_pipeline(tiny_model, device="cpu")
    inputs = sorted(photos.glob("*.png"))
    by_folder = predict(inputs, model=pipeline, seed=SEED, ensemble=str(tiny_depth_anything))
    adapter = DepthAnythingV2Adapter(model_id=str(tiny_depth_anything))
    in_memory = [io.read_image(path) for path in inputs]
    by_adapter = predict(in_memory, model=pipeline, seed=SEED, ensemble=adapter)
    for folder_result, adapter_result, name in zip(by_folder, by_adapter, sorted(expected)):
        assert folder_result.name == name and folder_result.ensemble.startswith("PrimeDepth + ")
        np.testing.assert_allclose(folder_result.depth, expected[name], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(adapter_result.depth, expected[name], rtol=1e-5, atol=1e-6)


def test_video_frames_and_depth_video_hold_the_ensemble(tiny_model, tiny_depth_anything, tmp_path):
    from fractions import Fraction

    rng = np.random.default_rng(1)
    clip = tmp_path / "clip.mp4"
    with io.DepthVideoWriter(clip, Fraction(8)) as writer:
        for _ in range(2):
            writer.write(rng.random(SIZE, dtype=np.float32))
    pipeline = load_pipeline(tiny_model, device="cpu")
    out = tmp_path / "out"
    results = predict(clip, model=pipeline, seed=SEED, output_dir=out, outputs=("npy", "video"),
                      ensemble=str(tiny_depth_anything), temporal="none")  # frames on their own
    depth_anything = DepthAnythingV2Adapter(model_id=str(tiny_depth_anything))
    alone = predict(list(io.read_video_frames(clip)), model=pipeline, seed=SEED)
    frames = list(io.read_video_frames(clip))
    assert io.probe_video(out / "clip_depth.mp4").frames == 2
    for result, single, frame in zip(results, alone, frames, strict=True):
        expected = ensemble_disparity(single.depth, depth_anything(frame))
        np.testing.assert_allclose(result.depth, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.load(out / f"{result.name}_depth.npy"), expected, rtol=1e-5, atol=1e-6)


def test_unavailable_hub_weights_say_what_was_looked_for_and_how_to_fix(capsys, tiny_model,
                                                                        photos, tmp_path):
    out = tmp_path / "out"
    code = cli.main(["predict", str(photos / "a.png"), "-o", str(out), "--model", str(tiny_model),
                     "--ensemble", "depth-anything-v2-large"])
    err = capsys.readouterr().err
    assert code == WeightsNotFoundError.exit_code and "Traceback" not in err
    assert "could not get the Depth Anything weights 'depth-anything/Depth-Anything-V2-Large-hf'" in err
    assert "HF_HUB_OFFLINE" in err and "--ensemble-model PATH" in err
    assert not out.exists() or not any(out.rglob("*.png"))
    with pytest.raises(WeightsNotFoundError, match="no-such-org/no-such-model"):
        predict(photos / "a.png", model=tiny_model, device="cpu", ensemble="no-such-org/no-such-model")


def test_rgb_uint8_accepts_what_the_pipeline_accepts():
    import torch

    image = np.random.default_rng(2).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    assert np.array_equal(rgb_uint8(image), image)
    assert np.array_equal(rgb_uint8(Image.fromarray(image)), image)
    assert np.array_equal(rgb_uint8(torch.from_numpy(image).permute(2, 0, 1).float() / 255), image)
    assert np.array_equal(rgb_uint8(image.astype(np.uint16) * 257), image)


def test_a_misspelt_name_is_an_input_error_listing_the_names(tiny_model, photos):
    from primedepth.errors import InputError

    with pytest.raises(InputError, match="neither a folder nor a hub repository id.*depth-anything-v2-large"):
        predict(photos / "a.png", model=tiny_model, device="cpu", ensemble="depth-anything-v2-lrge")


def test_the_default_ensemble_is_the_papers_row_and_licences_are_printed(capsys, photos, tmp_path, monkeypatch):
    """The paper's PD + DA row uses Depth Anything V1 Large; the job names every model's licence."""
    from primedepth.commands import predict as predict_command
    from primedepth.constants import DEFAULT_ENSEMBLE, ENSEMBLE_MEMBERS

    assert ENSEMBLE_MEMBERS[DEFAULT_ENSEMBLE] == "LiheYoung/depth-anything-large-hf"
    parser = cli.build_parser()
    args = parser.parse_args(["predict", str(photos / "a.png"), "--ensemble", "depth-anything-v2-large"])
    notes = predict_command.licence_notes(args)
    assert notes[0] == "licence of CVL-Heidelberg/PrimeDepth: CreativeML Open RAIL++-M (Stable Diffusion 2.1 weights; use restrictions apply)"
    assert "depth-anything/Depth-Anything-V2-Large-hf: CC-BY-NC-4.0 (non-commercial use only)" in notes[1]
    assert "Salesforce/blip2-opt-2.7b" in notes[2]  # the official model captions by default
    small = parser.parse_args(["predict", "x.png", "--ensemble", "depth-anything-v2-small", "--prompt", ""])
    assert predict_command.licence_notes(small)[1].endswith("Apache-2.0") and len(predict_command.licence_notes(small)) == 2


def test_info_lists_the_licences_of_every_model(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for model in ("LiheYoung/depth-anything-large-hf", "depth-anything/Depth-Anything-V2-Base-hf", "Salesforce/blip2-opt-2.7b"):
        assert model in out
    assert "CC-BY-NC-4.0" in out and "RAIL++-M" in out
