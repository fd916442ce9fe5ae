"""Official PrimeDepth checkpoint -> our diffusers components.

This package is the only place that knows the official key names (the text tower's are in
`open_clip`). It returns components; `PrimeDepthPipeline.from_single_file` assembles them and
`primedepth.loading.convert_checkpoint` writes a model folder. An official checkpoint is a
Lightning file `{"state_dict": {...}}` with
- `model.diffusion_model.*`: the frozen SD UNet (converted with diffusers' LDM conversion);
- `first_stage_model.*`: the SD VAE (likewise);
- `labeller.*`: the trained refiner, infusion convs and the two heads (mapped here);
- optionally `cond_stage_model.model.*`: the OpenCLIP text tower (see `open_clip`);
- 13 schedule buffers, which our scheduler recomputes.
The architecture comes from an official-format yaml config, or from the released inference config.
Checkpoints are read with `torch.load(weights_only=True)`: no pickled code is ever executed.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    create_unet_diffusers_config_from_ldm,
    create_vae_diffusers_config_from_ldm,
)

from ..constants import (
    CROSS_MAP_CHANNELS,
    LATENT_SCALE_FACTOR,
    SCHEDULE_BETA_END,
    SCHEDULE_BETA_START,
    SCHEDULE_NUM_TIMESTEPS,
    SELF_MAP_CHANNELS,
)
from ..errors import InputError, PrimeDepthError
from ..model.heads import LabelHead
from ..model.refiner import PrimeDepthRefiner
from ..text.encoder import load_text_encoder, load_tokenizer
from .open_clip import has_open_clip_text_weights, text_encoder_from_open_clip

# Converted folders carry the Stable Diffusion weights, hence their licence (official spec §0).
MODEL_LICENCE_FILE = "LICENSE-MODEL.md"
MODEL_LICENCE_NOTICE = """# CreativeML Open RAIL++-M (Stable Diffusion 2.x weights)

This folder was converted from a PrimeDepth checkpoint. Its `vae/` and `unet/` are the frozen
Stable Diffusion 2.1 weights and the trained parts derive from them, so the weights are subject to
the CreativeML Open RAIL++-M licence of Stability AI (24 Nov 2022), including its use-based
restrictions, which apply to derivatives and must be passed on to anyone you share them with.
The PrimeDepth code is MIT-licensed; the text encoder is OpenCLIP ViT-H/14 (LAION).
"""

# Width of the OpenCLIP ViT-H/14 text tower PrimeDepth is conditioned on.
VIT_H14_CONTEXT_DIM = 1024

__all__ = [
    "RELEASED_INFERENCE_CONFIG",
    "ComponentConfigs",
    "load_official_config",
    "load_official_state_dict",
    "component_configs",
    "convert_state_dict",
    "convert_checkpoint_file",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
LABELLER_PREFIX = "labeller."
HEAD_PREFIXES = {"depth_head": "labeller.depth_predictor.", "segmentation_head": "labeller.label_predictor."}

_SD2_DDCONFIG = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0,
}
_SD21_UNET = {
    "in_channels": 4, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
    "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_head_channels": 64, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "transformer_depth": 1, "context_dim": 1024, "legacy": False,
}

# The parameters of the official `configs/inference.yaml` that define the architecture.
RELEASED_INFERENCE_CONFIG: dict[str, Any] = {
    "model": {
        "params": {
            "linear_start": SCHEDULE_BETA_START,
            "linear_end": SCHEDULE_BETA_END,
            "timesteps": SCHEDULE_NUM_TIMESTEPS,
            "scale_factor": LATENT_SCALE_FACTOR,
            "image_size": 64,
            "unet_config": {"params": dict(_SD21_UNET)},
            "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": dict(_SD2_DDCONFIG)}},
            "label_stage_config": {
                "params": {
                    **_SD21_UNET,
                    "refiner_model_ratio": 0.5,
                    "n_ca_maps": CROSS_MAP_CHANNELS,
                    "n_sa_maps": SELF_MAP_CHANNELS,
                    "channels2predictor": 512,
                    "label_mode": {"depth": 3, "segmentation": 150},
                    "label_decoder_config": dict(_SD2_DDCONFIG),
                }
            },
        }
    }
}


def load_official_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """An official-format yaml config as a dict, or the released inference config when None."""
    if path is None:
        return copy.deepcopy(RELEASED_INFERENCE_CONFIG)
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read config {path}: {error}") from error
    params = (config or {}).get("model", {}).get("params", {})
    for section in ("unet_config", "first_stage_config", "label_stage_config"):
        if not isinstance(params.get(section), dict):
            raise InputError(f"{path} is not an official PrimeDepth config: model.params.{section} is missing")
    return config


def load_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of an official checkpoint (.ckpt/.pt via restricted unpickling, or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    checkpoint = _load_weights_only(path)
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not any(k.startswith(UNET_PREFIX) for k in state_dict):
        raise InputError(f"{path} is not an official PrimeDepth checkpoint (no '{UNET_PREFIX}*' weights)")
    return state_dict


def _load_weights_only(path: Path) -> Any:
    """torch.load restricted to tensors and plain containers; memory-mapped when the format allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):  # legacy (non-zip) files cannot be memory-mapped
            raise PrimeDepthError(f"cannot read checkpoint {path}: {error}") from error
    except Exception as error:  # noqa: BLE001 - unpickling errors come in many types
        raise _refused(path, error) from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001
        raise _refused(path, error) from error


