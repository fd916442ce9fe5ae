"""The compared paths as single timed calls, for interleaved rounds.

A path is one call that returns its wall seconds and its stages' seconds; the rounds
(`rounds.py`) call every path once per round, so all paths see the same minutes of machine
load. Stages inside an end-to-end call are read from forward hooks (`timing.ModuleClock`) in
that same call, never from a second call.

| path | one call |
|---|---|
| `primedepth` | `PrimeDepthPipeline.predict_raw` (i.e. `primedepth.model.forward`), segmentation off; VAE encoder and depth head timed inside it |
| `capture` | the UNet walk with preimage capture (materialised; once per capture kernel with `--capture-kernels`), the refiner on it, and the bare UNet forward, back to back (the order rotates per round) |
| `official` | the official-style reference, stage by stage (`official_style.official_stages`) |
| `marigold` | Marigold 1 step x 1 member end to end; VAE encoder, UNet and VAE decoder timed inside it |
| `dav2` | Depth Anything V2 on its own input size |

The floor (VAE encode + bare UNet + depth head) is not a call of its own: it is the sum of the
`primedepth` call's encoder and head and the `capture` call's bare UNet of the same round
(`ratios.floor_seconds`), the same computations on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

import torch
from diffusers import AutoencoderKL, MarigoldDepthPipeline
from transformers import CLIPTextModel, DepthAnythingForDepthEstimation

from primedepth.model.attention_maps import AttentionMapProcessor, default_self_capture
from primedepth.pipeline import PrimeDepthPipeline

from .builders import BenchInputs
from .official_style import official_stages
from .stages import bare_unet_call, encode_call, walk_call
from .timing import Elapsed, ElapsedTimer, ModuleClock, timed

Measurement = dict[str, Any]  # {"total": Elapsed, "stages": {name: Elapsed}, "finite": bool}


@dataclass
class TimedPath:
    """One compared path: `call()` runs it once and returns its measurement."""

    name: str
    call: Callable[[], Measurement]


def path_key(mode: str, dtype: str) -> str:
    """The name of a path in the rounds' records, e.g. "primedepth:bf16"."""
    return f"{mode}:{dtype}"


def _encoder_modules(vae: AutoencoderKL) -> list[torch.nn.Module]:
    """What `vae.encode` runs: the encoder and the quantisation conv (when the VAE has one)."""
    return [vae.encoder, getattr(vae, "quant_conv", None)]


def _finite(tensor: torch.Tensor) -> bool:
    """No inf/NaN in an output (random weights could overflow in half precision)."""
    return bool(torch.isfinite(tensor).all())


def primedepth_path(name: str, pipeline: PrimeDepthPipeline, inputs: BenchInputs, device: torch.device) -> TimedPath:
    """`predict_raw` end to end (segmentation off), with its VAE encoder and depth head timed inside."""
    groups = {"vae_encode": _encoder_modules(pipeline.vae), "depth_head": [pipeline.depth_head]}

    def call() -> Measurement:
        with ModuleClock(device, groups) as clock:
            total, raw = timed(lambda: pipeline.predict_raw(
                inputs.pixels, inputs.context, posterior_noise=inputs.noise.posterior,
                step_noise=inputs.noise.step, output_segmentation=False), device)
        stages = dict(clock.elapsed)
        stages["walk_refiner"] = total - sum(stages.values(), Elapsed())
        return {"total": total, "stages": stages, "finite": _finite(raw.depth)}

    return TimedPath(name, call)


def kernel_stage(kernel: str) -> str:
    """The stage name of the UNet walk with one self-attention capture kernel."""
    return f"unet_preimage[{kernel}]"


