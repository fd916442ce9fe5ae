"""Label heads: SD-VAE-decoder-shaped networks from the refiner output to image-size labels.

Official spec §7.3: the depth head (3 channels, averaged at inference) and the segmentation head
(150 logits) are the SD VAE decoder with `conv_in` taking the refiner's 512 channels. That is
diffusers' `Decoder`, with every GroupNorm at eps 1e-5 instead of diffusers' 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import ModelMixin
from diffusers.models.autoencoders.vae import Decoder

from ..constants import LABEL_HEAD_NORM_EPS
from .norms import set_group_norm_eps

__all__ = ["LabelHead"]


class LabelHead(ModelMixin, ConfigMixin):
    """A VAE-decoder-shaped head: (B, in_channels, h, w) -> (B, out_channels, 8h, 8w), no activation."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 512,
        out_channels: int = 3,
        block_out_channels: Sequence[int] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        norm_eps: float = LABEL_HEAD_NORM_EPS,
    ) -> None:
        super().__init__()
        self.decoder = Decoder(
            in_channels=in_channels,
            out_channels=out_channels,
            up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn="silu",
        )
        set_group_norm_eps(self.decoder, norm_eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder(features.to(self.decoder.conv_in.weight.dtype))