def _refused(path: Path, error: Exception) -> PrimeDepthError:
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return PrimeDepthError(
        f"refusing to load {path}: it holds objects other than tensors ({first_line}). "
        "Only weights are read; pickled code is never executed."
    )


@dataclass
class ComponentConfigs:
    """Configurations of our components, derived from an official config."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    refiner: dict[str, Any]
    depth_head: dict[str, Any]
    segmentation_head: dict[str, Any] | None
    scheduler: dict[str, Any]


def _head_config(ddconfig: dict, in_channels: int, out_channels: int) -> dict[str, Any]:
    return {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "block_out_channels": [ddconfig["ch"] * m for m in ddconfig["ch_mult"]],
        "layers_per_block": ddconfig["num_res_blocks"],
    }


def component_configs(official: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> ComponentConfigs:
    """Map an official config onto our components' configs."""
    params = official["model"]["params"]
    unet = create_unet_diffusers_config_from_ldm(official, state_dict)
    vae = create_vae_diffusers_config_from_ldm(official, state_dict)
    labeller = params["label_stage_config"]["params"]
    heads_per_level = list(unet["attention_head_dim"])
    attention_levels = [t.startswith("CrossAttn") for t in unet["down_block_types"]]
    refiner = {
        "base_block_out_channels": list(unet["block_out_channels"]),
        "base_layers_per_block": unet["layers_per_block"],
        "base_attention_heads": [h if a else 0 for h, a in zip(heads_per_level, attention_levels)],
        "base_mid_attention_heads": heads_per_level[-1],
        "refiner_ratio": labeller["refiner_model_ratio"],
        "max_head_dim": labeller["num_head_channels"],
        "cross_attention_dim": unet["cross_attention_dim"],
        "temb_channels": 4 * unet["block_out_channels"][0],
        "out_channels": labeller["channels2predictor"],
    }
    if labeller.get("n_sa_maps", SELF_MAP_CHANNELS) != SELF_MAP_CHANNELS or labeller.get("n_ca_maps", CROSS_MAP_CHANNELS) != CROSS_MAP_CHANNELS:
        raise InputError("only the official map sizes (n_sa_maps 64, n_ca_maps 77) are supported")
    decoder = params["first_stage_config"]["params"]["ddconfig"]  # PrimeDepth forces the VAE's ddconfig
    labels = dict(labeller["label_mode"])
    segmentation_channels = labels.get("segmentation")
    return ComponentConfigs(
        unet=unet,
        vae=vae,
        refiner=refiner,
        depth_head=_head_config(decoder, labeller["channels2predictor"], labels["depth"]),
        segmentation_head=None if segmentation_channels is None else _head_config(decoder, labeller["channels2predictor"], segmentation_channels),
        scheduler={
            "num_train_timesteps": params.get("timesteps", SCHEDULE_NUM_TIMESTEPS),
            "beta_start": params.get("linear_start", SCHEDULE_BETA_START),
            "beta_end": params.get("linear_end", SCHEDULE_BETA_END),
            "beta_schedule": "scaled_linear",  # LDM "linear": linspace of square roots, squared
            "clip_sample": False,
        },
    )


# Official refiner resnet (ldm ResBlock) names -> diffusers ResnetBlock2D names (spec §7.2).
_RESNET_RENAMES = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_REFINER_BLOCK = re.compile(r"refiner\.output_blocks\.(\d+)\.(\d+)\.(.+)")
_INFUSION = {"convs_features": "feature_convs", "convs_attentions": "attention_convs", "convs_merge": "merge_convs"}


def _refiner_key(key: str, refiner: PrimeDepthRefiner) -> str:
    """Map one `labeller.*` key (prefix removed) of the refiner or infusion convs to ours."""
    match = _REFINER_BLOCK.fullmatch(key)
    if match:
        block, part, rest = int(match[1]), int(match[2]), match[3]
        if part == 0:
            name, _, leaf = rest.rpartition(".")
            return f"blocks.{block}.resnet.{_RESNET_RENAMES.get(name, name)}.{leaf}"
        has_transformer = refiner.plans[block].transformer_heads > 0
        if part == 1 and has_transformer:
            return f"blocks.{block}.transformer.{rest}"
        return f"blocks.{block}.upsampler.{rest}"
    if key.startswith("refiner.out.0."):
        return "norm_out." + key.removeprefix("refiner.out.0.")
    if key.startswith("refiner.out.2."):
        return "conv_out." + key.removeprefix("refiner.out.2.")
    group, _, rest = key.partition(".")
    if group in _INFUSION:
        return f"{_INFUSION[group]}.{rest}"
    raise PrimeDepthError(f"unexpected labeller key in checkpoint: labeller.{key}")


