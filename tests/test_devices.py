"""Device and precision names shared by every entry point."""

from __future__ import annotations

import pytest
import torch

from primedepth.devices import canonical_dtype, resolve_device, resolve_dtype, short_dtype, torch_dtype
from primedepth.errors import InputError


@pytest.mark.parametrize("name,torch_name,short", [("fp32", "float32", "fp32"), ("bfloat16", "bfloat16", "bf16"), ("fp16", "float16", "fp16")])
def test_precision_aliases(name, torch_name, short):
    assert canonical_dtype(name) == torch_name and short_dtype(name) == short
    assert torch_dtype(name) is getattr(torch, torch_name)


def test_unknown_names_and_fp16_on_cpu_are_refused():
    with pytest.raises(InputError, match="unknown dtype"):
        canonical_dtype("int8")
    with pytest.raises(InputError, match="fp16 is for GPUs"):
        resolve_dtype("fp16", "cpu")
    assert resolve_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_auto_device_on_a_cpu_machine():
    assert resolve_device("auto") in ("cpu", "mps")
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device("cuda:0")
