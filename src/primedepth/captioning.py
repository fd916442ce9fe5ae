"""BLIP-2 captions: the text prompt of the official inference when ``prompt="auto"``.

The official code captions every *original* (un-resized) image with ``Salesforce/blip2-opt-2.7b``
in fp16 (spec §1 step 2): processor(images) -> ``generate()`` with the library defaults ->
``batch_decode(skip_special_tokens=True)`` -> ``.strip()``. Here the same decoding runs batched; the
model is loaded only when the first caption is requested and can be freed with :meth:`unload`.

Public API
----------
``BLIP2_MODEL_ID``  default weights, ``"Salesforce/blip2-opt-2.7b"``.
``ImageLike``  PIL image, ``uint8`` numpy array (H, W[, 3|4]) or torch tensor (C, H, W) in [0, 1] or uint8.
``Blip2Captioner(model_id=BLIP2_MODEL_ID, *, device=None, torch_dtype=None, batch_size=8,
    local_files_only=None, generate_kwargs=None)``
    ``caption(images) -> list[str]`` (one image or a sequence), ``load() -> Blip2Captioner``,
    ``unload()``, properties ``is_loaded``, ``device``, ``dtype``.
``default_caption_dtype(device) -> torch.dtype``  fp16 on CUDA, fp32 elsewhere.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image

from .errors import InputError, WeightsNotFoundError

BLIP2_MODEL_ID = "Salesforce/blip2-opt-2.7b"

ImageLike = Union[Image.Image, np.ndarray, torch.Tensor]


def default_caption_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA as the official code runs BLIP-2; fp32 on CPU, where fp16 is slow or unsupported."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _default_device() -> torch.device:
    """The official code hard-codes CUDA; fall back to the CPU when there is none."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) tensor, float in [0, 1] or uint8, to an RGB PIL image."""
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise InputError(f"an image tensor must be (C, H, W) with 1, 3 or 4 channels, got {tuple(image.shape)}")
    pixels = image.detach().to("cpu")
    if pixels.dtype != torch.uint8:
        pixels = (pixels.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return _array_to_pil(pixels.permute(1, 2, 0).numpy())


def _array_to_pil(image: np.ndarray) -> Image.Image:
    """(H, W) or (H, W, 1|3|4) uint8 array to an RGB PIL image."""
    if image.dtype != np.uint8:
        raise InputError(f"a numpy image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise InputError(f"a numpy image must be (H, W) or (H, W, 3|4), got {image.shape}")
    return Image.fromarray(np.ascontiguousarray(image))


def _to_rgb_pil(image: ImageLike) -> Image.Image:
    """Any supported image as an RGB PIL image, as the official code converts non-RGB modes."""
    if isinstance(image, Image.Image):
        pil = image
    elif isinstance(image, torch.Tensor):
        pil = _tensor_to_pil(image)
    elif isinstance(image, np.ndarray):
        pil = _array_to_pil(image)
    else:
        raise InputError(f"cannot caption an object of type {type(image).__name__}; pass a PIL image or array")
    return pil if pil.mode == "RGB" else pil.convert("RGB")


def _as_image_list(images: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One image or a sequence of images as a list (a 4-D tensor counts as a batch)."""
    if isinstance(images, (Image.Image, np.ndarray)):
        return [images]
    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Sequence):
        return list(images)
    raise InputError(f"cannot caption an object of type {type(images).__name__}")


def _chunks(items: list[Image.Image], size: int) -> Iterator[list[Image.Image]]:
    """Consecutive batches of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Blip2Captioner:
    """Lazily loaded, batched BLIP-2 captioner with the official decoding.

    ``model_id`` is a hub repo id or a local folder holding a ``Blip2ForConditionalGeneration`` and its
    processor. Nothing is read until :meth:`caption` (or :meth:`load`) is called.
    ``generate_kwargs`` is empty by default so ``generate()`` uses the library defaults, as the
    official code does; pass e.g. ``{"max_new_tokens": 30}`` to change them.
    """

    def __init__(
        self,
        model_id: str | Path = BLIP2_MODEL_ID,
        *,
        device: torch.device | str | None = None,
        torch_dtype: torch.dtype | None = None,
        batch_size: int = 8,
        local_files_only: bool | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.model_id = str(model_id)
        self._device = torch.device(device) if device is not None else _default_device()
        self._dtype = torch_dtype or default_caption_dtype(self._device)
        self.batch_size = batch_size
        self.local_files_only = local_files_only
        self.generate_kwargs = dict(generate_kwargs or {})
        self._model: Any = None
        self._processor: Any = None

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def device(self) -> torch.device:
        """Device the model runs on."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model weights (fp16 on CUDA by default, fp32 on CPU)."""
        return self._dtype

    def _weights_error(self, error: Exception) -> WeightsNotFoundError:
        """One clear message for missing or unreachable BLIP-2 weights."""
        return WeightsNotFoundError(
            f"could not load the BLIP-2 captioner from {self.model_id!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}). "
            "It is needed only for prompt='auto'. Download it while online "
            f"(`hf download {BLIP2_MODEL_ID}`, about 15 GB), pass a local folder, "
            "or give an explicit prompt (prompt='' is the fastest) to skip captioning. "
            "With HF_HUB_OFFLINE=1 only the local Hugging Face cache is read."
        )

    def load(self) -> Blip2Captioner:
        """Read the model and processor now (otherwise done on the first caption)."""
        if self.is_loaded:
            return self
        from transformers import AutoProcessor, Blip2ForConditionalGeneration

        from .text import dtype_kwargs

        kwargs: dict[str, Any] = {}
        if self.local_files_only is not None:
            kwargs["local_files_only"] = self.local_files_only
        try:
            processor = AutoProcessor.from_pretrained(self.model_id, **kwargs)
            model = Blip2ForConditionalGeneration.from_pretrained(
                self.model_id, **dtype_kwargs(self._dtype), **kwargs
            )
        except (OSError, ValueError) as error:
            raise self._weights_error(error) from error
        self._model = model.to(self._device).eval()
        self._processor = processor
        return self

    def unload(self) -> None:
        """Free the model (and GPU memory); the next caption loads it again."""
        self._model = None
        self._processor = None
        gc.collect()
        if self._device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()

    @torch.no_grad()
    def _caption_batch(self, images: list[Image.Image]) -> list[str]:
        """processor -> generate() -> batch_decode(skip_special_tokens=True) -> strip, for one batch."""
        inputs = self._processor(images=images, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(device=self._device, dtype=self._dtype)
        generated = self._model.generate(pixel_values=pixel_values, **self.generate_kwargs)
        texts = self._processor.batch_decode(generated, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def caption(self, images: ImageLike | Sequence[ImageLike]) -> list[str]:
        """One caption per image, in order, computed ``batch_size`` images at a time."""
        pil_images = [_to_rgb_pil(image) for image in _as_image_list(images)]
        if not pil_images:
            return []
        self.load()
        captions: list[str] = []
        for batch in _chunks(pil_images, self.batch_size):
            captions.extend(self._caption_batch(batch))
        return captions

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> list[str]:
        """Same as :meth:`caption`."""
        return self.caption(images)
