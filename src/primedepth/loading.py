"""A PrimeDepth pipeline on a device, from whatever the user names: a model folder, an official
checkpoint or a hub repository (`primedepth.weights` finds it, `PrimeDepthPipeline` loads it).

The CLI, the Python API (`primedepth.predict`), evaluation and every later front end load through
`load_pipeline`, so they place and configure the model the same way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from .constants import OFFICIAL_REPO_ID
from .devices import parse_device, parse_dtype
from .errors import InputError, PrimeDepthError
from .pipeline import PrimeDepthPipeline

__all__ = ["load_pipeline", "convert_checkpoint", "quiet_library_progress"]


def quiet_library_progress() -> None:
    """Silence diffusers' and transformers' loading bars ("Loading pipeline components", "Loading
    weights"); the CLI calls this unless --verbose, and reports progress with its own bars."""
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _load(source: str, dtype: torch.dtype, **kwargs: Any) -> PrimeDepthPipeline:
    """`from_pretrained` with library errors turned into one user-facing message."""
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; both work
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            return PrimeDepthPipeline.from_pretrained(source, torch_dtype=dtype, **kwargs)
    except PrimeDepthError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise PrimeDepthError(f"cannot load the model '{source}': {error}") from None


def load_pipeline(
    model: str | os.PathLike | None = None,
    device: Any = "auto",
    dtype: Any = "fp32",
    offload: bool = False,
    runtime: str = "torch",
    **kwargs: Any,
) -> PrimeDepthPipeline:
    """Load a PrimeDepth pipeline (hub id, model folder or official .ckpt) onto a device.

    `device`: "auto", "cpu", "cuda[:N]", "mps" or a torch.device; `dtype`: "fp32"/"bf16"/"fp16"
    or a torch.dtype. On a GPU the depth path sits on the GPU and the text encoder and
    segmentation head are streamed from CPU memory (`move_depth_path_to`); `offload` keeps every
    model in CPU memory and moves each stage to the GPU while it runs (small GPUs). Other keyword
    arguments (revision, cache_dir, local_files_only) go to `from_pretrained`. `runtime="onnx"`:
    `model` is a folder of `primedepth export onnx`, run on ONNX Runtime (`primedepth.export`;
    its providers place it, so `device`, `dtype` and `offload` do not apply).
    """
    if runtime == "onnx":
        from .export.runtime import load_onnx_pipeline  # lazy: onnxruntime is an optional extra

        if model is None:
            raise InputError("--runtime onnx needs --model: a folder written by `primedepth export onnx`")
        return load_onnx_pipeline(model)
    if runtime != "torch":
        raise InputError(f"runtime must be torch or onnx; got {runtime!r}")
    device = parse_device(device)
    dtype = parse_dtype(dtype, device)
    if offload and device.type != "cuda":
        raise InputError(f"offloading moves models between CPU memory and a CUDA GPU; the device is '{device}'")
    pipeline = _load(str(model) if model is not None else OFFICIAL_REPO_ID, dtype, **kwargs)
    pipeline.enable_channels_last()  # measured faster on CPU; float rounding only
    if offload:
        pipeline.enable_model_cpu_offload(device=device)
    elif device.type == "cuda":
        pipeline.move_depth_path_to(device)
    else:
        pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)  # the job engine's own bar counts images
    return pipeline


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    config: str | os.PathLike | None = None,
    dtype: Any = torch.float32,
    overwrite: bool = False,
    text_encoder: bool = True,
) -> Path:
    """Convert an official checkpoint into a model folder, written atomically.

    `config`: official-format yaml (default: the released architecture). `text_encoder`: also
    write `text_encoder/` and `tokenizer/` (see `PrimeDepthPipeline.from_single_file`).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise InputError(f"{output_dir} exists and is not empty (use --overwrite to replace it)")
    dtype = parse_dtype(dtype)
    pipeline = PrimeDepthPipeline.from_single_file(
        checkpoint, original_config=config, text_encoder=text_encoder,
        torch_dtype=None if dtype == torch.float32 else dtype,
    )
    return pipeline.save_model_folder(output_dir, overwrite=overwrite)
