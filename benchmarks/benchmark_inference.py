#!/usr/bin/env python
"""PrimeDepth inference benchmark: per-stage timings, peak memory and baselines, as a table.

Every model is built from its configuration with random weights (speed does not depend on the
values): built on the meta device, cast, materialised with `to_empty` and filled with small
uniform values. Each measured configuration runs in a fresh subprocess, so its peak memory
(RSS on CPU, `torch.cuda.max_memory_allocated` on CUDA) is its own.

Runs ("modes"), all on the same random input of a given size:
- primedepth: our pipeline (`predict_raw`, segmentation off), plus a per-stage breakdown;
- official:   official-style path: softmax(QK^T) materialised for every attention layer and
              pooled as P @ M, the whole preimage held before the refiner, segmentation head on,
              fp32 (the baseline, ratio column "vs official");
- floor:      VAE encode + bare UNet forward (diffusers' default processors) + depth head
              (ratio column "vs floor");
- marigold:   diffusers' MarigoldDepthPipeline (8-channel UNet, same VAE) at 1 step x 1 member,
              extrapolated to v1-0 (50 x 10) and v1-1 default (4 x 1);
- dav2:       transformers' DepthAnythingForDepthEstimation, V2-Large configuration, at 518.

    python benchmarks/benchmark_inference.py --sizes 512 768 --dtypes fp32 bf16 --json out.json
    python benchmarks/benchmark_inference.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("capture", "primedepth", "official", "floor", "marigold", "dav2")
DAV2_SIZE = 518
MARIGOLD_PROTOCOLS = {"v1-0 (50x10)": (50, 10), "v1-1 (4x1)": (4, 1)}


# ----------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of `fn` over `repeats` calls after `warmup` calls; returns (seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    synchronize(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def peak_memory_bytes(device: torch.device) -> int:
    """Peak since process start (CPU: max RSS) or since the last reset (CUDA: allocated)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    import psutil

    return psutil.Process().memory_info().rss


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- random models


