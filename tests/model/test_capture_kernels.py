"""The self-attention capture kernels: the chunked one equals the padded-SDPA reference, in fp32
to 1e-5 relative on random inputs and on the official fixtures, in bf16/fp16 within the
per-stage bounds, and it never holds more than one block of probabilities."""

from __future__ import annotations

import pytest
import torch

from primedepth.convert import convert_state_dict
from primedepth.model.attention_maps import (
    SELF_CAPTURE_KERNELS,
    AttentionMapProcessor,
    AttentionMapSink,
    PoolingFactors,
    capture_block_shape,
    chunked_capture,
    default_self_capture,
    padded_sdpa_capture,
    preferring_self_capture,
)
from primedepth.model.preimage import iter_decoder_steps, timestep_embedding
from primedepth.pipeline import PrimeDepthPipeline

from ..official import TINY, load_cases, relative_error, relative_rms, tiny_config, tiny_state_dict
from .test_attention_maps import LargestTensor, _attention, _materialised, official_pooling

FP32_RELATIVE = 1e-5
# Relative RMS per stage against the official fp32 tensors (the bounds of
# tests/test_pipeline.py's half-precision test).
HALF_PRECISION_STAGE_TOLERANCE = {torch.float16: 0.01, torch.bfloat16: 0.04}


def _qkv(batch: int, heads: int, tokens: int, head_dim: int, dtype=torch.float32, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, head_dim, generator=generator).to(dtype) for _ in range(3)]


@pytest.mark.parametrize("shape,head_dim,budget", [
    ((8, 8), 64, 2**20), ((9, 12), 40, 2**14), ((15, 20), 32, 2**12), ((32, 32), 64, 2**16), ((1, 1), 64, 2**20),
])
def test_chunked_equals_padded_sdpa_in_fp32(shape, head_dim, budget):
    height, width = shape
    query, key, value = _qkv(2, 3, height * width, head_dim)
    factors = PoolingFactors.build(height, width, dtype=torch.float32)
    expected_out, expected_pooled = padded_sdpa_capture(query, key, value, head_dim**-0.5, factors)
    out, pooled = chunked_capture(query, key, value, head_dim**-0.5, factors, budget_bytes=budget)
    assert relative_error(out, expected_out) <= FP32_RELATIVE
    assert relative_error(pooled, expected_pooled) <= FP32_RELATIVE


@torch.no_grad()
def test_chunked_processor_equals_materialised_official_pooling():
    attn, height, width = _attention(), 6, 10
    hidden = torch.randn(2, height * width, 64)
    attn.set_processor(AttentionMapProcessor("chunked"))
    sink = AttentionMapSink(height, width)
    out = attn(hidden, attention_maps=sink)
    expected_out, probs = _materialised(attn, hidden, None)
    assert relative_error(out, expected_out) <= FP32_RELATIVE
    assert relative_error(sink.self_maps, official_pooling(probs, height, width)) <= FP32_RELATIVE


@pytest.mark.parametrize("groups,tokens,dtype,budget", [
    (5, 4096, torch.bfloat16, 64 * 2**20), (5, 9216, torch.float32, 16 * 2**20), (40, 16384, torch.bfloat16, 2**24), (2, 10, torch.float32, 1),
])
def test_block_shape_fits_the_budget(groups, tokens, dtype, budget):
    group_block, query_block = capture_block_shape(groups, tokens, dtype, budget)
    assert 1 <= group_block <= groups and 1 <= query_block <= tokens
    element = torch.finfo(dtype).bits // 8
    per_row = tokens * (4 + (2 * element if element < 4 else element))
    assert group_block * query_block * per_row <= max(budget, per_row)


@pytest.mark.parametrize("head_dim", [64, 40])
@torch.no_grad()
def test_chunked_never_holds_more_than_one_block(head_dim):
    """The largest tensor is one block of probabilities, a projection or the output and maps
    together (tokens x (head_dim + 64) per head), never N x N."""
    height, width, heads = 64, 64, 2
    tokens, budget = height * width, 2**21
    attn = _attention(dim=heads * head_dim, heads=heads)
    attn.set_processor(AttentionMapProcessor(lambda *a: chunked_capture(*a, budget_bytes=budget)))
    with LargestTensor() as tracker:
        attn(torch.randn(1, tokens, heads * head_dim), attention_maps=AttentionMapSink(height, width))
    group_block, query_block = capture_block_shape(heads, tokens, torch.float32, budget)
    assert group_block * query_block < heads * tokens
    assert tracker.numel <= max(group_block * query_block * tokens, tokens * heads * (head_dim + 64))
    assert tracker.numel < tokens * tokens // 8