def capture_path(
    name: str, pipeline: PrimeDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device,
    kernels: Sequence[str] = (),
) -> TimedPath:
    """The UNet walk with capture (materialised), the refiner on it and the bare UNet, back to back:
    their ratio is the capture overhead. The order of the calls rotates from call to call.

    With `kernels`, the walk runs once per self-attention capture kernel (stages
    `unet_preimage[kernel]`, each with an explicit `AttentionMapProcessor(kernel)`), and
    `unet_preimage` is the walk of the kernel the default ("auto") picks here, not run twice.
    """
    context = inputs.context.to(dtype)
    with torch.no_grad():
        latents = encode_call(pipeline, inputs, dtype)()
    default = default_self_capture(device, dtype, latents.shape[-2] * latents.shape[-1]) if kernels else None
    walks = {kernel_stage(k): walk_call(pipeline, latents, context, inputs.noise.step, AttentionMapProcessor(k)) for k in kernels}
    if not kernels:
        walks = {"unet_preimage": walk_call(pipeline, latents, context, inputs.noise.step)}
    main_walk = kernel_stage(default) if default in kernels else next(iter(walks))
    bare = bare_unet_call(pipeline, latents, context, inputs.noise.step)
    calls = count()

    def run_walk(stage_name: str, stages: dict[str, Elapsed]) -> None:
        stages[stage_name], preimage = timed(walks[stage_name], device)
        if stage_name == main_walk:
            stages["refiner"], _ = timed(lambda: pipeline.refiner(preimage.steps, preimage.temb, preimage.context), device)

    def call() -> Measurement:
        stages: dict[str, Elapsed] = {}
        order = [*walks, "unet_bare"]
        shift = next(calls) % len(order)
        with torch.no_grad():
            for stage_name in order[shift:] + order[:shift]:
                if stage_name == "unet_bare":
                    stages["unet_bare"], _ = timed(bare, device)
                else:
                    run_walk(stage_name, stages)
        total = sum(stages.values(), Elapsed())
        if main_walk != "unet_preimage":
            stages["unet_preimage"] = stages[main_walk]
        return {"total": total, "stages": stages, "finite": True}

    return TimedPath(name, call)


def official_path(
    name: str, pipeline: PrimeDepthPipeline, inputs: BenchInputs, text_encoder: CLIPTextModel, device: torch.device
) -> TimedPath:
    """The official-style reference (fp32, NCHW pipeline): its stages in sequence, total = their sum."""

    def call() -> Measurement:
        timer = ElapsedTimer(device)
        official_stages(pipeline, inputs, text_encoder, timer)
        return {"total": sum(timer.elapsed.values(), Elapsed()), "stages": dict(timer.elapsed), "finite": True}

    return TimedPath(name, call)


def marigold_path(name: str, pipeline: MarigoldDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device) -> TimedPath:
    """Marigold at 1 step x 1 member, its encoder, UNet and decoder timed inside the call (for
    the extrapolation to its protocols, `ratios.marigold_seconds`)."""
    pixels = ((inputs.pixels + 1) / 2).to(dtype)  # Marigold takes [0, 1]
    vae = pipeline.vae
    groups = {"vae_encode": _encoder_modules(vae), "unet": [pipeline.unet],
              "vae_decode": [vae.decoder, getattr(vae, "post_quant_conv", None)]}

    def predict() -> torch.Tensor:
        return pipeline(pixels, num_inference_steps=1, ensemble_size=1, processing_resolution=pixels.shape[-1],
                        match_input_resolution=False, batch_size=pixels.shape[0], output_type="pt").prediction

    def call() -> Measurement:
        with torch.no_grad(), ModuleClock(device, groups) as clock:
            total, depth = timed(predict, device)
        return {"total": total, "stages": dict(clock.elapsed), "finite": _finite(depth)}

    return TimedPath(name, call)


def dav2_path(name: str, model: DepthAnythingForDepthEstimation, batch: int, size: int, dtype: torch.dtype, device: torch.device) -> TimedPath:
    """Depth Anything V2 on `batch` random size x size images (its native size, whatever the benchmark size)."""
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)

    def call() -> Measurement:
        with torch.no_grad():
            total, depth = timed(lambda: model(pixel_values=pixels).predicted_depth, device)
        return {"total": total, "stages": {}, "finite": _finite(depth)}

    return TimedPath(name, call)
