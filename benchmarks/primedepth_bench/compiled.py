"""torch.compile on and off for PrimeDepth's UNet walk and depth head, interleaved.

The walk (`primedepth.model.preimage`) calls the UNet's blocks one by one, never `unet.forward`,
so compiling the UNet means compiling the blocks it calls (resnets, transformers, down- and
upsamplers, the input conv and the time embedding); the depth head is compiled whole. The same
modules then run compiled, or eager under `torch.compiler.set_stance("force_eager")`, so both
are timed in the same rounds on the same weights. The first compiled call of a shape pays for
the compilation; that time is reported on its own.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from .builders import make_inputs
from .paths import TimedPath, primedepth_path
from .rounds import RoundPlan, run_rounds
from .timing import timed

WALKED_MODULE_LISTS = ("resnets", "attentions", "downsamplers", "upsamplers")


def raise_recompile_limits(limit: int = 1024) -> None:
    """Every block instance and shape is a separate entry of dynamo's cache: the default limit
    (8) would silently send most blocks back to eager."""
    config = torch._dynamo.config
    for name, value in (("cache_size_limit", limit), ("recompile_limit", limit),
                        ("accumulated_cache_size_limit", 8 * limit), ("accumulated_recompile_limit", 8 * limit)):
        if hasattr(config, name):
            setattr(config, name, value)


COMPILED = ("walk-and-head", "head")  # what is compiled: the UNet blocks of the walk and the depth head, or the head alone


def walked_modules(pipeline: Any) -> list[torch.nn.Module]:
    """The modules the preimage walk calls."""
    unet = pipeline.unet
    modules: list[torch.nn.Module] = [unet.conv_in, unet.time_embedding]
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        for name in WALKED_MODULE_LISTS:
            modules += list(getattr(block, name, None) or [])
    return modules


def compile_modules(pipeline: Any, backend: str, what: str = "walk-and-head") -> int:
    """Compile in place (static shapes) the walk's modules and the depth head, or the head
    alone (a quick smoke run); how many modules."""
    raise_recompile_limits()
    modules = (walked_modules(pipeline) if what == "walk-and-head" else []) + [pipeline.depth_head]
    for module in modules:
        module.compile(backend=backend, dynamic=False)
    return len(modules)


def forced_eager(path: TimedPath) -> TimedPath:
    """The same path with every compiled module run eagerly."""

    def call() -> Any:
        with torch.compiler.set_stance("force_eager"):
            return path.call()

    return TimedPath(path.name, call)


def compare_compiled(pipeline: Any, size: int, batch: int, device: torch.device, plan: RoundPlan) -> dict[str, Any]:
    """One (size, batch): the first compiled call (compilation included), then eager and compiled
    `predict_raw` in rounds. `compile_seconds` = first call - median compiled call."""
    inputs = make_inputs(pipeline, batch, size, device)
    compiled = primedepth_path("compiled", pipeline, inputs, device)
    eager = forced_eager(primedepth_path("eager", pipeline, inputs, device))
    first, _ = timed(compiled.call, device)
    outcome = run_rounds([eager, compiled], plan)
    seconds = [r["seconds"]["compiled"] for r in outcome["rounds"] if "compiled" in r["seconds"]]
    compile_seconds = first.wall - statistics.median(seconds) if seconds else None
    return {"size": size, "batch": batch, "first_call": first.wall, "compile_seconds": compile_seconds, **outcome}
