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
    ``unload()``, properties ``is_loaded``, ``device``, ``dtype``, ``failure``.
``default_caption_dtype(device) -> torch.dtype``  fp16 on CUDA, fp32 elsewhere.
``check_captioner(repo_id=None, timeout_s=5.0) -> str | None``  None when BLIP-2 can be loaded (a
    complete local folder or cache snapshot, or a hub that answers in time), else a one-line reason.
``cached_captioner_folder(repo_id=None) -> Path | None``  the complete local copy, if there is one.
``download_captioner(repo_id=None) -> Path``  fetch BLIP-2 into the Hugging Face cache (one
    weights format only).

Availability is decided once and fast: a missing captioner raises CaptionerUnavailableError
(exit code 3) before any image is captioned, and a captioner that failed to load keeps raising
that error at once instead of trying to download again for every image.
"""

from __future__ import annotations

import gc
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ..constants import BLIP2_MODEL_ID
from ..devices import dtype_kwargs
from ..errors import CaptionerUnavailableError, InputError, first_line
from ..processing import ImageInput, as_image_list, to_rgb_uint8


ImageLike = ImageInput


def default_caption_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA as the official code runs BLIP-2; fp32 on CPU, where fp16 is slow or unsupported."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _default_device() -> torch.device:
    """The official code hard-codes CUDA; fall back to the CPU when there is none."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# Seconds `check_captioner` waits for the hub by default: long enough for a slow link, short
# enough that an unreachable hub costs one wait per job (huggingface_hub's own retries took minutes).
CAPTIONER_PROBE_TIMEOUT = 5.0

# What a loadable BLIP-2 folder holds besides its weights; the processor's file has two names
# (transformers 5 writes processor_config.json, the hub repository has preprocessor_config.json).
_REQUIRED_FILES = ("config.json", "tokenizer_config.json")
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".pth", ".onnx", ".gguf")


def _offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as it is set now."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or value in ("1", "true", "yes", "on")


def _is_local_path(repo_id: str) -> bool:
    """A folder path rather than a hub id ("owner/name")."""
    return Path(repo_id).exists() or repo_id.startswith((".", "/", "~")) or repo_id.count("/") != 1


