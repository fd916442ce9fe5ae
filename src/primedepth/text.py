"""Text conditioning: the OpenCLIP ViT-H/14 text tower as a transformers ``CLIPTextModel``.

PrimeDepth conditions the frozen UNet and the refiner on the output of **all 24** blocks of the
OpenCLIP ViT-H/14 text tower followed by its final LayerNorm (official spec §3). Stable Diffusion 2.1
uses the penultimate layer instead, so its diffusers ``text_encoder`` (23 layers) cannot be reused.
Token ids are padded with id 0 and every position, padding included, is attended to (causal mask only).

Public API
----------
Constants
    ``OPEN_CLIP_TEXT_PREFIX``  key prefix of the text tower in the official checkpoint.
    ``LAION_VIT_H14_REPO``, ``SD21_REPO``  hub sources of the tokenizer (and of the laion text weights).
    ``CONTEXT_LENGTH`` (77), ``PAD_TOKEN_ID`` (0).
Encoder weights
    ``text_encoder_config(**overrides) -> CLIPTextConfig``  ViT-H/14 size by default.
    ``find_open_clip_text_prefix(state_dict) -> str | None``  where the tower's keys start.
    ``has_open_clip_text_weights(state_dict) -> bool``.
    ``convert_open_clip_text_state_dict(state_dict, *, prefix=None) -> dict[str, Tensor]``
        OpenCLIP names -> ``CLIPTextModel`` names (without the model's own ``text_model.`` prefix).
    ``text_encoder_config_from_state_dict(state_dict, *, prefix=None, **overrides) -> CLIPTextConfig``.
    ``text_encoder_from_open_clip(state_dict, *, prefix=None, config=None, torch_dtype=None) -> CLIPTextModel``.
    ``load_text_encoder(source=LAION_VIT_H14_REPO, *, subfolder=None, torch_dtype=None,
        local_files_only=None) -> CLIPTextModel``  a converted folder or the laion hub weights.
    ``dtype_kwargs(dtype) -> dict``  the ``from_pretrained`` dtype argument for this transformers.
Tokenizer
    ``clean_prompt(text) -> str``  OpenCLIP's text clean-up (HTML unescape, ftfy if installed, spaces).
    ``configure_tokenizer(tokenizer) -> CLIPTokenizer``  pads with id 0, 77 tokens, right side.
    ``build_tokenizer(vocab, merges) -> CLIPTokenizer``  from an in-memory vocab (tests, converters).
    ``load_tokenizer(source=None, *, subfolder=None, local_files_only=None) -> CLIPTokenizer``.
    ``tokenize(tokenizer, prompts) -> LongTensor (B, 77)``.
Encoding
    ``PromptEncoder(text_encoder, tokenizer, *, max_cache_size=256)``: ``encode(prompts, device=None,
        dtype=None) -> Tensor (B, 77, hidden)``, ``encode_token_ids(ids)``, ``clear_cache()``,
        ``cache_info()``, properties ``device`` and ``dtype``.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .constants import CROSS_MAP_CHANNELS
from .errors import InputError, PrimeDepthError, WeightsNotFoundError

OPEN_CLIP_TEXT_PREFIX = "cond_stage_model.model."
LAION_VIT_H14_REPO = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
SD21_REPO = "stabilityai/stable-diffusion-2-1"
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
_OPEN_CLIP_HEAD_WIDTH = 64  # open_clip derives heads = width // 64 for its text towers

# Per-block renames; the fused attention input projection is split separately.
_BLOCK_RENAMES = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# Entries of the OpenCLIP tower that a CLIPTextModel has no place for (not used by PrimeDepth).
_IGNORED_KEYS = ("text_projection", "logit_scale", "attn_mask")
# First name of every entry of an OpenCLIP text tower; keys under the prefix that start otherwise
# belong to other modules of the checkpoint.
_TOWER_ROOTS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.") + _IGNORED_KEYS
_BLOCK_KEY = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")


# ---------------------------------------------------------------------------------------------
# Encoder weights
# ---------------------------------------------------------------------------------------------


def text_encoder_config(**overrides: object) -> CLIPTextConfig:
    """Config of the OpenCLIP ViT-H/14 text tower, all 24 layers (the size PrimeDepth was trained with)."""
    values = dict(_VIT_H14_TEXT)
    values.update(overrides)
    return CLIPTextConfig(**values)


def find_open_clip_text_prefix(state_dict: Mapping[str, object]) -> str | None:
    """Prefix in front of ``token_embedding.weight``, so any checkpoint nesting is accepted."""
    suffix = "token_embedding.weight"
    candidates = [k[: -len(suffix)] for k in state_dict if k.endswith(suffix)]
    candidates = [p for p in candidates if p == "" or p.endswith(".")]
    if not candidates:
        return None
    return min(candidates, key=len)  # prefer the outermost tower if several were nested


def has_open_clip_text_weights(state_dict: Mapping[str, object]) -> bool:
    """Whether a checkpoint carries an OpenCLIP text tower (the official one may or may not)."""
    return find_open_clip_text_prefix(state_dict) is not None


def _tower_entries(state_dict: Mapping[str, torch.Tensor], prefix: str | None) -> dict[str, torch.Tensor]:
    """The tower's tensors with the prefix removed; other checkpoint entries are ignored."""
    if prefix is None:
        prefix = find_open_clip_text_prefix(state_dict)
        if prefix is None:
            raise PrimeDepthError(
                "no OpenCLIP text tower in this state dict (looked for a key ending in "
                f"'token_embedding.weight', e.g. '{OPEN_CLIP_TEXT_PREFIX}token_embedding.weight')"
            )
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _split_in_proj(block: str, name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """open_clip fuses q, k, v into one (3·width, …) projection; CLIP keeps three Linear layers."""
    kind = "weight" if name.endswith("weight") else "bias"
    if tensor.shape[0] % 3:
        raise PrimeDepthError(f"{block}.attn.{name} has shape {tuple(tensor.shape)}, not 3·width rows")
    # clone: the three slices must not share storage, or safetensors refuses to save them
    q, k, v = (t.clone() for t in tensor.chunk(3, dim=0))
    return {f"{block}.self_attn.{p}_proj.{kind}": t for p, t in zip("qkv", (q, k, v))}


def _convert_block_entry(index: str, rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One ``transformer.resblocks.{i}.*`` entry under its CLIPTextModel name(s)."""
    block = f"encoder.layers.{index}"
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        return _split_in_proj(block, rest.split(".")[-1], tensor)
    module, _, param = rest.rpartition(".")
    if module not in _BLOCK_RENAMES:
        raise PrimeDepthError(f"unexpected OpenCLIP text key 'transformer.resblocks.{index}.{rest}'")
    return {f"{block}.{_BLOCK_RENAMES[module]}.{param}": tensor}


def convert_open_clip_text_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """Rename an OpenCLIP text tower to ``CLIPTextModel`` names, keeping **every** block.

    ``state_dict`` may be the whole official checkpoint (``cond_stage_model.model.*`` is found by
    itself), the tower alone without prefix, or anything in between; pass ``prefix`` to force one.
    The result has no ``text_model.`` head (transformers 4.x adds one; :func:`text_encoder_from_open_clip`
    handles both). ``text_projection`` and ``logit_scale`` are dropped: PrimeDepth uses neither.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in _tower_entries(state_dict, prefix).items():
        if not key.startswith(_TOWER_ROOTS):
            continue  # a sibling module that happens to share the prefix (e.g. "model.diffusion_model.")
        match = _BLOCK_KEY.match(key)
        if match:
            converted.update(_convert_block_entry(match.group(1), match.group(2), tensor))
        elif key == "token_embedding.weight":
            converted["embeddings.token_embedding.weight"] = tensor
        elif key == "positional_embedding":
            converted["embeddings.position_embedding.weight"] = tensor
        elif key.startswith("ln_final."):
            converted["final_layer_norm." + key[len("ln_final.") :]] = tensor
        elif key not in _IGNORED_KEYS:
            raise PrimeDepthError(f"unexpected OpenCLIP text key '{key}'")
    return converted


def text_encoder_config_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, prefix: str | None = None, **overrides: object
) -> CLIPTextConfig:
    """Read the tower's size off its tensor shapes (heads follow open_clip's width // 64 rule)."""
    tower = _tower_entries(state_dict, prefix)
    try:
        vocab_size, width = tower["token_embedding.weight"].shape
        positions = tower["positional_embedding"].shape[0]
        intermediate = tower["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    except KeyError as missing:
        raise PrimeDepthError(f"OpenCLIP text tower is incomplete: {missing} is missing") from None
    layers = 1 + max(int(m.group(1)) for k in tower if (m := _BLOCK_KEY.match(k)))
    values: dict[str, object] = dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=intermediate,
        projection_dim=width,
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // _OPEN_CLIP_HEAD_WIDTH),
        max_position_embeddings=positions,
    )
    values.update(overrides)
    return text_encoder_config(**values)


def _empty_text_model(config: CLIPTextConfig) -> CLIPTextModel:
    """Build the module without running its random init: every weight is overwritten right after."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        return CLIPTextModel(config)


def _with_model_prefix(model: CLIPTextModel, converted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers 4.x nests the tower under ``text_model.``; 5.x does not."""
    if any(k.startswith("text_model.") for k in model.state_dict()):
        return {"text_model." + k: v for k, v in converted.items()}
    return converted


def text_encoder_from_open_clip(
    state_dict: Mapping[str, torch.Tensor],
    *,
    prefix: str | None = None,
    config: CLIPTextConfig | None = None,
    torch_dtype: torch.dtype | None = None,
) -> CLIPTextModel:
    """A ready ``CLIPTextModel`` (eval mode) holding the OpenCLIP tower's weights, loaded strictly.

    Without ``config`` the size is read from the tensors (ViT-H/14 for the official checkpoint).
    """
    if config is None:
        config = text_encoder_config_from_state_dict(state_dict, prefix=prefix)
    converted = convert_open_clip_text_state_dict(state_dict, prefix=prefix)
    model = _empty_text_model(config)
    result = model.load_state_dict(_with_model_prefix(model, converted), strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or unexpected:
        raise PrimeDepthError(
            "OpenCLIP text tower does not match the text encoder config: "
            f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    return model.eval()


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained`` dtype argument: transformers renamed ``torch_dtype`` to ``dtype`` in 4.56."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: dtype}


def _offline_hint(what: str, tried: Sequence[str], command: str) -> str:
    """One message saying what was looked for and how to provide it."""
    return (
        f"could not load the {what} from {', '.join(repr(t) for t in tried)}. "
        "Pass a local folder, or download it while online"
        f" (e.g. `{command}`); if you are offline on purpose, make sure it is already in the "
        "Hugging Face cache (HF_HUB_OFFLINE=1 only reads the cache)."
    )


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
        raise WeightsNotFoundError(
            _offline_hint("text encoder", [str(source)], f"hf download {LAION_VIT_H14_REPO}")
            + f" ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error
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
    """Where to look: the given source, else laion's repo, then SD 2.1's ``tokenizer/`` (same BPE)."""
    if source is not None:
        return [(str(source), subfolder)]
    return [(LAION_VIT_H14_REPO, None), (SD21_REPO, "tokenizer")]


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

    Without ``source`` it tries ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` and then
    ``stabilityai/stable-diffusion-2-1`` (subfolder ``tokenizer``); both carry the OpenAI CLIP vocab.
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
    raise WeightsNotFoundError(
        _offline_hint(
            "CLIP tokenizer", tried, f"hf download {LAION_VIT_H14_REPO} vocab.json merges.txt tokenizer_config.json"
        )
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
        self, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, *, max_cache_size: int | None = 256
    ) -> None:
        if max_cache_size is not None and max_cache_size < 0:
            raise InputError("max_cache_size must be >= 0 or None")
        self.text_encoder = text_encoder
        self.tokenizer = configure_tokenizer(tokenizer)
        self.max_cache_size = max_cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_owner: tuple[torch.device, torch.dtype] | None = None
        self._hits = 0
        self._misses = 0

    @property
    def device(self) -> torch.device:
        """Where the text encoder computes: its weights' device, or its offload hooks' device."""
        for module in self.text_encoder.modules():
            device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
            if device is not None:  # accelerate offload: the weights wait on the CPU or meta
                return torch.device(device)
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
