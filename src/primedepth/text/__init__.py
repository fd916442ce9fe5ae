"""Text conditioning: the prompt encoder and tokenizer (`encoder`) and BLIP-2 captions for
prompt="auto" (`captioning`). The OpenCLIP checkpoint names are in `primedepth.convert.open_clip`."""

from .captioning import BLIP2_MODEL_ID, Blip2Captioner, check_captioner
from .encoder import (
    CONTEXT_LENGTH,
    LAION_VIT_H14_REPO,
    PAD_TOKEN_ID,
    PromptEncoder,
    build_tokenizer,
    clean_prompt,
    configure_tokenizer,
    load_text_encoder,
    load_tokenizer,
    text_encoder_config,
    tokenize,
)

__all__ = [
    "BLIP2_MODEL_ID",
    "Blip2Captioner",
    "CONTEXT_LENGTH",
    "LAION_VIT_H14_REPO",
    "PAD_TOKEN_ID",
    "PromptEncoder",
    "build_tokenizer",
    "check_captioner",
    "clean_prompt",
    "configure_tokenizer",
    "load_text_encoder",
    "load_tokenizer",
    "text_encoder_config",
    "tokenize",
]
