"""The preimage: what PrimeDepth takes from one pass of the frozen Stable Diffusion UNet.

Data flow (official spec §4-6): pixels in [-1, 1] -> VAE posterior sample x 0.18215 -> noised at
t = 1 -> one UNet pass. For each of the UNet's decoder steps (one per up-block resnet, 12 for SD)
the preimage holds
- `features`: the input of that resnet, concat(decoder stream, encoder skip);
- `attention`: [maps of the previous transformer in decoding order, maps of the transformer of the
  matching encoder block], each [self maps, cross maps] (see `attention_maps`); the previous maps
  are bilinearly resized to the encoder's size when they differ; None where neither exists.

The walk yields step i before running up-block resnet i, so a consumer (the refiner) can use and
drop each step at once, and the UNet tail that no step needs (the last resnet and transformer,
`conv_out`) is never computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ..constants import SINGLE_STEP_TIMESTEP, VAE_ENCODER_NORM_EPS
from .attention_maps import AttentionMapSink, capturing_attention_maps
from .norms import group_norm_eps

__all__ = ["DecoderStep", "encode_latents", "add_step_noise", "timestep_embedding", "iter_decoder_steps"]


@dataclass
class DecoderStep:
    """The preimage of one UNet decoder step."""

    features: torch.Tensor
    attention: torch.Tensor | None
    # Spatial size of the next step: set on the last step of a resolution level, where the
    # refiner upsamples (nearest, to the encoder skip's size, as the UNet does).
    upsample_size: tuple[int, int] | None


def encode_latents(
    vae: AutoencoderKL,
    pixel_values: torch.Tensor,
    posterior_noise: torch.Tensor,
    chunk: int | None = None,
    encoder_norm_eps: float = VAE_ENCODER_NORM_EPS,
) -> torch.Tensor:
    """Sample the VAE posterior with the given N(0, 1) noise and scale it (official §4).

    The encoder runs with the official GroupNorm eps (1e-5, SD's is 1e-6) for this call only, on
    at most `chunk` images at a time (it is per image, so chunking changes nothing but memory).
    diffusers' posterior clamps the log-variance to [-30, 20] as the official one does.
    """
    chunk = chunk or pixel_values.shape[0]
    latents = []
    with group_norm_eps(vae.encoder, encoder_norm_eps):
        for pixels, noise in zip(pixel_values.split(chunk), posterior_noise.split(chunk)):
            posterior = vae.encode(pixels).latent_dist
            latents.append(posterior.mean + posterior.std * noise.to(posterior.mean))
    return torch.cat(latents) * vae.config.scaling_factor


def _single_step(latents: torch.Tensor) -> torch.Tensor:
    """The timestep t = 1 for each latent of the batch."""
    return torch.full((latents.shape[0],), SINGLE_STEP_TIMESTEP, dtype=torch.long, device=latents.device)


def add_step_noise(scheduler: DDPMScheduler, latents: torch.Tensor, step_noise: torch.Tensor) -> torch.Tensor:
    """q_sample at the single timestep t = 1 with the given noise."""
    return scheduler.add_noise(latents, step_noise.to(latents), _single_step(latents))


def timestep_embedding(unet: UNet2DConditionModel, latents: torch.Tensor) -> torch.Tensor:
    """The UNet's embedding of t = 1; the refiner's resnets share it."""
    return unet.time_embedding(unet.get_time_embed(sample=latents, timestep=_single_step(latents)))


def _transformer(block: torch.nn.Module, hidden: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one UNet transformer, returning its output and its attention maps."""
    sink = AttentionMapSink(*hidden.shape[-2:])
    out = block(hidden, encoder_hidden_states=context, cross_attention_kwargs={"attention_maps": sink}, return_dict=False)[0]
    return out, sink.maps()


def _combine_maps(previous: torch.Tensor | None, encoder: torch.Tensor | None) -> torch.Tensor | None:
    """[previous, encoder] maps, the previous ones resized to the encoder's size (official §6.6)."""
    if previous is None or encoder is None:
        return previous if encoder is None else encoder
    if previous.shape[-2:] != encoder.shape[-2:]:
        previous = F.interpolate(previous, size=encoder.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([previous, encoder], dim=1)


def _encoder_pass(unet, hidden, temb, context):
    """Down blocks: the skips (input-block outputs) and their maps, in input-block order."""
    skips, skip_maps = [hidden], [None]
    for block in unet.down_blocks:
        attentions = getattr(block, "attentions", None)
        for index, resnet in enumerate(block.resnets):
            hidden = resnet(hidden, temb)
            maps = None
            if attentions is not None:
                hidden, maps = _transformer(attentions[index], hidden, context)
            skips.append(hidden)
            skip_maps.append(maps)
        for downsampler in block.downsamplers or ():
            hidden = downsampler(hidden)
            skips.append(hidden)
            skip_maps.append(None)
    return hidden, skips, skip_maps


def _middle_pass(unet, hidden, temb, context):
    block = unet.mid_block
    hidden = block.resnets[0](hidden, temb)
    maps = None
    for attention, resnet in zip(block.attentions, block.resnets[1:]):
        hidden, maps = _transformer(attention, hidden, context)
        hidden = resnet(hidden, temb)
    return hidden, maps


def iter_decoder_steps(
    unet: UNet2DConditionModel,
    noisy_latents: torch.Tensor,
    temb: torch.Tensor,
    context: torch.Tensor,
    processor: Any = None,
) -> Iterator[DecoderStep]:
    """Walk the frozen UNet once, yielding the preimage of each decoder step in order.

    The UNet's attention layers record maps while the walk runs (`capturing_attention_maps`,
    with `processor` if given) and get their own processors back when it ends.
    """
    with capturing_attention_maps(unet, processor):
        yield from _decoder_walk(unet, noisy_latents, temb, context)


def _decoder_walk(unet, noisy_latents: torch.Tensor, temb: torch.Tensor, context: torch.Tensor) -> Iterator[DecoderStep]:
    hidden = unet.conv_in(noisy_latents)
    hidden, skips, skip_maps = _encoder_pass(unet, hidden, temb, context)
    hidden, previous_maps = _middle_pass(unet, hidden, temb, context)
    last_block = len(unet.up_blocks) - 1
    for block_index, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        upsample_size = None
        for index, resnet in enumerate(block.resnets):
            skip, encoder_maps = skips.pop(), skip_maps.pop()
            features = torch.cat([hidden, skip], dim=1)
            ends_level = index == len(block.resnets) - 1 and block.upsamplers is not None
            upsample_size = tuple(skips[-1].shape[-2:]) if ends_level else None
            yield DecoderStep(features, _combine_maps(previous_maps, encoder_maps), upsample_size)
            if block_index == last_block and index == len(block.resnets) - 1:
                return
            hidden = resnet(features, temb)
            previous_maps = None
            if attentions is not None:
                hidden, previous_maps = _transformer(attentions[index], hidden, context)
        for upsampler in block.upsamplers or ():
            hidden = upsampler(hidden, output_size=upsample_size)
