"""Every benchmarked model, built from its configuration with random weights, and the input.

Speed does not depend on the weights' values, so no checkpoint and no download is needed. A
model is built on the meta device, cast, allocated on its device with `to_empty` (a bf16 model
never exists as an fp32 copy, so the peak memory is the real one) and filled with small values.

Scales: "full" is the released architecture (SD 2.1-sized UNet, OpenCLIP ViT-H text tower,
Depth Anything V2-Large); "tiny" is the test model of `primedepth.testing` (smoke runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    MarigoldDepthPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextModel,
    DepthAnythingConfig,
    DepthAnythingForDepthEstimation,
    Dinov2Config,
)

from primedepth.casting import drop_empty_fp32_warning
from primedepth.convert import RELEASED_INFERENCE_CONFIG, component_configs
from primedepth.convert.checkpoint import ComponentConfigs
from primedepth.model import LabelHead, LatentNoise, PrimeDepthRefiner, latent_shape
from primedepth.pipeline import PrimeDepthPipeline
from primedepth.testing import tiny_official_config, tiny_text_encoder
from primedepth.text import CONTEXT_LENGTH, text_encoder_config

# Every model here is cast with `.to(dtype)`: drop diffusers' empty "kept in float32: []" warning
# for the whole process, as the command line does.
drop_empty_fp32_warning()

SCALES = ("full", "tiny")
DAV2_SIZE = 518  # Depth Anything V2's native input size


@torch.no_grad()
def fill_random(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Cheap random fill: matrices/kernels uniform(+-1/sqrt(fan_in)), 1-D weights 1, biases 0.

    Keeps activations bounded (no inf/NaN and no denormals, which would distort CPU timings).
    On CUDA the values are drawn on the GPU (a full-size build in seconds, not a minute).
    """
    first = next(module.parameters(), None)
    device = first.device if first is not None and first.device.type == "cuda" else torch.device("cpu")
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, param in module.named_parameters():
        if param.ndim >= 2:
            bound = 1.0 / math.sqrt(max(1, param[0].numel()))
            param.copy_(torch.empty(param.shape, dtype=torch.float32, device=device).uniform_(-bound, bound, generator=generator))
        elif name.endswith(("weight", "gamma")) or "scale" in name.rsplit(".", 1)[-1]:
            param.fill_(1.0)
        else:
            param.zero_()
    for buffer in module.buffers():
        if buffer.is_floating_point():
            buffer.zero_()
    return module.eval().requires_grad_(False)


def materialise(factory: Callable[[], torch.nn.Module], dtype: torch.dtype, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """Build on meta, cast, allocate on `device` (never holding a float32 copy), fill randomly."""
    with torch.device("meta"):
        module = factory()
    module = module.to(dtype=dtype).to_empty(device=device)
    return fill_random(module, seed)


def primedepth_configs(scale: str) -> ComponentConfigs:
    """Component configurations of the released model ("full") or of the tiny test model."""
    official = RELEASED_INFERENCE_CONFIG if scale == "full" else tiny_official_config()
    return component_configs(official, {})


def build_primedepth(
    scale: str, dtype: torch.dtype, device: torch.device, segmentation: bool = True, text_encoder: Any = None
) -> PrimeDepthPipeline:
    """PrimeDepth pipeline with random weights, segmentation head included unless `segmentation`
    is false (the official-style path runs it, `predict_raw` without it does not), no text
    encoder unless one is given (the runs take a text context)."""
    configs = primedepth_configs(scale)
    factories: dict[str, Callable[[], torch.nn.Module]] = {
        "vae": lambda: AutoencoderKL(**configs.vae),
        "unet": lambda: UNet2DConditionModel(**configs.unet),
        "refiner": lambda: PrimeDepthRefiner(**configs.refiner),
        "depth_head": lambda: LabelHead(**configs.depth_head),
        "segmentation_head": lambda: LabelHead(**configs.segmentation_head),
    }
    if not segmentation:
        del factories["segmentation_head"]
    modules = {name: materialise(factory, dtype, device, seed) for seed, (name, factory) in enumerate(factories.items(), 1)}
    return PrimeDepthPipeline(**modules, scheduler=DDPMScheduler(**configs.scheduler), text_encoder=text_encoder)


def channels_last_copy(pipeline: PrimeDepthPipeline) -> PrimeDepthPipeline:
    """A pipeline sharing `pipeline`'s UNet and refiner, with channels-last copies of its VAE
    and depth head (as `primedepth predict` runs them) and no segmentation head: one process
    can then time PrimeDepth and the NCHW official-style path without a second UNet in memory."""
    copy = PrimeDepthPipeline(vae=deepcopy(pipeline.vae), unet=pipeline.unet, refiner=pipeline.refiner,
                              depth_head=deepcopy(pipeline.depth_head), scheduler=pipeline.scheduler)
    copy.enable_channels_last()
    return copy


def build_text_encoder(scale: str, device: torch.device, dtype: torch.dtype = torch.float32) -> CLIPTextModel:
    """The OpenCLIP ViT-H/14 text tower as a CLIPTextModel (random, fp32 unless `dtype`): the
    official code encodes the prompt of every image with it (PrimeDepth caches prompt embeddings)."""
    factory = (lambda: CLIPTextModel(text_encoder_config())) if scale == "full" else tiny_text_encoder
    model = materialise(factory, dtype, device, 7)
    for name, buffer in model.named_buffers():
        if name.endswith("position_ids"):  # an integer buffer: to_empty left it undefined
            buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))
    return model