@torch.no_grad()
def fill_random(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Cheap random fill: matrices/kernels uniform(+-1/sqrt(fan_in)), 1-D weights 1, biases 0.

    Keeps activations bounded (no inf/NaN and no denormals, which would distort CPU timings).
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in module.named_parameters():
        if param.ndim >= 2:
            bound = 1.0 / math.sqrt(max(1, param[0].numel()))
            values = torch.empty(param.shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
            param.copy_(values)
        elif name.endswith("weight") or name.endswith("gamma") or "scale" in name.rsplit(".", 1)[-1]:
            param.fill_(1.0)
        else:
            param.zero_()
    for name, buffer in module.named_buffers():
        if buffer.is_floating_point():
            buffer.zero_()
    return module.eval().requires_grad_(False)


def materialise(factory: Callable[[], torch.nn.Module], dtype: torch.dtype, device: torch.device, seed: int = 0) -> torch.nn.Module:
    """Build on meta, cast, allocate on `device` (never holding a float32 copy), fill randomly."""
    with torch.device("meta"):
        module = factory()
    module = module.to(dtype=dtype).to_empty(device=device)
    return fill_random(module, seed)


def primedepth_configs(scale: str):
    from primedepth.convert import RELEASED_INFERENCE_CONFIG, component_configs
    from primedepth.testing import tiny_official_config

    official = RELEASED_INFERENCE_CONFIG if scale == "full" else tiny_official_config()
    return component_configs(official, {})


def build_primedepth(scale: str, dtype: torch.dtype, device: torch.device):
    """PrimeDepth pipeline with random weights, segmentation head included."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    from primedepth.heads import LabelHead
    from primedepth.pipeline import PrimeDepthPipeline
    from primedepth.refiner import PrimeDepthRefiner

    configs = primedepth_configs(scale)
    pipeline = PrimeDepthPipeline(
        vae=materialise(lambda: AutoencoderKL(**configs.vae), dtype, device, 1),
        unet=materialise(lambda: UNet2DConditionModel(**configs.unet), dtype, device, 2),
        refiner=materialise(lambda: PrimeDepthRefiner(**configs.refiner), dtype, device, 3),
        depth_head=materialise(lambda: LabelHead(**configs.depth_head), dtype, device, 4),
        segmentation_head=materialise(lambda: LabelHead(**configs.segmentation_head), dtype, device, 5),
        scheduler=DDPMScheduler(**configs.scheduler),
    )
    return pipeline


def build_text_encoder(scale: str, device: torch.device):
    """The OpenCLIP ViT-H/14 text tower as a CLIPTextModel (random, fp32): the official code
    encodes the prompt of every image with it (PrimeDepth caches prompt embeddings)."""
    from transformers import CLIPTextModel

    from primedepth.testing import tiny_text_encoder
    from primedepth.text import text_encoder_config

    factory = (lambda: CLIPTextModel(text_encoder_config())) if scale == "full" else tiny_text_encoder
    model = materialise(factory, torch.float32, device, 7)
    for name, buffer in model.named_buffers():
        if name.endswith("position_ids"):  # an integer buffer: to_empty left it undefined
            buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))
    return model


def build_marigold(scale: str, dtype: torch.dtype, device: torch.device):
    """diffusers' MarigoldDepthPipeline: SD 2.x UNet with 8 input channels, the same VAE."""
    from diffusers import AutoencoderKL, DDIMScheduler, MarigoldDepthPipeline, UNet2DConditionModel

    configs = primedepth_configs(scale)
    unet_config = dict(configs.unet, in_channels=8)
    pipeline = MarigoldDepthPipeline(
        unet=materialise(lambda: UNet2DConditionModel(**unet_config), dtype, device, 6),
        vae=materialise(lambda: AutoencoderKL(**configs.vae), dtype, device, 1),
        scheduler=DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction", timestep_spacing="trailing",
        ),
        text_encoder=None,
        tokenizer=None,
        prediction_type="depth",
        default_denoising_steps=1,
    )
    # The empty-prompt embedding, as the text encoder would give it: no text tower is needed.
    pipeline.empty_text_embedding = torch.zeros(1, 2, unet_config["cross_attention_dim"], device=device, dtype=dtype)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def dav2_config(scale: str):
    from transformers import DepthAnythingConfig, Dinov2Config

    if scale == "full":  # Depth-Anything-V2-Large
        backbone = Dinov2Config(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4, patch_size=14,
            image_size=DAV2_SIZE, layerscale_value=1.0, reshape_hidden_states=False,
            out_features=["stage5", "stage12", "stage18", "stage24"],
        )
        return DepthAnythingConfig(
            backbone_config=backbone, reassemble_hidden_size=1024, neck_hidden_sizes=[256, 512, 1024, 1024],
            fusion_hidden_size=256, head_hidden_size=32, depth_estimation_type="relative",
        )
    backbone = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, patch_size=14, image_size=56,
        reshape_hidden_states=False, out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return DepthAnythingConfig(
        backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16, head_hidden_size=8,
    )


def build_dav2(scale: str, dtype: torch.dtype, device: torch.device):
    from transformers import DepthAnythingForDepthEstimation

    config = dav2_config(scale)
    return materialise(lambda: DepthAnythingForDepthEstimation(config), dtype, device, 7)


# ----------------------------------------------------------------------------- official-style attention


class OfficialStyleProcessor:
    """Attention the way the official code records maps: P = softmax(Q K^T s) is materialised.

    Self-attention: out = P V, maps = P @ M (M: the key-grid pooling matrix), normalised per head.
    Cross-attention: maps = P. Everything in fp32, as the official release runs.
    """

    def __init__(self) -> None:
        from primedepth.attention_maps import AttentionMapProcessor

        self._pooling = AttentionMapProcessor()  # only for its cached pooling matrices

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, attention_maps=None):
        from primedepth.attention_maps import _normalise_per_head, _to_channels

        is_self = encoder_hidden_states is None
        residual = hidden_states
        context = hidden_states if is_self else encoder_hidden_states
        batch, tokens, _ = hidden_states.shape

        def heads(x):
            return x.view(batch, x.shape[1], attn.heads, -1).transpose(1, 2)

        query, key, value = heads(attn.to_q(hidden_states)), heads(attn.to_k(context)), heads(attn.to_v(context))
        probs = (torch.matmul(query, key.transpose(-1, -2)) * attn.scale).softmax(dim=-1)  # (B, h, N, N or 77)
        out = torch.matmul(probs, value)
        if attention_maps is not None:
            height, width = attention_maps.height, attention_maps.width
            if is_self:
                pooling = self._pooling.pooling_matrix(height, width, probs)
                maps = _to_channels(_normalise_per_head(torch.matmul(probs, pooling)), height, width)
            else:
                maps = _to_channels(probs, height, width)
            attention_maps.put(maps, is_self)
        del probs
        out = out.transpose(1, 2).reshape(batch, tokens, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_official_style_processors(unet: torch.nn.Module) -> None:
    from diffusers.models.attention_processor import Attention

    processor = OfficialStyleProcessor()
    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(processor)


def install_default_processors(unet: torch.nn.Module) -> None:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    for module in unet.modules():
        if isinstance(module, Attention):
            module.set_processor(AttnProcessor2_0())


# ----------------------------------------------------------------------------- inputs


def make_inputs(pipeline, batch: int, size: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """The same input for every mode: pixels in [-1, 1], text context, posterior and step noise."""
    generator = torch.Generator().manual_seed(seed)
    latent = pipeline.latent_shape(size, size)[1:]
    context_dim = pipeline.unet.config.cross_attention_dim
    return {
        "pixels": (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device),
        "context": torch.randn(batch, 77, context_dim, generator=generator).to(device),
        "posterior_noise": torch.randn(batch, *latent, generator=generator).to(device),
        "step_noise": torch.randn(batch, *latent, generator=generator).to(device),
    }


# ----------------------------------------------------------------------------- the runs


def _stages(pipeline, inputs, dtype, device, repeats, warmup, text_encoder=None) -> dict[str, float]:
    """Per-stage medians; the UNet walk is materialised (a list of steps) so the refiner is timed alone.

    With a `text_encoder` (the official-style path) the work the official code does per image and
    PrimeDepth does not is timed too: encoding the prompt, and the UNet tail (last up-block
    resnet and transformer, output conv) whose result it throws away.
    """
    from primedepth.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding

    vae, unet = pipeline.vae, pipeline.unet
    pixels = inputs["pixels"].to(dtype)
    context = inputs["context"].to(dtype)
    out: dict[str, float] = {}
    with torch.no_grad():
        if text_encoder is not None:
            tokens = torch.zeros(context.shape[:2], dtype=torch.long, device=device)  # one id per context position
            out["text_encode"], _ = time_call(lambda: text_encoder(tokens).last_hidden_state, device, repeats, warmup)
        out["vae_encode"], latents = time_call(lambda: encode_latents(vae, pixels, inputs["posterior_noise"]), device, repeats, warmup)
        noisy = add_step_noise(pipeline.scheduler, latents.to(dtype), inputs["step_noise"])
        temb = timestep_embedding(unet, noisy)
        out["unet_preimage"], steps = time_call(lambda: list(iter_decoder_steps(unet, noisy, temb, context)), device, repeats, warmup)
        if text_encoder is not None:
            out["unet_tail"], _ = time_call(lambda: _unet_tail(unet, steps[-1].features, temb, context), device, repeats, warmup)
        out["refiner"], features = time_call(lambda: pipeline.refiner(steps, temb, context), device, repeats, warmup)
        del steps
        out["depth_head"], _ = time_call(lambda: pipeline.depth_head(features), device, repeats, warmup)
        out["seg_head"], _ = time_call(lambda: pipeline.segmentation_head(features), device, repeats, warmup)
    return out


def _unet_tail(unet, features, temb, context) -> torch.Tensor:
    """What the UNet computes after its last decoder step: SD's own noise prediction."""
    block = unet.up_blocks[-1]
    hidden = block.resnets[-1](features, temb)
    if getattr(block, "attentions", None) is not None:
        hidden = block.attentions[-1](hidden, encoder_hidden_states=context, return_dict=False)[0]
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))


