"""Attention maps of the frozen UNet, as the PrimeDepth preimage uses them.

For every transformer layer of the UNet the preimage keeps, per head:
- 64 self-attention channels: the attention of each query pixel, pooled over an 8x8 grid of key
  cells and divided by the head's maximum (official spec §6.2);
- 77 cross-attention channels: the attention of each query pixel to each text token (§6.3).

The official code materialises the N x N self-attention probabilities P and pools them. The
pooling (bilinear resize, average pool, bilinear resize over the key grid) is linear in P, so it is
one fixed matrix M (N x 64) and the pooled maps are P @ M = softmax(Q K^T s) @ M: attention with
M as the values. `AttentionMapProcessor` computes it with `scaled_dot_product_attention`, so P is
never materialised. M is separable (rows ⊗ columns), so it costs O(N) to build.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..constants import SELF_MAP_GRID

__all__ = [
    "AttentionMapSink",
    "AttentionMapProcessor",
    "install_attention_map_processors",
    "capturing_attention_maps",
    "self_map_pooling_matrix",
    "pool_self_attention_probabilities",
]


@dataclass
class AttentionMapSink:
    """Receives the maps of one transformer layer whose input is `height` x `width` pixels."""

    height: int
    width: int
    self_maps: torch.Tensor | None = None
    cross_maps: torch.Tensor | None = None

    def put(self, maps: torch.Tensor, is_self: bool) -> None:
        name = "self_maps" if is_self else "cross_maps"
        if getattr(self, name) is not None:
            raise RuntimeError("one attention-map sink received two layers: transformer depth > 1 is not supported")
        setattr(self, name, maps)

    def maps(self) -> torch.Tensor:
        """The layer's maps as the official code concatenates them: [self maps, cross maps]."""
        present = [m for m in (self.self_maps, self.cross_maps) if m is not None]
        if not present:
            raise RuntimeError("no attention maps were recorded for this layer")
        return torch.cat(present, dim=1)


