"""`primedepth info [MODEL]`: what a model folder holds, or the licences of the models we run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..constants import MODEL_LICENCES
from ..errors import InputError

LICENCE_FILE = "LICENSE-MODEL.md"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="show the components, parameters, dtype, size and licence of a model folder",
        description="Print each component of a PrimeDepth model folder with its class, parameter "
        "count, dtype and size on disk, and the licence the weights are under. Without MODEL, "
        "list the licences of every model the package can download or run.",
    )
    parser.add_argument("model", nargs="?", help="model folder (as written by `primedepth convert`)")
    parser.set_defaults(handler=run)


def _component_rows(folder: Path) -> list[tuple[str, str, int, str, int]]:
    """(name, class, parameters, dtypes, bytes on disk) per component, read from safetensors headers."""
    from safetensors import safe_open

    index = json.loads((folder / "model_index.json").read_text())
    rows = []
    for name, spec in sorted(index.items()):
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        files = sorted((folder / name).glob("*.safetensors")) if (folder / name).is_dir() else []
        parameters, dtypes = 0, set()
        for file in files:
            with safe_open(str(file), "pt") as handle:
                for key in handle.keys():
                    tensor = handle.get_slice(key)
                    parameters += _numel(tensor.get_shape())
                    dtypes.add(str(tensor.get_dtype()))
        size = sum(f.stat().st_size for f in (folder / name).rglob("*") if f.is_file()) if (folder / name).is_dir() else 0
        rows.append((name, spec[1], parameters, ",".join(sorted(dtypes)) or "-", size))
    return rows


def _numel(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _print_licences() -> None:
    width = max(len(model) for model in MODEL_LICENCES)
    print(f"{'model':<{width}}  licence")
    for model, licence in MODEL_LICENCES.items():
        print(f"{model:<{width}}  {licence}")


def run(args: argparse.Namespace) -> int:
    if args.model is None:
        _print_licences()
        return 0
    folder = Path(args.model)
    if not (folder / "model_index.json").is_file():
        raise InputError(f"{folder} is not a model folder (no model_index.json)")
    rows = _component_rows(folder)
    print(f"{'component':<18} {'class':<24} {'parameters':>14} {'dtype':<10} {'size':>10}")
    for name, cls, parameters, dtypes, size in rows:
        print(f"{name:<18} {cls:<24} {parameters:>14,} {dtypes:<10} {size / 2**20:>8.1f} MB")
    total = sum(r[2] for r in rows), sum(r[4] for r in rows)
    print(f"{'total':<18} {'':<24} {total[0]:>14,} {'':<10} {total[1] / 2**20:>8.1f} MB")
    licence = folder / LICENCE_FILE
    print(f"licence: {licence.read_text().splitlines()[0].lstrip('# ') if licence.is_file() else 'not stated in the folder'}")
    return 0
