"""`primedepth train`: train or fine-tune the refiner and heads on a frozen Stable Diffusion."""

from __future__ import annotations

import argparse

import yaml

from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune the refiner and heads (Stable Diffusion stays frozen)",
        description="Train PrimeDepth's refiner and heads as described by a YAML configuration "
        "(see configs/train_example.yaml). Multi-GPU and multi-node runs go through Accelerate: "
        "`accelerate launch -m primedepth.cli train --config CONFIG.yaml`.",
    )
    parser.add_argument("--config", required=True, help="training configuration (YAML)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config entry by its dotted key, e.g. --set max_steps=100 --set optimizer.lr=1e-4 "
        "(VALUE is read as YAML); may be repeated",
    )
    parser.add_argument("--resume", help="'latest' or a checkpoint folder (overrides the config's `resume`)")
    parser.set_defaults(handler=run)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> {dotted key: YAML-parsed value}."""
    overrides: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise InputError(f"--set {key}: cannot read {value!r}: {error}") from error
    return overrides


def run(args: argparse.Namespace) -> int:
    import logging

    from ..train.config import load_config
    from ..train.loop import train

    overrides = parse_overrides(args.overrides)
    if args.resume:
        overrides["resume"] = args.resume
    config = load_config(args.config, overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = train(config)
    print(f"trained {result.step} steps; model folder: {result.model_dir}")
    return 0
