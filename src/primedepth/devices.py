"""Device and precision names, one definition for the API, the CLI, evaluation and conversion.

Kept free of a torch import at module level, so the CLI can use the choices in `--help`.
"""

from __future__ import annotations

from typing import Any

from .errors import InputError

__all__ = [
    "DEVICE_CHOICES", "DTYPE_CHOICES", "AUTO_BATCH_LIMIT", "auto_batch_size", "parse_dtype", "parse_device",
    "dtype_label", "pipeline_device_and_dtype", "dtype_kwargs",
]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
DTYPE_CHOICES = ("fp32", "bf16", "fp16")
# Accepted precision names -> torch attribute names.
_DTYPE_NAMES = {
    "fp32": "float32", "float32": "float32",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
    "fp16": "float16", "float16": "float16",
}
_LABELS = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def parse_dtype(value: Any, device: Any = None) -> Any:
    """A precision name ('fp32', 'bfloat16', ...) or torch.dtype -> torch.dtype, parsed once at
    the edge (CLI, config, API argument). With `device`, fp16 on the CPU is refused."""
    import torch  # lazy: start-up speed (the CLI's --help must not import torch)

    if isinstance(value, torch.dtype):
        dtype = value
    elif isinstance(value, str) and value in _DTYPE_NAMES:
        dtype = getattr(torch, _DTYPE_NAMES[value])
    else:
        raise InputError(f"unknown dtype {value!r}; use one of {', '.join(DTYPE_CHOICES)}")
    if str(dtype).removeprefix("torch.") not in _LABELS:
        raise InputError(f"unsupported dtype {dtype}; use one of {', '.join(DTYPE_CHOICES)}")
    if dtype == torch.float16 and device is not None and torch.device(device).type == "cpu":
        raise InputError("fp16 is for GPUs; on the CPU use --dtype fp32 or bf16")
    return dtype


def dtype_label(dtype: Any) -> str:
    """torch.dtype -> 'fp32' / 'bf16' / 'fp16', for reports and metadata only."""
    return _LABELS[str(dtype).removeprefix("torch.")]


def parse_device(name: Any) -> Any:
    """'auto' -> the best available device; an explicit one is checked to exist. -> torch.device"""
    import torch  # lazy: start-up speed

    if isinstance(name, torch.device):
        name = str(name)
    kind = name.split(":")[0]
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if kind == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if kind not in DEVICE_CHOICES:
        raise InputError(f"unknown device '{name}'; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if kind == "cuda" and not cuda:
        raise InputError(f"device '{name}' asked for, but torch sees no CUDA GPU")
    if kind == "mps" and not mps:
        raise InputError(f"device '{name}' asked for, but Apple MPS is not available")
    return torch.device(name)


def pipeline_device_and_dtype(pipeline: Any) -> tuple[Any, Any]:
    """A loaded pipeline's execution device and dtype (torch.device, torch.dtype)."""
    import torch  # lazy: start-up speed

    device = getattr(pipeline, "_execution_device", None) or getattr(pipeline, "device", "cpu")
    return torch.device(device), getattr(pipeline, "dtype", torch.float32)


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


def auto_batch_size(device: Any, dtype: Any, max_side: int, free_bytes: int | None = None) -> int:
    """Images per forward pass for `--batch-size auto`.

    On the CPU (and MPS) 1: convolutions already use every core, so batching adds memory, not
    speed (benchmarks/results-cpu.md). On CUDA: as many max_side x max_side images (the largest
    processed size) as fit in 70% of the free memory next to one full-resolution chunk, between
    1 and AUTO_BATCH_LIMIT; an estimate only, a batch that still runs out of memory is split.
    """
    import torch  # lazy: start-up speed

    device = torch.device(device)
    if device.type != "cuda":
        return 1
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    scale = 2 if parse_dtype(dtype) == torch.float32 else 1
    pixels = max_side * max_side
    full_resolution = FULL_RESOLUTION_BYTES_PER_PIXEL * scale * max(pixels, FULL_RESOLUTION_CHUNK_PIXELS)
    per_image = WALK_BYTES_PER_PIXEL * scale * pixels
    budget = free_bytes * AUTO_BATCH_MEMORY_SHARE - full_resolution
    return max(1, min(AUTO_BATCH_LIMIT, int(budget // per_image)))


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """transformers' `from_pretrained` dtype argument: `torch_dtype` was renamed `dtype` in 4.56."""
    import transformers  # lazy: start-up speed (the CLI's --help must not import transformers)
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}
