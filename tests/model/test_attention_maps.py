"""Attention-map capture: equal to the materialised official computation, without N x N tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch.utils._python_dispatch import TorchDispatchMode

from primedepth.model.attention_maps import (
    AttentionMapProcessor,
    AttentionMapSink,
    pool_self_attention_probabilities,
    self_map_pooling_matrix,
)


def official_pooling(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The official steps (spec §6.2) applied to materialised probabilities, as a reference."""
    batch, heads, tokens, _ = probs.shape
    maps = probs.reshape(batch * heads, tokens, height, width)
    maps = F.interpolate(maps, size=(height + 8 - height % 8, width + 8 - width % 8), mode="bilinear", align_corners=False)
    maps = F.avg_pool2d(maps, kernel_size=(max(1, height // 8), max(1, width // 8)))
    maps = F.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=False).reshape(batch, heads, tokens, 64)
    maps = maps / maps.amax(dim=(-2, -1), keepdim=True)
    return maps.permute(0, 1, 3, 2).reshape(batch, heads * 64, height, width)


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (8, 8), (9, 12), (12, 12), (15, 20), (16, 16), (25, 37)])
def test_pooling_matrix_equals_official_steps(size):
    probs = torch.rand(2, 3, size[0] * size[1], size[0] * size[1], generator=torch.Generator().manual_seed(0)).softmax(-1)
    expected = official_pooling(probs, *size)
    assert torch.allclose(pool_self_attention_probabilities(probs, *size), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("size,grid", [((96, 96), (8, 8)), ((64, 64), (9, 9)), ((16, 16), (12, 12)), ((12, 12), (16, 16)),
                                       ((60, 80), (9, 8)), ((30, 40), (10, 9)), ((15, 20), (16, 12))])
def test_pooled_grid_sizes_match_spec(size, grid):
    """The intermediate grid before the final 8x8 resize (spec §6.2 table) is what M encodes."""
    height, width = size
    padded = (height + 8 - height % 8, width + 8 - width % 8)
    kernel = (max(1, height // 8), max(1, width // 8))
    assert (padded[0] // kernel[0], padded[1] // kernel[1]) == grid
    matrix = self_map_pooling_matrix(height, width)
    assert matrix.shape == (height * width, 64)
    # Pooling a constant key image gives the constant: every cell's weights sum to one.
    assert torch.allclose(matrix.sum(dim=0), torch.ones(64, dtype=torch.float64))


def _attention(dim: int = 64, heads: int = 2, cross_dim: int | None = None) -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=dim, heads=heads, dim_head=dim // heads, cross_attention_dim=cross_dim, bias=False).eval()


def _materialised(attn: Attention, hidden: torch.Tensor, context: torch.Tensor | None):
    query = attn.to_q(hidden)
    source = hidden if context is None else context
    key, value = attn.to_k(source), attn.to_v(source)
    split = lambda x: x.view(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2)  # noqa: E731
    probs = (split(query) @ split(key).transpose(-1, -2) * attn.scale).softmax(-1)
    out = (probs @ split(value)).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
    return attn.to_out[0](out), probs


@torch.no_grad()
def test_self_attention_capture_equals_materialised_probabilities():
    attn, height, width = _attention(), 6, 10
    hidden = torch.randn(2, height * width, 64)
    attn.set_processor(AttentionMapProcessor())
    sink = AttentionMapSink(height, width)
    out = attn(hidden, attention_maps=sink)
    expected_out, probs = _materialised(attn, hidden, None)
    assert torch.allclose(out, expected_out, atol=1e-5)
    assert torch.allclose(sink.self_maps, official_pooling(probs, height, width), atol=1e-5)
    assert sink.cross_maps is None


@torch.no_grad()
def test_cross_attention_capture_keeps_probabilities_head_major():
    attn, height, width = _attention(cross_dim=16), 3, 5
    hidden, context = torch.randn(1, height * width, 64), torch.randn(1, 77, 16)
    attn.set_processor(AttentionMapProcessor())
    sink = AttentionMapSink(height, width)
    out = attn(hidden, encoder_hidden_states=context, attention_maps=sink)
    expected_out, probs = _materialised(attn, hidden, context)
    assert torch.allclose(out, expected_out, atol=1e-5)
    # channel = head * 77 + token, spatial = query pixel
    assert torch.allclose(sink.cross_maps[0, 77 + 5].flatten(), probs[0, 1, :, 5], atol=1e-6)


@torch.no_grad()
def test_processor_without_sink_is_the_default_processor():
    attn = _attention()
    hidden = torch.randn(1, 20, 64)
    attn.set_processor(AttnProcessor2_0())
    expected = attn(hidden)
    attn.set_processor(AttentionMapProcessor())
    assert torch.equal(attn(hidden), expected)


def test_sink_refuses_a_second_layer():
    sink = AttentionMapSink(2, 2)
    sink.put(torch.zeros(1, 64, 2, 2), is_self=True)
    with pytest.raises(RuntimeError, match="depth > 1"):
        sink.put(torch.zeros(1, 64, 2, 2), is_self=True)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any operator produces."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(item, torch.Tensor):
                self.numel = max(self.numel, item.numel())
        return out


@pytest.mark.parametrize("head_dim", [64, 32, 40])
@torch.no_grad()
def test_capture_never_materialises_n_by_n(head_dim):
    height, width = 32, 32
    tokens = height * width
    attn = _attention(dim=2 * head_dim, heads=2)
    attn.set_processor(AttentionMapProcessor())
    with LargestTensor() as tracker:
        attn(torch.randn(1, tokens, 2 * head_dim), attention_maps=AttentionMapSink(height, width))
    assert tracker.numel < tokens * tokens


def _axis_by_torch_ops(size: int, grid: int = 8) -> torch.Tensor:
    """The official steps along one axis applied to the identity (float64): the matrix reference."""
    identity = torch.eye(size, dtype=torch.float64).view(size, 1, size, 1)
    resized = F.interpolate(identity, size=(size + grid - size % grid, 1), mode="bilinear", align_corners=False)
    kernel = max(1, size // grid)
    pooled = F.avg_pool2d(resized, kernel_size=(kernel, 1), stride=(kernel, 1))
    return F.interpolate(pooled, size=(grid, 1), mode="bilinear", align_corners=False).view(size, grid)


def test_axis_pooling_by_index_arithmetic_equals_the_torch_ops():
    """The pooling factors come from index arithmetic (so a dynamic-size export can compute them in
    the graph); every side from 1 to 160 gives the torch ops' matrix to float64 rounding."""
    from primedepth.model.attention_maps import _axis_pooling_matrix

    for size in range(1, 161):
        expected = _axis_by_torch_ops(size)
        got = _axis_pooling_matrix(size, 8)
        assert got.shape == expected.shape and got.dtype == torch.float64
        assert (got - expected).abs().max().item() <= 1e-12, size
