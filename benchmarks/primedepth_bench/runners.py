"""One measured run per mode, in this process; each returns a JSON-serialisable result record.

Every record has `total` (median seconds per batch), `peak_memory`, `resident_before` and
`finite`; most add `stages` (median seconds of each stage). The official-style run is in
`official_style` (the comparison reference).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
from diffusers import MarigoldDepthPipeline
from transformers import DepthAnythingForDepthEstimation

from primedepth.model import RawPrediction
from primedepth.pipeline import PrimeDepthPipeline

from .builders import DAV2_SIZE, BenchInputs
from .stages import bare_unet_call, encode_call, time_stages, walk_call
from .timing import MemoryWatch, StageTimer, time_call

# Marigold protocols (denoising steps, ensemble members), extrapolated from one 1 x 1 run.
MARIGOLD_PROTOCOLS = {"v1-0 (50x10)": (50, 10), "v1-1 (4x1)": (4, 1)}


def run_primedepth(
    pipeline: PrimeDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device,
    repeats: int, warmup: int = 1, stages: bool = True,
) -> dict[str, Any]:
    """End to end `predict_raw` (segmentation off) first, so the peak is the real pipeline's
    streaming path; then, with `stages`, every stage again on its own."""
    watch = MemoryWatch(device)

    def predict() -> RawPrediction:
        return pipeline.predict_raw(inputs.pixels, inputs.context, posterior_noise=inputs.noise.posterior,
                                    step_noise=inputs.noise.step, output_segmentation=False)

    total, raw = time_call(predict, device, repeats, warmup)
    result = watch.result(total, finite=bool(torch.isfinite(raw.depth).all()))
    if stages:  # every shape was just warmed up by the end-to-end calls
        timer = StageTimer(device, repeats, warmup=0)
        time_stages(pipeline, inputs, dtype, timer)
        result["stages"] = timer.seconds
    return result


def run_capture_overhead(
    pipeline: PrimeDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """The UNet walk with preimage capture and the bare UNet forward, interleaved call by call.

    Both see the same machine load, so their ratio is robust on a shared machine. The bare
    forward runs the UNet's own attention and the whole UNet; the walk captures the maps and
    skips the UNet tail.
    """
    context = inputs.context.to(dtype)
    watch = MemoryWatch(device)
    walks, bares = [], []
    with torch.no_grad():
        latents = encode_call(pipeline, inputs, dtype)()
        walk = walk_call(pipeline, latents, context, inputs.noise.step)
        bare = bare_unet_call(pipeline, latents, context, inputs.noise.step)
        for index in range(warmup + max(1, repeats)):
            walk_seconds, _ = time_call(walk, device, 1, 0)
            bare_seconds, _ = time_call(bare, device, 1, 0)
            if index >= warmup:
                walks.append(walk_seconds)
                bares.append(bare_seconds)
    stages = {"unet_preimage": statistics.median(walks), "unet_bare": statistics.median(bares),
              "ratio_per_pair": statistics.median(w / b for w, b in zip(walks, bares))}
    return watch.result(stages["unet_preimage"], stages=stages, finite=True)


def run_floor(
    pipeline: PrimeDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """The bare components: VAE encode + plain full UNet forward + depth head, no refiner-sized
    work (the head gets a random tensor of the refiner output's shape)."""
    context = inputs.context.to(dtype)
    watch = MemoryWatch(device)
    timer = StageTimer(device, repeats, warmup)
    with torch.no_grad():
        latents = timer("vae_encode", encode_call(pipeline, inputs, dtype))
        timer("unet_bare", bare_unet_call(pipeline, latents, context, inputs.noise.step))
        shape = (latents.shape[0], pipeline.refiner.config.out_channels, *latents.shape[-2:])
        features = torch.randn(shape, device=device, dtype=dtype)
        depth = timer("depth_head", lambda: pipeline.depth_head(features))
    return watch.result(sum(timer.seconds.values()), stages=timer.seconds, finite=bool(torch.isfinite(depth).all()))


def run_marigold(
    pipeline: MarigoldDepthPipeline, inputs: BenchInputs, dtype: torch.dtype, device: torch.device, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """1 step x 1 member end to end, plus encode / UNet / decode alone to extrapolate to S steps x E members.

    T(S, E) = T(1, 1) + (S*E - 1) * T_unet + (E - 1) * T_decode (the image is encoded once; the
    ensembling itself is not counted).
    """
    pixels = ((inputs.pixels + 1) / 2).to(dtype)  # Marigold takes [0, 1]
    vae, size = pipeline.vae, pixels.shape[-1]
    watch = MemoryWatch(device)

    def predict() -> torch.Tensor:
        return pipeline(pixels, num_inference_steps=1, ensemble_size=1, processing_resolution=size,
                        match_input_resolution=False, batch_size=pixels.shape[0], output_type="pt").prediction

    timer = StageTimer(device, repeats, warmup=0)  # the end-to-end calls warmed every stage up
    with torch.no_grad():
        total, depth = time_call(predict, device, repeats, warmup)
        result = watch.result(total, finite=bool(torch.isfinite(depth).all()))
        latent = timer("vae_encode", lambda: vae.encode(pixels * 2 - 1).latent_dist.mode() * vae.config.scaling_factor)
        sample = torch.cat([latent, torch.randn_like(latent)], dim=1)
        text = pipeline.empty_text_embedding.to(device, dtype).expand(sample.shape[0], -1, -1)
        timestep = torch.full((sample.shape[0],), 999, device=device, dtype=torch.long)
        timer("unet", lambda: pipeline.unet(sample, timestep, encoder_hidden_states=text, return_dict=False)[0])
        timer("vae_decode", lambda: vae.decode(latent / vae.config.scaling_factor, return_dict=False)[0])
    stages = timer.seconds
    extrapolated = {name: total + (steps * members - 1) * stages["unet"] + (members - 1) * stages["vae_decode"]
                    for name, (steps, members) in MARIGOLD_PROTOCOLS.items()}
    return result | {"stages": stages, "extrapolated": extrapolated}


def run_dav2(
    model: DepthAnythingForDepthEstimation, batch: int, dtype: torch.dtype, device: torch.device,
    repeats: int, warmup: int = 1, size: int = DAV2_SIZE,
) -> dict[str, Any]:
    """Depth Anything V2 on `batch` random size x size images (its own input, whatever the
    benchmark size: the model runs at its native resolution)."""
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    watch = MemoryWatch(device)
    with torch.no_grad():
        total, depth = time_call(lambda: model(pixel_values=pixels).predicted_depth, device, repeats, warmup)
    return watch.result(total, finite=bool(torch.isfinite(depth).all()))
