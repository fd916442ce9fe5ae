"""`PrimeDepthPipeline`: images in, affine-invariant inverse depth out, the diffusers way.

    image -> [-1, 1] pixels -> VAE latent (posterior sample x 0.18215) -> noised at t = 1
          -> one frozen UNet pass, walked step by step (`preimage`) -> refiner -> depth head
          -> mean of 3 channels -> depth at the input size

Randomness: the posterior sample and the t = 1 noise are the only random draws. They are drawn
per image, posterior noise first, in input order, from `generator` (or given explicitly), so a
batch gives each image the same result as running the images one by one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import cpu_offload
from diffusers import AutoencoderKL, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput
from transformers import CLIPTextModel, CLIPTokenizer

from .constants import DEFAULT_MAX_SIZE, OFFICIAL_REPO_ID, VAE_DOWNSAMPLE, VAE_ENCODER_NORM_EPS
from .convert.checkpoint import MODEL_LICENCE_FILE, MODEL_LICENCE_NOTICE, convert_checkpoint_file
from .devices import FULL_RESOLUTION_CHUNK_PIXELS
from .errors import InputError
from .io.atomic import atomic_directory
from .model.forward import LatentNoise, RawPrediction, draw_noise, forward, latent_shape
from .model.heads import LabelHead
from .model.refiner import PrimeDepthRefiner
from .processing import (
    ImageInput,
    PreparedImage,
    PrimeDepthImageProcessor,
    as_image_list,
    processing_size,
    smallest_processable_side,
)
from .text.captioning import Blip2Captioner
from .text.encoder import PromptEncoder
from .weights import resolve_source

# `prompt` value that captions each image with BLIP-2 first, as the official inference does.
AUTO_PROMPT = "auto"


def prompt_option(prompt: str | None, pipeline: Any) -> str | None:
    """The one automatic-prompt rule: the prompt a call uses is the one given, else the model's
    `default_prompt`; the value `AUTO_PROMPT` then means "caption the image with BLIP-2"."""
    if prompt is not None:
        return prompt
    return getattr(getattr(pipeline, "config", None), "default_prompt", None)

__all__ = ["PrimeDepthPipeline", "PrimeDepthOutput", "RawPrediction"]

Generator = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class PrimeDepthOutput(BaseOutput):
    """Per input image: `depth` (H, W) inverse depth up to scale and shift (larger = closer),
    `segmentation` (C, H, W) float32 logits when asked, and the `prompts` used.

    `depth` is float32 numpy (output_type "np"), torch (output_type "pt"), or 16-bit PIL images of
    the min-max normalised depth (output_type "pil"; `image_processor` recovers nothing of the
    range: use "np" to keep values).
    """

    depth: list[Any]
    segmentation: list[Any] | None = None
    prompts: list[str] | None = None


OUTPUT_TYPES = ("np", "pt", "pil")


class PrimeDepthPipeline(DiffusionPipeline):
    """PrimeDepth (Zavadski, Kalšan, Rother, ACCV 2024) on diffusers components.

    Components: `vae` and `unet` (frozen Stable Diffusion 2.1), `refiner` and `depth_head`
    (trained), optional `segmentation_head`, `scheduler` (the SD noise schedule, for t = 1),
    optional `text_encoder` and `tokenizer` (OpenCLIP ViT-H/14, all layers).

    Components are used as given, never changed: during a call the VAE encoder's GroupNorms use
    the official eps (`vae_encoder_norm_eps`, saved in the model's config) and the UNet's attention
    layers a map-recording processor; both are put back when the call ends, so a VAE or UNet shared
    with a Stable Diffusion pipeline keeps its behaviour.
    """

    model_cpu_offload_seq = "text_encoder->vae->unet->refiner->depth_head->segmentation_head"
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
        vae_encoder_norm_eps: float = VAE_ENCODER_NORM_EPS,
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
        # `default_prompt`: how this model was trained to be prompted, "auto" (BLIP-2 captions, the
        # official model) or a fixed text; used when a call passes neither prompt nor prompt_embeds.
        # `vae_encoder_norm_eps`: the official code's encoder GroupNorm eps (SD's is 1e-6).
        self.register_to_config(default_prompt=default_prompt, vae_encoder_norm_eps=vae_encoder_norm_eps)
        self.image_processor = PrimeDepthImageProcessor()
        self._prompt_encoder: PromptEncoder | None = None
        self._captioner: Any = None
        self._placement_device: torch.device | None = None  # set by move_depth_path_to / offload
        self._offload_device: torch.device | None = None

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None = None,
        *,
        original_config: str | os.PathLike | None = None,
        text_encoder_from_hub: bool = True,
        **kwargs: Any,
    ) -> PrimeDepthPipeline:
        """Load a model folder or a hub repository (default: the official PrimeDepth weights).

        As diffusers' `from_pretrained`, with `revision`, `cache_dir`, `local_files_only` and
        `torch_dtype`. A repository (or a local path) holding an official checkpoint instead of a
        model folder is converted once into the cache (`primedepth.weights.cache_root`) and loaded
        from there; `original_config` (an official yaml) and `text_encoder_from_hub` apply to that
        conversion (see `from_single_file`).
        """
        folder = cls.local_model_folder(
            pretrained_model_name_or_path,
            original_config=original_config,
            text_encoder_from_hub=text_encoder_from_hub,
            revision=kwargs.pop("revision", None),
            cache_dir=kwargs.pop("cache_dir", None),
            local_files_only=bool(kwargs.get("local_files_only", False)),
        )
        return super().from_pretrained(folder, **kwargs)

    @classmethod
    def local_model_folder(
        cls,
        source: str | os.PathLike | None = None,
        *,
        original_config: str | os.PathLike | None = None,
        text_encoder_from_hub: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
    ) -> Path:
        """The local model folder of `source` (default: the official weights), downloading it
        and converting an official checkpoint into the cache the first time."""
        resolved = resolve_source(source or OFFICIAL_REPO_ID, original_config, text_encoder_from_hub,
                                  revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
        if resolved.needs_conversion:
            print(f"primedepth: converting {resolved.checkpoint} once into {resolved.folder}")
            pipeline = cls.from_single_file(resolved.checkpoint, original_config=original_config,
                                            text_encoder=text_encoder_from_hub)
            pipeline.save_model_folder(resolved.folder, overwrite=True)
        return resolved.folder

    @classmethod
    def from_single_file(
        cls,
        checkpoint: str | os.PathLike,
        *,
        original_config: str | os.PathLike | None = None,
        text_encoder: bool = True,
        torch_dtype: torch.dtype | None = None,
    ) -> PrimeDepthPipeline:
        """Build the pipeline from an official checkpoint (.ckpt / .pt / .safetensors).

        Read with `weights_only` (no pickled code runs). `original_config`: official-format yaml for
        another architecture (default: the released one). `text_encoder`: add the text encoder and
        tokenizer (from the checkpoint, else the public laion ViT-H/14 weights from the hub).
        """
        pipeline = cls(**convert_checkpoint_file(checkpoint, original_config, text_encoder))
        if torch_dtype is not None:
            for model in pipeline.components.values():
                if isinstance(model, torch.nn.Module):
                    model.to(dtype=torch_dtype)
        return pipeline

    def save_model_folder(self, target: str | os.PathLike, overwrite: bool = False) -> Path:
        """`save_pretrained` into `target` atomically (a staging folder renamed into place), with
        the Stable Diffusion weights' licence notice next to the weights."""
        with atomic_directory(Path(target), overwrite=overwrite) as staging:
            self.save_pretrained(staging, safe_serialization=True)
            (staging / MODEL_LICENCE_FILE).write_text(MODEL_LICENCE_NOTICE, encoding="utf-8")
        return Path(target)

    # ----------------------------------------------------------------------------- placement

    @property
    def _execution_device(self) -> torch.device:
        """Where computation happens: the placement's device, or diffusers' answer."""
        return self._placement_device or super()._execution_device

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
        they run (accelerate's `cpu_offload`; once per new prompt, and only when segmentation is
        asked for).

        What `primedepth predict` does on a GPU: it saves their 0.75 GiB (bf16) of GPU memory
        at no cost per image for a fixed prompt. Reload the pipeline to change devices afterwards.
        """
        device = torch.device(device)
        for module in (self.vae, self.unet, self.refiner, self.depth_head):
            module.to(device)
        for module in (self.text_encoder, self.segmentation_head):
            if module is not None:
                cpu_offload(module.to("cpu"), execution_device=device)
        self._placement_device = device
        self._prompt_encoder = None  # its embeddings were made on the old device

    def enable_model_cpu_offload(self, gpu_id: int | None = None, device: str | torch.device = "cuda") -> None:
        """Keep every model in CPU memory and move the models of each stage to `device` only while
        that stage runs (text encoder; VAE encoder; UNet walk with refiner and heads): for small
        GPUs, at the price of a weight transfer per batch.

        Replaces diffusers' hook-based offload, which cannot see the preimage walk (it calls the
        UNet's blocks, never `unet.forward`).
        """
        device = torch.device(device)
        if gpu_id is not None:
            device = torch.device(device.type, gpu_id)
        self.to("cpu")
        self._offload_device = self._placement_device = device
        self._prompt_encoder = None

    @contextmanager
    def _placed(self, *modules: torch.nn.Module | None) -> Iterator[None]:
        """Under model offload, `modules` sit on the device for the duration of the block."""
        present = [m for m in modules if m is not None]
        if self._offload_device is None:
            yield
            return
        for module in present:
            module.to(self._offload_device)
        try:
            yield
        finally:
            for module in present:
                module.to("cpu")

    # ----------------------------------------------------------------------------- text

    @property
    def prompt_encoder(self) -> PromptEncoder:
        """Text -> context, caching each distinct prompt (a fixed prompt is encoded once)."""
        if self.text_encoder is None or self.tokenizer is None:
            raise InputError(
                "this model folder has no text encoder/tokenizer: pass `prompt_embeds` (on the command line "
                "--prompt-embeds FILE), or convert the checkpoint with its text encoder (primedepth convert)"
            )
        if self._prompt_encoder is None or self._prompt_encoder.text_encoder is not self.text_encoder:
            self._prompt_encoder = PromptEncoder(self.text_encoder, self.tokenizer,
                                                 execution_device=self._placement_device)
        return self._prompt_encoder

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """(B, 77, D) contexts on the execution device, in the UNet's dtype."""
        with self._placed(self.text_encoder):
            return self.prompt_encoder.encode(list(prompts), device=self._execution_device, dtype=self.unet.dtype)

    @property
    def captioner(self) -> Any:
        """The BLIP-2 captioner for `prompt="auto"`, created (not loaded) on first use."""
        if self._captioner is None:
            self._captioner = Blip2Captioner(device=self._execution_device)
        return self._captioner

    @captioner.setter
    def captioner(self, captioner: Any) -> None:
        """Use another captioner (any object with `caption(images) -> list[str]`)."""
        self._captioner = captioner

    def unload_captioner(self) -> None:
        """Free the captioner's memory; it reloads if "auto" prompts are used again."""
        if self._captioner is not None:
            self._captioner.unload()

    def _resolve_prompts(self, prompt: str | Sequence[str] | None, images: list, prepared: list[PreparedImage]) -> list[str]:
        """One prompt per image; "auto" entries are replaced by BLIP-2 captions of the input images."""
        prompt = prompt_option(prompt, self)
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
        """(1, channels, h, w) of one image's latent."""
        return (1, *latent_shape(self.vae, height, width))

    def draw_noise(self, sizes: Sequence[tuple[int, int]], generator: Generator = None) -> list[LatentNoise]:
        """Noise per image, in input order, posterior first, in fp32 (`primedepth.model.draw_noise`)."""
        try:
            return draw_noise(self.vae, sizes, generator, self._execution_device)
        except ValueError as error:
            raise InputError(str(error)) from None

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

    def _batch_noise(self, pixel_values: torch.Tensor, posterior_noise, step_noise, generator) -> LatentNoise:
        """The given noise, or noise drawn per image from `generator`, checked against the latent shape."""
        batch = pixel_values.shape[0]
        if posterior_noise is None or step_noise is None:
            drawn = LatentNoise.cat(self.draw_noise([tuple(pixel_values.shape[-2:])] * batch, generator))
            posterior_noise = drawn.posterior if posterior_noise is None else posterior_noise
            step_noise = drawn.step if step_noise is None else step_noise
        expected = (batch, *self.latent_shape(*pixel_values.shape[-2:])[1:])
        for name, noise in (("posterior_noise", posterior_noise), ("step_noise", step_noise)):
            if tuple(noise.shape) != expected:
                raise InputError(f"{name} must have shape {expected}; got {tuple(noise.shape)}")
        return LatentNoise(posterior_noise, step_noise)

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

        Noise not given is drawn from `generator` per image (posterior first). The computation is
        `primedepth.model.forward`, with this pipeline's placement and chunking.
        """
        self._check_pixel_values(pixel_values)
        if output_segmentation and self.segmentation_head is None:
            raise InputError("this model has no segmentation head")
        noise = self._batch_noise(pixel_values, posterior_noise, step_noise, generator)
        context = self._check_prompt_embeds(prompt_embeds, pixel_values.shape[0])
        return forward(
            self, pixel_values, context, noise,
            segmentation=output_segmentation,
            chunk=self.full_resolution_chunk(*pixel_values.shape[-2:]),
            encoder_norm_eps=self.config.vae_encoder_norm_eps,
            placement=self._placed,
        )

    @property
    def smallest_side(self) -> int:
        """The shortest image side this model's UNet can walk; smaller images are upscaled to it."""
        return smallest_processable_side(self.unet.config)

    def processing_size(self, height: int, width: int, max_size: int = DEFAULT_MAX_SIZE) -> tuple[int, int]:
        """(height, width) a height x width image is run at (see `primedepth.processing.processing_size`)."""
        return processing_size(height, width, max_size, self.smallest_side)

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

    def _image_noise(self, prepared: list[PreparedImage], posterior_noise, step_noise, generator) -> list[LatentNoise]:
        """One LatentNoise per image: given explicitly (a tensor or a list) or drawn per image."""
        posterior = _split_noise(posterior_noise, len(prepared), "posterior_noise")
        steps = _split_noise(step_noise, len(prepared), "step_noise")
        if posterior is None or steps is None:
            drawn = self.draw_noise([p.processed_size for p in prepared], generator)
            posterior = posterior or [n.posterior for n in drawn]
            steps = steps or [n.step for n in drawn]
        return [LatentNoise(p, s) for p, s in zip(posterior, steps)]

    def _contexts(self, images: list, prepared: list[PreparedImage], prompt, prompt_embeds) -> tuple[torch.Tensor, list[str] | None]:
        """(B, tokens, D) conditioning and the prompts it came from (None for given embeddings)."""
        if prompt_embeds is not None:
            if prompt is not None:
                raise InputError("pass either prompt or prompt_embeds, not both")
            return self._check_prompt_embeds(prompt_embeds, len(prepared)), None
        prompts = self._resolve_prompts(prompt, images, prepared)
        return self._check_prompt_embeds(self.encode_prompts(prompts), len(prepared)), prompts

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
        output_segmentation: bool | str = False,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> PrimeDepthOutput | tuple:
        """Depth for one image or a batch (PIL images, HxWx3 arrays, 3xHxW tensors in [0, 1]).

        `prompt`: a text for all images, one per image, or "auto" to caption each image with
        BLIP-2 as the official inference does (default: the model's `default_prompt`; "" is the
        fastest). `prompt_embeds`: (1 or B, 77, D) precomputed conditioning instead. `max_size`:
        longer side above which images are downscaled (1024 as the official model). `batch_size`:
        images per forward pass (default: all images of one size at once). `output_segmentation`:
        True for (C, H, W) logits, "labels" for (H, W) class labels (argmax at the processing size,
        resized nearest: what large images can afford). `output_type`: "np",
        "pt" or "pil" (see `PrimeDepthOutput`). `return_dict=False` returns (depth, segmentation,
        prompts).
        """
        if batch_size is not None and batch_size < 1:
            raise InputError("batch_size must be >= 1")
        if output_type not in OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}; got {output_type!r}")
        images = as_image_list(image)
        prepared = [self.image_processor.preprocess(item, max_size, self.smallest_side) for item in images]
        context, prompts = self._contexts(images, prepared, prompt, prompt_embeds)
        noise = self._image_noise(prepared, posterior_noise, step_noise, generator)
        depth: list[torch.Tensor | None] = [None] * len(prepared)
        segmentation: list[torch.Tensor | None] = [None] * len(prepared)
        batches = self._batches(prepared, batch_size)
        for indices in self.progress_bar(batches) if len(batches) > 1 else batches:
            raw = self.predict_raw(
                torch.cat([prepared[i].pixel_values for i in indices]),
                context[indices],
                posterior_noise=torch.cat([noise[i].posterior for i in indices]),
                step_noise=torch.cat([noise[i].step for i in indices]),
                output_segmentation=bool(output_segmentation),
            )
            for row, index in enumerate(indices):
                depth[index], segmentation[index] = self.image_processor.postprocess(
                    raw, row, prepared[index], labels=output_segmentation == "labels"
                )
        output = PrimeDepthOutput(
            depth=self.image_processor.convert_depth(depth, output_type),
            segmentation=self.image_processor.convert_labels(segmentation, output_type) if output_segmentation else None,
            prompts=prompts,
        )
        return output if return_dict else (output.depth, output.segmentation, output.prompts)


def _split_noise(noise: torch.Tensor | list[torch.Tensor] | None, count: int, name: str) -> list[torch.Tensor] | None:
    """Explicit noise for `count` images as one (1, C, h, w) tensor per image."""
    if noise is None:
        return None
    items = list(noise) if isinstance(noise, (list, tuple)) else list(noise.split(1))
    if len(items) != count:
        raise InputError(f"{name}: got noise for {len(items)} images, expected {count}")
    return [n if n.ndim == 4 else n[None] for n in items]


def _caption_source(image: ImageInput, prepared: PreparedImage) -> ImageInput:
    """What BLIP-2 sees: the original 8-bit image, as officially captioned, else pixels in [0, 1]."""
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.dtype not in (np.uint8, torch.uint8):
        return (prepared.pixel_values[0] + 1) / 2
    return image
