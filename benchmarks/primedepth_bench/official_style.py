"""The official-style REFERENCE path: what PrimeDepth is compared against, never a model to use.

The official release records the attention maps by materialising P = softmax(Q K^T s), an
(N x N) matrix per head, in every attention layer, and pooling it; it encodes the prompt of every
image with the text tower (no cache), computes the UNet tail (SD's own noise prediction, thrown
away), holds the whole preimage before the refiner and runs both heads, all in fp32. BLIP-2
captioning, which it also runs per image, is not counted here.

This module reproduces that work on PrimeDepth's own components: the stages of
`primedepth.model` (`stages.time_stages`), with `OfficialStyleProcessor` in place of the fused
map capture. Both paths therefore compute the same preimage (tested) and differ only in how.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from transformers import CLIPTextModel

from primedepth.model import Preimage
from primedepth.model.attention_maps import (
    AttentionMapSink,
    pool_self_attention_probabilities,
)
from primedepth.model.preimage import DecoderStep

from .builders import BenchInputs
from .stages import time_stages
from .timing import ElapsedTimer, MemoryWatch, StageTimer


class OfficialStyleProcessor:
    """Attention the way the official code records maps: P = softmax(Q K^T s) is materialised.

    Self-attention: out = P V, maps = P @ M pooled over the key grid and normalised per head
    (`pool_self_attention_probabilities`, the reference pooling). Cross-attention: maps = P.
    `recorded` counts the layers that recorded maps, so a walk that bypassed it is detected.
    """

    def __init__(self) -> None:
        self.recorded = 0

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 attention_maps: AttentionMapSink | None = None) -> torch.Tensor:
        """diffusers' processor interface; `attention_maps` (the walk's sink) arrives through
        cross_attention_kwargs, which diffusers passes on only when the parameter is named here."""
        if attention_mask is not None:
            raise NotImplementedError("the official-style reference has no attention mask (SD's UNet uses none)")
        is_self = encoder_hidden_states is None
        context = hidden_states if is_self else encoder_hidden_states
        batch, tokens, _ = hidden_states.shape
        query, key, value = (_split_heads(attn, x) for x in (attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)))
        probs = (torch.matmul(query, key.transpose(-1, -2)) * attn.scale).softmax(dim=-1)  # (B, heads, N, N or 77)
        out = torch.matmul(probs, value)
        if attention_maps is not None:
            attention_maps.put(_maps(probs, attention_maps, is_self), is_self)
            self.recorded += 1
        del probs
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(batch, tokens, -1)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _split_heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """(B, tokens, heads * d) -> (B, heads, tokens, d)."""
    return x.view(x.shape[0], x.shape[1], attn.heads, -1).transpose(1, 2)


def _maps(probs: torch.Tensor, sink: AttentionMapSink, is_self: bool) -> torch.Tensor:
    """The layer's maps from its materialised probabilities, as (B, channels, height, width)."""
    if is_self:
        return pool_self_attention_probabilities(probs, sink.height, sink.width)
    batch, heads, _, tokens = probs.shape
    return probs.permute(0, 1, 3, 2).reshape(batch, heads * tokens, sink.height, sink.width)


@contextmanager
def official_style_attention(unet: UNet2DConditionModel) -> Iterator[OfficialStyleProcessor]:
    """Inside the block every attention layer of `unet` materialises its probabilities, in the
    preimage walk as well as in plain calls (the UNet tail); the UNet's own processors come back
    afterwards.

    The walk is given the same processor (`time_stages(..., processor=...)`); its `recorded`
    count lets `official_stages` fail rather than time the fused path by mistake.
    """
    processor = OfficialStyleProcessor()
    original = unet.attn_processors
    unet.set_attn_processor(processor)
    try:
        yield processor
    finally:
        unet.set_attn_processor(original)


def unet_tail(unet: UNet2DConditionModel, last_step: DecoderStep, temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """What the UNet computes after its last decoder step (where PrimeDepth's walk stops): the
    last up-block resnet and transformer and the output conv, SD's own noise prediction."""
    block = unet.up_blocks[-1]
    hidden = block.resnets[-1](last_step.features, temb)
    if getattr(block, "attentions", None) is not None:
        hidden = block.attentions[-1](hidden, encoder_hidden_states=context, return_dict=False)[0]
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))


def official_stages(pipeline: Any, inputs: BenchInputs, text_encoder: CLIPTextModel, timer: StageTimer | ElapsedTimer) -> None:
    """Time the official-style stages in the order the official code runs them, in fp32:
    prompt encoding, VAE encode, UNet walk with materialised attention, UNet tail, refiner over
    the whole preimage, depth head, segmentation head."""
    unet = pipeline.unet
    tokens = torch.zeros(inputs.context.shape[:2], dtype=torch.long, device=inputs.context.device)  # one id per context position
    with torch.no_grad():
        timer("text_encode", lambda: text_encoder(tokens).last_hidden_state)

    def tail(preimage: Preimage) -> None:  # on the materialised preimage, before the refiner runs
        timer("unet_tail", lambda: unet_tail(unet, preimage.steps[-1], preimage.temb, preimage.context))

    with official_style_attention(unet) as processor:
        time_stages(pipeline, inputs, torch.float32, timer, after_walk=tail, processor=processor)
    if processor.recorded == 0:
        raise RuntimeError("the preimage walk did not use the official-style attention: the timings would be the fused path's")


def run_official(
    pipeline: Any, inputs: BenchInputs, device: torch.device, repeats: int, warmup: int, text_encoder: CLIPTextModel
) -> dict[str, Any]:
    """The official-style run; its stages run in sequence as the official code runs them, so
    the total is their sum (the pipeline must be fp32, as the official release runs)."""
    watch = MemoryWatch(device)
    timer = StageTimer(device, repeats, warmup)
    official_stages(pipeline, inputs, text_encoder, timer)
    return watch.result(sum(timer.seconds.values()), stages=timer.seconds, finite=True)
