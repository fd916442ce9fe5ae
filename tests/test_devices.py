"""Device and precision names shared by every entry point."""

from __future__ import annotations

import pytest
import torch

from primedepth.devices import AUTO_BATCH_LIMIT, auto_batch_size, dtype_label, parse_device, parse_dtype
from primedepth.errors import InputError


@pytest.mark.parametrize("name,torch_name,short", [("fp32", "float32", "fp32"), ("bfloat16", "bfloat16", "bf16"), ("fp16", "float16", "fp16")])
def test_precision_names_are_parsed_once_into_torch_dtypes(name, torch_name, short):
    dtype = parse_dtype(name)
    assert dtype is getattr(torch, torch_name) and parse_dtype(dtype) is dtype
    assert dtype_label(dtype) == short


def test_unknown_names_and_fp16_on_cpu_are_refused():
    with pytest.raises(InputError, match="unknown dtype"):
        parse_dtype("int8")
    with pytest.raises(InputError, match="unsupported dtype"):
        parse_dtype(torch.int8)
    with pytest.raises(InputError, match="fp16 is for GPUs"):
        parse_dtype("fp16", "cpu")
    assert parse_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(InputError, match="unknown device"):
        parse_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_auto_device_on_a_cpu_machine():
    assert parse_device("auto").type in ("cpu", "mps")
    with pytest.raises(InputError, match="no CUDA GPU"):
        parse_device("cuda:0")


GIB = 2**30


@pytest.mark.parametrize(
    "device,dtype,side,free,expected",
    [
        ("cpu", "fp32", 512, None, 1),  # the CPU never batches: no speed to gain
        ("mps", "fp16", 512, None, 1),
        ("cuda", "bf16", 1024, 80 * GIB, AUTO_BATCH_LIMIT),  # an H100: capped
        ("cuda:1", "fp16", 768, 4 * GIB, 4),  # (0.7 * 4 GiB - 1600 B * 1024^2) / (520 B * 768^2) = 4.3
        ("cuda", "fp32", 768, 8 * GIB, 4),  # fp32 needs twice the memory per pixel
        ("cuda", "fp32", 768, 4 * GIB, 1),  # not even the full-resolution chunk fits: one image, never zero
    ],
)
def test_auto_batch_size_fills_free_gpu_memory_only(device, dtype, side, free, expected):
    assert auto_batch_size(device, dtype, side, free_bytes=free) == expected
