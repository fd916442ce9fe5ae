"""`primedepth convert`: official checkpoint -> model folder."""

from __future__ import annotations

import argparse

from ..devices import DTYPE_CHOICES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert an official PrimeDepth checkpoint into a model folder",
        description="Convert an official PrimeDepth checkpoint (.ckpt with 'state_dict') into a "
        "diffusers-style model folder (one sub-folder per component, safetensors + config.json). "
        "The checkpoint is read without executing any pickled code.",
    )
    parser.add_argument("checkpoint", help="official checkpoint file (.ckpt, .pt or .safetensors)")
    parser.add_argument("output_dir", help="model folder to write")
    parser.add_argument(
        "--config", help="official-format yaml config (default: the released inference configuration)"
    )
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="fp32", help="dtype of the written weights (default fp32)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT_DIR if it exists")
    parser.add_argument(
        "--no-text-encoder",
        action="store_true",
        help="do not write text_encoder/ and tokenizer/ (they come from the checkpoint's OpenCLIP "
        "weights, else the public laion ViT-H/14, and need the hub for the vocabulary); the model "
        "then needs prompt embeddings",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..loading import convert_checkpoint  # lazy: start-up speed (torch, diffusers)

    path = convert_checkpoint(
        args.checkpoint,
        args.output_dir,
        config=args.config,
        dtype=args.dtype,
        overwrite=args.overwrite,
        text_encoder=not args.no_text_encoder,
    )
    print(f"wrote {path}")
    return 0
