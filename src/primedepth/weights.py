"""Where model weights come from: a model folder, an official checkpoint, or a hub repository.

`resolve_source` turns what a user names into a local model folder, or into an official
checkpoint plus the cache folder its conversion goes to (`$PRIMEDEPTH_CACHE`, default
`$HF_HOME/primedepth`). Converted once, later loads are plain `from_pretrained` calls on local
files and need no network. Downloads go through huggingface_hub and its cache.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

from .constants import OFFICIAL_REPO_ID
from .errors import InputError, WeightsNotFoundError, weights_unavailable

__all__ = ["WeightsSource", "cache_root", "resolve_source", "converted_checkpoint_folder", "hub_source"]

CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
MODEL_INDEX = "model_index.json"


@dataclass(frozen=True)
class WeightsSource:
    """A model folder to load, and the official checkpoint to convert into it first, if any."""

    folder: Path
    checkpoint: Path | None = None

    @property
    def needs_conversion(self) -> bool:
        return self.checkpoint is not None and not (self.folder / MODEL_INDEX).is_file()


def cache_root() -> Path:
    """Folder holding converted models."""
    if os.environ.get("PRIMEDEPTH_CACHE"):
        return Path(os.environ["PRIMEDEPTH_CACHE"])
    return Path(constants.HF_HOME) / "primedepth"


def converted_checkpoint_folder(checkpoint: Path, config: str | os.PathLike | None = None, text_encoder: bool = True) -> Path:
    """Where the conversion of a local checkpoint is cached: keyed by the file's path, size and
    time and the conversion options, so a changed file is converted again."""
    stat = checkpoint.stat()
    identity = f"{checkpoint.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{config}|{text_encoder}"
    return cache_root() / "converted" / f"{checkpoint.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _hub_cache_folder(repo_id: str, revision: str | None) -> Path:
    return cache_root() / "hub" / (repo_id.replace("/", "--") + (f"@{revision}" if revision else ""))


def _offline_error(repo_id: str, error: BaseException | str, advise_download: bool = True) -> WeightsNotFoundError:
    return weights_unavailable(
        "PrimeDepth weights", repo_id, error,
        download=f"primedepth download {repo_id}" if advise_download else "",
        looked_in=f"{cache_root() / 'hub'} (converted) and the Hugging Face cache {constants.HF_HUB_CACHE}",
        alternatives="pass a local model folder or official .ckpt (--model PATH)",
    )


def _first_checkpoint(names: list[str]) -> str | None:
    """The checkpoint to convert among a repository's files: .ckpt first, then .pt, .pth, .safetensors."""
    candidates = [n for n in names if n.endswith(CHECKPOINT_SUFFIXES)]
    rank = {suffix: i for i, suffix in enumerate(CHECKPOINT_SUFFIXES)}
    return min(candidates, key=lambda n: (rank[next(s for s in CHECKPOINT_SUFFIXES if n.endswith(s))], n), default=None)


def _cached_source(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None, converted: Path) -> WeightsSource:
    """A repository from the Hugging Face cache only (offline)."""
    snapshot = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True))
    if (snapshot / MODEL_INDEX).is_file():
        return WeightsSource(snapshot)
    checkpoint = _first_checkpoint([p.name for p in snapshot.iterdir()])
    if checkpoint is None:
        raise InputError(f"the cached hub repository '{repo_id}' holds neither a model folder nor a checkpoint")
    return WeightsSource(converted, snapshot / checkpoint)


def _downloaded_source(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None, converted: Path) -> WeightsSource:
    """A repository's model folder, or only its official checkpoint (not every file)."""
    files = HfApi().list_repo_files(repo_id, revision=revision)
    if MODEL_INDEX in files:
        return WeightsSource(Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir)))
    checkpoint = _first_checkpoint(files)
    if checkpoint is None:
        raise InputError(f"the hub repository '{repo_id}' holds neither a model folder nor a checkpoint")
    return WeightsSource(converted, Path(hf_hub_download(repo_id, checkpoint, revision=revision, cache_dir=cache_dir)))


# Seconds to wait for a TCP connection to the hub before calling it unreachable: without this
# probe, huggingface_hub's retries made an unreachable hub fail after 25-50 s.
HUB_PROBE_TIMEOUT = 3.0


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub's endpoint opens (always True behind a proxy, which
    this probe cannot see through)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_source(
    repo_id: str = OFFICIAL_REPO_ID,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    advise_download: bool = True,
) -> WeightsSource:
    """A hub repository as a local source: a diffusers-format repository is downloaded as it is,
    one holding an official checkpoint is downloaded to be converted (once) into the cache.
    Offline (`local_files_only` or HF_HUB_OFFLINE) only the Hugging Face cache is read."""
    converted = _hub_cache_folder(repo_id, revision)
    if (converted / MODEL_INDEX).is_file():
        return WeightsSource(converted)
    offline = local_files_only or constants.HF_HUB_OFFLINE
    try:
        if offline:
            return _cached_source(repo_id, revision, cache_dir, converted)
        if not hub_reachable():
            try:  # what an earlier download left in the cache still serves
                return _cached_source(repo_id, revision, cache_dir, converted)
            except Exception:  # noqa: BLE001 - nothing cached: report the network
                raise OSError(f"cannot reach {constants.ENDPOINT} (no network connection?)") from None
        return _downloaded_source(repo_id, revision, cache_dir, converted)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - offline, DNS, HTTP, auth: all mean "not available"
        raise _offline_error(repo_id, error, advise_download) from error


def resolve_source(
    source: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    text_encoder: bool = True,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> WeightsSource:
    """The source named by `source`: a model folder, an official checkpoint file, or a hub id."""
    source = OFFICIAL_REPO_ID if source is None else source
    path = Path(source)
    if path.is_dir():
        if not (path / MODEL_INDEX).is_file():
            raise InputError(f"{path} is not a PrimeDepth model folder (no {MODEL_INDEX})")
        return WeightsSource(path)
    if path.is_file():
        return WeightsSource(converted_checkpoint_folder(path, config, text_encoder), path)
    text = str(source)
    # "owner/name" is a hub id unless its first part is a local folder (then a missing sub-folder).
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") != 1 or path.parent.is_dir()
    if text.endswith(CHECKPOINT_SUFFIXES) or looks_like_path:
        raise InputError(f"model not found: {text} is neither a folder, a checkpoint file nor a hub repository id")
    return hub_source(text, revision, cache_dir, local_files_only)