def _axis_pooling_matrix(size: int, grid: int) -> torch.Tensor:
    """The official key-grid pooling along one axis of `size` pixels, as a (size, grid) matrix.

    Steps (official spec §6.2): bilinear resize to size + grid - size % grid (this adds `grid`
    even when size is a multiple of it), average pool with kernel max(1, size // grid), bilinear
    resize to `grid`. All three are linear, so they are applied to the identity.
    """
    identity = torch.eye(size, dtype=torch.float64).view(size, 1, size, 1)
    padded = size + grid - size % grid
    resized = F.interpolate(identity, size=(padded, 1), mode="bilinear", align_corners=False)
    kernel = max(1, size // grid)
    pooled = F.avg_pool2d(resized, kernel_size=(kernel, 1), stride=(kernel, 1))
    gridded = F.interpolate(pooled, size=(grid, 1), mode="bilinear", align_corners=False)
    return gridded.view(size, grid)


def self_map_pooling_matrix(height: int, width: int, grid: int = SELF_MAP_GRID) -> torch.Tensor:
    """M (height*width, grid*grid), float64: key pixel (row*width + col) -> cell (gy*grid + gx)."""
    rows = _axis_pooling_matrix(height, grid)
    cols = _axis_pooling_matrix(width, grid)
    return torch.einsum("ya,xb->yxab", rows, cols).reshape(height * width, grid * grid)


def _normalise_per_head(pooled: torch.Tensor) -> torch.Tensor:
    """Divide each (batch, head) by its maximum over all queries and cells (official §6.2 step 5)."""
    peak = pooled.amax(dim=(-2, -1), keepdim=True)
    return pooled / peak


def _to_channels(per_query: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, heads, N, C) -> (B, heads*C, height, width): channel = head*C + c, position = query."""
    batch, heads, _, channels = per_query.shape
    return per_query.permute(0, 1, 3, 2).reshape(batch, heads * channels, height, width)


def pool_self_attention_probabilities(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reference pooling of materialised probabilities (B, heads, N, N); for tests and research."""
    matrix = self_map_pooling_matrix(height, width).to(probs)
    return _to_channels(_normalise_per_head(probs @ matrix), height, width)


class AttentionMapProcessor:
    """Attention processor that also records PrimeDepth's maps when given a sink.

    Without an `attention_maps` sink it is diffusers' `AttnProcessor2_0`, so the UNet behaves as
    usual. With one, self-attention additionally attends to the pooling matrix (never forming the
    N x N probabilities) and cross-attention keeps its N x 77 probabilities, computed in fp32.
    """

    def __init__(self) -> None:
        self._plain = AttnProcessor2_0()
        self._pooling: dict[tuple, torch.Tensor] = {}

    def pooling_matrix(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        key = (height, width, like.device, like.dtype)
        if key not in self._pooling:
            self._pooling[key] = self_map_pooling_matrix(height, width).to(device=like.device, dtype=like.dtype)
        return self._pooling[key]

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        attention_maps: AttentionMapSink | None = None,
    ) -> torch.Tensor:
        if attention_maps is None:
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        if attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None:
            raise NotImplementedError("attention-map capture supports plain transformer attention only")
        is_self = encoder_hidden_states is None
        residual = hidden_states
        context = hidden_states if is_self else encoder_hidden_states
        if not is_self and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key, value = (self._split_heads(attn, x) for x in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        if is_self:
            out, maps = self._self_attention(attn, query, key, value, attention_maps)
        else:
            out, maps = self._cross_attention(attn, query, key, value, attention_maps)
        attention_maps.put(maps, is_self)
        batch, heads, tokens, head_dim = out.shape
        out = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @staticmethod
    def _split_heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, inner = x.shape
        return x.view(batch, tokens, attn.heads, inner // attn.heads).transpose(1, 2)

    def _self_attention(self, attn, query, key, value, sink: AttentionMapSink):
        """One SDPA call over values [V, M]: the output and the pooled maps share one softmax.

        Query and key are zero-padded to the values' width (dot products unchanged, scale given
        explicitly), because fused kernels (flash on CPU and GPU) need equal head dims; with
        unequal ones PyTorch falls back to the math path, which materialises N x N.
        """
        batch, heads, tokens, head_dim = value.shape
        if tokens != sink.height * sink.width:
            raise RuntimeError(f"attention over {tokens} tokens, expected {sink.height}x{sink.width}")
        pooling = self.pooling_matrix(sink.height, sink.width, value)
        values = torch.cat([value, pooling.expand(batch, heads, tokens, pooling.shape[-1])], dim=-1)
        padding = (0, pooling.shape[-1])
        both = F.scaled_dot_product_attention(F.pad(query, padding), F.pad(key, padding), values, scale=attn.scale)
        out, pooled = both[..., :head_dim], both[..., head_dim:]
        maps = _normalise_per_head(pooled.float())
        return out, _to_channels(maps, sink.height, sink.width).to(value.dtype)

    @staticmethod
    def _cross_attention(attn, query, key, value, sink: AttentionMapSink):
        """Explicit softmax in fp32: the N x 77 probabilities are themselves the maps."""
        scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * attn.scale
        probs = scores.softmax(dim=-1)
        out = torch.matmul(probs.to(value.dtype), value)
        return out, _to_channels(probs, sink.height, sink.width).to(value.dtype)


def install_attention_map_processors(unet: torch.nn.Module) -> None:
    """Give every attention layer of `unet` an `AttentionMapProcessor` for good (idempotent).

    For research use; the preimage walk uses `capturing_attention_maps` instead, which leaves
    the UNet as it found it.
    """
    processor = AttentionMapProcessor()
    for module in unet.modules():
        if isinstance(module, Attention) and not isinstance(module.processor, AttentionMapProcessor):
            module.set_processor(processor)


@contextmanager
def capturing_attention_maps(unet: torch.nn.Module, processor: Any = None) -> Iterator[None]:
    """Inside the block every attention layer of `unet` can record maps; its own processors
    come back afterwards, so a UNet shared with a Stable Diffusion pipeline is left unchanged.

    `processor`: any processor that fills an `attention_maps` sink (default: a new
    `AttentionMapProcessor`; the benchmarks pass the official-style reference). Uses diffusers'
    public `attn_processors` / `set_attn_processor`.
    """
    original = unet.attn_processors
    unet.set_attn_processor(processor if processor is not None else AttentionMapProcessor())
    try:
        yield
    finally:
        unet.set_attn_processor(original)
