"""The tiny official checkpoint, converted, reproduces every stored tensor of the official code."""

from __future__ import annotations

import pytest
import torch

from primedepth.convert import convert_state_dict
from primedepth.model.attention_maps import AttentionMapSink, capturing_attention_maps, pool_self_attention_probabilities
from primedepth.model.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding
from primedepth.pipeline import PrimeDepthPipeline

from ..official import TINY, assert_close, load_cases, tiny_config, tiny_state_dict

CASES = ("a", "b")


@pytest.fixture(scope="module")
def pipeline():
    return PrimeDepthPipeline(**convert_state_dict(tiny_state_dict(), tiny_config()))


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return load_cases(TINY / "cases.safetensors", request.param)


@pytest.fixture(scope="module")
def traced(pipeline, case):
    """Run refiner + heads on the stored x_t, recording per-step merged/refiner outputs."""
    steps = list(iter_decoder_steps(pipeline.unet, case["x_t"], case["time_emb"], case["context"]))
    recorded: dict[str, torch.Tensor] = {}
    hooks = []
    for index in range(len(pipeline.refiner.blocks)):
        hooks.append(pipeline.refiner.merge_convs[index].register_forward_hook(
            lambda m, i, o, index=index: recorded.__setitem__(f"step{index}.merged", o)))
        hooks.append(pipeline.refiner.blocks[index].register_forward_hook(
            lambda m, i, o, index=index: recorded.__setitem__(f"step{index}.refiner_out", o)))
    with torch.no_grad():
        recorded["refiner_final"] = pipeline.refiner(iter(steps), case["time_emb"], case["context"])
        recorded["depth_raw"] = pipeline.depth_head(recorded["refiner_final"])
        recorded["segmentation_raw"] = pipeline.segmentation_head(recorded["refiner_final"])
    for hook in hooks:
        hook.remove()
    return steps, recorded


@torch.no_grad()
def test_latent_and_noised_latent(pipeline, case):
    latent = encode_latents(pipeline.vae, case["image"], case["posterior_noise"])
    assert_close(latent, case["latent"], "latent")
    assert_close(add_step_noise(pipeline.scheduler, case["latent"], case["step_noise"]), case["x_t"], "x_t")
    assert_close(timestep_embedding(pipeline.unet, case["x_t"]), case["time_emb"], "time_emb")


@torch.no_grad()
def test_attention_maps_of_probe_blocks(pipeline, case):
    """Input blocks 1 and 4 (down_blocks[0].attentions[0], down_blocks[1].attentions[0])."""
    probes = {"input_block1": pipeline.unet.down_blocks[0], "input_block4": pipeline.unet.down_blocks[1]}
    with capturing_attention_maps(pipeline.unet):
        _check_probes(probes, pipeline.unet.conv_in(case["x_t"]), case)


def _check_probes(probes, hidden, case):
    for name, block in probes.items():
        hidden = block.resnets[0](hidden, case["time_emb"])
        sink = AttentionMapSink(*hidden.shape[-2:])
        block.attentions[0](hidden, encoder_hidden_states=case["context"], cross_attention_kwargs={"attention_maps": sink})
        heads = case[f"attn_probs.{name}.self"].shape[1]
        self_maps, cross_maps = sink.self_maps, sink.cross_maps
        assert self_maps.shape[1] == heads * 64 and cross_maps.shape[1] == heads * 77
        assert_close(self_maps, case[f"sa_maps.{name}"], "maps", f"{name} self maps")
        assert_close(cross_maps, case[f"ca_maps.{name}"], "maps", f"{name} cross maps")
        # The materialised reference pooling of the official probabilities agrees too.
        pooled = pool_self_attention_probabilities(case[f"attn_probs.{name}.self"], *hidden.shape[-2:])
        assert_close(pooled, case[f"sa_maps.{name}"], "maps", f"{name} reference pooling")
        hidden = block.attentions[0](hidden, encoder_hidden_states=case["context"], return_dict=False)[0]
        hidden = block.resnets[1](hidden, case["time_emb"])
        hidden = block.attentions[1](hidden, encoder_hidden_states=case["context"], return_dict=False)[0]
        hidden = block.downsamplers[0](hidden)


def test_preimage_per_step(traced, case):
    steps, _ = traced
    assert len(steps) == 12
    for index, step in enumerate(steps):
        assert_close(step.features, case[f"step{index}.features"], "features", f"step {index} features")
        if f"step{index}.attention" in case:
            assert step.attention is not None
            assert_close(step.attention, case[f"step{index}.attention"], "attention", f"step {index} attention")
        else:
            assert step.attention is None


def test_refiner_per_step_and_heads(traced, case):
    _, recorded = traced
    for index in range(12):
        assert_close(recorded[f"step{index}.merged"], case[f"step{index}.merged"], "merged", f"step {index} merged")
        assert_close(recorded[f"step{index}.refiner_out"], case[f"step{index}.refiner_out"], "refiner_out", f"step {index} refiner")
    for stage in ("refiner_final", "depth_raw", "segmentation_raw"):
        assert_close(recorded[stage], case[stage], stage)


def test_pipeline_end_to_end_from_uint8_image(pipeline, case):
    """The public call on the stored uint8 image gives the official final depth."""
    out = pipeline(
        case["image_uint8"].numpy(),
        prompt_embeds=case["context"],
        posterior_noise=case["posterior_noise"],
        step_noise=case["step_noise"],
        output_segmentation=True,
    )
    height, width = case["image_uint8"].shape[:2]
    assert out.depth[0].shape == (height, width)  # official drops trailing columns; we keep them
    expected = case["depth"]
    got = torch.from_numpy(out.depth[0])[: expected.shape[0], : expected.shape[1]]
    assert_close(got, expected, "depth")
    raw = pipeline.predict_raw(case["image"], case["context"], case["posterior_noise"], case["step_noise"])
    assert_close(raw.depth, case["depth_raw"], "depth_raw")
    assert_close(raw.segmentation, case["segmentation_raw"], "segmentation_raw")
    # The columns the official code drops are filled by repeating the last one.
    if width > expected.shape[1]:
        edge = torch.from_numpy(out.depth[0])[: expected.shape[0], expected.shape[1] - 1 :]
        assert torch.equal(edge, edge[:, :1].expand_as(edge))