def build_marigold(scale: str, dtype: torch.dtype, device: torch.device, vae: AutoencoderKL | None = None) -> MarigoldDepthPipeline:
    """diffusers' MarigoldDepthPipeline: SD 2.x UNet with 8 input channels, the same VAE (`vae`
    if given: an NCHW VAE of the same architecture and dtype may be shared, it is only read)."""
    configs = primedepth_configs(scale)
    unet_config = dict(configs.unet, in_channels=8)
    pipeline = MarigoldDepthPipeline(
        unet=materialise(lambda: UNet2DConditionModel(**unet_config), dtype, device, 6),
        vae=vae if vae is not None else materialise(lambda: AutoencoderKL(**configs.vae), dtype, device, 1),
        scheduler=DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction", timestep_spacing="trailing",
        ),
        text_encoder=None,
        tokenizer=None,
        prediction_type="depth",
        default_denoising_steps=1,
    )
    # The empty-prompt embedding, as the text encoder would give it: no text tower is needed.
    pipeline.empty_text_embedding = torch.zeros(1, 2, unet_config["cross_attention_dim"], device=device, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


# Depth-Anything-V2-Large, and a tiny model of the same structure for smoke runs.
_DAV2: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": (
        {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "mlp_ratio": 4, "patch_size": 14,
         "image_size": DAV2_SIZE, "layerscale_value": 1.0, "out_features": ["stage5", "stage12", "stage18", "stage24"]},
        {"reassemble_hidden_size": 1024, "neck_hidden_sizes": [256, 512, 1024, 1024], "fusion_hidden_size": 256,
         "head_hidden_size": 32, "depth_estimation_type": "relative"},
    ),
    "tiny": (
        {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "patch_size": 14, "image_size": 56,
         "out_features": ["stage1", "stage2", "stage3", "stage4"]},
        {"reassemble_hidden_size": 32, "neck_hidden_sizes": [8, 16, 32, 32], "fusion_hidden_size": 16, "head_hidden_size": 8},
    ),
}


def dav2_config(scale: str) -> DepthAnythingConfig:
    """transformers' configuration of Depth Anything V2-Large (or the tiny stand-in)."""
    backbone, head = _DAV2[scale]
    return DepthAnythingConfig(backbone_config=Dinov2Config(reshape_hidden_states=False, **backbone), **head)


def build_dav2(scale: str, dtype: torch.dtype, device: torch.device) -> DepthAnythingForDepthEstimation:
    """transformers' DepthAnythingForDepthEstimation with random weights."""
    config = dav2_config(scale)
    return materialise(lambda: DepthAnythingForDepthEstimation(config), dtype, device, 7)


@dataclass
class BenchInputs:
    """What every mode of one size gets: pixels in [-1, 1], a 77-token text context and the
    two latent noises, so that all runs compute on the same numbers."""

    pixels: torch.Tensor
    context: torch.Tensor
    noise: LatentNoise


def make_inputs(pipeline: Any, batch: int, size: int, device: torch.device, seed: int = 0) -> BenchInputs:
    """Random inputs of `batch` size x size images for a pipeline with `.vae` and `.unet`
    (PrimeDepth's or Marigold's: they share the VAE, so the latent shape is the same)."""
    generator = torch.Generator().manual_seed(seed)
    latent = (batch, *latent_shape(pipeline.vae, size, size))
    pixels = torch.rand(batch, 3, size, size, generator=generator) * 2 - 1
    context = torch.randn(batch, CONTEXT_LENGTH, pipeline.unet.config.cross_attention_dim, generator=generator)
    posterior, step = (torch.randn(latent, generator=generator) for _ in range(2))
    return BenchInputs(pixels.to(device), context.to(device), LatentNoise(posterior.to(device), step.to(device)))
