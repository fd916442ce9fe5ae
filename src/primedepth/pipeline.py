"""`PrimeDepthPipeline`: images in, affine-invariant inverse depth out, the diffusers way.

    image -> [-1, 1] pixels -> VAE latent (posterior sample x 0.18215) -> noised at t = 1
          -> one frozen UNet pass, walked step by step (`preimage`) -> refiner -> depth head
          -> mean of 3 channels -> depth at the input size

Randomness: the posterior sample and the t = 1 noise are the only random draws. They are drawn
per image, posterior noise first, in input order, from `generator` (or given explicitly), so a
batch gives each image the same result as running the images one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer

from .attention_maps import install_attention_map_processors
from .constants import DEFAULT_MAX_SIZE, VAE_DOWNSAMPLE, VAE_ENCODER_NORM_EPS
from .devices import FULL_RESOLUTION_CHUNK_PIXELS
from .errors import InputError
from .heads import LabelHead, set_group_norm_eps
from .preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding
from .processing import ImageInput, PreparedImage, as_image_list, prepare_image, restore_size
from .refiner import PrimeDepthRefiner
from .text import PromptEncoder

# `prompt` value that captions each image with BLIP-2 first, as the official inference does.
AUTO_PROMPT = "auto"

__all__ = ["PrimeDepthPipeline", "PrimeDepthOutput", "RawPrediction"]

Generator = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class PrimeDepthOutput(BaseOutput):
    """Per input image: `depth` (H, W) float32 inverse depth up to scale and shift (larger =
    closer), `segmentation` (C, H, W) float32 logits when asked, and the `prompts` used."""

    depth: list[np.ndarray]
    segmentation: list[np.ndarray] | None = None
    prompts: list[str] | None = None


@dataclass
class RawPrediction:
    """Head outputs at the processed size: depth (B, 3, 8h, 8w), segmentation (B, C, 8h, 8w)."""

    depth: torch.Tensor
    segmentation: torch.Tensor | None


class PrimeDepthPipeline(DiffusionPipeline):
    """PrimeDepth (Zavadski, Kalšan, Rother, ACCV 2024) on diffusers components.

    Components: `vae` and `unet` (frozen Stable Diffusion 2.1), `refiner` and `depth_head`
    (trained), optional `segmentation_head`, `scheduler` (the SD noise schedule, for t = 1).
    """

    # Under `enable_model_cpu_offload` the refiner stays on the device: it consumes the UNet walk
    # step by step, so both must be there together (the UNet is moved in by `_onload`).
    model_cpu_offload_seq = "text_encoder->vae->unet->depth_head->segmentation_head"
    _exclude_from_cpu_offload = ["refiner"]
    _optional_components = ["segmentation_head", "text_encoder", "tokenizer"]
    # The full-resolution stages (VAE encoder, heads) hold the memory peak: about 3x the UNet walk's
    # per image. They run in chunks of at most this many pixels (one largest image), so a batch's
    # peak grows only with the walk's share; results are unchanged (per-image operations).
    full_resolution_pixels: int = FULL_RESOLUTION_CHUNK_PIXELS

    def __init__(
        self,
        vae: AutoencoderKL,
        unet: UNet2DConditionModel,
        refiner: PrimeDepthRefiner,
        depth_head: LabelHead,
        scheduler: DDPMScheduler,
        segmentation_head: LabelHead | None = None,
        text_encoder: CLIPTextModel | None = None,
        tokenizer: CLIPTokenizer | None = None,
        default_prompt: str = AUTO_PROMPT,
    ) -> None:
        super().__init__()
        self.register_modules(
            vae=vae,
            unet=unet,
            refiner=refiner,
            depth_head=depth_head,
            scheduler=scheduler,
            segmentation_head=segmentation_head,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
        )
        # How this model was trained to be prompted: "auto" (BLIP-2 captions, the official model)
        # or a fixed text; used when a call passes neither `prompt` nor `prompt_embeds`.
        self.register_to_config(default_prompt=default_prompt)
        set_group_norm_eps(vae.encoder, VAE_ENCODER_NORM_EPS)  # official encoder eps, not SD's 1e-6
        install_attention_map_processors(unet)
        self._prompt_encoder: PromptEncoder | None = None
        self._captioner = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, *, original_config=None, text_encoder_from_hub: bool = True, **kwargs):
        """Load from a model folder, an official checkpoint (.ckpt, converted once and cached), or a
        hub repository id (default: the official PrimeDepth weights, converted once and cached).

        `original_config`: official-format yaml for a checkpoint of another architecture.
        `text_encoder_from_hub`: when converting a checkpoint, add the text encoder and tokenizer.
        Other keyword arguments go to diffusers' `from_pretrained` (e.g. `torch_dtype`).
        """
        from .weights import resolve_model_folder

        folder = resolve_model_folder(pretrained_model_name_or_path, original_config, text_encoder_from_hub)
        return super().from_pretrained(folder, **kwargs)

    def enable_channels_last(self) -> None:
        """Keep the convolution-bound components (VAE, heads) channels-last (NHWC), the layout
        oneDNN and cuDNN convolve fastest; results change by float rounding only. On CPU this made
        the whole prediction 8% (fp32) to 18% (bf16) faster at 512; the attention-bound UNet and
        refiner did not gain, so they keep their layout (benchmarks/results-cpu.md)."""
        for module in (self.vae, self.depth_head, self.segmentation_head):
            if module is not None:
                module.to(memory_format=torch.channels_last)

    def move_depth_path_to(self, device: str | torch.device) -> None:
        """Put the depth path (VAE, UNet, refiner, depth head) on `device`, and keep the text
        encoder and the segmentation head in CPU memory, streamed to `device` layer by layer when
        they run (once per new prompt; only when segmentation is asked for).

        What `primedepth predict` does on a GPU: it saves their 0.75 GiB (bf16) of GPU memory
        at no cost per image for a fixed prompt. Needs accelerate; `.to()` undoes nothing
        afterwards, reload the pipeline to change devices.
        """
        from accelerate import cpu_offload

        for module in (self.vae, self.unet, self.refiner, self.depth_head):
            module.to(device)
        for module in (self.text_encoder, self.segmentation_head):
            if module is not None:
                cpu_offload(module.to("cpu"), execution_device=torch.device(device))
        self._prompt_encoder = None  # its embeddings were made on the old device

    # ----------------------------------------------------------------------------- text

    @property
    def prompt_encoder(self) -> PromptEncoder:
        """Text -> context, caching each distinct prompt (a fixed prompt is encoded once)."""
        if self.text_encoder is None or self.tokenizer is None:
            raise InputError(
                "this model folder has no text encoder/tokenizer: pass `prompt_embeds`, or convert the "
                "checkpoint with its text encoder (primedepth convert)"
            )
        if self._prompt_encoder is None or self._prompt_encoder.text_encoder is not self.text_encoder:
            self._prompt_encoder = PromptEncoder(self.text_encoder, self.tokenizer)
        return self._prompt_encoder

    @property
    def captioner(self):
        """The BLIP-2 captioner for `prompt="auto"`, created (not loaded) on first use."""
        if self._captioner is None:
            from .captioning import Blip2Captioner

            self._captioner = Blip2Captioner(device=self._execution_device)
        return self._captioner

    @captioner.setter
    def captioner(self, captioner) -> None:
        """Use another captioner (any object with `caption(images) -> list[str]`)."""
        self._captioner = captioner

    def unload_captioner(self) -> None:
        """Free the captioner's memory; it reloads if "auto" prompts are used again."""
        if self._captioner is not None:
            self._captioner.unload()

    def _resolve_prompts(self, prompt: str | Sequence[str] | None, images: list, prepared: list[PreparedImage]) -> list[str]:
        """One prompt per image; "auto" entries are replaced by BLIP-2 captions of the input images."""
        prompt = self.config.default_prompt if prompt is None else prompt
        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(images) or not all(isinstance(p, str) for p in prompts):
            raise InputError(f"prompt must be a string or a list of {len(images)} strings")
        to_caption = [i for i, p in enumerate(prompts) if p == AUTO_PROMPT]
        if to_caption:
            sources = [_caption_source(images[i], prepared[i]) for i in to_caption]
            for index, caption in zip(to_caption, self.captioner.caption(sources)):
                prompts[index] = caption
        return prompts

    # ----------------------------------------------------------------------------- raw model

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        return (1, self.vae.config.latent_channels, height // VAE_DOWNSAMPLE, width // VAE_DOWNSAMPLE)

    def draw_noise(self, sizes: Sequence[tuple[int, int]], generator: Generator = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(posterior_noise, step_noise) per image, drawn in input order, posterior first, in fp32."""
        if isinstance(generator, Sequence) and len(generator) != len(sizes):
            raise InputError(f"got {len(generator)} generators for {len(sizes)} images")
        noises = []
        for index, size in enumerate(sizes):
            source = generator[index] if isinstance(generator, Sequence) else generator
            shape = self.latent_shape(*size)
            posterior = randn_tensor(shape, generator=source, device=self._execution_device, dtype=torch.float32)
            step = randn_tensor(shape, generator=source, device=self._execution_device, dtype=torch.float32)
            noises.append((posterior, step))
        return noises

    def _check_pixel_values(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
            raise InputError("pixel_values must be a float tensor (B, 3, H, W) in [-1, 1]")
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or pixel_values.shape[0] == 0:
            raise InputError(f"pixel_values must have shape (B>0, 3, H, W); got {tuple(pixel_values.shape)}")
        if min(pixel_values.shape[-2:]) < VAE_DOWNSAMPLE:
            raise InputError(f"images must be at least {VAE_DOWNSAMPLE}x{VAE_DOWNSAMPLE} pixels")
        if not torch.isfinite(pixel_values).all():
            raise InputError("pixel_values contain NaN or infinite values")

    def _check_prompt_embeds(self, prompt_embeds: torch.Tensor, batch: int) -> torch.Tensor:
        width = self.unet.config.cross_attention_dim
        if not isinstance(prompt_embeds, torch.Tensor) or prompt_embeds.ndim != 3 or prompt_embeds.shape[-1] != width:
            shape = tuple(prompt_embeds.shape) if isinstance(prompt_embeds, torch.Tensor) else type(prompt_embeds).__name__
            raise InputError(f"prompt_embeds must be a tensor (1 or B, tokens, {width}); got {shape}")
        if prompt_embeds.shape[0] not in (1, batch):
            raise InputError(f"prompt_embeds has batch {prompt_embeds.shape[0]}, expected 1 or {batch}")
        if not torch.isfinite(prompt_embeds).all():
            raise InputError("prompt_embeds contain NaN or infinite values")
        return prompt_embeds.expand(batch, -1, -1)

    @torch.no_grad()
    def predict_raw(
        self,
        pixel_values: torch.Tensor,
        prompt_embeds: torch.Tensor,
        posterior_noise: torch.Tensor | None = None,
        step_noise: torch.Tensor | None = None,
        generator: Generator = None,
        output_segmentation: bool = True,
    ) -> RawPrediction:
        """Head outputs for pixels (B, 3, H, W) in [-1, 1] at their own size (no resizing).

        Noise not given is drawn from `generator` per image (posterior first).
        """
        self._check_pixel_values(pixel_values)
        batch = pixel_values.shape[0]
        if output_segmentation and self.segmentation_head is None:
            raise InputError("this model has no segmentation head")
        if posterior_noise is None or step_noise is None:
            drawn = self.draw_noise([tuple(pixel_values.shape[-2:])] * batch, generator)
            posterior_noise = torch.cat([p for p, _ in drawn]) if posterior_noise is None else posterior_noise
            step_noise = torch.cat([s for _, s in drawn]) if step_noise is None else step_noise
        expected = (batch, *self.latent_shape(*pixel_values.shape[-2:])[1:])
        for name, noise in (("posterior_noise", posterior_noise), ("step_noise", step_noise)):
            if tuple(noise.shape) != expected:
                raise InputError(f"{name} must have shape {expected}; got {tuple(noise.shape)}")
        device, dtype = self._execution_device, self.unet.dtype
        context = self._check_prompt_embeds(prompt_embeds, batch).to(device, dtype)
        chunk = self.full_resolution_chunk(*pixel_values.shape[-2:])
        pixels, posterior_noise = pixel_values.to(device, self.vae.dtype), posterior_noise.to(device)
        latents = torch.cat([
            encode_latents(self.vae, part, noise) for part, noise in zip(pixels.split(chunk), posterior_noise.split(chunk))
        ])
        noisy = add_step_noise(self.scheduler, latents.to(dtype), step_noise.to(device))
        _onload(self.unet)
        temb = timestep_embedding(self.unet, noisy)
        features = self.refiner(iter_decoder_steps(self.unet, noisy, temb, context), temb, context)
        depth = torch.cat([self.depth_head(part) for part in features.split(chunk)])
        segmentation = None
        if output_segmentation:
            segmentation = torch.cat([self.segmentation_head(part) for part in features.split(chunk)])
        return RawPrediction(depth=depth, segmentation=segmentation)

    def full_resolution_chunk(self, height: int, width: int) -> int:
        """Images per call of the VAE encoder and the heads at this size (see `full_resolution_pixels`)."""
        return max(1, self.full_resolution_pixels // (height * width))

    # ----------------------------------------------------------------------------- images

    def _batches(self, prepared: list[PreparedImage], batch_size: int | None) -> list[list[int]]:
        """Indices grouped by processed size (a batch needs one size), at most batch_size each."""
        groups: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(item.processed_size, []).append(index)
        size = batch_size or len(prepared)
        return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]

    def _explicit_noise(self, noise, count: int, name: str) -> list[torch.Tensor] | None:
        if noise is None:
            return None
        items = list(noise) if isinstance(noise, (list, tuple)) else list(noise.split(1))
        if len(items) != count:
            raise InputError(f"{name}: got noise for {len(items)} images, expected {count}")
        return [n if n.ndim == 4 else n[None] for n in items]

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput | list[ImageInput],
        prompt: str | Sequence[str] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        generator: Generator = None,
        posterior_noise: torch.Tensor | list[torch.Tensor] | None = None,
        step_noise: torch.Tensor | list[torch.Tensor] | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        batch_size: int | None = None,
        output_segmentation: bool = False,
    ) -> PrimeDepthOutput:
        """Depth for one image or a batch (PIL images, HxWx3 arrays, 3xHxW tensors in [0, 1]).

        `prompt`: a text for all images, one per image, or "auto" to caption each image with
        BLIP-2 as the official inference does (default: the model's `default_prompt`; "" is the
        fastest). `prompt_embeds`: (1 or B, 77, D) precomputed conditioning instead. `max_size`: longer side above which
        images are downscaled (1024 as the official model). `batch_size`: images per forward
        pass (default: all images of one size at once).
        """
        if batch_size is not None and batch_size < 1:
            raise InputError("batch_size must be >= 1")
        if max_size < VAE_DOWNSAMPLE:
            raise InputError(f"max_size must be >= {VAE_DOWNSAMPLE}")
        images = as_image_list(image)
        prepared = [prepare_image(item, max_size) for item in images]
        prompts = None
        if prompt_embeds is None:
            prompts = self._resolve_prompts(prompt, images, prepared)
            prompt_embeds = self.prompt_encoder.encode(prompts, device=self._execution_device, dtype=self.unet.dtype)
        elif prompt is not None:
            raise InputError("pass either prompt or prompt_embeds, not both")
        prompt_embeds = self._check_prompt_embeds(prompt_embeds, len(prepared))
        posterior = self._explicit_noise(posterior_noise, len(prepared), "posterior_noise")
        steps = self._explicit_noise(step_noise, len(prepared), "step_noise")
        if posterior is None or steps is None:
            drawn = self.draw_noise([p.processed_size for p in prepared], generator)
            posterior = posterior or [p for p, _ in drawn]
            steps = steps or [s for _, s in drawn]
        depth: list[np.ndarray | None] = [None] * len(prepared)
        segmentation: list[np.ndarray | None] = [None] * len(prepared)
        batches = self._batches(prepared, batch_size)
        for indices in self.progress_bar(batches) if len(batches) > 1 else batches:
            raw = self.predict_raw(
                torch.cat([prepared[i].pixel_values for i in indices]),
                prompt_embeds[indices],
                posterior_noise=torch.cat([posterior[i] for i in indices]),
                step_noise=torch.cat([steps[i] for i in indices]),
                output_segmentation=output_segmentation,
            )
            for row, index in enumerate(indices):
                item = prepared[index]
                mean_depth = raw.depth[row : row + 1].float().mean(dim=1, keepdim=True)
                depth[index] = restore_size(mean_depth, item.processed_size, item.input_size)[0, 0].cpu().numpy()
                if raw.segmentation is not None:
                    logits = raw.segmentation[row : row + 1].float()
                    segmentation[index] = restore_size(logits, item.processed_size, item.input_size)[0].cpu().numpy()
        return PrimeDepthOutput(depth=depth, segmentation=segmentation if output_segmentation else None, prompts=prompts)


def _onload(module: torch.nn.Module) -> None:
    """Under model CPU offload, bring `module` to the device as its forward hook would.

    The preimage walk calls the UNet's blocks, never `unet.forward`, so the hook that
    `enable_model_cpu_offload` puts on the forward must be triggered by hand.
    """
    hook = getattr(module, "_hf_hook", None)
    if hook is not None:
        hook.pre_forward(module)


def _caption_source(image: ImageInput, prepared: PreparedImage) -> ImageInput:
    """What BLIP-2 sees: the original 8-bit image, as officially captioned, else pixels in [0, 1]."""
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.dtype not in (np.uint8, torch.uint8):
        return (prepared.pixel_values[0] + 1) / 2
    return image
