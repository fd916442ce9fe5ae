"""The split lists of the Marigold protocol: where they come from, their checksums, fetching them.

The lists (one sample per line: image, ground truth, and a focal length or mask) are part of
Marigold's repository (https://github.com/prs-eth/Marigold, folder `data_split/`, Apache-2.0),
pinned here to one commit, with the SHA-256 and line count of each file at that commit. They are
not bundled: `fetch_split_lists` (the CLI's `primedepth download --splits DIR`) downloads them and
checks every byte against the checksum. `primedepth eval` does not need them for the official
archives (listing the archive gives the same samples); `--split-file` takes one, and
`official_split` says whether a file is the official list.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, PrimeDepthError
from ..io.atomic import atomic_path

# Marigold "Merge pull request #139 (Marigold-v1-1)", 2025-05-15: the protocol's reference code.
MARIGOLD_COMMIT = "b1dffaaa3f7a2fe406b3bb9dd3c358b30da66060"
SPLITS_BASE_URL = f"https://raw.githubusercontent.com/prs-eth/Marigold/{MARIGOLD_COMMIT}/data_split/"
FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SplitList:
    """One list: its path under `data_split/`, SHA-256, size in bytes and number of lines."""

    path: str
    sha256: str
    size: int
    lines: int


# Evaluation lists (`DatasetSpec.split_file`), then the training lists of Hypersim and vKITTI.
SPLIT_LISTS: dict[str, SplitList] = {
    entry.path: entry
    for entry in (
        SplitList("nyu_depth/labeled/filename_list_test.txt",
                  "d9a47a1568b7d70a737a4bc75a49e66827b8e354219e9eee332676dbaee34a69", 66803, 654),
        SplitList("kitti_depth/eigen_test_files_with_gt.txt",
                  "8d0499af9ab4c0d1cd7944d572b0e0e4412feab1e73f4003038426fde699b53a", 101394, 697),
        SplitList("eth3d_depth/eth3d_filename_list.txt",
                  "39cf9f48bd524e51b1feda6092f84ed03b78eeaaf507c4068ab8130987e42971", 55893, 454),
        SplitList("scannet_depth/scannet_val_sampled_list_800_1.txt",
                  "066c76d6d8f93d6d7bed812e9c3bb0c375f08e7ff76569e13ce9c000dd74ead5", 47999, 800),
        SplitList("diode_depth/diode_val_all_filename_list.txt",
                  "657e430e9e75530c91a9fa4f355234a71a5a0f1060381f0966feabc3643178ce", 158825, 771),
        SplitList("diode_depth/diode_val_indoor_filename_list.txt",
                  "32333dac76c1be101b6d9ee22c177ec5ff966dd4fbf51556a0d915e47bbb667d", 66949, 325),
        SplitList("diode_depth/diode_val_outdoor_filename_list.txt",
                  "fb97c9c6937c0b3205341992e476212094a73b7fabe3bae7a7b2cb708045a000", 91875, 446),
        SplitList("hypersim_depth/filename_list_train_filtered.txt",
                  "fc3996c785a84a2eaeff121b6bac02b2366dc3ec352da50d659b8858e101f833", 3987489, 53885),
        SplitList("hypersim_depth/filename_list_val_filtered.txt",
                  "9e9b827ec50a964c6a4e60c533f091297804c9578fc1fab065504c0540103079", 545379, 7370),
        SplitList("hypersim_depth/filename_list_val_filtered_small_80.txt",
                  "324d03825f49547c348eeff5aba1a6d5e5ea781cde4d31772f30a334ed86f6dc", 5919, 80),
        SplitList("vkitti_depth/vkitti_train.txt",
                  "f96b6916dccbb700dcaf68369b52a2cf9d3953de3612f901be88a380add59eef", 2343883, 20148),
        SplitList("vkitti_depth/vkitti_val.txt",
                  "047a817c5f5b8241d4c3948a4ddc47ba2aef3793f22d27d3fefffb5001b2a5cc", 624011, 5364),
    )
}
EVAL_SPLITS = tuple(path for path in SPLIT_LISTS if not path.startswith(("hypersim", "vkitti")))
TRAIN_SPLITS = tuple(path for path in SPLIT_LISTS if path.startswith(("hypersim", "vkitti")))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def official_split(path: str | Path) -> str | None:
    """The `data_split/` path of the official list whose bytes `path` holds, else None."""
    digest = sha256_of(Path(path).read_bytes())
    return next((entry.path for entry in SPLIT_LISTS.values() if entry.sha256 == digest), None)


def _download(url: str, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - a fixed https URL
            return response.read()
    except OSError as error:  # URLError, HTTPError, timeouts
        raise PrimeDepthError(f"cannot download {url}: {error}") from None


def fetch_split_lists(
    target: str | Path,
    paths: tuple[str, ...] = EVAL_SPLITS,
    base_url: str = SPLITS_BASE_URL,
    timeout_s: float = FETCH_TIMEOUT_S,
) -> list[Path]:
    """Download the lists into `target` (Marigold's `data_split/` layout), each checked against
    its SHA-256 before it is written (atomically); files already there and correct are kept."""
    written = []
    for path in paths:
        entry = SPLIT_LISTS.get(path)
        if entry is None:
            raise InputError(f"unknown split list {path!r}; known: {', '.join(SPLIT_LISTS)}")
        destination = Path(target) / path
        if destination.is_file() and sha256_of(destination.read_bytes()) == entry.sha256:
            written.append(destination)
            continue
        data = _download(base_url + path, timeout_s)
        if sha256_of(data) != entry.sha256:
            raise PrimeDepthError(
                f"{base_url + path}: checksum mismatch (got sha256 {sha256_of(data)}, expected {entry.sha256}); "
                "nothing was written"
            )
        destination.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(destination) as temporary:
            temporary.write_bytes(data)
        written.append(destination)
    return written