def _has_weights(folder: Path) -> bool:
    """Whether `folder` holds the model weights: a single file, or every shard of an index."""
    for index in _WEIGHT_INDEXES:
        try:
            shards = set(json.loads((folder / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if shards and all((folder / shard).is_file() for shard in shards):
            return True
    return any((folder / name).is_file() for name in _WEIGHT_FILES)


def _missing_files(folder: Path) -> list[str]:
    """What `folder` lacks to load BLIP-2 and its processor (empty: complete)."""
    missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in _PROCESSOR_FILES):
        missing.append(_PROCESSOR_FILES[0])
    if not _has_weights(folder):
        missing.append("model weights")
    return missing


def _cache_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of the repository's main revision, complete or not."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, "config.json")
    return Path(path).parent if isinstance(path, str) else None


def cached_captioner_folder(repo_id: str | os.PathLike | None = None) -> Path | None:
    """The local folder BLIP-2 loads from without any network: `repo_id` itself when it is a
    complete folder, else the repository's complete Hugging Face cache snapshot; None if neither."""
    source = str(repo_id or BLIP2_MODEL_ID)
    if _is_local_path(source):
        folder = Path(source).expanduser()
        return folder if folder.is_dir() and not _missing_files(folder) else None
    snapshot = _cache_snapshot(source)
    return snapshot if snapshot is not None and not _missing_files(snapshot) else None


def _ask_hub(repo_id: str, timeout_s: float) -> str | None:
    """None when the hub answers for `repo_id` within `timeout_s` seconds, else why not.

    One request with a timeout, in a daemon thread joined for at most `timeout_s`, so that
    neither a hanging DNS lookup nor a server that accepts and never answers holds the caller.
    The request is the hub's model-info call made with the standard library, not through
    huggingface_hub, whose client retries a timed-out request: the abandoned thread would then
    knock again after the caller has been told the hub is unreachable.
    """
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants, get_token

    result: dict[str, BaseException | bool] = {}
    url = f"{constants.ENDPOINT.rstrip('/')}/api/models/{urllib.parse.quote(repo_id, safe='/')}"
    token = get_token()
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})

    def ask() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the hub's URL
                response.read(1)
            result["ok"] = True
        except Exception as error:  # noqa: BLE001 - any failure means "not reachable"
            result["error"] = error

    thread = threading.Thread(target=ask, name="primedepth-captioner-probe", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if result.get("ok"):
        return None
    error = result.get("error")
    return first_line(error) if isinstance(error, BaseException) else f"no answer within {timeout_s:g} s"


def check_captioner(repo_id: str | None = None, timeout_s: float = CAPTIONER_PROBE_TIMEOUT) -> str | None:
    """None when BLIP-2 can be loaded (a complete local folder or cache snapshot, or the hub
    answers within `timeout_s`), else a one-line reason. Never retries: at most one wait of
    `timeout_s` seconds (none at all offline or when cached)."""
    from huggingface_hub import constants

    source = str(repo_id or BLIP2_MODEL_ID)
    if _is_local_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            return f"the BLIP-2 folder {folder} does not exist"
        missing = _missing_files(folder)
        return f"the BLIP-2 folder {folder} lacks {', '.join(missing)}" if missing else None
    if cached_captioner_folder(source) is not None:
        return None
    where = f"BLIP-2 '{source}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if _offline():
        return f"{where} and HF_HUB_OFFLINE is set, so the hub is not asked"
    why = _ask_hub(source, timeout_s)
    return None if why is None else f"{where} and the hub ({constants.ENDPOINT}) cannot be reached: {why}"


def _download_patterns(files: Sequence[str]) -> list[str]:
    """The repository files to fetch: configuration, tokenizer and processor files, and the
    top-level weights in one format (safetensors when the repository has them, else .bin)."""
    top = [name for name in files if "/" not in name]
    suffix = ".safetensors" if any(name.endswith(".safetensors") for name in top) else ".bin"
    weights = [name for name in top if name.endswith(suffix)]
    others = [name for name in top if not name.endswith(_WEIGHT_SUFFIXES)]
    return sorted(others + weights)


def download_captioner(repo_id: str | None = None, timeout_s: float = CAPTIONER_PROBE_TIMEOUT) -> Path:
    """Fetch BLIP-2 into the Hugging Face cache (about 15 GB in safetensors) and return its
    folder; a complete cached copy is returned without asking the hub."""
    from huggingface_hub import HfApi, snapshot_download

    from ..errors import weights_unavailable

    source = str(repo_id or BLIP2_MODEL_ID)
    cached = cached_captioner_folder(source)
    if cached is not None:
        return cached
    alternatives = 'predict with --prompt "" or --prompt TEXT, which need no captioner'
    why = check_captioner(source, timeout_s)
    if why is not None:
        raise weights_unavailable("BLIP-2 captioner", source, why, download="", alternatives=alternatives)
    try:
        files = HfApi().list_repo_files(source)
        return Path(snapshot_download(source, allow_patterns=_download_patterns(files)))
    except Exception as error:  # noqa: BLE001 - network, HTTP, auth, disk: all mean "not fetched"
        raise weights_unavailable("BLIP-2 captioner", source, error, download="", alternatives=alternatives) from error


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
        self.probe_timeout_s = CAPTIONER_PROBE_TIMEOUT
        self._model: Any = None
        self._processor: Any = None
        self._failure: CaptionerUnavailableError | None = None
        self._verdict: tuple[str | None] | None = None  # check()'s answer, once asked

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

    @property
    def failure(self) -> CaptionerUnavailableError | None:
        """The error of a failed load: raised again at once by every later caption."""
        return self._failure

    def check(self) -> str | None:
        """None when the weights can be had (see `check_captioner`), else why not. Asked once per
        captioner: a job that checks before its first image and the load that follows make one
        hub request between them, not two."""
        if self._verdict is None:
            if self.local_files_only and not _is_local_path(self.model_id) \
                    and cached_captioner_folder(self.model_id) is None:
                reason = f"BLIP-2 '{self.model_id}' is not in the Hugging Face cache (local_files_only=True)"
            else:
                reason = check_captioner(self.model_id, self.probe_timeout_s)
            self._verdict = (reason,)
        return self._verdict[0]

    def _source(self) -> str:
        """Where to load from: a complete local copy, else the hub id once the hub answered.
        Raises CaptionerUnavailableError when neither is there (fast: one probe at most)."""
        folder = cached_captioner_folder(self.model_id)
        if folder is not None:
            return str(folder)
        reason = self.check()
        if reason is not None:
            raise CaptionerUnavailableError.from_reason(reason)
        return self.model_id

    def load(self) -> Blip2Captioner:
        """Read the model and processor now (otherwise done on the first caption).

        Raises CaptionerUnavailableError when the weights are neither local nor downloadable; the
        failure is kept, so later calls raise the same error without trying again.
        """
        if self.is_loaded:
            return self
        if self._failure is not None:
            raise self._failure
        try:
            self._load_from(self._source())
        except CaptionerUnavailableError as error:
            self._failure = error
            raise
        except (OSError, ValueError) as error:
            reason = f"BLIP-2 '{self.model_id}' could not be loaded ({first_line(error)})"
            self._failure = CaptionerUnavailableError.from_reason(reason)
            raise self._failure from error
        return self

    def _load_from(self, source: str) -> None:
        """from_pretrained of the processor and the model, then placement."""
        from transformers import AutoProcessor, Blip2ForConditionalGeneration  # lazy: a heavy import

        processor = AutoProcessor.from_pretrained(source)
        model = Blip2ForConditionalGeneration.from_pretrained(source, **dtype_kwargs(self._dtype))
        self._model = model.to(self._device).eval()
        self._processor = processor

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
