"""GroupNorm epsilons: the official code uses 1e-5 where diffusers' blocks hard-code 1e-6.

Our own modules (heads, refiner) are built with the official value. Components that come from
diffusers unchanged (the frozen VAE encoder) are only switched for the duration of a PrimeDepth
call (`group_norm_eps`), so a VAE shared with a Stable Diffusion pipeline keeps its behaviour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["set_group_norm_eps", "group_norm_eps"]


def set_group_norm_eps(module: nn.Module, eps: float) -> None:
    """Set the epsilon of every GroupNorm under `module` (for modules we construct ourselves)."""
    for child in module.modules():
        if isinstance(child, nn.GroupNorm):
            child.eps = eps


@contextmanager
def group_norm_eps(module: nn.Module, eps: float) -> Iterator[None]:
    """Every GroupNorm under `module` uses `eps` inside the block; the old values come back after."""
    norms = [child for child in module.modules() if isinstance(child, nn.GroupNorm)]
    saved = [norm.eps for norm in norms]
    for norm in norms:
        norm.eps = eps
    try:
        yield
    finally:
        for norm, old in zip(norms, saved):
            norm.eps = old