def run_primedepth(pipeline, inputs, dtype, device, repeats, warmup=1, stages=True) -> dict[str, Any]:
    """End to end `predict_raw` (segmentation off) first, so the peak is the real pipeline's; then stages."""
    reset_peak(device)
    memory_before = current_memory_bytes(device)

    def predict():
        return pipeline.predict_raw(
            inputs["pixels"], inputs["context"], posterior_noise=inputs["posterior_noise"],
            step_noise=inputs["step_noise"], output_segmentation=False,
        )

    total, raw = time_call(predict, device, repeats, warmup)
    result = {"total": total, "peak_memory": peak_memory_bytes(device), "resident_before": memory_before,
              "finite": bool(torch.isfinite(raw.depth).all())}
    if stages:  # every shape was just warmed up by the end-to-end calls
        result["stages"] = _stages(pipeline, inputs, dtype, device, repeats, warmup=0)
    return result


def run_capture_overhead(pipeline, inputs, dtype, device, repeats, warmup=1) -> dict[str, Any]:
    """The UNet walk with preimage capture and the bare UNet forward, interleaved call by call.

    Both see the same machine load, so their ratio is robust on a shared machine. The bare
    forward runs diffusers' plain processor (what `AttentionMapProcessor` is without a sink) and
    the whole UNet; the walk captures the maps and skips the UNet tail.
    """
    from primedepth.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding

    unet = pipeline.unet
    context = inputs["context"].to(dtype)
    reset_peak(device)
    memory_before = current_memory_bytes(device)
    walks, bares = [], []
    with torch.no_grad():
        latents = encode_latents(pipeline.vae, inputs["pixels"].to(dtype), inputs["posterior_noise"])
        noisy = add_step_noise(pipeline.scheduler, latents.to(dtype), inputs["step_noise"])
        temb = timestep_embedding(unet, noisy)
        timesteps = torch.ones(noisy.shape[0], dtype=torch.long, device=device)
        for index in range(warmup + max(1, repeats)):
            walk, _ = time_call(lambda: list(iter_decoder_steps(unet, noisy, temb, context)), device, 1, 0)
            bare, _ = time_call(lambda: unet(noisy, timesteps, encoder_hidden_states=context, return_dict=False)[0], device, 1, 0)
            if index >= warmup:
                walks.append(walk)
                bares.append(bare)
    stages = {"unet_preimage": statistics.median(walks), "unet_bare": statistics.median(bares),
              "ratio_per_pair": statistics.median(w / b for w, b in zip(walks, bares))}
    return {"total": stages["unet_preimage"], "peak_memory": peak_memory_bytes(device), "resident_before": memory_before,
            "stages": stages, "finite": True}


