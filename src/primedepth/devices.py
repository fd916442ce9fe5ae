"""Device and precision names, one definition for the API, the CLI, evaluation and conversion.

Kept free of a torch import at module level, so the CLI can use the choices in `--help`.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = ["DEVICE_CHOICES", "DTYPE_CHOICES", "canonical_dtype", "short_dtype", "torch_dtype", "resolve_device", "resolve_dtype"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("fp32", "bf16", "fp16")
# Accepted precision names -> torch attribute names.
_DTYPE_NAMES = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}
_SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def canonical_dtype(name: str) -> str:
    """'fp32'/'float32'/... -> torch's name ('float32', 'bfloat16', 'float16')."""
    if name not in _DTYPE_NAMES:
        raise InputError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_CHOICES)}")
    return _DTYPE_NAMES[name]


def short_dtype(name: str) -> str:
    """Any accepted precision name -> 'fp32' / 'bf16' / 'fp16'."""
    return _SHORT[canonical_dtype(name)]


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, canonical_dtype(name))


def resolve_device(name: str) -> str:
    """Turn 'auto' into the best available device and check that an explicit one exists."""
    import torch

    kind = name.split(":")[0]
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if kind == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if kind == "cuda" and not cuda:
        raise InputError(f"device '{name}' asked for, but torch sees no CUDA GPU")
    if kind == "mps" and not mps:
        raise InputError(f"device '{name}' asked for, but Apple MPS is not available")
    if kind not in DEVICE_CHOICES:
        raise InputError(f"unknown device '{name}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    return name


def resolve_dtype(name: str, device: str) -> Any:
    """The torch dtype for a precision name on `device`, refusing fp16 on the CPU."""
    if canonical_dtype(name) == "float16" and device.startswith("cpu"):
        raise InputError("fp16 is for GPUs; on the CPU use --dtype fp32 or bf16")
    return torch_dtype(name)
