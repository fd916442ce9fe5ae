"""`primedepth.model.forward`: the one forward pass, checked end to end against the official
tensors, and shown to be what inference and training both compute."""

from __future__ import annotations

import pytest
import torch

from primedepth.convert import convert_state_dict
from primedepth.model.forward import (
    LatentNoise,
    compute_preimage,
    draw_noise,
    forward,
    predict_labels,
    seeded_generators,
    seeded_noise,
)
from primedepth.pipeline import PrimeDepthPipeline

from ..official import TINY, assert_close, load_cases, tiny_config, tiny_state_dict


@pytest.fixture(scope="module")
def pipeline() -> PrimeDepthPipeline:
    return PrimeDepthPipeline(**convert_state_dict(tiny_state_dict(), tiny_config()))


@pytest.fixture(scope="module", params=("a", "b"))
def case(request) -> dict[str, torch.Tensor]:
    return load_cases(TINY / "cases.safetensors", request.param)


def _noise(case: dict[str, torch.Tensor]) -> LatentNoise:
    return LatentNoise(case["posterior_noise"], case["step_noise"])


def test_forward_reproduces_the_official_heads(pipeline, case):
    """Pixels in [-1, 1] (case b is 72x100: not a multiple of 8) -> the official raw outputs."""
    raw = forward(pipeline, case["image"], case["context"], _noise(case), segmentation=True)
    assert_close(raw.depth, case["depth_raw"], "depth_raw")
    assert_close(raw.segmentation, case["segmentation_raw"], "segmentation_raw")


def test_training_halves_compute_exactly_what_inference_computes(pipeline, case):
    preimage = compute_preimage(pipeline, case["image"], case["context"], _noise(case))
    assert isinstance(preimage.steps, list) and len(preimage.steps) == 12  # materialised for autograd
    with torch.no_grad():
        trained = predict_labels(pipeline.refiner, pipeline.depth_head, preimage, pipeline.segmentation_head)
    inferred = forward(pipeline, case["image"], case["context"], _noise(case), segmentation=True)
    assert torch.equal(trained.depth, inferred.depth)
    assert torch.equal(trained.segmentation, inferred.segmentation)


def test_chunking_the_full_resolution_stages_changes_nothing(pipeline, case):
    pixels = case["image"].expand(3, -1, -1, -1)
    noise = LatentNoise(case["posterior_noise"].expand(3, -1, -1, -1), case["step_noise"].expand(3, -1, -1, -1))
    whole = forward(pipeline, pixels, case["context"], noise)
    chunked = forward(pipeline, pixels, case["context"], noise, chunk=1)
    assert chunked.segmentation is None
    torch.testing.assert_close(chunked.depth, whole.depth, rtol=0, atol=1e-5 * whole.depth.abs().max().item())


def test_placement_wraps_each_stage(pipeline, case):
    """The VAE stage first, then the walk with the trained modules that consume it."""
    stages = []

    class Recorder:
        def __init__(self, modules):
            stages.append([type(m).__name__ for m in modules])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    forward(pipeline, case["image"], case["context"], _noise(case), placement=lambda *m: Recorder(m))
    assert stages == [["AutoencoderKL"], ["UNet2DConditionModel", "PrimeDepthRefiner", "LabelHead"]]


def test_noise_rules(pipeline):
    """Inference: per image, posterior first, so a batch equals one-by-one draws. Training: a pure
    function of (seed, stream, index)."""
    sizes = [(64, 64), (72, 100)]
    together = draw_noise(pipeline.vae, sizes, seeded_generators(5, 2))
    alone = [draw_noise(pipeline.vae, [size], seeded_generators(5, 1))[0] for size in sizes]
    for a, b in zip(together, alone):
        assert torch.equal(a.posterior, b.posterior) and torch.equal(a.step, b.step)
    assert together[1].posterior.shape == (1, pipeline.vae.config.latent_channels, 9, 12)
    pixels = torch.zeros(2, 3, 64, 64)
    first, again = seeded_noise(pipeline.vae, pixels, 1, 0, 7), seeded_noise(pipeline.vae, pixels, 1, 0, 7)
    other = seeded_noise(pipeline.vae, pixels, 1, 0, 8)
    assert torch.equal(first.posterior, again.posterior) and not torch.equal(first.step, other.step)
    with pytest.raises(ValueError, match="2 generators for 1 images"):
        draw_noise(pipeline.vae, sizes[:1], seeded_generators(0, 2))
