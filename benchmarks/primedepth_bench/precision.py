"""Half-precision stage differences on the real architecture (random weights).

tests/test_pipeline.py checks, on the tiny model against the official fp32 outputs, that every
stage in fp16 / bf16, fed fp32 inputs, stays within its dtype's rounding (relative RMS). This
module measures the same per-stage differences on the full-size architecture: one fp32
pipeline and a copy of it in half precision, every stage of the copy fed the fp32 pipeline's
inputs to that stage. End to end the difference is also reported, but random weights amplify
rounding chaotically (see that test's docstring), so only the stages are comparable to the bound.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch

from primedepth.casting import drop_empty_fp32_warning
from primedepth.model.preimage import DecoderStep, add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding
from primedepth.pipeline import PrimeDepthPipeline

from .builders import BenchInputs

# Every model here is cast with `.to(dtype)`: drop diffusers' empty "kept in float32: []" warning
# for the whole process, as the command line does.
drop_empty_fp32_warning()

# The per-stage bounds of tests/test_pipeline.py's half-precision test (tiny model, real
# official fp32 outputs): about ten roundings of each dtype's significand.
TINY_MODEL_BOUND = {torch.float16: 0.01, torch.bfloat16: 0.04}


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64: the size of rounding noise."""
    difference = actual.double() - expected.double()
    return (difference.norm() / expected.double().norm()).item()


@dataclass
class StageOutputs:
    """Every stage's output of one pipeline on one input (and the inputs to the next stage)."""

    latent: torch.Tensor
    noisy: torch.Tensor
    temb: torch.Tensor
    steps: list[DecoderStep]
    refined: torch.Tensor
    depth: torch.Tensor
    segmentation: torch.Tensor


@torch.no_grad()
def reference_outputs(pipeline: Any, inputs: BenchInputs) -> StageOutputs:
    """The fp32 pipeline's output of every stage, as `primedepth.model.forward` chains them."""
    latent = encode_latents(pipeline.vae, inputs.pixels, inputs.noise.posterior)
    noisy = add_step_noise(pipeline.scheduler, latent, inputs.noise.step)
    temb = timestep_embedding(pipeline.unet, noisy)
    steps = list(iter_decoder_steps(pipeline.unet, noisy, temb, inputs.context))
    refined = pipeline.refiner(steps, temb, inputs.context)
    return StageOutputs(latent, noisy, temb, steps, refined, pipeline.depth_head(refined), pipeline.segmentation_head(refined))


def half_copy(pipeline: PrimeDepthPipeline, dtype: torch.dtype) -> PrimeDepthPipeline:
    """A pipeline with copies of the same weights, cast to `dtype`."""
    names = ("vae", "unet", "refiner", "depth_head", "segmentation_head")
    modules = {name: deepcopy(getattr(pipeline, name)).to(dtype=dtype) for name in names}
    return PrimeDepthPipeline(**modules, scheduler=pipeline.scheduler)


def _walk_errors(half: Any, expected: StageOutputs, context: torch.Tensor, dtype: torch.dtype) -> dict[str, float]:
    """The UNet walk in `dtype` from the fp32 noisy latents: worst step's features and maps."""
    noisy = expected.noisy.to(dtype)
    steps = list(iter_decoder_steps(half.unet, noisy, timestep_embedding(half.unet, noisy), context.to(dtype)))
    pairs = list(zip(steps, expected.steps, strict=True))
    return {"UNet walk: features (worst step)": max(relative_rms(a.features, b.features) for a, b in pairs),
            "UNet walk: attention maps (worst step)": max(
                (relative_rms(a.attention, b.attention) for a, b in pairs if b.attention is not None), default=0.0)}


@torch.no_grad()
def stage_errors(reference: Any, expected: StageOutputs, inputs: BenchInputs, dtype: torch.dtype) -> dict[str, float]:
    """Relative RMS of every stage of a `dtype` copy, each fed the fp32 stage inputs; and end to end."""
    half = half_copy(reference, dtype)
    errors = {"VAE encode (latent)": relative_rms(encode_latents(half.vae, inputs.pixels.to(dtype), inputs.noise.posterior), expected.latent)}
    errors.update(_walk_errors(half, expected, inputs.context, dtype))
    steps = [DecoderStep(s.features.to(dtype), None if s.attention is None else s.attention.to(dtype), s.upsample_size)
             for s in expected.steps]
    errors["refiner"] = relative_rms(half.refiner(steps, expected.temb.to(dtype), inputs.context.to(dtype)), expected.refined)
    errors["depth head"] = relative_rms(half.depth_head(expected.refined.to(dtype)), expected.depth)
    errors["segmentation head"] = relative_rms(half.segmentation_head(expected.refined.to(dtype)), expected.segmentation)
    raw = half.predict_raw(inputs.pixels, inputs.context, posterior_noise=inputs.noise.posterior,
                           step_noise=inputs.noise.step, output_segmentation=False)
    errors["end to end depth (random weights: amplified)"] = relative_rms(raw.depth, expected.depth)
    return errors
