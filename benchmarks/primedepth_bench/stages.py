"""PrimeDepth's forward pass cut into stages that can be timed alone.

Every stage is a call into `primedepth.model` (its stage functions, or a component): the
benchmark never writes the model out again. End-to-end timings call the pipeline instead
(`PrimeDepthPipeline.predict_raw`, i.e. `primedepth.model.forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from primedepth.constants import SINGLE_STEP_TIMESTEP
from primedepth.model import Preimage, walk_preimage
from primedepth.model.preimage import add_step_noise, encode_latents

from .builders import BenchInputs
from .timing import StageTimer


def encode_call(pipeline: Any, inputs: BenchInputs, dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """The VAE-encode stage of `forward` on the inputs (their posterior noise, the pipeline's eps)."""
    pixels = inputs.pixels.to(dtype)
    eps = pipeline.config.vae_encoder_norm_eps
    return lambda: encode_latents(pipeline.vae, pixels, inputs.noise.posterior, encoder_norm_eps=eps)


def walk_call(
    pipeline: Any, latents: torch.Tensor, context: torch.Tensor, step_noise: torch.Tensor, processor: Any = None
) -> Callable[[], Preimage]:
    """The UNet walk of `forward`, its lazy steps materialised into a list: the walk is then
    timed on its own, and the refiner can be timed alone on the list."""

    def walk() -> Preimage:
        preimage = walk_preimage(pipeline.unet, pipeline.scheduler, latents, context, step_noise, processor)
        return Preimage(list(preimage.steps), preimage.temb, preimage.context)

    return walk


def bare_unet_call(pipeline: Any, latents: torch.Tensor, context: torch.Tensor, step_noise: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The plain UNet forward at t = 1 on the same noised latents: the UNet's own attention
    (diffusers' default, as built; the walk restores it), no capture, the whole UNet."""
    noisy = add_step_noise(pipeline.scheduler, latents, step_noise)
    timesteps = torch.full((noisy.shape[0],), SINGLE_STEP_TIMESTEP, dtype=torch.long, device=noisy.device)
    return lambda: pipeline.unet(noisy, timesteps, encoder_hidden_states=context, return_dict=False)[0]


def time_stages(
    pipeline: Any,
    inputs: BenchInputs,
    dtype: torch.dtype,
    timer: StageTimer,
    after_walk: Callable[[Preimage], Any] | None = None,
    processor: Any = None,
) -> None:
    """Time each stage alone into `timer`: VAE encode, UNet walk (materialised), refiner, depth
    head, segmentation head. `after_walk` gets the materialised preimage before the refiner runs
    (the official-style path times its UNet tail there); `processor` replaces the walk's fused
    attention-map processor (the official-style reference)."""
    context = inputs.context.to(dtype)
    with torch.no_grad():
        latents = timer("vae_encode", encode_call(pipeline, inputs, dtype))
        preimage = timer("unet_preimage", walk_call(pipeline, latents, context, inputs.noise.step, processor))
        if after_walk is not None:
            after_walk(preimage)
        features = timer("refiner", partial(pipeline.refiner, preimage.steps, preimage.temb, preimage.context))
        del preimage  # the steps are the largest tensors; the heads run without them, as in `forward`
        timer("depth_head", lambda: pipeline.depth_head(features))
        timer("seg_head", lambda: pipeline.segmentation_head(features))
