"""Text conditioning: the OpenCLIP ViT-H/14 text tower as a transformers ``CLIPTextModel``.

PrimeDepth conditions the frozen UNet and the refiner on the output of **all 24** blocks of the
OpenCLIP ViT-H/14 text tower followed by its final LayerNorm (official spec §3). Stable Diffusion 2.1
uses the penultimate layer instead, so its diffusers ``text_encoder`` (23 layers) cannot be reused.
Token ids are padded with id 0 and every position, padding included, is attended to (causal mask only).

The OpenCLIP checkpoint key names live in `primedepth.convert.open_clip`; this module knows
only the transformers side: the ViT-H/14 config, loading a converted `text_encoder/` folder or the
laion weights, the tokenizer padded with id 0 to 77 tokens, and `PromptEncoder` (text -> context,
with a cache of distinct prompts).
"""

from __future__ import annotations

import html
import json
import pickle
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from ..constants import CROSS_MAP_CHANNELS
from ..devices import dtype_kwargs
from ..errors import InputError, PrimeDepthError, weights_unavailable

LAION_VIT_H14_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
CONTEXT_LENGTH = CROSS_MAP_CHANNELS  # 77 tokens: the cross-attention maps have one channel per token
PAD_TOKEN_ID = 0  # open_clip pads with 0, which is "!" in the CLIP BPE vocabulary
BOS_TOKEN_ID = 49406
EOS_TOKEN_ID = 49407

# OpenCLIP ViT-H/14 text tower: width 1024, 24 blocks, 16 heads of 64, MLP ratio 4, exact GELU.
_VIT_H14_TEXT = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    projection_dim=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    max_position_embeddings=CONTEXT_LENGTH,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    pad_token_id=PAD_TOKEN_ID,
    bos_token_id=BOS_TOKEN_ID,
    eos_token_id=EOS_TOKEN_ID,
)
# ---------------------------------------------------------------------------------------------
# Encoder weights
# ---------------------------------------------------------------------------------------------


def text_encoder_config(**overrides: object) -> CLIPTextConfig:
    """Config of the OpenCLIP ViT-H/14 text tower, all 24 layers (the size PrimeDepth was trained with)."""
    values = dict(_VIT_H14_TEXT)
    values.update(overrides)
    return CLIPTextConfig(**values)


def load_text_encoder(
    source: str | Path = LAION_VIT_H14_REPO,
    *,
    subfolder: str | None = None,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
) -> CLIPTextModel:
    """Load a converted ``text_encoder/`` folder, or the laion ViT-H/14 weights from the hub.

    The laion repo stores a full ``CLIPModel``; transformers reads its text half, which has all 24
    layers and ``hidden_act="gelu"``, matching PrimeDepth's conditioning.
    """
    kwargs: dict[str, object] = {}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    if torch_dtype is not None:
        kwargs.update(dtype_kwargs(torch_dtype))
    try:
        model = CLIPTextModel.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError) as error:
        raise weights_unavailable("text encoder", str(source), error) from error
    return model.eval()


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def clean_prompt(text: str) -> str:
    """OpenCLIP's clean-up before BPE: fix mojibake (ftfy, if installed), HTML unescape twice, one space.

    Lower-casing is left to the tokenizer, which does it for every CLIP vocabulary.
    """
    if not isinstance(text, str):
        raise InputError(f"a prompt must be a string, got {type(text).__name__}")
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


def configure_tokenizer(tokenizer: CLIPTokenizer) -> CLIPTokenizer:
    """Pad with id 0 like open_clip, 77 tokens, on the right; returns the same tokenizer.

    The SD 2.1 ``tokenizer/`` config already pads with "!" (id 0); the laion repo's config pads with
    ``<|endoftext|>`` (49407), which would change every padded position of the context. So the pad
    token is always set to whatever token has id 0.
    """
    pad_token = tokenizer.convert_ids_to_tokens(PAD_TOKEN_ID)
    if pad_token is None:
        raise PrimeDepthError("the tokenizer vocabulary has no token with id 0 to pad with")
    tokenizer.pad_token = pad_token
    tokenizer.model_max_length = CONTEXT_LENGTH
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "right"
    if tokenizer.pad_token_id != PAD_TOKEN_ID:
        raise PrimeDepthError(f"could not make the tokenizer pad with id 0 (got {tokenizer.pad_token_id})")
    return tokenizer


