"""The full-size architecture (SD 2.1 UNet, labeller ratio 0.5, 512-channel heads) reproduces the
official code's tensors for case `a` (128x128), weights rebuilt from key names (fixtures README §3)."""

from __future__ import annotations

import pytest
import torch

from primedepth.convert import RELEASED_INFERENCE_CONFIG, convert_state_dict
from primedepth.model.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding
from primedepth.pipeline import PrimeDepthPipeline

from ..official import FULL, assert_close, full_size_state_dict, load_cases

MODEL_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "labeller.")

pytestmark = pytest.mark.slow  # the full-size architecture: ~35 s on 2 cores (CI runs it)


@pytest.fixture(scope="module")
def pipeline():
    state_dict = full_size_state_dict(MODEL_PREFIXES)
    pipeline = PrimeDepthPipeline(**convert_state_dict(state_dict, RELEASED_INFERENCE_CONFIG))
    del state_dict
    return pipeline


@pytest.fixture(scope="module")
def case():
    return load_cases(FULL / "cases.safetensors", "a")


@torch.no_grad()
def test_full_size_every_stage(pipeline, case):
    latent = encode_latents(pipeline.vae, case["image"], case["posterior_noise"])
    assert_close(latent, case["latent"], "latent")
    assert_close(add_step_noise(pipeline.scheduler, case["latent"], case["step_noise"]), case["x_t"], "x_t")
    temb = timestep_embedding(pipeline.unet, case["x_t"])
    assert_close(temb, case["time_emb"], "time_emb")

    recorded: dict[str, torch.Tensor] = {}
    refiner = pipeline.refiner
    hooks = [refiner.merge_convs[i].register_forward_hook(lambda m, a, o, i=i: recorded.__setitem__(f"step{i}.merged", o)) for i in range(12)]
    hooks += [refiner.blocks[i].register_forward_hook(lambda m, a, o, i=i: recorded.__setitem__(f"step{i}.refiner_out", o)) for i in range(12)]

    def checked_steps():
        for index, step in enumerate(iter_decoder_steps(pipeline.unet, case["x_t"], case["time_emb"], case["context"])):
            assert_close(step.features, case[f"step{index}.features"], "features", f"step {index} features")
            if step.attention is not None or f"step{index}.attention" in case:
                assert_close(step.attention, case[f"step{index}.attention"], "attention", f"step {index} attention")
            yield step

    final = refiner(checked_steps(), case["time_emb"], case["context"])
    for hook in hooks:
        hook.remove()
    for index in range(12):
        assert_close(recorded[f"step{index}.merged"], case[f"step{index}.merged"], "merged", f"step {index} merged")
        assert_close(recorded[f"step{index}.refiner_out"], case[f"step{index}.refiner_out"], "refiner_out", f"step {index} refiner")
    assert_close(final, case["refiner_final"], "refiner_final")
    depth_raw = pipeline.depth_head(final)
    assert_close(depth_raw, case["depth_raw"], "depth_raw")
    assert_close(depth_raw.mean(dim=1)[0], case["depth"], "depth")
    segmentation = pipeline.segmentation_head(final)
    assert_close(segmentation, case["segmentation_raw"], "segmentation_raw")


def test_full_size_pipeline_call(pipeline, case):
    """The public call, from the uint8 image with injected noise, gives the official depth."""
    out = pipeline(case["image_uint8"].numpy(), prompt_embeds=case["context"],
                   posterior_noise=case["posterior_noise"], step_noise=case["step_noise"])
    assert_close(torch.from_numpy(out.depth[0]), case["depth"], "depth")
