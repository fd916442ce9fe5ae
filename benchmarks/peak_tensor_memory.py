"""Peak memory of live tensors during one depth prediction, measured on any device.

GPU peak memory is weights plus the largest set of tensors alive at once. This script counts
the latter exactly, op by op (a `TorchDispatchMode` that follows every output storage until it is
freed), so it can be run on a CPU-only machine to see what a GPU would need. Not counted: the
CUDA allocator's caching/fragmentation, cuDNN workspaces and the CUDA context (a few hundred MB),
so a real GPU peak is somewhat higher. Weights are counted exactly: for PrimeDepth those
`primedepth predict` puts on a GPU (VAE, UNet, refiner, depth head; the text encoder and the
segmentation head stay in CPU memory), for the official-style path every model it loads.

    python benchmarks/peak_tensor_memory.py --sizes 512 768 --dtype bf16
"""

from __future__ import annotations

import argparse
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_inference import (  # noqa: E402
    DTYPES,
    _stages,
    build_primedepth,
    build_text_encoder,
    install_official_style_processors,
    make_inputs,
)

GIB = 2**30


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensor storages created inside the mode and still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def _release(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # Views and in-place results share an input's storage: no new memory (counting them would
        # charge a weight, seen through `t()` in a linear layer, as an activation for ever).
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for item in tree_leaves(out):
            if not isinstance(item, torch.Tensor):
                continue
            storage = item.untyped_storage()
            if storage.nbytes() == 0 or storage.data_ptr() in inputs:
                continue
            key = id(storage)
            if key in self._tracked:
                continue
            self._tracked.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key, storage.nbytes())
        return out


def parameter_bytes(*modules: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def measure(mode: str, size: int, dtype_name: str, batch: int = 1, scale: str = "full") -> dict:
    """Weights used and activation peak of one prediction of `batch` images."""
    dtype = DTYPES[dtype_name] if mode == "primedepth" else torch.float32
    device = torch.device("cpu")
    pipeline = build_primedepth(scale, dtype, device)
    inputs = make_inputs(pipeline, batch, size, device)
    tracker = LiveTensorBytes()
    if mode == "primedepth":  # the real call: depth only, preimage consumed step by step
        weights = parameter_bytes(pipeline.vae, pipeline.unet, pipeline.refiner, pipeline.depth_head)
        with tracker:
            pipeline.predict_raw(inputs["pixels"], inputs["context"], inputs["posterior_noise"],
                                 inputs["step_noise"], output_segmentation=False)
    else:  # official-style: materialised probabilities, whole preimage held, both heads, fp32,
        # the prompt encoded per image (the text tower stays loaded) and the UNet tail computed
        install_official_style_processors(pipeline.unet)
        text_encoder = build_text_encoder(scale, device)
        weights = parameter_bytes(pipeline.vae, pipeline.unet, pipeline.refiner, pipeline.depth_head,
                                  pipeline.segmentation_head, text_encoder)
        with tracker:
            _stages(pipeline, inputs, dtype, device, repeats=1, warmup=0, text_encoder=text_encoder)
    return {"mode": mode, "size": size, "dtype": dtype_name if mode == "primedepth" else "fp32",
            "batch": batch, "weights": weights, "activations": tracker.peak}


def measure_stages(size: int, dtype_name: str, scale: str = "full") -> dict[str, int]:
    """Live-tensor peak of each PrimeDepth stage alone, one image: the per-pixel costs behind
    `primedepth.devices.auto_batch_size`."""
    from primedepth.preimage import add_step_noise, encode_latents, iter_decoder_steps, timestep_embedding

    dtype = DTYPES[dtype_name]
    pipeline = build_primedepth(scale, dtype, torch.device("cpu"))
    inputs = make_inputs(pipeline, 1, size, torch.device("cpu"))
    peaks: dict[str, int] = {}
    with torch.no_grad():
        with LiveTensorBytes() as tracker:
            latents = encode_latents(pipeline.vae, inputs["pixels"].to(dtype), inputs["posterior_noise"])
        peaks["VAE encoder"] = tracker.peak
        noisy = add_step_noise(pipeline.scheduler, latents, inputs["step_noise"])
        temb, context = timestep_embedding(pipeline.unet, noisy), inputs["context"].to(dtype)
        with LiveTensorBytes() as tracker:
            features = pipeline.refiner(iter_decoder_steps(pipeline.unet, noisy, temb, context), temb, context)
        peaks["UNet walk + refiner"] = tracker.peak
        with LiveTensorBytes() as tracker:
            pipeline.depth_head(features)
        peaks["depth head"] = tracker.peak
    return peaks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--dtype", default="bf16", choices=sorted(DTYPES), help="PrimeDepth's dtype (official-style is fp32)")
    parser.add_argument("--modes", nargs="+", default=["primedepth", "official"], choices=["primedepth", "official"])
    parser.add_argument("--batch", type=int, default=1, help="images per prediction")
    parser.add_argument("--stages", action="store_true", help="instead: each PrimeDepth stage alone, one image")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--scale", default="full", choices=["full", "tiny"], help="tiny: the test model (smoke runs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stages:
        print("| size | dtype | stage | live-tensor peak GiB | bytes per pixel |")
        print("|---|---|---|---|---|")
        for size in args.sizes:
            for stage, peak in measure_stages(size, args.dtype, args.scale).items():
                print(f"| {size} | {args.dtype} | {stage} | {peak / GIB:.2f} | {peak / size**2:.0f} |", flush=True)
        return 0
    print("| mode | size | dtype | batch | weights GiB | live-tensor peak GiB | weights + peak GiB |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for mode in args.modes:
            r = measure(mode, size, args.dtype, args.batch, args.scale)
            print(f"| {r['mode']} | {r['size']} | {r['dtype']} | {r['batch']} | {r['weights'] / GIB:.2f} | "
                  f"{r['activations'] / GIB:.2f} | {(r['weights'] + r['activations']) / GIB:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
