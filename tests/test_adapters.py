"""Baseline adapters: the calls they make, their output spaces, and the --model resolution."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from primedepth.adapters import CallableAdapter, DepthAnythingV2Adapter, MarigoldAdapter, PrimeDepthAdapter, load_user_adapter
from primedepth.ensemble import EnsembleAdapter
from primedepth.errors import InputError
from primedepth.eval import build_adapter

IMAGE = (np.arange(20 * 30 * 3) % 255).astype(np.uint8).reshape(20, 30, 3)


class FakePipeline:
    """Records the call and returns a map the way the real pipeline does."""

    def __init__(self, make_output):
        self.make_output = make_output
        self.calls = []

    def __call__(self, image, **kwargs):
        self.calls.append((image, kwargs))
        return self.make_output(np.asarray(image))


def test_build_adapter_resolves_names_without_loading(tmp_path):
    v10 = build_adapter("marigold-v1-0", seed=1234)
    assert isinstance(v10, MarigoldAdapter) and v10.output_space == "depth"
    assert (v10.num_inference_steps, v10.ensemble_size, v10.model_id) == (50, 10, "prs-eth/marigold-depth-v1-0")
    v11 = build_adapter("marigold-v1-1")
    assert (v11.num_inference_steps, v11.ensemble_size, v11.model_id) == (None, 1, "prs-eth/marigold-depth-v1-1")
    da = build_adapter("depth-anything-v2-large")
    assert isinstance(da, DepthAnythingV2Adapter) and da.output_space == "disparity"
    ours = build_adapter(str(tmp_path / "my_model"))
    assert isinstance(ours, PrimeDepthAdapter) and ours.output_space == "disparity"
    assert ours.name == "primedepth-my_model" and build_adapter("CVL-Heidelberg/PrimeDepth").name == "primedepth"
    ensemble = build_adapter("ensemble", primedepth_model=str(tmp_path / "m"))
    assert isinstance(ensemble, EnsembleAdapter) and ensemble.name == "primedepth-m+depth-anything-large"
    assert ensemble.other.model_id == "LiheYoung/depth-anything-large-hf"  # the paper's PD + DA row: V1 Large
    assert all(a._pipeline is None for a in (v10, v11, ours))  # nothing loaded yet
    with pytest.raises(InputError, match="unknown dtype"):
        build_adapter("marigold-v1-1", dtype="int8")


def test_marigold_adapter_calls_the_diffusers_pipeline_per_protocol():
    fake = FakePipeline(lambda image: SimpleNamespace(prediction=np.ones((1, *image.shape[:2], 1), np.float32)))
    adapter = MarigoldAdapter("v1-0", seed=1234, pipeline=fake)
    out = adapter(IMAGE)
    assert out.shape == (20, 30) and out.dtype == np.float32
    image, kwargs = fake.calls[0]
    assert image.size == (30, 20) and np.array_equal(np.asarray(image), IMAGE)  # PIL, values 0..255
    assert kwargs["num_inference_steps"] == 50 and kwargs["ensemble_size"] == 10
    assert kwargs["processing_resolution"] == 0 and kwargs["match_input_resolution"] is True
    assert kwargs["generator"].initial_seed() == 1234


def test_primedepth_adapter_returns_the_first_depth_map_in_unit_range():
    """Raw PrimeDepth disparity has an arbitrary shift (negative values too); the disparity
    protocol fits on pred > 0 only, so the adapter maps it affinely onto [0, 1]."""
    depth = np.random.default_rng(0).uniform(-2.0, 1.0, size=(20, 30)).astype(np.float32)
    fake = FakePipeline(lambda image: SimpleNamespace(depth=[depth]))
    adapter = PrimeDepthAdapter("some/model", seed=7, pipeline=fake)
    expected = (depth - depth.min()) / (depth.max() - depth.min())
    np.testing.assert_allclose(adapter(IMAGE), expected, rtol=0, atol=1e-6)
    _, kwargs = fake.calls[0]
    assert kwargs["generator"].initial_seed() == 7 and "prompt" not in kwargs
    PrimeDepthAdapter(prompt="a room", pipeline=fake)(IMAGE)
    assert fake.calls[1][1]["prompt"] == "a room"


def test_primedepth_adapter_on_the_tiny_random_pipeline():
    from primedepth.testing import tiny_pipeline

    adapter = PrimeDepthAdapter(seed=0, pipeline=tiny_pipeline())
    image = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    first, second = adapter(image), adapter(image)
    assert first.shape == (24, 40) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)  # seeded per image


def test_depth_anything_adapter_on_a_tiny_random_model(tmp_path):
    from primedepth.testing import save_tiny_depth_anything

    adapter = DepthAnythingV2Adapter(model_id=str(save_tiny_depth_anything(tmp_path / "da")))
    out = adapter(IMAGE)
    assert out.shape == (20, 30) and out.dtype == np.float32 and np.isfinite(out).all()


def test_user_adapters_are_validated(tmp_path):
    module = tmp_path / "adapters.py"
    module.write_text(
        "import numpy as np\n"
        "class Model:\n"
        "    name = 'mine'\n"
        "    output_space = 'depth'\n"
        "    def __call__(self, image):\n"
        "        return image[..., 0].astype('float32')\n"
        "instance = Model()\n"
        "class Bad(Model):\n"
        "    output_space = 'metric'\n"
    )
    assert load_user_adapter(f"{module}:instance").name == "mine"
    assert load_user_adapter(f"{module}:Model")(IMAGE).shape == (20, 30)  # factories are called
    with pytest.raises(InputError, match="output_space 'metric'"):
        load_user_adapter(f"{module}:Bad")
    with pytest.raises(InputError, match="adapter file not found"):
        load_user_adapter(f"{tmp_path / 'nope.py'}:x")
    with pytest.raises(InputError, match="expected 'module:attribute'"):
        load_user_adapter("justaname:")
    with pytest.raises(InputError, match="NaN"):
        CallableAdapter(lambda image: np.full(image.shape[:2], np.nan), "nan", "depth")(IMAGE)
