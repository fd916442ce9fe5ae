"""The refiner: infusion convs and a reduced-width copy of the UNet decoder (official spec §7.1-7.2).

For decoder step i the preimage (features, attention maps) is squeezed by 1x1 convs and merged:
    merged_i = merge_i(concat[features_conv_i(features), attention_conv_i(attention)])
and fed, concatenated after the refiner stream, to refiner block i (a resnet, a transformer where
the UNet has one, an upsampler at the end of a level). The refiner has no time MLP of its own: its
resnets take the UNet's timestep embedding. Its output (`conv_out`) is the input of the heads.

Every channel count follows from the base UNet's configuration and `refiner_ratio` through
`plan_refiner_steps`, exactly as the official code derives them (int() truncations included).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import ModelMixin
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.upsampling import Upsample2D
from torch import nn

from ..constants import CROSS_MAP_CHANNELS, MAX_NORM_GROUPS, REFINER_RESNET_NORM_EPS, SELF_MAP_CHANNELS
from .preimage import DecoderStep

__all__ = ["StepPlan", "plan_refiner_steps", "largest_divisor_up_to", "RefinerBlock", "PrimeDepthRefiner"]


def largest_divisor_up_to(value: int, limit: int) -> int:
    """The largest divisor of `value` that is <= `limit` (official GroupNorm groups and head dims)."""
    return next(d for d in range(min(value, limit), 0, -1) if value % d == 0)


@dataclass(frozen=True)
class StepPlan:
    """Channel counts and structure of one decoder step of the refiner."""

    feature_channels: int  # input of the feature conv (= UNet up-block resnet input)
    feature_out: int
    attention_channels: int  # 0 when the step has no attention input
    attention_out: int
    block_in: int  # [refiner stream, merged]
    block_out: int
    transformer_heads: int  # 0: no transformer in this block
    transformer_head_dim: int
    upsample: bool

    @property
    def merged_channels(self) -> int:
        return self.feature_out + self.attention_out


def plan_refiner_steps(
    base_block_out_channels: Sequence[int],
    base_layers_per_block: int,
    base_attention_heads: Sequence[int],
    base_mid_attention_heads: int,
    refiner_ratio: float,
    max_head_dim: int,
    maps_per_head: int = SELF_MAP_CHANNELS + CROSS_MAP_CHANNELS,
) -> list[StepPlan]:
    """Derive every refiner step from the base UNet (official spec §6.5-7.2).

    `base_attention_heads[level]` is the number of heads of the UNet transformers at that level
    (0: no transformer); `base_mid_attention_heads` those of the middle block's transformer.
    """
    levels = len(base_block_out_channels)
    # Base UNet input blocks: conv_in, then per level `layers` resnets (+transformers), then a
    # downsampler except at the deepest level.
    input_channels, input_heads = [base_block_out_channels[0]], [0]
    for level, channels in enumerate(base_block_out_channels):
        input_channels += [channels] * base_layers_per_block
        input_heads += [base_attention_heads[level]] * base_layers_per_block
        if level < levels - 1:
            input_channels.append(channels)
            input_heads.append(0)
    steps_per_level = base_layers_per_block + 1
    model_channels = int(base_block_out_channels[0] * refiner_ratio)
    multipliers = [c // base_block_out_channels[0] for c in base_block_out_channels]
    plans: list[StepPlan] = []
    stream_channels, refiner_stream = base_block_out_channels[-1], 0
    previous_heads = base_mid_attention_heads
    for step in range(levels * steps_per_level):
        level = levels - 1 - step // steps_per_level
        skip = len(input_channels) - 1 - step
        features = stream_channels + input_channels[skip]
        encoder_heads, heads_here = input_heads[skip], base_attention_heads[level]
        attention_in = maps_per_head * (previous_heads + encoder_heads)
        attention_out = int(refiner_ratio * maps_per_head * max(previous_heads, encoder_heads)) if attention_in else 0
        feature_out = int(refiner_ratio * features)
        block_out = model_channels * multipliers[level]
        head_dim = largest_divisor_up_to(block_out, max_head_dim) if heads_here else 0
        plans.append(
            StepPlan(
                feature_channels=features,
                feature_out=feature_out,
                attention_channels=attention_in,
                attention_out=attention_out,
                block_in=refiner_stream + feature_out + attention_out,
                block_out=block_out,
                transformer_heads=block_out // head_dim if heads_here else 0,
                transformer_head_dim=head_dim,
                upsample=level > 0 and step % steps_per_level == steps_per_level - 1,
            )
        )
        stream_channels, refiner_stream, previous_heads = base_block_out_channels[level], block_out, heads_here
    return plans


def _group_norm_groups(channels: int) -> int:
    return largest_divisor_up_to(channels, MAX_NORM_GROUPS)


class RefinerBlock(nn.Module):
    """Refiner block i: resnet, optional transformer, optional upsampler (to the UNet's skip size)."""

    def __init__(self, plan: StepPlan, temb_channels: int, cross_attention_dim: int) -> None:
        super().__init__()
        self.resnet = ResnetBlock2D(
            in_channels=plan.block_in,
            out_channels=plan.block_out,
            temb_channels=temb_channels,
            groups=_group_norm_groups(plan.block_in),
            groups_out=_group_norm_groups(plan.block_out),
            eps=REFINER_RESNET_NORM_EPS,
        )
        self.transformer = None
        if plan.transformer_heads:
            self.transformer = Transformer2DModel(
                num_attention_heads=plan.transformer_heads,
                attention_head_dim=plan.transformer_head_dim,
                in_channels=plan.block_out,
                norm_num_groups=_group_norm_groups(plan.block_out),
                cross_attention_dim=cross_attention_dim,
                use_linear_projection=True,
            )
        self.upsampler = Upsample2D(plan.block_out, use_conv=True) if plan.upsample else None

    def forward(
        self, hidden: torch.Tensor, temb: torch.Tensor, context: torch.Tensor, upsample_size: tuple[int, int] | None
    ) -> torch.Tensor:
        hidden = self.resnet(hidden, temb)
        if self.transformer is not None:
            hidden = self.transformer(hidden, encoder_hidden_states=context, return_dict=False)[0]
        if self.upsampler is not None:
            hidden = self.upsampler(hidden, output_size=upsample_size)
        return hidden


class PrimeDepthRefiner(ModelMixin, ConfigMixin):
    """Turns the preimage of the frozen UNet into the heads' input (official `labeller` minus heads)."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        base_block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        base_layers_per_block: int = 2,
        base_attention_heads: Sequence[int] = (5, 10, 20, 0),
        base_mid_attention_heads: int = 20,
        refiner_ratio: float = 0.5,
        max_head_dim: int = 64,
        cross_attention_dim: int = 1024,
        temb_channels: int = 1280,
        out_channels: int = 512,
    ) -> None:
        super().__init__()
        self.plans = plan_refiner_steps(
            base_block_out_channels,
            base_layers_per_block,
            base_attention_heads,
            base_mid_attention_heads,
            refiner_ratio,
            max_head_dim,
        )
        self.feature_convs = nn.ModuleList(nn.Conv2d(p.feature_channels, p.feature_out, 1) for p in self.plans)
        self.attention_convs = nn.ModuleDict(
            {str(i): nn.Conv2d(p.attention_channels, p.attention_out, 1) for i, p in enumerate(self.plans) if p.attention_channels}
        )
        self.merge_convs = nn.ModuleList(nn.Conv2d(p.merged_channels, p.merged_channels, 1) for p in self.plans)
        self.blocks = nn.ModuleList(RefinerBlock(p, temb_channels, cross_attention_dim) for p in self.plans)
        final = self.plans[-1].block_out
        self.norm_out = nn.GroupNorm(_group_norm_groups(final), final, eps=REFINER_RESNET_NORM_EPS)
        self.act_out = nn.SiLU()
        self.conv_out = nn.Conv2d(final, out_channels, 3, padding=1)

    def infuse(self, index: int, step: DecoderStep) -> torch.Tensor:
        """merged_i = merge_i([features_conv_i(features), attention_conv_i(attention)])."""
        dtype = self.conv_out.weight.dtype
        parts = [self.feature_convs[index](step.features.to(dtype))]
        has_attention = str(index) in self.attention_convs
        if has_attention != (step.attention is not None):
            raise ValueError(f"decoder step {index}: attention input does not match the refiner's configuration")
        if has_attention:
            parts.append(self.attention_convs[str(index)](step.attention.to(dtype)))
        return self.merge_convs[index](torch.cat(parts, dim=1))

    def forward(self, steps: Iterable[DecoderStep], temb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Consume the decoder steps in order (each may be dropped right after use)."""
        dtype = self.conv_out.weight.dtype
        temb, context = temb.to(dtype), context.to(dtype)
        stream = None
        count = 0
        for index, step in enumerate(steps):
            if index >= len(self.blocks):
                raise ValueError(f"the UNet yielded more decoder steps than the refiner's {len(self.blocks)}")
            merged = self.infuse(index, step)
            hidden = merged if stream is None else torch.cat([stream, merged], dim=1)
            stream = self.blocks[index](hidden, temb, context, step.upsample_size)
            count += 1
        if count != len(self.blocks):
            raise ValueError(f"the UNet yielded {count} decoder steps, the refiner expects {len(self.blocks)}")
        return self.conv_out(self.act_out(self.norm_out(stream)))
