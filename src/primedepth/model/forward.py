"""THE PrimeDepth forward pass: the one implementation that the pipeline, training, benchmarks and
tests call, so a change to the model cannot drift between them.

    pixels (B, 3, H, W) in [-1, 1]
      -> `encode_latents`: VAE posterior sample x 0.18215                      (frozen)
      -> `walk_preimage`: q_sample at t = 1, one UNet walk = the preimage steps (frozen)
      -> `predict_labels`: refiner -> depth head (+ segmentation head)          (trained)

`forward` chains the three for inference. Training calls `compute_preimage` (the frozen half,
materialised once without autograd) and `predict_labels` (the trained half, with gradients).

Noise: the posterior sample and the t = 1 noise are the only random draws. `draw_noise` makes
them per image from generators (inference: a batch equals one-by-one runs); `seeded_noise` makes
them as a pure function of (seed, stream, index) (training: exact resume).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor

from ..constants import VAE_DOWNSAMPLE, VAE_ENCODER_NORM_EPS
from .heads import LabelHead
from .preimage import DecoderStep, add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding
from .refiner import PrimeDepthRefiner

__all__ = [
    "LatentNoise",
    "Preimage",
    "RawPrediction",
    "PrimeDepthModules",
    "latent_shape",
    "draw_noise",
    "seeded_noise",
    "walk_preimage",
    "compute_preimage",
    "predict_labels",
    "forward",
    "seeded_generator",
    "seeded_generators",
]

Generator = torch.Generator | Sequence[torch.Generator] | None
# Moves the given modules to the execution device for the duration of a stage (model offload);
# the default leaves them where they are.
Placement = Callable[..., AbstractContextManager]


@dataclass
class LatentNoise:
    """N(0, 1) draws of a batch, each (B, latent_channels, H/8, W/8): posterior sample, t = 1 noise."""

    posterior: torch.Tensor
    step: torch.Tensor

    @classmethod
    def cat(cls, noises: Sequence[LatentNoise]) -> LatentNoise:
        return cls(torch.cat([n.posterior for n in noises]), torch.cat([n.step for n in noises]))


@dataclass
class Preimage:
    """What the frozen half hands to the trained half: decoder steps, t = 1 embedding, context."""

    steps: Iterable[DecoderStep]
    temb: torch.Tensor
    context: torch.Tensor


@dataclass
class RawPrediction:
    """Head outputs at the processed size: depth (B, 3, H, W), segmentation (B, C, H, W) or None."""

    depth: torch.Tensor
    segmentation: torch.Tensor | None


class PrimeDepthModules(Protocol):
    """The components the forward pass needs (a `PrimeDepthPipeline` has them)."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    refiner: PrimeDepthRefiner
    depth_head: LabelHead
    segmentation_head: LabelHead | None


def latent_shape(vae: AutoencoderKL, height: int, width: int) -> tuple[int, int, int]:
    """(channels, h, w) of the latent of one height x width image."""
    return (vae.config.latent_channels, height // VAE_DOWNSAMPLE, width // VAE_DOWNSAMPLE)


def draw_noise(
    vae: AutoencoderKL, sizes: Sequence[tuple[int, int]], generator: Generator = None, device: Any = "cpu"
) -> list[LatentNoise]:
    """Noise per image, drawn in input order, posterior first, in fp32, from `generator` (one
    for all images, or one per image)."""
    if isinstance(generator, Sequence) and len(generator) != len(sizes):
        raise ValueError(f"got {len(generator)} generators for {len(sizes)} images")
    noises = []
    for index, size in enumerate(sizes):
        source = generator[index] if isinstance(generator, Sequence) else generator
        shape = (1, *latent_shape(vae, *size))
        posterior = randn_tensor(shape, generator=source, device=torch.device(device), dtype=torch.float32)
        step = randn_tensor(shape, generator=source, device=torch.device(device), dtype=torch.float32)
        noises.append(LatentNoise(posterior, step))
    return noises


def seeded_noise(vae: AutoencoderKL, pixel_values: torch.Tensor, seed: int, stream: int, index: int) -> LatentNoise:
    """Noise for a batch as a pure function of (seed, stream, index): training resumes exactly."""
    state = np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2, dtype=np.uint64)
    generator = torch.Generator().manual_seed(int(state[0] % (2**63)))
    shape = (pixel_values.shape[0], *latent_shape(vae, *pixel_values.shape[-2:]))
    return LatentNoise(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))


