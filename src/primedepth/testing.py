"""Tiny random PrimeDepth models for tests and examples (no download, builds in about a second).

The architecture is the one of the shared official tiny fixture (`tiny/config.yaml`): a 32-channel
UNet with 1-2 heads of 32, refiner ratio 0.75, 64-channel heads, 32-dim text context. It goes
through the same config mapping as a converted official checkpoint.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from .convert import RELEASED_INFERENCE_CONFIG, component_configs
from .heads import LabelHead
from .pipeline import PrimeDepthPipeline
from .refiner import PrimeDepthRefiner

__all__ = ["tiny_official_config", "tiny_pipeline", "save_tiny_model", "TINY_CONTEXT_DIM", "tiny_prompt_embeds"]

TINY_CONTEXT_DIM = 32
TINY_SEGMENTATION_CLASSES = 5


def tiny_official_config() -> dict[str, Any]:
    """The official-format config of the tiny model (same numbers as the shared fixture)."""
    config = copy.deepcopy(RELEASED_INFERENCE_CONFIG)
    params = config["model"]["params"]
    tiny_unet = {"model_channels": 32, "channel_mult": [1, 2, 2, 2], "num_head_channels": 32, "context_dim": TINY_CONTEXT_DIM}
    params["unet_config"]["params"].update(tiny_unet)
    labeller = params["label_stage_config"]["params"]
    labeller.update(tiny_unet, refiner_model_ratio=0.75, channels2predictor=64)
    labeller["label_mode"] = {"depth": 3, "segmentation": TINY_SEGMENTATION_CLASSES}
    for ddconfig in (params["first_stage_config"]["params"]["ddconfig"], labeller["label_decoder_config"]):
        ddconfig.update(ch=32, ch_mult=[1, 2, 2, 2])
    return config


def tiny_pipeline(seed: int = 0, segmentation: bool = True) -> PrimeDepthPipeline:
    """A tiny PrimeDepth pipeline with random weights (deterministic for a given seed)."""
    configs = component_configs(tiny_official_config(), {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = PrimeDepthPipeline(
            vae=AutoencoderKL(**configs.vae),
            unet=UNet2DConditionModel(**configs.unet),
            refiner=PrimeDepthRefiner(**configs.refiner),
            depth_head=LabelHead(**configs.depth_head),
            segmentation_head=LabelHead(**configs.segmentation_head) if segmentation else None,
            scheduler=DDPMScheduler(**configs.scheduler),
        )
    for model in pipeline.components.values():
        if isinstance(model, torch.nn.Module):
            model.eval().requires_grad_(False)
    return pipeline


def tiny_prompt_embeds(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random (batch, 77, 32) text context for the tiny model."""
    return torch.randn(batch, 77, TINY_CONTEXT_DIM, generator=torch.Generator().manual_seed(seed))


def save_tiny_model(directory: str | os.PathLike, seed: int = 0, segmentation: bool = True) -> Path:
    """Write a loadable tiny model folder (as `primedepth convert` writes) and return its path."""
    directory = Path(directory)
    tiny_pipeline(seed, segmentation).save_pretrained(directory, safe_serialization=True)
    return directory