def build_tokenizer(vocab: Mapping[str, int], merges: Sequence[str]) -> CLIPTokenizer:
    """A CLIP BPE tokenizer from an in-memory vocabulary and merge list (``"a b"`` strings).

    Goes through ``vocab.json`` + ``merges.txt`` in a temporary folder, the format every
    transformers version reads. The vocabulary must contain ``<|startoftext|>`` and ``<|endoftext|>``.
    """
    for special in ("<|startoftext|>", "<|endoftext|>"):
        if special not in vocab:
            raise InputError(f"the vocabulary has no {special} token")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "vocab.json").write_text(json.dumps(dict(vocab)), encoding="utf-8")
        lines = ["#version: 0.2", *merges]
        Path(folder, "merges.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        try:
            tokenizer = CLIPTokenizer.from_pretrained(folder)
        except Exception as error:  # the tokenizers library raises a bare Exception on bad BPE data
            raise InputError(f"invalid BPE vocabulary or merges: {error}") from error
    return configure_tokenizer(tokenizer)


def _tokenizer_sources(source: str | Path | None, subfolder: str | None) -> list[tuple[str, str | None]]:
    """Where to look: the given source, else laion's repo (the OpenAI CLIP BPE vocabulary).

    Stable Diffusion 2.x repositories, which carry the same vocabulary, were withdrawn from the hub.
    """
    if source is not None:
        return [(str(source), subfolder)]
    return [(LAION_VIT_H14_REPO, None)]


def _check_bpe_vocabulary(tokenizer: CLIPTokenizer, source: str) -> None:
    """transformers 5 returns an empty default tokenizer when no vocab files are found: refuse it."""
    vocab = tokenizer.get_vocab()
    specials_present = "<|startoftext|>" in vocab and "<|endoftext|>" in vocab
    if not specials_present or len(vocab) <= 2 * 256:  # byte tokens + their end-of-word forms at least
        raise OSError(f"no CLIP BPE vocabulary found in {source!r} ({len(vocab)} tokens)")


def load_tokenizer(
    source: str | Path | None = None,
    *,
    subfolder: str | None = None,
    local_files_only: bool | None = None,
) -> CLIPTokenizer:
    """The CLIP BPE tokenizer from a local folder or the hub, configured to pad with id 0 to 77.

    Without ``source`` it reads ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (the OpenAI CLIP vocab).
    """
    tried: list[str] = []
    last_error: Exception | None = None
    for repo, sub in _tokenizer_sources(source, subfolder):
        kwargs: dict[str, object] = {}
        if sub:
            kwargs["subfolder"] = sub
        if local_files_only is not None:
            kwargs["local_files_only"] = local_files_only
        try:
            tokenizer = CLIPTokenizer.from_pretrained(repo, **kwargs)
            _check_bpe_vocabulary(tokenizer, repo)
            return configure_tokenizer(tokenizer)
        except (OSError, ValueError) as error:
            tried.append(f"{repo}/{sub}" if sub else repo)
            last_error = error
    raise weights_unavailable(
        "CLIP tokenizer", ", ".join(tried), last_error or "not found",
        download=f"hf download {LAION_VIT_H14_REPO} vocab.json merges.txt tokenizer_config.json",
        alternatives=(
            "put the CLIP BPE files vocab.json and merges.txt (any OpenAI CLIP tokenizer has them) in a folder "
            "and pass that folder as the tokenizer source, or convert without a text encoder "
            "(primedepth convert --no-text-encoder) and condition with --prompt-embeds"
        ),
    ) from last_error


def _as_prompt_list(prompts: str | Sequence[str]) -> list[str]:
    """Accept one prompt or a sequence of prompts; reject anything else with a clear message."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompts must be a string or a list of strings")
    return list(prompts)


def tokenize(tokenizer: CLIPTokenizer, prompts: str | Sequence[str]) -> torch.Tensor:
    """Token ids (B, 77) as open_clip makes them: [SOT] tokens [EOT], cut to 77 with EOT last, 0-padded."""
    texts = [clean_prompt(p) for p in _as_prompt_list(prompts)]
    if not texts:
        raise InputError("no prompts to tokenize")
    encoded = tokenizer(
        texts, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True, return_tensors="pt"
    )
    return encoded["input_ids"]


# ---------------------------------------------------------------------------------------------
# Encoding with a per-prompt cache
# ---------------------------------------------------------------------------------------------


class CacheInfo(NamedTuple):
    """Prompt cache statistics: a folder with one fixed prompt should show one miss."""

    hits: int
    misses: int
    size: int
    max_size: int | None


class PromptEncoder:
    """Prompts -> (B, 77, hidden) contexts, encoding each distinct prompt once.

    The cache is keyed by the prompt text and holds one (77, hidden) tensor per prompt on the text
    encoder's device and dtype; it is least-recently-used bounded by ``max_cache_size`` (``None``:
    unbounded) because captions make every image's prompt distinct. Moving the text encoder to another
    device or dtype empties it. The tokenizer is configured in place to pad with id 0 to 77 tokens.
    """

    def __init__(
        self,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        *,
        max_cache_size: int | None = 256,
        execution_device: torch.device | str | None = None,
    ) -> None:
        if max_cache_size is not None and max_cache_size < 0:
            raise InputError("max_cache_size must be >= 0 or None")
        self.text_encoder = text_encoder
        self.tokenizer = configure_tokenizer(tokenizer)
        self.max_cache_size = max_cache_size
        # Set when the encoder's weights wait elsewhere (CPU memory, streamed by offload hooks).
        self.execution_device = None if execution_device is None else torch.device(execution_device)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_owner: tuple[torch.device, torch.dtype] | None = None
        self._hits = 0
        self._misses = 0

    @property
    def device(self) -> torch.device:
        """Where the text encoder computes: `execution_device` if given, else its weights' device."""
        if self.execution_device is not None:
            return self.execution_device
        return next(self.text_encoder.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the text encoder's weights."""
        return next(self.text_encoder.parameters()).dtype

    def clear_cache(self) -> None:
        """Forget every cached embedding (and the hit/miss counts)."""
        self._cache.clear()
        self._cache_owner = None
        self._hits = 0
        self._misses = 0

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the prompt cache."""
        return CacheInfo(self._hits, self._misses, len(self._cache), self.max_cache_size)

    @torch.no_grad()
    def encode_token_ids(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Run the encoder on (B, 77) ids: all layers + final LayerNorm, no padding mask, no cache."""
        if token_ids.ndim != 2:
            raise InputError(f"token ids must be (batch, {CONTEXT_LENGTH}), got {tuple(token_ids.shape)}")
        ids = token_ids.to(device=self.device, dtype=torch.long)
        return self.text_encoder(input_ids=ids).last_hidden_state

    def _check_owner(self) -> None:
        """Drop cached tensors made by the encoder on another device or in another dtype."""
        owner = (self.device, self.dtype)
        if self._cache_owner != owner:
            self._cache.clear()
            self._cache_owner = owner

    def _store(self, prompt: str, embedding: torch.Tensor) -> None:
        """Insert one embedding, evicting the least recently used beyond the size limit."""
        if self.max_cache_size == 0:
            return
        self._cache[prompt] = embedding
        if self.max_cache_size is not None:
            while len(self._cache) > self.max_cache_size:
                self._cache.popitem(last=False)

    def _encode_missing(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Encode the distinct prompts not in the cache, in one batch."""
        found: dict[str, torch.Tensor] = {}
        missing: list[str] = []
        for prompt in dict.fromkeys(prompts):
            if prompt in self._cache:
                self._cache.move_to_end(prompt)
                found[prompt] = self._cache[prompt]
                self._hits += 1
            else:
                missing.append(prompt)
        if missing:
            embeddings = self.encode_token_ids(tokenize(self.tokenizer, missing))
            for prompt, embedding in zip(missing, embeddings):
                embedding = embedding.clone()  # a cached row must not keep its whole batch alive
                found[prompt] = embedding
                self._store(prompt, embedding)
            self._misses += len(missing)
        return found

    def encode(
        self,
        prompts: str | Sequence[str],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """(B, 77, hidden) contexts for B prompts, on ``device``/``dtype`` (default: the encoder's)."""
        texts = _as_prompt_list(prompts)
        if not texts:
            raise InputError("no prompts to encode")
        self._check_owner()
        by_prompt = self._encode_missing(texts)
        context = torch.stack([by_prompt[p] for p in texts])
        return context.to(device=device or self.device, dtype=dtype or self.dtype)

    def __call__(self, prompts: str | Sequence[str], **kwargs: object) -> torch.Tensor:
        """Same as :meth:`encode`."""
        return self.encode(prompts, **kwargs)  # type: ignore[arg-type]


def read_prompt_embeds(path: str | Path) -> torch.Tensor:
    """A saved (1, tokens, dim) conditioning: .pt (one tensor, read without unpickling code),
    .npy, or .safetensors (one tensor); float32. For models without a text encoder, and training."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: prompt embeddings file not found")
    try:
        if path.suffix == ".npy":
            tensor = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".safetensors":
            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise InputError(f"{path}: expected one tensor, found {sorted(tensors)}")
            tensor = next(iter(tensors.values()))
        else:
            tensor = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as error:
        raise InputError(f"{path}: cannot read prompt embeddings ({error})") from None
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3 or tensor.shape[0] != 1:
        raise InputError(f"{path}: expected one (1, tokens, dim) tensor")
    return tensor.float()