def run_official(pipeline, inputs, device, repeats, warmup=1, text_encoder=None) -> dict[str, Any]:
    """Official-style: materialised probabilities, preimage held whole, both heads, fp32, and
    per image the prompt encoded and the UNet tail computed (BLIP-2 captioning not counted).

    The stages run in sequence as the official code runs them, so the total is their sum.
    """
    install_official_style_processors(pipeline.unet)
    reset_peak(device)
    memory_before = current_memory_bytes(device)
    stages = _stages(pipeline, inputs, torch.float32, device, repeats, warmup, text_encoder)
    return {"total": sum(stages.values()), "peak_memory": peak_memory_bytes(device), "resident_before": memory_before,
            "stages": stages, "finite": True}


def run_floor(pipeline, inputs, dtype, device, repeats, warmup=1) -> dict[str, Any]:
    """VAE encode + bare UNet forward (default processors, full UNet) + depth head."""
    from primedepth.preimage import add_step_noise, encode_latents, timestep_embedding

    install_default_processors(pipeline.unet)
    unet = pipeline.unet
    pixels, context = inputs["pixels"].to(dtype), inputs["context"].to(dtype)
    stages: dict[str, float] = {}
    reset_peak(device)
    memory_before = current_memory_bytes(device)
    with torch.no_grad():
        stages["vae_encode"], latents = time_call(lambda: encode_latents(pipeline.vae, pixels, inputs["posterior_noise"]), device, repeats, warmup)
        noisy = add_step_noise(pipeline.scheduler, latents.to(dtype), inputs["step_noise"])
        temb = timestep_embedding(unet, noisy)  # the head gets a (B, 512, h, w) tensor of the refiner's shape
        timesteps = torch.ones(noisy.shape[0], dtype=torch.long, device=device)
        stages["unet_bare"], _ = time_call(lambda: unet(noisy, timesteps, encoder_hidden_states=context, return_dict=False)[0], device, repeats, warmup)
        features = torch.randn(noisy.shape[0], pipeline.refiner.config.out_channels, *noisy.shape[-2:], device=device, dtype=dtype)
        stages["depth_head"], depth = time_call(lambda: pipeline.depth_head(features), device, repeats, warmup)
    del temb
    return {"total": sum(stages.values()), "peak_memory": peak_memory_bytes(device), "resident_before": memory_before,
            "stages": stages, "finite": bool(torch.isfinite(depth).all())}


