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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..constants import BLIP2_MODEL_ID
from ..devices import dtype_kwargs
from ..errors import InputError, WeightsNotFoundError, weights_unavailable
from ..processing import ImageInput, as_image_list, to_rgb_uint8


ImageLike = ImageInput


def default_caption_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA as the official code runs BLIP-2; fp32 on CPU, where fp16 is slow or unsupported."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _default_device() -> torch.device:
    """The official code hard-codes CUDA; fall back to the CPU when there is none."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
        return weights_unavailable(
            "BLIP-2 captioner (needed only for prompt='auto')", self.model_id, error,
            download=f"hf download {self.model_id}",
            alternatives="give an explicit prompt to skip captioning (prompt='' is the fastest)",
        )

    def load(self) -> Blip2Captioner:
        """Read the model and processor now (otherwise done on the first caption)."""
        if self.is_loaded:
            return self
        from transformers import AutoProcessor, Blip2ForConditionalGeneration  # lazy: a heavy import

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
        if isinstance(images, (list, tuple)) and not images:
            return []
        pil_images = [Image.fromarray(to_rgb_uint8(image)) for image in as_image_list(images)]
        self.load()
        captions: list[str] = []
        for start in range(0, len(pil_images), self.batch_size):
            captions.extend(self._caption_batch(pil_images[start : start + self.batch_size]))
        return captions

    def __call__(self, images: ImageLike | Sequence[ImageLike]) -> list[str]:
        """Same as :meth:`caption`."""
        return self.caption(images)