def test_a_kernel_slots_in_by_signature():
    """Any callable with the kernel signature is used (a GPU kernel would be registered the same way)."""
    calls = []

    def counting(*args):
        calls.append(args[0].shape)
        return SELF_CAPTURE_KERNELS["chunked"](*args)

    attn = _attention()
    attn.set_processor(AttentionMapProcessor(counting))
    with torch.no_grad():
        attn(torch.randn(1, 12, 64), attention_maps=AttentionMapSink(3, 4))
    assert calls == [torch.Size([1, 2, 12, 32])]
    with pytest.raises(ValueError, match="unknown self-attention capture kernel"):
        AttentionMapProcessor("flash-triton")


def test_default_kernel_is_a_known_kernel():
    for device in ("cpu", "cuda"):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            for tokens in (64 * 64, 96 * 96, 128 * 128):
                assert default_self_capture(torch.device(device), dtype, tokens) in SELF_CAPTURE_KERNELS


def test_default_kernel_follows_the_measurement_and_yields_to_a_preference():
    """bf16 on the CPU: chunked (faster on a quiet CPU at 512 and 768); otherwise padded SDPA."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert default_self_capture(cpu, torch.bfloat16, 96 * 96) == "chunked"
    assert default_self_capture(cpu, torch.float32, 96 * 96) == "padded-sdpa"
    assert default_self_capture(cuda, torch.bfloat16, 96 * 96) == "padded-sdpa"
    with preferring_self_capture("padded-sdpa"):
        assert default_self_capture(cpu, torch.bfloat16, 96 * 96) == "padded-sdpa"


@pytest.fixture(scope="module")
def official_case():
    return load_cases(TINY / "cases.safetensors", "b")


def _tiny_in(dtype: torch.dtype) -> PrimeDepthPipeline:
    pipeline = PrimeDepthPipeline(**convert_state_dict(tiny_state_dict(), tiny_config()))
    pipeline.unet.to(dtype=dtype)  # the walk is all these tests run
    return pipeline


def _walk(pipeline: PrimeDepthPipeline, case: dict, dtype: torch.dtype, kernel: str) -> list:
    x_t, context = case["x_t"].to(dtype), case["context"].to(dtype)
    with torch.no_grad():
        temb = timestep_embedding(pipeline.unet, x_t)
        return list(iter_decoder_steps(pipeline.unet, x_t, temb, context, AttentionMapProcessor(kernel)))


def test_chunked_walk_equals_reference_on_the_official_fixture(official_case):
    """fp32: every step's maps from the chunked kernel equal the padded-SDPA reference to 1e-5
    relative, and both equal the official code's stored maps."""
    pipeline = _tiny_in(torch.float32)
    reference, chunked = (_walk(pipeline, official_case, torch.float32, kernel) for kernel in ("padded-sdpa", "chunked"))
    compared = 0
    for index, (ref, new) in enumerate(zip(reference, chunked)):
        if ref.attention is None:
            continue
        compared += 1
        assert relative_error(new.attention, ref.attention) <= FP32_RELATIVE, f"step {index}"
        assert relative_error(new.attention, official_case[f"step{index}.attention"]) <= 1.5e-5, f"step {index} vs official"
        assert relative_error(new.features, ref.features) <= FP32_RELATIVE, f"step {index} features"
    assert compared >= 6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_chunked_walk_in_half_precision_stays_within_the_stage_bounds(official_case, dtype):
    """The UNet in half precision, each kernel against the official fp32 tensors: the chunked
    kernel stays within the per-stage bound the reference kernel is held to."""
    pipeline = _tiny_in(dtype)
    for kernel in ("padded-sdpa", "chunked"):
        steps = _walk(pipeline, official_case, dtype, kernel)
        errors = {f"step{i}.attention": relative_rms(s.attention, official_case[f"step{i}.attention"]) for i, s in enumerate(steps) if s.attention is not None}
        errors |= {f"step{i}.features": relative_rms(s.features, official_case[f"step{i}.features"]) for i, s in enumerate(steps)}
        worst = max(errors, key=errors.get)
        assert errors[worst] <= HALF_PRECISION_STAGE_TOLERANCE[dtype], f"{kernel} {worst}: {errors[worst]:.3%} in {dtype}"
