"""`primedepth eval`: the zero-shot benchmark protocol (Marigold protocol) for any model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import OFFICIAL_REPO_ID
from ..devices import DTYPE_CHOICES, parse_device, parse_dtype
from ..errors import InputError

DESCRIPTION = """\
Evaluate a model on the zero-shot depth benchmarks (NYUv2, KITTI, ETH3D, ScanNet, DIODE),
read directly from the standard evaluation tar archives. Where to get each archive, its
terms and split list, and where to put it: docs/data.md in the source repository (the split
lists: `primedepth download --splits DIR`). Each model is aligned per image by least
squares in its own output space (disparity for PrimeDepth and Depth Anything, depth for
Marigold). Predictions are cached under --output-dir, so an interrupted run resumes and
metrics can be recomputed without the model.

--model is one of: a PrimeDepth model folder or hub id (default: the official weights),
marigold-v1-0 (50 steps x 10 members), marigold-v1-1 (checkpoint defaults),
depth-anything-large (V1) and depth-anything-v2-small/base/large, ensemble (PrimeDepth +
Depth Anything V1 Large, the paper's GT-free average), or
your own adapter as 'package.module:attr' or 'file.py:attr' (an object with name,
output_space and __call__(uint8 HxWx3 image) -> HxW float32 map, or a factory of one).

--prompt conditions PrimeDepth: the official model's default is "auto" (a BLIP-2 caption
per image, as in the paper; the captioner is fetched by `primedepth download --captioner`);
--prompt "" needs no captioner. An explicit prompt is part of the results' folder name.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval` sub-command."""
    from ..eval.datasets import BENCHMARK_DATASETS, DATASETS, PROTOCOL_SEED

    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on the zero-shot depth benchmarks",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", choices=sorted(DATASETS), help="one dataset to evaluate")
    which.add_argument(
        "--datasets",
        help=f"comma-separated datasets, or 'all' for {', '.join(BENCHMARK_DATASETS)}",
    )
    parser.add_argument("--data-dir", required=True, help="folder holding the evaluation archives")
    parser.add_argument("--model", default=OFFICIAL_REPO_ID, help="model to evaluate (see above)")
    parser.add_argument(
        "--primedepth-model", default=OFFICIAL_REPO_ID, help="PrimeDepth weights used by 'ensemble'"
    )
    parser.add_argument(
        "--prompt",
        help='text prompt of PrimeDepth models: "auto" (BLIP-2 captions), "" (none, no captioner) or TEXT; '
        "default: the model's own (\"auto\" for the official weights)",
    )
    parser.add_argument("--output-dir", default="eval_output", help="cache and results folder")
    parser.add_argument("--max-images", type=int, help="evaluate only the first N images")
    parser.add_argument("--device", default="auto", help="torch device: auto (cuda, else mps, else cpu), cpu, cuda[:N], mps")
    parser.add_argument(
        "--dtype", default="fp32", choices=DTYPE_CHOICES, help="model precision; the protocol uses fp32",
    )
    parser.add_argument("--seed", type=int, default=PROTOCOL_SEED, help="seed of stochastic models")
    parser.add_argument("--split-file", help="official sample list (default: list the archive)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run)


def _dataset_names(args: argparse.Namespace) -> list[str]:
    """Datasets selected by --dataset or --datasets, validated."""
    from ..eval.datasets import BENCHMARK_DATASETS, get_spec

    if args.dataset:
        return [args.dataset]
    if args.datasets.strip() == "all":
        return list(BENCHMARK_DATASETS)
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    if not names:
        raise InputError("--datasets is empty")
    for name in names:
        get_spec(name)
    return names


def _needs_captions(args: argparse.Namespace) -> bool:
    """Whether the run captions images with BLIP-2: "auto" given, or the official weights
    (whose default prompt is "auto") without a prompt."""
    from ..eval.baselines import uses_official_primedepth

    return args.prompt == "auto" or (args.prompt is None and uses_official_primedepth(args.model, args.primedepth_model))


def run(args: argparse.Namespace) -> int:
    """Handler: build the adapter, run the datasets, print the table."""
    from ..adapters import safe_name  # lazy: start-up speed (torch, diffusers, transformers)
    from ..eval.baselines import CaptionerChecked, build_adapter
    from ..eval.runner import format_table, run_benchmark

    if args.max_images is not None and args.max_images < 1:
        raise InputError("--max-images must be at least 1")
    names = _dataset_names(args)
    adapter = build_adapter(
        args.model,
        device=parse_device(args.device),
        dtype=parse_dtype(args.dtype),
        seed=args.seed,
        primedepth_model=args.primedepth_model,
        prompt=args.prompt,
    )
    if _needs_captions(args):  # decided before the model loads, and only if something is predicted
        adapter = CaptionerChecked(adapter)
    results = run_benchmark(
        adapter,
        names,
        args.data_dir,
        args.output_dir,
        max_images=args.max_images,
        split_file=args.split_file,
        progress=not args.no_progress,
    )
    print(format_table(results))
    folder = Path(args.output_dir) / safe_name(adapter.name)
    print(f"all metrics: {folder / 'summary.json'}, {folder / 'summary.csv'}")
    return 0
