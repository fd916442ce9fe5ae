"""Where model weights come from: a model folder, an official .ckpt, or a hub repository.

Official checkpoints (local or on the hub) are converted once into a model folder kept in the
cache (`$PRIMEDEPTH_CACHE`, default `$HF_HOME/primedepth`), so later loads are plain
`from_pretrained` calls on local files and need no network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .constants import OFFICIAL_REPO_ID
from .errors import InputError, WeightsNotFoundError

__all__ = ["cache_root", "resolve_model_folder", "converted_checkpoint_folder", "hub_model_folder"]

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
MODEL_INDEX = "model_index.json"


def cache_root() -> Path:
    """Folder holding converted models."""
    if os.environ.get("PRIMEDEPTH_CACHE"):
        return Path(os.environ["PRIMEDEPTH_CACHE"])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "primedepth"


def converted_checkpoint_folder(checkpoint: Path, config: str | os.PathLike | None = None, text_encoder: bool = True) -> Path:
    """The model folder converted from a local official checkpoint (converted on first use)."""
    from .convert import convert_checkpoint

    stat = checkpoint.stat()
    identity = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config}|{text_encoder}"
    target = cache_root() / "converted" / f"{checkpoint.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    if not (target / MODEL_INDEX).is_file():
        print(f"primedepth: converting {checkpoint} once into {target}")
        convert_checkpoint(checkpoint, target, config=config, overwrite=True, text_encoder=text_encoder)
    return target


def _offline_message(repo_id: str, reason: str) -> str:
    return (
        f"could not get the PrimeDepth weights '{repo_id}' from the Hugging Face hub ({reason}). "
        "Looked for a converted copy in " + str(cache_root() / "hub") + ". To fix: connect to the "
        "internet and unset HF_HUB_OFFLINE, or run `primedepth download` where you are online and copy "
        "the cache, or pass a local model folder or official .ckpt (--model PATH)."
    )


def hub_model_folder(repo_id: str = OFFICIAL_REPO_ID, revision: str | None = None) -> Path:
    """A hub repository as a local model folder: diffusers-format repos are downloaded as they are,
    repositories holding an official .ckpt are downloaded and converted once."""
    target = cache_root() / "hub" / (repo_id.replace("/", "--") + (f"@{revision}" if revision else ""))
    if (target / MODEL_INDEX).is_file():
        return target
    try:
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download

        files = HfApi().list_repo_files(repo_id, revision=revision)
        if MODEL_INDEX in files:
            return Path(snapshot_download(repo_id, revision=revision))
        checkpoints = sorted(f for f in files if f.endswith(CHECKPOINT_SUFFIXES))
        if not checkpoints:
            raise WeightsNotFoundError(f"the hub repository '{repo_id}' holds neither a model folder nor a checkpoint")
        checkpoint = hf_hub_download(repo_id, checkpoints[0], revision=revision)
    except WeightsNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - offline, DNS, HTTP, auth: all mean "not available"
        raise WeightsNotFoundError(_offline_message(repo_id, f"{type(error).__name__}: {error}".splitlines()[0])) from error
    from .convert import convert_checkpoint

    print(f"primedepth: converting {repo_id} once into {target}")
    return convert_checkpoint(checkpoint, target, overwrite=True)


def resolve_model_folder(source: str | os.PathLike | None = None, config: str | os.PathLike | None = None, text_encoder: bool = True) -> Path:
    """A local model folder for `source`: a model folder, an official checkpoint file, or a hub id."""
    source = OFFICIAL_REPO_ID if source is None else source
    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_INDEX).is_file():
            raise InputError(f"{path} is not a PrimeDepth model folder (no {MODEL_INDEX})")
        return path
    if path.is_file():
        return converted_checkpoint_folder(path, config, text_encoder)
    text = str(source)
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") != 1
    if text.endswith(CHECKPOINT_SUFFIXES) or looks_like_path:
        raise InputError(f"model not found: {text} is neither a folder, a checkpoint file nor a hub repository id")
    return hub_model_folder(text)
