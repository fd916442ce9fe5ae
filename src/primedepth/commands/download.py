"""`primedepth download`: fetch and convert the weights ahead of time."""

from __future__ import annotations

import argparse

from ..constants import OFFICIAL_REPO_ID


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download and convert model weights into the cache",
        description="Download a PrimeDepth model from the Hugging Face hub (default: the official "
        "weights) and convert it once into the local cache ($PRIMEDEPTH_CACHE or $HF_HOME/primedepth), "
        "so that later runs work offline.",
    )
    parser.add_argument("repo_id", nargs="?", default=OFFICIAL_REPO_ID, help=f"hub repository (default {OFFICIAL_REPO_ID})")
    parser.add_argument("--revision", help="branch, tag or commit of the repository")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import PrimeDepthPipeline  # lazy: start-up speed (torch, diffusers)
    from ..weights import hub_source

    hub_source(args.repo_id, args.revision, advise_download=False)  # fails without advising this command
    print(PrimeDepthPipeline.local_model_folder(args.repo_id, revision=args.revision))
    return 0