def run_marigold(pipeline, inputs, dtype, device, repeats, warmup=1) -> dict[str, Any]:
    """1 step x 1 member end to end, plus encode / UNet / decode alone to extrapolate to S steps x E members.

    T(S, E) = T(1, 1) + (S*E - 1) * T_unet + (E - 1) * T_decode (the image is encoded once; the
    ensembling itself is not counted).
    """
    pixels = ((inputs["pixels"] + 1) / 2).to(dtype)  # Marigold takes [0, 1]
    size = pixels.shape[-1]
    reset_peak(device)
    memory_before = current_memory_bytes(device)

    def predict():
        return pipeline(pixels, num_inference_steps=1, ensemble_size=1, processing_resolution=size,
                        match_input_resolution=False, batch_size=pixels.shape[0], output_type="pt").prediction

    with torch.no_grad():
        total, depth = time_call(predict, device, repeats, warmup)
        peak = peak_memory_bytes(device)
        stages: dict[str, float] = {}
        scaled = pixels * 2 - 1
        stages["vae_encode"], latent = time_call(lambda: pipeline.vae.encode(scaled).latent_dist.mode() * pipeline.vae.config.scaling_factor, device, repeats, 0)
        sample = torch.cat([latent, torch.randn_like(latent)], dim=1)
        text = pipeline.empty_text_embedding.to(device, dtype).expand(sample.shape[0], -1, -1)
        timestep = torch.full((sample.shape[0],), 999, device=device, dtype=torch.long)
        stages["unet"], _ = time_call(lambda: pipeline.unet(sample, timestep, encoder_hidden_states=text, return_dict=False)[0], device, repeats, 0)
        stages["vae_decode"], _ = time_call(lambda: pipeline.vae.decode(latent / pipeline.vae.config.scaling_factor, return_dict=False)[0], device, repeats, 0)
    extrapolated = {name: total + (steps * members - 1) * stages["unet"] + (members - 1) * stages["vae_decode"]
                    for name, (steps, members) in MARIGOLD_PROTOCOLS.items()}
    return {"total": total, "peak_memory": peak, "resident_before": memory_before, "stages": stages,
            "extrapolated": extrapolated, "finite": bool(torch.isfinite(depth).all())}


def run_dav2(model, batch, dtype, device, repeats, warmup=1, size=DAV2_SIZE) -> dict[str, Any]:
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    reset_peak(device)
    memory_before = current_memory_bytes(device)
    with torch.no_grad():
        total, depth = time_call(lambda: model(pixel_values=pixels).predicted_depth, device, repeats, warmup)
    return {"total": total, "peak_memory": peak_memory_bytes(device), "resident_before": memory_before,
            "finite": bool(torch.isfinite(depth).all())}


# ----------------------------------------------------------------------------- one configuration


def run_configuration(spec: dict[str, Any]) -> dict[str, Any]:
    """Build and run one (mode, size, dtype, batch) configuration in this process."""
    device = torch.device(spec["device"])
    dtype = DTYPES[spec["dtype"]]
    scale, size, batch, repeats = spec.get("scale", "full"), spec["size"], spec["batch"], spec["repeats"]
    warmup = spec.get("warmup", 1)
    torch.manual_seed(0)
    start = time.perf_counter()
    mode = spec["mode"]
    if mode == "dav2":
        model = build_dav2(scale, dtype, device)
        build_time = time.perf_counter() - start
        result = run_dav2(model, batch, dtype, device, repeats, warmup, size=spec.get("dav2_size", DAV2_SIZE))
    elif mode == "marigold":
        pipeline = build_marigold(scale, dtype, device)
        build_time = time.perf_counter() - start
        inputs = make_inputs(_ShapeOnly(pipeline), batch, size, device)
        result = run_marigold(pipeline, inputs, dtype, device, repeats, warmup)
    else:
        pipeline = spec.get("_pipeline") or build_primedepth(scale, dtype, device)
        text_encoder = build_text_encoder(scale, device) if mode == "official" else None
        if spec.get("channels_last") and mode != "official":  # the official code is NCHW
            pipeline.enable_channels_last()
        build_time = time.perf_counter() - start
        inputs = make_inputs(pipeline, batch, size, device)
        stages = spec.get("stages", True)
        if mode == "capture":
            result = run_capture_overhead(pipeline, inputs, dtype, device, repeats, warmup)
        elif mode == "primedepth":
            result = run_primedepth(pipeline, inputs, dtype, device, repeats, warmup, stages)
        elif mode == "official":
            result = run_official(pipeline, inputs, device, repeats, warmup, text_encoder)
        elif mode == "floor":
            result = run_floor(pipeline, inputs, dtype, device, repeats, warmup)
        else:
            raise ValueError(f"unknown mode {mode}")
    result["build_seconds"] = build_time
    return {key: value for key, value in spec.items() if not key.startswith("_")} | result


