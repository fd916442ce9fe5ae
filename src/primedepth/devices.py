"""Device and precision names, one definition for the API, the CLI, evaluation and conversion.

Kept free of a torch import at module level, so the CLI can use the choices in `--help`.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = [
    "DEVICE_CHOICES", "DTYPE_CHOICES", "AUTO_BATCH_LIMIT", "auto_batch_size", "canonical_dtype", "short_dtype",
    "torch_dtype", "resolve_device", "resolve_dtype", "pipeline_device_and_dtype",
]

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


def pipeline_device_and_dtype(pipeline: Any) -> tuple[str, str]:
    """A loaded pipeline's device and torch dtype name ('cpu', 'float32' for objects without them)."""
    device = str(getattr(pipeline, "device", "cpu"))
    dtype = str(getattr(pipeline, "dtype", "torch.float32")).removeprefix("torch.")
    return device, dtype


# Peak memory of the tensors alive during a prediction, per processed pixel, for the SD 2.1-sized
# model in bf16/fp16 (benchmarks/peak_tensor_memory.py --stages, 768x768, rounded up): the
# full-resolution stages, VAE encoder 0.71 GiB and depth head 0.84 GiB per image, run in chunks
# of one 1024x1024 image (`PrimeDepthPipeline.full_resolution_pixels`); the UNet walk with the
# refiner, 0.27 GiB per image, runs on the whole batch. fp32 needs twice as much.
FULL_RESOLUTION_BYTES_PER_PIXEL = 1600
WALK_BYTES_PER_PIXEL = 520
FULL_RESOLUTION_CHUNK_PIXELS = 1024 * 1024
AUTO_BATCH_LIMIT = 8  # beyond this a GPU is saturated; more only risks memory
AUTO_BATCH_MEMORY_SHARE = 0.7  # of the free memory: room for the allocator, cuDNN and the ensemble


def auto_batch_size(device: str, dtype_name: str, max_side: int, free_bytes: int | None = None) -> int:
    """Images per forward pass for `--batch-size auto`.

    On the CPU (and MPS) 1: convolutions already use every core, so batching adds memory, not
    speed (benchmarks/results-cpu.md). On CUDA: as many max_side x max_side images (the largest
    processed size) as fit in 70% of the free memory next to one full-resolution chunk, between
    1 and AUTO_BATCH_LIMIT; an estimate only, a batch that still runs out of memory is split.
    """
    if not device.startswith("cuda"):
        return 1
    if free_bytes is None:
        import torch

        free_bytes = torch.cuda.mem_get_info(torch.device(device))[0]
    scale = 2 if canonical_dtype(dtype_name) == "float32" else 1
    pixels = max_side * max_side
    full_resolution = FULL_RESOLUTION_BYTES_PER_PIXEL * scale * max(pixels, FULL_RESOLUTION_CHUNK_PIXELS)
    per_image = WALK_BYTES_PER_PIXEL * scale * pixels
    budget = free_bytes * AUTO_BATCH_MEMORY_SHARE - full_resolution
    return max(1, min(AUTO_BATCH_LIMIT, int(budget // per_image)))