def _refiner_state_dict(state_dict: dict[str, torch.Tensor], refiner: PrimeDepthRefiner) -> dict[str, torch.Tensor]:
    head_prefixes = tuple(HEAD_PREFIXES.values())
    return {
        _refiner_key(k.removeprefix(LABELLER_PREFIX), refiner): v
        for k, v in state_dict.items()
        if k.startswith(LABELLER_PREFIX) and not k.startswith(head_prefixes)
    }


def _head_state_dict(state_dict: dict[str, torch.Tensor], prefix: str, config: dict) -> dict[str, torch.Tensor]:
    """A head's ldm decoder keys, converted by diffusers' VAE-decoder conversion."""
    as_decoder = {"decoder." + k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
    vae_like = {"down_block_types": [], "up_block_types": ["UpDecoderBlock2D"] * len(config["block_out_channels"])}
    return convert_ldm_vae_checkpoint(as_decoder, vae_like)


def _with_weights(factory, weights: dict[str, torch.Tensor], name: str) -> torch.nn.Module:
    """Build a model without initialising it, then load its weights strictly (no copies)."""
    with torch.device("meta"):
        model = factory()
    result = model.load_state_dict(weights, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise PrimeDepthError(
            f"{name}: checkpoint does not match the architecture: "
            f"missing {result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )
    if any(p.is_meta for p in model.state_dict().values()):
        raise PrimeDepthError(f"{name}: some tensors were not loaded")
    return model.eval().requires_grad_(False)


def _text_components(state_dict: dict[str, torch.Tensor], context_dim: int) -> dict[str, Any]:
    """Text encoder + tokenizer: the checkpoint's OpenCLIP tower when it has one, else the public
    laion ViT-H/14 weights (same tower); the tokenizer's vocabulary always comes from the hub."""
    if has_open_clip_text_weights(state_dict):
        text_encoder = text_encoder_from_open_clip(state_dict)
    elif context_dim == VIT_H14_CONTEXT_DIM:
        text_encoder = load_text_encoder()
    else:
        raise InputError(
            f"the checkpoint has no text encoder and its context width {context_dim} is not ViT-H/14's: "
            "convert without a text encoder (--no-text-encoder) and pass prompt embeddings"
        )
    return {"text_encoder": text_encoder.eval().requires_grad_(False), "tokenizer": load_tokenizer()}


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], official_config: dict[str, Any], text_encoder: bool = False
) -> dict[str, Any]:
    """The components of `PrimeDepthPipeline` holding the checkpoint's weights (frozen, eval mode).

    With `text_encoder`, also the text encoder and tokenizer (see `_text_components`; this may
    download from the hub). Without, callers pass prompt embeddings.
    """
    configs = component_configs(official_config, state_dict)
    unet = _with_weights(
        lambda: UNet2DConditionModel(**configs.unet), convert_ldm_unet_checkpoint(state_dict, configs.unet), "unet"
    )
    vae = _with_weights(lambda: AutoencoderKL(**configs.vae), convert_ldm_vae_checkpoint(state_dict, configs.vae), "vae")
    with torch.device("meta"):
        refiner_skeleton = PrimeDepthRefiner(**configs.refiner)
    refiner = _with_weights(
        lambda: PrimeDepthRefiner(**configs.refiner), _refiner_state_dict(state_dict, refiner_skeleton), "refiner"
    )
    heads = {}
    for name, prefix in HEAD_PREFIXES.items():
        config = getattr(configs, name)
        if config is not None and any(k.startswith(prefix) for k in state_dict):
            heads[name] = _with_weights(lambda c=config: LabelHead(**c), _head_state_dict(state_dict, prefix, config), name)
    if "depth_head" not in heads:
        raise PrimeDepthError("the checkpoint has no depth head (labeller.depth_predictor.*)")
    text = _text_components(state_dict, configs.unet["cross_attention_dim"]) if text_encoder else {}
    return {
        **text,
        "vae": vae,
        "unet": unet,
        "refiner": refiner,
        "depth_head": heads["depth_head"],
        "segmentation_head": heads.get("segmentation_head"),
        "scheduler": DDPMScheduler(**configs.scheduler),
    }


def convert_checkpoint_file(
    checkpoint: str | os.PathLike, config: str | os.PathLike | None = None, text_encoder: bool = True
) -> dict[str, Any]:
    """`convert_state_dict` of an official checkpoint file and its (or the released) config."""
    return convert_state_dict(load_official_state_dict(checkpoint), load_official_config(config), text_encoder)