class _ShapeOnly:
    """Adapter giving a Marigold pipeline the two attributes `make_inputs` reads."""

    def __init__(self, pipeline) -> None:
        self.unet = pipeline.unet
        self._factor = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
        self._channels = pipeline.vae.config.latent_channels

    def latent_shape(self, height: int, width: int):
        return (1, self._channels, height // self._factor, width // self._factor)


def run_in_subprocess(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Fresh interpreter per configuration: honest peaks, no state shared between runs."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, status=f"timeout > {timeout:.0f} s")
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        status = "out of memory (killed)" if done.returncode in (-9, 137) else f"failed: {tail[:120]}"
        return dict(spec, status=status, wall_seconds=wall)
    return dict(json.loads(lines[-1]), status="ok", wall_seconds=wall)


# ----------------------------------------------------------------------------- planning and table


def plan(args) -> list[dict[str, Any]]:
    """Configurations in run order, so that a time budget cuts the least important tail.

    Per batch size: PrimeDepth, its floor and the official-style baseline at every size and dtype
    first (the official-style path is always fp32), then Depth Anything V2, then Marigold.
    """
    specs = []
    common = {"device": args.device, "repeats": args.repeats, "warmup": args.warmup, "scale": args.scale,
              "threads": args.threads, "channels_last": args.channels_last}
    for batch in args.batch_sizes:
        for dtype in args.dtypes:
            for size in args.sizes:
                specs.append(dict(common, mode="capture", size=size, dtype=dtype, batch=batch))
                specs.append(dict(common, mode="primedepth", size=size, dtype=dtype, batch=batch))
                specs.append(dict(common, mode="floor", size=size, dtype=dtype, batch=batch))
                if dtype == args.dtypes[0]:
                    specs.append(dict(common, mode="official", size=size, dtype="fp32", batch=batch))
        for dtype in args.dtypes:
            specs.append(dict(common, mode="dav2", size=args.dav2_size, dtype=dtype, batch=batch))
        for size in args.sizes:
            for dtype in args.dtypes:
                specs.append(dict(common, mode="marigold", size=size, dtype=dtype, batch=batch))
    return [s for s in specs if s["mode"] in args.modes]


def _seconds(value: float | None) -> str:
    return "—" if value is None else (f"{value:.3f}" if value < 1 else f"{value:.2f}")


def _gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "—"
    return f"{numerator / denominator:.2f}x"


def _working(result: dict[str, Any]) -> int | None:
    """Peak minus the resident memory after building the models: the run's working memory."""
    if result.get("resident_before") is None:
        return None
    return max(1, result["peak_memory"] - result["resident_before"])


def _find(results, **match) -> dict[str, Any] | None:
    for result in results:
        if result.get("status") == "ok" and all(result.get(k) == v for k, v in match.items()):
            return result
    return None


def format_tables(results: list[dict[str, Any]]) -> str:
    """Markdown: the PrimeDepth table with ratios, the stage breakdown, the baselines, failures."""
    memory = "peak RSS GiB" if all(r.get("device", "cpu") == "cpu" for r in results) else "peak GiB"
    lines = [
        f"| size | dtype | batch | total s/img | {memory} | vs official (time) | vs official (peak) | vs official (working mem) | over floor (time) | UNet+preimage / bare UNet | vs Marigold 1x1 | vs Marigold v1-1 4x1 | vs Marigold v1-0 50x10 | vs DAv2-L 518 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = [r for r in results if r.get("mode") == "primedepth"]
    for result in ours:
        key = {"size": result["size"], "batch": result["batch"], "device": result["device"]}
        if result.get("status") != "ok":
            lines.append(f"| {key['size']} | {result['dtype']} | {key['batch']} | {result['status']} |" + " — |" * 10)
            continue
        batch = result["batch"]
        official = _find(results, mode="official", **key)
        floor = _find(results, mode="floor", dtype=result["dtype"], **key)
        marigold = _find(results, mode="marigold", dtype=result["dtype"], **key)
        dav2 = _find(results, mode="dav2", dtype=result["dtype"], batch=batch, device=result["device"])
        capture = _find(results, mode="capture", dtype=result["dtype"], **key)
        if capture:  # interleaved measurement, robust to load changes
            walk, bare = capture["stages"]["unet_preimage"], capture["stages"]["unet_bare"]
        else:
            walk = result.get("stages", {}).get("unet_preimage")
            bare = floor["stages"]["unet_bare"] if floor else None
        # a ratio > 1 means PrimeDepth is that many times faster / leaner than the other
        extrapolated = marigold["extrapolated"] if marigold else {}
        lines.append(
            f"| {result['size']} | {result['dtype']} | {batch} | {_seconds(result['total'] / batch)} | {_gib(result['peak_memory'])} "
            f"| {_ratio(official and official['total'], result['total'])} "
            f"| {_ratio(official and official['peak_memory'], result['peak_memory'])} "
            f"| {_ratio(official and _working(official), _working(result))} "
            f"| {_ratio(result['total'], floor and floor['total'])} "
            f"| {_ratio(walk, bare)} "
            f"| {_ratio(marigold and marigold['total'], result['total'])} "
            f"| {_ratio(extrapolated.get('v1-1 (4x1)'), result['total'])} "
            f"| {_ratio(extrapolated.get('v1-0 (50x10)'), result['total'])} "
            f"| {_ratio(dav2 and dav2['total'], result['total'])} |"
        )
    lines += ["", "Per stage (median seconds per batch; `unet+preimage` is the UNet walk with map capture, materialised):", "",
              "| run | size | dtype | batch | text encode | VAE encode | UNet + preimage / bare UNet | UNet tail | refiner | depth head | seg head | total | peak GiB | before GiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        if result.get("mode") not in ("capture", "primedepth", "official", "floor"):
            continue
        if result.get("status") != "ok":
            lines.append(f"| {result['mode']} | {result['size']} | {result['dtype']} | {result['batch']} | {result['status']} |" + " — |" * 9)
            continue
        stages = result.get("stages", {})
        unet = stages.get("unet_preimage", stages.get("unet_bare"))
        if result["mode"] == "capture":
            unet = f"{_seconds(stages['unet_preimage'])} / {_seconds(stages['unet_bare'])}"
        lines.append(
            f"| {result['mode']} | {result['size']} | {result['dtype']} | {result['batch']} | {_seconds(stages.get('text_encode'))} "
            f"| {_seconds(stages.get('vae_encode'))} | {unet if isinstance(unet, str) else _seconds(unet)} | {_seconds(stages.get('unet_tail'))} "
            f"| {_seconds(stages.get('refiner'))} | {_seconds(stages.get('depth_head'))} "
            f"| {_seconds(stages.get('seg_head'))} | {_seconds(result['total'])} | {_gib(result['peak_memory'])} | {_gib(result.get('resident_before'))} |"
        )
    lines += ["", "Baselines (median seconds per batch):", "",
              "| run | size | dtype | batch | measured total | VAE encode | UNet (1 pass) | VAE decode | v1-1 4x1 (extrap.) | v1-0 50x10 (extrap.) | peak GiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        if result.get("mode") not in ("marigold", "dav2"):
            continue
        name = "Marigold 1x1" if result["mode"] == "marigold" else "Depth Anything V2-L"
        if result.get("status") != "ok":
            lines.append(f"| {name} | {result['size']} | {result['dtype']} | {result['batch']} | {result['status']} |" + " — |" * 6)
            continue
        stages, extrapolated = result.get("stages", {}), result.get("extrapolated", {})
        lines.append(
            f"| {name} | {result['size']} | {result['dtype']} | {result['batch']} | {_seconds(result['total'])} "
            f"| {_seconds(stages.get('vae_encode'))} | {_seconds(stages.get('unet'))} | {_seconds(stages.get('vae_decode'))} "
            f"| {_seconds(extrapolated.get('v1-1 (4x1)'))} | {_seconds(extrapolated.get('v1-0 (50x10)'))} | {_gib(result['peak_memory'])} |"
        )
    bad = [r for r in results if r.get("status") == "ok" and not r.get("finite", True)]
    if bad:
        lines += ["", "Non-finite outputs: " + ", ".join(f"{r['mode']} {r['size']} {r['dtype']} b{r['batch']}" for r in bad)]
    return "\n".join(lines)


def machine_description(device: str) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import diffusers
    import transformers

    parts = [f"CPU: {cpu}, {os.cpu_count()} logical cores visible, torch threads {torch.get_num_threads()}"]
    try:
        import psutil

        parts.append(f"RAM: {psutil.virtual_memory().total / 2**30:.1f} GiB")
    except ImportError:
        pass
    if device == "cuda" and torch.cuda.is_available():
        parts.append(f"GPU: {torch.cuda.get_device_name(0)}")
    parts.append(f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}")
    parts.append(f"date: {datetime.datetime.now().astimezone().isoformat(timespec='minutes')}")
    return "; ".join(parts)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtypes", nargs="+", default=None, choices=sorted(DTYPES), help="default: fp32 bf16 on CPU, fp32 fp16 on CUDA")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--dav2-size", type=int, default=DAV2_SIZE)
    parser.add_argument("--channels-last", action="store_true", help="PrimeDepth (and the floor) run with channels-last VAE and heads, as "
                        "`primedepth predict` does; the official-style path stays NCHW")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each worker (CPU)")
    parser.add_argument("--scale", default="full", choices=["full", "tiny"], help="tiny: the test model (smoke runs)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 256x256, fp32, batch 1, 1 repeat after 1 warm-up, DAv2 at 252")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per configuration")
    parser.add_argument("--budget", type=float, default=None, help="stop starting configurations after this many seconds")
    parser.add_argument("--json", default=None, help="write all results to this file")
    parser.add_argument("--markdown", default=None, help="write the table (with the machine) to this file")
    parser.add_argument("--from-json", nargs="+", default=None,
                        help="only re-render tables from results files written by --json (a later file's "
                             "configuration replaces the same configuration of an earlier one)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dtypes is None:
        args.dtypes = ["fp32", "fp16"] if args.device == "cuda" else ["fp32", "bf16"]
    if args.quick:
        args.sizes, args.dtypes, args.batch_sizes, args.repeats, args.warmup = [256], ["fp32"], [1], 1, 1
        args.dav2_size = 252
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        print(json.dumps(run_configuration(spec)), flush=True)
        return 0
    if args.from_json:
        merged: dict[tuple, dict[str, Any]] = {}
        machines = []
        for path in args.from_json:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            machines.append(saved["machine"])
            for result in saved["results"]:
                key = tuple(result.get(k) for k in ("mode", "size", "dtype", "batch", "device"))
                merged.pop(key, None)
                merged[key] = result
        order = {mode: index for index, mode in enumerate(MODES)}
        results = sorted(merged.values(), key=lambda r: (r["batch"], order[r["mode"]], r["dtype"] != "fp32", r["size"]))
        header = "\n".join(f"Machine ({path}): {machine}" for path, machine in zip(args.from_json, machines))
        table = f"{header}\n\n{format_tables(results)}"
        print(table)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"machine": " | ".join(dict.fromkeys(machines)), "results": results}, handle, indent=1)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as handle:
                handle.write(table + "\n")
        return 0
    specs = plan(args)
    results: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, spec in enumerate(specs):
        label = f"[{index + 1}/{len(specs)}] {spec['mode']} {spec['size']} {spec['dtype']} b{spec['batch']}"
        if args.budget is not None and time.perf_counter() - started > args.budget:
            results.append(dict(spec, status="not run: time budget spent"))
            print(f"{label}: skipped (budget)", file=sys.stderr, flush=True)
            continue
        result = run_in_subprocess(spec, args.timeout)
        results.append(result)
        print(f"{label}: {result['status']} total={_seconds(result.get('total'))} s peak={_gib(result.get('peak_memory'))} GiB "
              f"({result.get('wall_seconds', 0):.0f} s wall)", file=sys.stderr, flush=True)
        if args.json:  # keep partial results
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"machine": machine_description(args.device), "results": results}, handle, indent=1)
    table = format_tables(results)
    machine = machine_description(args.device)
    print(f"Machine: {machine}\n\n{table}")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(f"Machine: {machine}\n\nCommand: `{' '.join(sys.argv)}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