def walk_preimage(
    unet: UNet2DConditionModel,
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    context: torch.Tensor,
    step_noise: torch.Tensor,
    processor: Any = None,
) -> Preimage:
    """Noise the latents at t = 1 and walk the UNet once; the steps are produced lazily, so a
    consumer can drop each one after use and the UNet tail no step needs is never run.
    `processor`: the attention-map processor (default: the fused one; see `capturing_attention_maps`)."""
    noisy = add_step_noise(scheduler, latents.to(unet.device, unet.dtype), step_noise.to(unet.device))
    temb = timestep_embedding(unet, noisy)
    context = context.to(unet.device, unet.dtype).expand(noisy.shape[0], -1, -1)
    return Preimage(iter_decoder_steps(unet, noisy, temb, context, processor), temb, context)


@torch.no_grad()
def compute_preimage(
    modules: PrimeDepthModules,
    pixel_values: torch.Tensor,
    context: torch.Tensor,
    noise: LatentNoise,
    encoder_norm_eps: float = VAE_ENCODER_NORM_EPS,
) -> Preimage:
    """The frozen half, materialised (all steps kept) and without autograd: training's input."""
    latents = _encode(modules.vae, pixel_values, noise, None, encoder_norm_eps)
    preimage = walk_preimage(modules.unet, modules.scheduler, latents, context, noise.step)
    return Preimage(list(preimage.steps), preimage.temb, preimage.context)


def _encode(vae: AutoencoderKL, pixel_values: torch.Tensor, noise: LatentNoise, chunk: int | None, eps: float) -> torch.Tensor:
    """`encode_latents` with the inputs moved to the VAE's device and dtype."""
    return encode_latents(vae, pixel_values.to(vae.device, vae.dtype), noise.posterior.to(vae.device), chunk, eps)


def _run_head(head: LabelHead, features: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """A head on at most `chunk` images at a time (it works per image; chunks bound memory)."""
    return torch.cat([head(part) for part in features.split(chunk or features.shape[0])])


def predict_labels(
    refiner: PrimeDepthRefiner,
    depth_head: LabelHead,
    preimage: Preimage,
    segmentation_head: LabelHead | None = None,
    chunk: int | None = None,
) -> RawPrediction:
    """The trained half: refiner over the preimage steps, then the heads (segmentation if given)."""
    features = refiner(preimage.steps, preimage.temb, preimage.context)
    depth = _run_head(depth_head, features, chunk)
    segmentation = None if segmentation_head is None else _run_head(segmentation_head, features, chunk)
    return RawPrediction(depth=depth, segmentation=segmentation)


def _in_place(*modules: torch.nn.Module) -> AbstractContextManager:
    return nullcontext()


@torch.no_grad()
def forward(
    modules: PrimeDepthModules,
    pixel_values: torch.Tensor,
    context: torch.Tensor,
    noise: LatentNoise,
    segmentation: bool = False,
    chunk: int | None = None,
    encoder_norm_eps: float = VAE_ENCODER_NORM_EPS,
    placement: Placement = _in_place,
) -> RawPrediction:
    """Inference: pixels (B, 3, H, W) in [-1, 1] and context (B, tokens, D) -> head outputs.

    `chunk`: images per call of the full-resolution stages (VAE encoder, heads), which hold the
    memory peak; the UNet walk always takes the whole batch. `placement`: see `Placement`.
    """
    with placement(modules.vae):
        latents = _encode(modules.vae, pixel_values, noise, chunk, encoder_norm_eps)
    segmentation_head = modules.segmentation_head if segmentation else None
    trained = [m for m in (modules.refiner, modules.depth_head, segmentation_head) if m is not None]
    with placement(modules.unet, *trained):
        preimage = walk_preimage(modules.unet, modules.scheduler, latents, context, noise.step)
        return predict_labels(modules.refiner, modules.depth_head, preimage, segmentation_head, chunk)


def seeded_generator(seed: int | None, device: Any = "cpu") -> torch.Generator | None:
    """A generator seeded with `seed` on `device`, or None (fresh randomness) without a seed."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def seeded_generators(seed: int | None, count: int) -> list[torch.Generator] | None:
    """One CPU generator per image, all with the same seed, so that an image's result depends
    on the seed only, never on the batch it was in or its position. None without a seed."""
    return None if seed is None else [torch.Generator().manual_seed(seed) for _ in range(count)]
