"""Shared fixtures of the text tests: a tiny random BLIP-2 saved to a folder, small images.

The tiny BLIP-2 (ViT + Q-Former + OPT, a letters-only byte-level tokenizer) goes through the real
`from_pretrained` path of the captioner, all offline.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    GPT2Tokenizer,
)

NUM_QUERY_TOKENS = 4
# Seed of the random weights: with it the tiny OPT writes non-empty captions, some with a leading
# space, so the `.strip()` of the official decoding is exercised.
WEIGHT_SEED = 1


def _tiny_processor() -> Blip2Processor:
    """Byte-level BPE over lower-case letters and 'Ġ'-prefixed words, OPT's special-token layout."""
    letters = list(string.ascii_lowercase)
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for token in letters + ["Ġ" + c for c in letters]:
        vocab[token] = len(vocab)
    tokenizer = GPT2Tokenizer(
        vocab=vocab, merges=[], bos_token="</s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    return Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=NUM_QUERY_TOKENS)


def _tiny_model(processor: Blip2Processor) -> Blip2ForConditionalGeneration:
    """Tiny BLIP-2 with N(0, 0.5) weights (the default init makes OPT emit EOS at once)."""
    tokenizer = processor.tokenizer
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Blip2Config(
        vision_config=dict(**small, image_size=32, patch_size=16),
        qformer_config=dict(**small, encoder_hidden_size=32, vocab_size=100, max_position_embeddings=64),
        text_config=dict(
            model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=1,
            num_attention_heads=2, word_embed_proj_dim=32, max_position_embeddings=64,
            bos_token_id=1, eos_token_id=1, pad_token_id=0,
        ),
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = Blip2ForConditionalGeneration(config).eval()
    generator = torch.Generator().manual_seed(WEIGHT_SEED)
    with torch.no_grad():
        for name, param in model.named_parameters():
            offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5 + offset)
    return model


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-blip2")
    processor = _tiny_processor()
    _tiny_model(processor).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Five small RGB pictures of different sizes (captions use the un-resized image)."""
    sizes = [(40, 50), (32, 32), (64, 48), (33, 70), (50, 40)]
    return [
        Image.fromarray((np.random.RandomState(i).rand(h, w, 3) * 255).astype(np.uint8))
        for i, (h, w) in enumerate(sizes)
    ]
