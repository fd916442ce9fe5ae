"""Peak memory of live tensors during one depth prediction, measured on any device.

GPU peak memory is weights plus the largest set of tensors alive at once. This counts the latter
exactly, op by op (a `TorchDispatchMode` that follows every output storage until it is freed), so
it can be run on a CPU-only machine to see what a GPU would need. Not counted: the CUDA
allocator's caching/fragmentation, cuDNN workspaces and the CUDA context (a few hundred MB), so a
real GPU peak is somewhat higher. Weights are counted exactly: for PrimeDepth those `primedepth
predict` puts on a GPU (VAE, UNet, refiner, depth head; the text encoder and the segmentation head
stay in CPU memory), for the official-style path every model it loads.
"""

from __future__ import annotations

import argparse
import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from primedepth.devices import DTYPE_CHOICES, parse_dtype
from primedepth.model import walk_preimage

from .builders import SCALES, build_primedepth, build_text_encoder, make_inputs
from .official_style import official_stages
from .stages import encode_call
from .timing import StageTimer

GIB = 2**30
CPU = torch.device("cpu")
MEASURED_MODES = ("primedepth", "official")


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages created inside the mode and still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        """Called when a tracked storage is freed."""
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """Run the op, then count each output storage that is new (not an input's) until freed."""
        out = func(*args, **(kwargs or {}))
        # Views and in-place results share an input's storage: no new memory (counting them would
        # charge a weight, seen through `t()` in a linear layer, as an activation for ever).
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for item in tree_leaves(out):
            if not isinstance(item, torch.Tensor):
                continue
            storage = item.untyped_storage()
            if storage.nbytes() == 0 or storage.data_ptr() in inputs or id(storage) in self._tracked:
                continue
            self._tracked.add(id(storage))
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, id(storage), storage.nbytes())
        return out


def parameter_bytes(*modules: torch.nn.Module) -> int:
    """Bytes of the modules' weights."""
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def measure(mode: str, size: int, dtype_name: str, batch: int = 1, scale: str = "full") -> dict[str, Any]:
    """Weights used and activation peak of one prediction of `batch` images."""
    dtype = parse_dtype(dtype_name) if mode == "primedepth" else torch.float32  # the official release is fp32
    pipeline = build_primedepth(scale, dtype, CPU)
    inputs = make_inputs(pipeline, batch, size, CPU)
    tracker = LiveTensorBytes()
    if mode == "primedepth":  # the real call: depth only, preimage consumed step by step
        weights = parameter_bytes(pipeline.vae, pipeline.unet, pipeline.refiner, pipeline.depth_head)
        with tracker:
            pipeline.predict_raw(inputs.pixels, inputs.context, inputs.noise.posterior, inputs.noise.step,
                                 output_segmentation=False)
    else:  # official-style: the text tower stays loaded, and every stage runs (see `official_style`)
        text_encoder = build_text_encoder(scale, CPU)
        weights = parameter_bytes(pipeline.vae, pipeline.unet, pipeline.refiner, pipeline.depth_head,
                                  pipeline.segmentation_head, text_encoder)
        with tracker:
            official_stages(pipeline, inputs, text_encoder, StageTimer(CPU, repeats=1, warmup=0))
    return {"mode": mode, "size": size, "dtype": dtype_name if mode == "primedepth" else "fp32",
            "batch": batch, "weights": weights, "activations": tracker.peak}


@torch.no_grad()
def measure_stages(size: int, dtype_name: str, scale: str = "full") -> dict[str, int]:
    """Live-tensor peak of each PrimeDepth stage alone, one image: the per-pixel costs behind
    `primedepth.devices.auto_batch_size`."""
    dtype = parse_dtype(dtype_name)
    pipeline = build_primedepth(scale, dtype, CPU)
    inputs = make_inputs(pipeline, 1, size, CPU)
    peaks: dict[str, int] = {}
    with LiveTensorBytes() as tracker:
        latents = encode_call(pipeline, inputs, dtype)()
    peaks["VAE encoder"] = tracker.peak
    with LiveTensorBytes() as tracker:  # the walk's steps consumed one by one, as `forward` does
        preimage = walk_preimage(pipeline.unet, pipeline.scheduler, latents, inputs.context.to(dtype), inputs.noise.step)
        features = pipeline.refiner(preimage.steps, preimage.temb, preimage.context)
    peaks["UNet walk + refiner"] = tracker.peak
    with LiveTensorBytes() as tracker:
        pipeline.depth_head(features)
    peaks["depth head"] = tracker.peak
    return peaks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options of `peak_tensor_memory.py`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtype", default="bf16", choices=DTYPE_CHOICES, help="PrimeDepth's dtype (official-style is fp32)")
    parser.add_argument("--modes", nargs="+", default=list(MEASURED_MODES), choices=MEASURED_MODES)
    parser.add_argument("--batch", type=int, default=1, help="images per prediction")
    parser.add_argument("--stages", action="store_true", help="instead: each PrimeDepth stage alone, one image")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scale", default="full", choices=SCALES, help="tiny: the test model (smoke runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `benchmarks/peak_tensor_memory.py`: prints a markdown table as it goes."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stages:
        print("| size | dtype | stage | live-tensor peak GiB | bytes per pixel |\n|---|---|---|---|---|")
        for size in args.sizes:
            for stage, peak in measure_stages(size, args.dtype, args.scale).items():
                print(f"| {size} | {args.dtype} | {stage} | {peak / GIB:.2f} | {peak / size**2:.0f} |", flush=True)
        return 0
    print("| mode | size | dtype | batch | weights GiB | live-tensor peak GiB | weights + peak GiB |\n|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for mode in args.modes:
            r = measure(mode, size, args.dtype, args.batch, args.scale)
            print(f"| {r['mode']} | {r['size']} | {r['dtype']} | {r['batch']} | {r['weights'] / GIB:.2f} | "
                  f"{r['activations'] / GIB:.2f} | {(r['weights'] + r['activations']) / GIB:.2f} |", flush=True)
    return 0
