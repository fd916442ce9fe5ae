"""Tiny random PrimeDepth models and synthetic 3D scenes for tests, examples and benchmarks.

Models need no download and build in about a second.

The architecture is the one of the shared official tiny fixture (`tiny/config.yaml`): a 32-channel
UNet with 1-2 heads of 32, refiner ratio 0.75, 64-channel heads, 32-dim text context. It goes
through the same config mapping as a converted official checkpoint.

Scenes (`SCENES`, `render`) are surfaces ray-cast to exact depth with a known camera, in the
camera frame of `primedepth.geometry` (x right, y down, z forward; depth is z); with
`affine_prediction` and `known_depths` they give what a model and a depth sensor would report.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from transformers import CLIPTextModel, CLIPTokenizer, DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

try:
    from transformers import DPTImageProcessorPil as DepthAnythingProcessor
except ImportError:  # transformers < 5
    from transformers import DPTImageProcessor as DepthAnythingProcessor

from .convert.checkpoint import RELEASED_INFERENCE_CONFIG, component_configs
from .geometry import Intrinsics, SparseDepth
from .model.heads import LabelHead
from .model.refiner import PrimeDepthRefiner
from .pipeline import PrimeDepthPipeline
from .text.encoder import build_tokenizer, text_encoder_config

__all__ = [
    "TINY_CONTEXT_DIM",
    "TINY_MERGES",
    "clip_byte_chars",
    "tiny_vocab",
    "tiny_tokenizer",
    "tiny_text_encoder",
    "tiny_official_config",
    "tiny_pipeline",
    "tiny_prompt_embeds",
    "save_tiny_model",
    "save_tiny_depth_anything",
    "Plane",
    "Sphere",
    "Box",
    "SCENES",
    "rays",
    "render",
    "colours",
    "affine_prediction",
    "known_depths",
]

TINY_CONTEXT_DIM = 32
TINY_SEGMENTATION_CLASSES = 5


# A CLIP-shaped BPE vocabulary small enough to build in memory (the real one needs the hub).
TINY_MERGES = ["c a", "ca r</w>", "p h", "ph o", "t o</w>", "pho to</w>", "r e", "re d</w>"]


def clip_byte_chars() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE, in CLIP's vocabulary order ('!' first = id 0)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + i) for i in range(len(extra))]


def tiny_vocab() -> dict[str, int]:
    """Bytes, bytes + '</w>', the merges, then <|startoftext|>, <|endoftext|>, as CLIP orders them."""
    chars = clip_byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in TINY_MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer() -> CLIPTokenizer:
    return build_tokenizer(tiny_vocab(), TINY_MERGES)


def tiny_text_encoder() -> CLIPTextModel:
    """A 2-layer CLIP text tower of width TINY_CONTEXT_DIM (random weights, seeded by the caller)."""
    vocab = tiny_vocab()
    config = text_encoder_config(
        hidden_size=TINY_CONTEXT_DIM, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(vocab), bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
    )
    return CLIPTextModel(config)


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


def tiny_pipeline(seed: int = 0, segmentation: bool = True, text: bool = True, default_prompt: str = "") -> PrimeDepthPipeline:
    """A tiny PrimeDepth pipeline with random weights (deterministic for a given seed).

    With `text`, it has a tiny text encoder and tokenizer; its default prompt is "" so that it
    runs offline (the official model's default, "auto", needs BLIP-2 from the hub).
    """
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
            text_encoder=tiny_text_encoder() if text else None,
            tokenizer=tiny_tokenizer() if text else None,
            default_prompt=default_prompt,
        )
    for model in pipeline.components.values():
        if isinstance(model, torch.nn.Module):
            model.eval().requires_grad_(False)
    return pipeline


def tiny_prompt_embeds(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A random (batch, 77, 32) text context for the tiny model."""
    return torch.randn(batch, 77, TINY_CONTEXT_DIM, generator=torch.Generator().manual_seed(seed))


def save_tiny_model(directory: str | os.PathLike, seed: int = 0, segmentation: bool = True, text: bool = True) -> Path:
    """Write a loadable tiny model folder (as `primedepth convert` writes) and return its path."""
    directory = Path(directory)
    tiny_pipeline(seed, segmentation, text).save_pretrained(directory, safe_serialization=True)
    return directory


def save_tiny_depth_anything(directory: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random Depth Anything V2 (model + image processor) as a hub snapshot would."""
    backbone = Dinov2Config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
        patch_size=14, image_size=56, out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=16, neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8, head_hidden_size=8, patch_size=14,
    )
    directory = Path(directory)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        DepthAnythingForDepthEstimation(config).save_pretrained(directory)
    DepthAnythingProcessor(
        size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(directory)
    return directory


# ------------------------------------------------------------------------ synthetic 3D scenes


@dataclass(frozen=True)
class Plane:
    """Points X with normal . X = offset."""

    normal: tuple[float, float, float]
    offset: float

    def hit(self, rays: np.ndarray) -> np.ndarray:
        facing = rays @ np.asarray(self.normal, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = self.offset / facing
        return np.where(np.abs(facing) > 1e-12, t, np.inf)


@dataclass(frozen=True)
class Sphere:
    centre: tuple[float, float, float]
    radius: float

    def hit(self, rays: np.ndarray) -> np.ndarray:
        centre = np.asarray(self.centre, dtype=np.float64)
        a = np.einsum("...i,...i->...", rays, rays)
        b = rays @ centre
        disc = b * b - a * (centre @ centre - self.radius**2)
        t = (b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where(disc >= 0, t, np.inf)


@dataclass(frozen=True)
class Box:
    """Axis-aligned box between two corners (slab test)."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def hit(self, rays: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = np.asarray(self.low) / rays
            t2 = np.asarray(self.high) / rays
        near = np.nanmax(np.minimum(t1, t2), axis=-1)
        far = np.nanmin(np.maximum(t1, t2), axis=-1)
        return np.where((near <= far) & (near > 0), near, np.inf)


SCENE_CAMERA = Intrinsics(fx=110.0, fy=105.0, cx=79.3, cy=59.6, width=160, height=120)


def rays(intrinsics: Intrinsics = SCENE_CAMERA) -> np.ndarray:
    """(H, W, 3) rays through the pixel centres with z = 1."""
    cols = np.arange(intrinsics.width, dtype=np.float64)
    rows = np.arange(intrinsics.height, dtype=np.float64)
    x = (cols[None, :] - intrinsics.cx) / intrinsics.fx
    y = (rows[:, None] - intrinsics.cy) / intrinsics.fy
    return np.stack(np.broadcast_arrays(x, y, np.ones_like(x * y)), axis=-1)


def render(surfaces: list, intrinsics: Intrinsics = SCENE_CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth (H, W) and 3D points (H, W, 3); pixels that hit nothing are inf.

    A pixel's depth is the nearest positive hit along its ray, so its 3D point is known exactly
    (``t * ray`` with the ray's z equal to 1).
    """
    directions = rays(intrinsics)
    hits = np.stack([surface.hit(directions) for surface in surfaces])
    hits = np.where(hits > 0, hits, np.inf)
    depth = hits.min(axis=0)
    return depth, directions * depth[..., None]


TILTED_PLANE = [Plane((0.0, -0.3, 1.0), 4.0)]
SPHERE_BEFORE_WALL = [Sphere((0.2, -0.1, 3.0), 0.8), Plane((0.0, 0.0, 1.0), 6.0)]
BOXES = [Box((-1.2, -0.2, 3.0), (-0.2, 1.0, 4.0)), Box((0.4, 0.3, 2.5), (1.0, 1.0, 3.2)),
         Plane((0.0, 1.0, 0.0), 1.0), Plane((0.0, 0.0, 1.0), 9.0)]
SCENES = {"tilted_plane": TILTED_PLANE, "sphere_before_wall": SPHERE_BEFORE_WALL, "boxes": BOXES}


def colours(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A deterministic (H, W, 3) uint8 texture with distinct neighbouring pixels."""
    rows, cols = np.indices(shape)
    rgb = np.stack([(cols * 7) % 256, (rows * 11) % 256, (rows * 3 + cols * 5 + seed) % 256], axis=-1)
    return rgb.astype(np.uint8)


def affine_prediction(depth: np.ndarray, scale: float, shift: float, noise: float = 0.0,
                      seed: int = 0) -> np.ndarray:
    """What an affine-invariant model would say: ``pred`` with ``scale * pred + shift = 1/depth``.

    `noise` is the standard deviation of Gaussian noise added to the prediction, relative to
    the prediction's range.
    """
    pred = (1.0 / depth - shift) / scale
    if noise:
        pred = pred + np.random.default_rng(seed).normal(0.0, noise * np.ptp(pred), pred.shape)
    return pred.astype(np.float32)


def known_depths(depth: np.ndarray, count: int, outliers: float, one_sided: bool, seed: int = 1) -> SparseDepth:
    """`count` known depths at random pixels with 0.2% sensor noise; a fraction `outliers` of
    them is off by a factor 1.3-3 (too far, or with `one_sided` False also its inverse)."""
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, depth.shape[0], count), rng.integers(0, depth.shape[1], count)
    known = depth[y, x] * rng.normal(1.0, 0.002, count)
    bad = rng.random(count) < outliers
    factor = rng.uniform(1.3, 3.0, int(bad.sum()))
    if not one_sided:
        factor = np.where(rng.random(factor.size) < 0.5, factor, 1.0 / factor)
    known[bad] *= factor
    return SparseDepth(x=x, y=y, depth_m=known, shape=depth.shape, source="test points")
