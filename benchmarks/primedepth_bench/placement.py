"""GPU memory of `primedepth predict`'s placement, measured rather than counted.

`primedepth.loading.load_pipeline` loads the pipeline into CPU memory, then on CUDA calls
`enable_channels_last()` and `move_depth_path_to(device)`: VAE, UNet, refiner and depth head on
the GPU, text encoder and segmentation head streamed from CPU memory layer by layer. This
module builds a full-size random-weight pipeline (text encoder included) in CPU memory, applies
the same two calls, encodes a prompt and predicts one image, and reads the peak two ways:
`torch.cuda.max_memory_allocated` (tensors) and nvidia-smi (the whole device: CUDA context and
the caching allocator's reserve included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import torch

from primedepth.text import CONTEXT_LENGTH

from .builders import build_primedepth, build_text_encoder, make_inputs
from .timing import current_memory_bytes, peak_memory_bytes, release_memory, synchronize


def nvidia_smi_index(device: torch.device) -> str:
    """nvidia-smi's name for a torch device: CUDA_VISIBLE_DEVICES renumbers what torch sees."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    index = device.index or 0
    return visible[index] if index < len(visible) else str(index)


def nvidia_smi_used_mib(device: torch.device) -> float | None:
    """Device memory in use according to nvidia-smi (MiB), or None without CUDA or nvidia-smi."""
    if device.type != "cuda" or shutil.which("nvidia-smi") is None:
        return None
    command = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", nvidia_smi_index(device)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
        return float(done.stdout.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _placed_pipeline(scale: str, dtype: torch.dtype, device: torch.device) -> Any:
    """Built in CPU memory (as `from_pretrained` loads it), then placed as `load_pipeline` places it on CUDA."""
    cpu = torch.device("cpu")
    pipeline = build_primedepth(scale, dtype, cpu, text_encoder=build_text_encoder(scale, cpu, dtype))
    pipeline.enable_channels_last()
    pipeline.move_depth_path_to(device)
    return pipeline


def placement_memory(scale: str, dtype: torch.dtype, device: torch.device, size: int) -> dict[str, Any]:
    """Peak memory of one size x size prediction (segmentation off, as `predict` runs by default),
    after the prompt is encoded by the streamed text encoder. Bytes, nvidia-smi in MiB."""
    smi_before = nvidia_smi_used_mib(device)
    pipeline = _placed_pipeline(scale, dtype, device)
    synchronize(device)
    weights = current_memory_bytes(device)  # CUDA: the depth path's weights on the device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    inputs = make_inputs(pipeline, 1, size, device)
    with torch.no_grad():
        tokens = torch.zeros(1, CONTEXT_LENGTH, dtype=torch.long)
        context = pipeline.text_encoder(tokens).last_hidden_state  # the offload hooks move it to the device
        raw = pipeline.predict_raw(inputs.pixels, context.to(device), posterior_noise=inputs.noise.posterior,
                                   step_noise=inputs.noise.step, output_segmentation=False)
    synchronize(device)
    result = {"size": size, "dtype": str(dtype).removeprefix("torch."), "weights_on_device": weights,
              "peak_allocated": peak_memory_bytes(device),
              "peak_reserved": torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None,
              "nvidia_smi_before_mib": smi_before, "nvidia_smi_after_mib": nvidia_smi_used_mib(device),
              "finite": bool(torch.isfinite(raw.depth).all())}
    del pipeline, raw, context, inputs
    release_memory()
    return result
