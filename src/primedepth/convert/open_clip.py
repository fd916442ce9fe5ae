"""OpenCLIP text tower (the official checkpoint's `cond_stage_model.model.*`) -> transformers
`CLIPTextModel`: the official text key names live here and nowhere else.

The tower keeps all 24 blocks and its final LayerNorm (PrimeDepth conditions on the last layer,
official spec §3); the fused q/k/v projection is split; `text_projection` and `logit_scale` are
dropped (PrimeDepth uses neither).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from transformers import CLIPTextConfig, CLIPTextModel

try:
    from transformers.initialization import no_init_weights
except ImportError:  # transformers 4.x
    from transformers.modeling_utils import no_init_weights

from ..errors import PrimeDepthError
from ..text.encoder import text_encoder_config

__all__ = [
    "OPEN_CLIP_TEXT_PREFIX",
    "find_open_clip_text_prefix",
    "has_open_clip_text_weights",
    "convert_open_clip_text_state_dict",
    "text_encoder_config_from_state_dict",
    "text_encoder_from_open_clip",
]

OPEN_CLIP_TEXT_PREFIX = "cond_stage_model.model."
_OPEN_CLIP_HEAD_WIDTH = 64  # open_clip derives heads = width // 64 for its text towers

# Per-block renames; the fused attention input projection is split separately.
_BLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# Entries of the OpenCLIP tower that a CLIPTextModel has no place for (not used by PrimeDepth).
_IGNORED_KEYS = ("text_projection", "logit_scale", "attn_mask")
# First name of every entry of an OpenCLIP text tower; keys under the prefix that start otherwise
# belong to other modules of the checkpoint.
_TOWER_ROOTS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.") + _IGNORED_KEYS
_BLOCK_KEY = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")




def find_open_clip_text_prefix(state_dict: Mapping[str, object]) -> str | None:
    """Prefix in front of ``token_embedding.weight``, so any checkpoint nesting is accepted."""
    suffix = "token_embedding.weight"
    candidates = [k[: -len(suffix)] for k in state_dict if k.endswith(suffix)]
    candidates = [p for p in candidates if p == "" or p.endswith(".")]
    if not candidates:
        return None
    return min(candidates, key=len)  # prefer the outermost tower if several were nested


def has_open_clip_text_weights(state_dict: Mapping[str, object]) -> bool:
    """Whether a checkpoint carries an OpenCLIP text tower (the official one may or may not)."""
    return find_open_clip_text_prefix(state_dict) is not None


def _tower_entries(state_dict: Mapping[str, torch.Tensor], prefix: str | None) -> dict[str, torch.Tensor]:
    """The tower's tensors with the prefix removed; other checkpoint entries are ignored."""
    if prefix is None:
        prefix = find_open_clip_text_prefix(state_dict)
        if prefix is None:
            raise PrimeDepthError(
                "no OpenCLIP text tower in this state dict (looked for a key ending in "
                f"'token_embedding.weight', e.g. '{OPEN_CLIP_TEXT_PREFIX}token_embedding.weight')"
            )
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _split_in_proj(block: str, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """open_clip fuses q, k, v into one (3·width, …) projection; CLIP keeps three Linear layers."""
    kind = "weight" if name.endswith("weight") else "bias"
    if tensor.shape[0] % 3:
        raise PrimeDepthError(f"{block}.attn.{name} has shape {tuple(tensor.shape)}, not 3·width rows")
    # clone: the three slices must not share storage, or safetensors refuses to save them
    q, k, v = (t.clone() for t in tensor.chunk(3, dim=0))
    return {f"{block}.self_attn.{p}_proj.{kind}": t for p, t in zip("qkv", (q, k, v))}


def _convert_block_entry(index: str, rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One ``transformer.resblocks.{i}.*`` entry under its CLIPTextModel name(s)."""
    block = f"encoder.layers.{index}"
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        return _split_in_proj(block, rest.split(".")[-1], tensor)
    module, _, param = rest.rpartition(".")
    if module not in _BLOCK_RENAMES:
        raise PrimeDepthError(f"unexpected OpenCLIP text key 'transformer.resblocks.{index}.{rest}'")
    return {f"{block}.{_BLOCK_RENAMES[module]}.{param}": tensor}


def convert_open_clip_text_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename an OpenCLIP text tower to ``CLIPTextModel`` names, keeping **every** block.

    ``state_dict`` may be the whole official checkpoint (``cond_stage_model.model.*`` is found by
    itself), the tower alone without prefix, or anything in between; pass ``prefix`` to force one.
    The result has no ``text_model.`` head (transformers 4.x adds one; :func:`text_encoder_from_open_clip`
    handles both). ``text_projection`` and ``logit_scale`` are dropped: PrimeDepth uses neither.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in _tower_entries(state_dict, prefix).items():
        if not key.startswith(_TOWER_ROOTS):
            continue  # a sibling module that happens to share the prefix (e.g. "model.diffusion_model.")
        match = _BLOCK_KEY.match(key)
        if match:
            converted.update(_convert_block_entry(match.group(1), match.group(2), tensor))
        elif key == "token_embedding.weight":
            converted["embeddings.token_embedding.weight"] = tensor
        elif key == "positional_embedding":
            converted["embeddings.position_embedding.weight"] = tensor
        elif key.startswith("ln_final."):
            converted["final_layer_norm." + key[len("ln_final.") :]] = tensor
        elif key not in _IGNORED_KEYS:
            raise PrimeDepthError(f"unexpected OpenCLIP text key '{key}'")
    return converted


def text_encoder_config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str | None = None, **overrides: object
) -> CLIPTextConfig:
    """Read the tower's size off its tensor shapes (heads follow open_clip's width // 64 rule)."""
    tower = _tower_entries(state_dict, prefix)
    try:
        vocab_size, width = tower["token_embedding.weight"].shape
        positions = tower["positional_embedding"].shape[0]
        intermediate = tower["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    except KeyError as missing:
        raise PrimeDepthError(f"OpenCLIP text tower is incomplete: {missing} is missing") from None
    layers = 1 + max(int(m.group(1)) for k in tower if (m := _BLOCK_KEY.match(k)))
    values: dict[str, object] = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=intermediate,
        projection_dim=width,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // _OPEN_CLIP_HEAD_WIDTH),
        max_position_embeddings=positions,
    )
    values.update(overrides)
    return text_encoder_config(**values)


def _empty_text_model(config: CLIPTextConfig) -> CLIPTextModel:
    """Build the module without running its random init: every weight is overwritten right after."""
    with no_init_weights():
        return CLIPTextModel(config)


def _with_model_prefix(model: CLIPTextModel, converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 4.x nests the tower under ``text_model.``; 5.x does not."""
    if any(k.startswith("text_model.") for k in model.state_dict()):
        return {"text_model." + k: v for k, v in converted.items()}
    return converted


def text_encoder_from_open_clip(
    state_dict: Mapping[str, torch.Tensor],
    *,
    prefix: str | None = None,
    config: CLIPTextConfig | None = None,
    torch_dtype: torch.dtype | None = None,
) -> CLIPTextModel:
    """A ready ``CLIPTextModel`` (eval mode) holding the OpenCLIP tower's weights, loaded strictly.

    Without ``config`` the size is read from the tensors (ViT-H/14 for the official checkpoint).
    """
    if config is None:
        config = text_encoder_config_from_state_dict(state_dict, prefix=prefix)
    converted = convert_open_clip_text_state_dict(state_dict, prefix=prefix)
    model = _empty_text_model(config)
    result = model.load_state_dict(_with_model_prefix(model, converted), strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise PrimeDepthError(
            "OpenCLIP text tower does not match the text encoder config: "
            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    return model.eval()


