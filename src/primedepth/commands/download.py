"""`primedepth download`: fetch and convert the weights ahead of time."""

from __future__ import annotations

import argparse

from ..constants import BLIP2_MODEL_ID, OFFICIAL_REPO_ID
from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download and convert model weights (and the BLIP-2 captioner) into the cache",
        description="Download a PrimeDepth model from the Hugging Face hub (default: the official "
        "weights) and convert it once into the local cache ($PRIMEDEPTH_CACHE or $HF_HOME/primedepth), "
        "so that later runs work offline. The default prompt ('auto') also needs the BLIP-2 "
        f"captioner ({BLIP2_MODEL_ID}, about 15 GB): add --captioner to fetch it too; without it, "
        "offline runs need --prompt \"\" or --prompt TEXT.",
    )
    parser.add_argument("repo_id", nargs="?", default=OFFICIAL_REPO_ID, help=f"hub repository (default {OFFICIAL_REPO_ID})")
    parser.add_argument("--revision", help="branch, tag or commit of the repository")
    parser.add_argument("--captioner", action="store_true",
                        help=f"also fetch the BLIP-2 captioner ({BLIP2_MODEL_ID}) that --prompt auto uses")
    parser.add_argument("--captioner-only", action="store_true",
                        help="fetch only the BLIP-2 captioner (e.g. for a local model folder)")
    parser.add_argument("--splits", metavar="DIR",
                        help="instead of weights, fetch the evaluation split lists of the Marigold protocol into DIR "
                        "(its data_split/ layout; each file checked against its SHA-256; see docs/data.md)")
    parser.add_argument("--train-splits", action="store_true",
                        help="with --splits: also the Hypersim and Virtual KITTI training lists (7.5 MB)")
    parser.set_defaults(handler=run)


def _fetch_splits(args: argparse.Namespace) -> int:
    from ..eval.splits import EVAL_SPLITS, TRAIN_SPLITS, fetch_split_lists

    for path in fetch_split_lists(args.splits, EVAL_SPLITS + (TRAIN_SPLITS if args.train_splits else ())):
        print(path)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.train_splits and not args.splits:
        raise InputError("--train-splits goes with --splits DIR")
    if args.splits and (args.captioner or args.captioner_only):
        raise InputError("--splits fetches split lists only: run the captioner download as a separate command")
    if args.splits:
        return _fetch_splits(args)
    from huggingface_hub.utils import enable_progress_bars

    enable_progress_bars()  # multi-GB downloads show their progress (the CLI quiets library bars)
    if not args.captioner_only:
        from ..pipeline import PrimeDepthPipeline  # lazy: start-up speed (torch, diffusers)
        from ..weights import hub_source

        hub_source(args.repo_id, args.revision, advise_download=False)  # fails without advising this command
        print(PrimeDepthPipeline.local_model_folder(args.repo_id, revision=args.revision))
    if args.captioner or args.captioner_only:
        from ..text.captioning import download_captioner  # lazy: start-up speed

        print(download_captioner())
    return 0
