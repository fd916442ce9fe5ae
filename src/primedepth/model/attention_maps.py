"""Attention maps of the frozen UNet, as the PrimeDepth preimage uses them.

For every transformer layer of the UNet the preimage keeps, per head:
- 64 self-attention channels: the attention of each query pixel, pooled over an 8x8 grid of key
  cells and divided by the head's maximum (official spec §6.2);
- 77 cross-attention channels: the attention of each query pixel to each text token (§6.3).

The official code materialises the N x N self-attention probabilities P and pools them. The
pooling (bilinear resize, average pool, bilinear resize over the key grid) is linear in P, so it is
one fixed matrix M (N x 64) and the pooled maps are P @ M = softmax(Q K^T s) @ M. M is separable:
M[(y, x), (a, b)] = rows[y, a] * cols[x, b] (`PoolingFactors`).

Two interchangeable self-attention capture kernels compute the output and the pooled maps
(`SELF_CAPTURE_KERNELS`, one signature, `SelfCaptureKernel`):
- `padded_sdpa_capture` (the reference): one `scaled_dot_product_attention` over values [V, M],
  query and key zero-padded to the values' width so that the fused kernel accepts them. P is
  never materialised, but both matmuls run at twice the head dim.
- `chunked_capture`: per block of queries, S = Q_c K^T at the real head dim, P = softmax(S), the
  output P V, and the pooled maps by contracting P (c x H x W) with the column, then the row
  factors (N * 8 multiply-adds per query instead of N * 64). At most one block of S and P is
  alive; the block size comes from a memory budget (`capture_block_shape`).
A GPU kernel (e.g. Triton: the pooled maps accumulated beside the flash-attention output) slots
in as one more entry with the same signature; `default_self_capture` says which runs where,
from the benchmark's measurement (on the CPU the chunked kernel in bf16, 12-16% faster there on a
quiet machine, the padded SDPA otherwise).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from ..constants import SELF_MAP_GRID

__all__ = [
    "AttentionMapSink",
    "AttentionMapProcessor",
    "PoolingFactors",
    "SelfCaptureKernel",
    "SELF_CAPTURE_KERNELS",
    "padded_sdpa_capture",
    "chunked_capture",
    "capture_block_shape",
    "default_self_capture",
    "preferring_self_capture",
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


def _bilinear_matrix(out_size: Any, in_size: Any, dtype: torch.dtype) -> torch.Tensor:
    """(out_size, in_size): `F.interpolate(mode="bilinear", align_corners=False)` along one axis
    (no antialias) as a matrix, from index arithmetic: source = (i + 0.5) * in / out - 0.5,
    clamped at 0, split between its floor and the next pixel (the last one at the edge)."""
    source = ((torch.arange(out_size, dtype=dtype) + 0.5) * in_size / out_size - 0.5).clamp(min=0)
    low = source.floor()
    fraction = (source - low).unsqueeze(1)
    low = low.long().unsqueeze(1)
    high = torch.clamp(low + 1, max=in_size - 1)
    index = torch.arange(in_size).unsqueeze(0)
    return (index == low).to(dtype) * (1 - fraction) + (index == high).to(dtype) * fraction


def _average_matrix(in_size: Any, kernel: Any, dtype: torch.dtype) -> torch.Tensor:
    """(in_size // kernel, in_size): `avg_pool` with kernel = stride = `kernel`, no padding."""
    cells = torch.arange(in_size // kernel).unsqueeze(1)
    return (torch.arange(in_size).unsqueeze(0) // kernel == cells).to(dtype) / kernel


def _axis_pooling_matrix(size: Any, grid: int) -> torch.Tensor:
    """The official key-grid pooling along one axis of `size` pixels, as a (size, grid) matrix.

    Steps (official spec §6.2): bilinear resize to size + grid - size % grid (this adds `grid`
    even when size is a multiple of it), average pool with kernel max(1, size // grid), bilinear
    resize to `grid`. All three are linear; each is built as a matrix from index arithmetic, so
    `size` may be symbolic (a dynamic-size ONNX export computes the pooling in the graph).
    tests/model/test_attention_maps.py checks it against the three torch ops applied to the
    identity, to float64 rounding.
    """
    padded = size + grid - size % grid
    kernel = torch.sym_max(1, size // grid)
    resized = _bilinear_matrix(padded, size, torch.float64)
    pooled = _average_matrix(padded, kernel, torch.float64) @ resized
    return (_bilinear_matrix(grid, padded // kernel, torch.float64) @ pooled).T


def self_map_pooling_matrix(height: int, width: int, grid: int = SELF_MAP_GRID) -> torch.Tensor:
    """M (height*width, grid*grid), float64: key pixel (row*width + col) -> cell (gy*grid + gx)."""
    return PoolingFactors.build(height, width, grid).matrix()


@dataclass
class PoolingFactors:
    """The separable pooling M = rows ⊗ cols: rows (height, grid), cols (width, grid)."""

    rows: torch.Tensor
    cols: torch.Tensor
    _matrix: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(cls, height: int, width: int, grid: int = SELF_MAP_GRID, **to: Any) -> PoolingFactors:
        """The official factors (float64, or moved/cast with `to`'s device and dtype)."""
        return cls(_axis_pooling_matrix(height, grid).to(**to), _axis_pooling_matrix(width, grid).to(**to))

    @property
    def grid(self) -> int:
        return self.rows.shape[1]

    def matrix(self) -> torch.Tensor:
        """M (height*width, grid*grid), built once (O(N * grid^2) memory, for the reference kernel)."""
        if self._matrix is None:
            height, width, grid = self.rows.shape[0], self.cols.shape[0], self.grid
            self._matrix = torch.einsum("ya,xb->yxab", self.rows, self.cols).reshape(height * width, grid * grid)
        return self._matrix


# (query, key, value: (batch, heads, N, head_dim), scale, factors) -> (output (batch, heads, N,
# head_dim), pooled maps (batch, heads, N, grid^2) before the per-head normalisation).
SelfCaptureKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, PoolingFactors], tuple[torch.Tensor, torch.Tensor]]


def padded_sdpa_capture(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, factors: PoolingFactors
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference kernel: one SDPA call over values [V, M]; output and maps share one softmax.

    Query and key are zero-padded to the values' width (dot products unchanged, scale given
    explicitly), because fused kernels (flash on CPU and GPU) need equal head dims; with
    unequal ones PyTorch falls back to the math path, which materialises N x N.
    """
    batch, heads, tokens, head_dim = value.shape
    pooling = factors.matrix()
    values = torch.cat([value, pooling.expand(batch, heads, tokens, pooling.shape[-1])], dim=-1)
    padding = (0, pooling.shape[-1])
    both = F.scaled_dot_product_attention(F.pad(query, padding), F.pad(key, padding), values, scale=scale)
    return both[..., :head_dim], both[..., head_dim:]


# Bytes of S and P alive at once in `chunked_capture` (a memory cap, on CPU and GPU alike).
CAPTURE_BLOCK_BUDGET = 64 * 2**20
# Queries per block when the budget allows: the fastest block measured per layer (one core, AMD
# EPYC, 5 heads; CPU seconds per layer): at 512x512 (4096 tokens) bf16 64: 0.27, 128: 0.26,
# 256: 0.43; fp32 64: 0.51, 128: 0.48, 256: 0.49; at 768x768 (9216 tokens) fp32 64: 2.57,
# 128: 2.39, 256: 3.23. Larger blocks leave the cache, smaller ones pay per-call overhead.
QUERY_BLOCK = 128


def _row_bytes(tokens: int, dtype: torch.dtype) -> int:
    """Bytes per query row of one head: S in `dtype`, P in fp32 (and P again in `dtype` when reduced)."""
    size = torch.finfo(dtype).bits // 8
    return tokens * (4 + (2 * size if size < 4 else size))


def capture_block_shape(groups: int, tokens: int, dtype: torch.dtype, budget_bytes: int = CAPTURE_BLOCK_BUDGET,
                        query_block: int = QUERY_BLOCK) -> tuple[int, int]:
    """(groups per block, queries per block) so that one block's S and P fit `budget_bytes`.

    `query_block` queries (at most all) of as many (batch x head) groups as fit; when not even
    one group fits, one group and as many queries as fit. Never less than one group and one query.
    """
    row = _row_bytes(tokens, dtype)
    query_block = min(tokens, query_block)
    group_block = max(1, min(groups, budget_bytes // (query_block * row)))
    if group_block * query_block * row > budget_bytes:
        query_block = max(1, min(query_block, budget_bytes // row))
    return group_block, query_block


def _pool_block(probs: torch.Tensor, factors: PoolingFactors) -> torch.Tensor:
    """(g, c, H*W) probabilities -> (g, c, grid^2) pooled: columns first, then rows."""
    groups, queries, _ = probs.shape
    rows, cols, grid = factors.rows, factors.cols, factors.grid
    height, width = rows.shape[0], cols.shape[0]
    by_column = torch.mm(probs.reshape(-1, width), cols)  # (g*c*H, grid): [.., y, b]
    by_column = by_column.view(groups * queries, height, grid).transpose(1, 2).reshape(-1, height)  # [.., b, y]
    pooled = torch.mm(by_column, rows).view(groups, queries, grid, grid)  # [.., b, a]
    return pooled.transpose(-1, -2).reshape(groups, queries, grid * grid)  # cell a*grid + b


def chunked_capture(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float,
    factors: PoolingFactors,
    budget_bytes: int = CAPTURE_BLOCK_BUDGET,
    query_block: int = QUERY_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention and its pooled maps, one block of queries at a time (see the module doc).

    S is computed in the input dtype, the softmax in fp32 (as the fused kernels accumulate), P is
    cast back to the input dtype for P V and the pooling. Blocks are concatenated rather than
    written into preallocated tensors, so that a traced graph (the ONNX export) holds no in-place
    scatter: the results are N x (head_dim + grid^2) per group, small beside one block of P.
    """
    batch, heads, tokens, head_dim = value.shape
    groups, dtype = batch * heads, value.dtype
    q = (query * scale).reshape(groups, tokens, head_dim)
    k_t = key.reshape(groups, tokens, head_dim).transpose(1, 2)
    v = value.reshape(groups, tokens, head_dim)
    group_block, query_block = capture_block_shape(groups, tokens, dtype, budget_bytes, query_block)
    group_results = []
    for g in range(0, groups, group_block):
        gs = slice(g, g + group_block)
        blocks = []
        for start in range(0, tokens, query_block):
            probs = torch.softmax(torch.matmul(q[gs, start:start + query_block], k_t[gs]), dim=-1, dtype=torch.float32).to(dtype)
            # One tensor per block: a graph runtime that orders nodes by what each output needs
            # (ONNX Runtime) then finishes a block, and frees its P, before the next one.
            blocks.append(torch.cat([torch.matmul(probs, v[gs]), _pool_block(probs, factors)], dim=-1))
            del probs
        group_results.append(torch.cat(blocks, dim=1))
    both = torch.cat(group_results, dim=0)
    out, maps = both[..., :head_dim], both[..., head_dim:]
    return out.reshape(batch, heads, tokens, head_dim), maps.reshape(batch, heads, tokens, -1)


SELF_CAPTURE_KERNELS: dict[str, SelfCaptureKernel] = {"padded-sdpa": padded_sdpa_capture, "chunked": chunked_capture}


_PREFERRED_KERNEL: ContextVar[str | SelfCaptureKernel | None] = ContextVar("preferred_self_capture", default=None)


def default_self_capture(device: torch.device, dtype: torch.dtype, tokens: int) -> str | SelfCaptureKernel:
    """The kernel that "auto" runs here: the chunked kernel for bf16 on the CPU, the padded SDPA
    otherwise (`preferring_self_capture` overrides it).

    Why, measured on the CPU (2 threads on 2 cores of an AMD EPYC with avx512_bf16, no AMX,
    torch 2.13, 2026-12-06; CPU-time ratios chunked / padded SDPA of the UNet walk with capture,
    median [range] over interleaved rounds of `benchmark_inference.py --modes capture ...`;
    README "Performance", files in benchmarks/):
    - machine quiet (load 1-2), results-cpu-default-quiet.json (3 rounds): bf16 0.90x
      [0.88-0.92] at 512x512 and 0.85x [0.83-0.86] at 768x768; fp32 1.10x [1.06-1.12] at 512
      and 1.06x [0.97-1.14] at 768. Earlier quiet runs: 768 bf16 0.88x, fp32 1.01x; 512 bf16
      0.84x, fp32 1.01x. So bf16 takes the chunked kernel (its walk then costs 0.94-0.95x the
      bare UNet, against 1.15x with the padded SDPA), fp32 the padded one.
    - machine shared with other work (load 6-18): at 512 bf16 1.56x [1.35-1.76], fp32 1.41x
      [1.30-1.51]: the chunked kernel's ~30 blocks of two-thread calls per layer suffer when
      the cores are contended. A deployment that shares its cores can choose padded SDPA
      with `preferring_self_capture("padded-sdpa")`.
    - fp16 on the CPU was not measured and keeps the padded kernel.
    On CUDA the fused flash kernel stays: a fused GPU capture kernel (maps accumulated beside the
    flash output) would be registered in SELF_CAPTURE_KERNELS and chosen here.
    """
    preferred = _PREFERRED_KERNEL.get()
    if preferred is not None:
        return preferred
    if torch.device(device).type == "cpu" and dtype == torch.bfloat16:
        return "chunked"
    return "padded-sdpa"


@contextmanager
def preferring_self_capture(kernel: str | SelfCaptureKernel) -> Iterator[None]:
    """Inside the block, processors left on "auto" run `kernel` (a name in SELF_CAPTURE_KERNELS,
    or a kernel itself: the ONNX export's chunked kernel with its own block size)."""
    if isinstance(kernel, str) and kernel not in SELF_CAPTURE_KERNELS:
        raise ValueError(f"unknown self-attention capture kernel {kernel!r}: choose one of {sorted(SELF_CAPTURE_KERNELS)}")
    token = _PREFERRED_KERNEL.set(kernel)
    try:
        yield
    finally:
        _PREFERRED_KERNEL.reset(token)


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
    usual. With one, self-attention runs a capture kernel (never forming the N x N
    probabilities; `self_capture`: a name in SELF_CAPTURE_KERNELS, a kernel, or "auto" for
    `default_self_capture`) and cross-attention keeps its N x 77 probabilities, computed in fp32.
    """

    def __init__(self, self_capture: str | SelfCaptureKernel = "auto") -> None:
        if isinstance(self_capture, str) and self_capture != "auto" and self_capture not in SELF_CAPTURE_KERNELS:
            raise ValueError(f"unknown self-attention capture kernel {self_capture!r}: choose auto or one of {sorted(SELF_CAPTURE_KERNELS)}")
        self.self_capture = self_capture
        self._plain = AttnProcessor2_0()
        self._factors: dict[tuple, PoolingFactors] = {}

    def pooling_factors(self, height: int, width: int, like: torch.Tensor) -> PoolingFactors:
        if isinstance(height, torch.SymInt) or isinstance(width, torch.SymInt):  # a dynamic-size trace
            return PoolingFactors.build(height, width, device=like.device, dtype=like.dtype)
        key = (height, width, like.device, like.dtype)
        if key not in self._factors:
            self._factors[key] = PoolingFactors.build(height, width, device=like.device, dtype=like.dtype)
        return self._factors[key]

    def pooling_matrix(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        return self.pooling_factors(height, width, like).matrix()

    def kernel(self, value: torch.Tensor) -> SelfCaptureKernel:
        """The self-attention capture kernel for these values (device, dtype, token count)."""
        choice = self.self_capture
        if choice == "auto":
            choice = default_self_capture(value.device, value.dtype, value.shape[-2])
        return SELF_CAPTURE_KERNELS[choice] if isinstance(choice, str) else choice

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
        """The output and the pooled maps from the capture kernel, normalised per head."""
        tokens = value.shape[-2]
        if tokens != sink.height * sink.width:
            raise RuntimeError(f"attention over {tokens} tokens, expected {sink.height}x{sink.width}")
        factors = self.pooling_factors(sink.height, sink.width, value)
        out, pooled = self.kernel(value)(query, key, value, attn.scale, factors)
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
