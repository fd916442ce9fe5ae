"""Zero-shot benchmark datasets, read directly from the standard evaluation tar archives.

Getting the data: the preprocessed archives of the Marigold evaluation protocol are served at
https://share.phys.ethz.ch/~pf/bingkedata/marigold/evaluation_dataset/ ; download them all with

    wget -r -np -nH --cut-dirs=4 -R "index.html*" \
        https://share.phys.ethz.ch/~pf/bingkedata/marigold/evaluation_dataset/

and pass the download folder as `--data-dir`: it holds `nyuv2/nyu_labeled_extracted.tar`,
`kitti/kitti_eigen_split_test.tar`, `eth3d/eth3d.tar`, `scannet/scannet_val_sampled_800_1.tar`
and `diode/diode_val.tar` (a folder holding the tar files flat, or one tar file, work too).
The sample lists are the files named in `DatasetSpec.split_file`, from the `data_split/`
folder of https://github.com/prs-eth/Marigold ; pass one with `--split-file`. Without it the
archive itself is listed with the same rules (e.g. KITTI frames without ground truth are
dropped), which gives the same sample set for the official archives.

Every protocol number (ranges, crops, resolutions) lives in the `DATASETS` table.
"""

from __future__ import annotations

import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from ..errors import InputError
from ..io.images import read_png_uint16
from .crops import Crop, kb_crop

DepthFormat = Literal["png_mm", "png_kitti", "eth3d_raw", "npy"]
Layout = Literal["nyu", "kitti", "eth3d", "scannet", "diode"]

# Ground-truth encodings: uint16 PNG in millimetres, KITTI uint16 PNG in 1/256 m.
PNG_MM_PER_METRE = 1000.0
PNG_KITTI_UNITS_PER_METRE = 256.0
# ETH3D depth: headerless little-endian float32 at the RGB resolution; inf = no measurement.
ETH3D_DEPTH_DTYPE = np.dtype("<f4")
ETH3D_SHAPE = (4032, 6048)
# Protocol seed of the Marigold evaluation scripts.
PROTOCOL_SEED = 1234

DOWNLOAD_URL = "https://share.phys.ethz.ch/~pf/bingkedata/marigold/evaluation_dataset/"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the protocol fixes for one benchmark dataset."""

    name: str
    title: str  # name in printed tables
    archive: str  # path of the tar file inside the download folder
    split_file: str  # official sample list, relative to Marigold's data_split/
    num_samples: int  # samples in the official split after filtering
    layout: Layout  # folder and file naming inside the archive
    depth_format: DepthFormat
    min_depth: float  # valid ground truth: min_depth < d < max_depth; also the clip range
    max_depth: float
    eval_crop: Crop | None = None  # pixels scored (see crops.py)
    kb_crop: bool = False  # KITTI benchmark crop of image and ground truth before inference
    mask_from_file: bool = False  # the archive ships the valid mask (third column)
    processing_res: int | None = None  # longer side at inference; None = native resolution
    alignment_max_res: int | None = None  # longer side of the least-squares fit
    pred_name: Literal["id", "rgb_id"] = "id"  # pred_<stem>.npy, or pred_<number>.npy (NYU)
    subset: str | None = None  # keep only samples under this top folder (DIODE splits)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="nyu", title="NYUv2", archive="nyuv2/nyu_labeled_extracted.tar",
            split_file="nyu_depth/labeled/filename_list_test.txt", num_samples=654, layout="nyu",
            depth_format="png_mm", min_depth=1e-3, max_depth=10.0, eval_crop="nyu_eigen",
            pred_name="rgb_id", subset="test",
        ),
        DatasetSpec(
            name="kitti", title="KITTI", archive="kitti/kitti_eigen_split_test.tar",
            split_file="kitti_depth/eigen_test_files_with_gt.txt", num_samples=652, layout="kitti",
            depth_format="png_kitti", min_depth=1e-5, max_depth=80.0, eval_crop="kitti_eigen",
            kb_crop=True,
        ),
        DatasetSpec(
            name="eth3d", title="ETH3D", archive="eth3d/eth3d.tar",
            split_file="eth3d_depth/eth3d_filename_list.txt", num_samples=454, layout="eth3d",
            depth_format="eth3d_raw", min_depth=1e-5, max_depth=float("inf"),
            processing_res=756, alignment_max_res=1024,
        ),
        DatasetSpec(
            name="scannet", title="ScanNet", archive="scannet/scannet_val_sampled_800_1.tar",
            split_file="scannet_depth/scannet_val_sampled_list_800_1.txt", num_samples=800, layout="scannet",
            depth_format="png_mm", min_depth=1e-3, max_depth=10.0,
        ),
        DatasetSpec(
            name="diode", title="DIODE", archive="diode/diode_val.tar",
            split_file="diode_depth/diode_val_all_filename_list.txt", num_samples=771, layout="diode",
            depth_format="npy", min_depth=0.6, max_depth=350.0, mask_from_file=True,
            processing_res=640,
        ),
        DatasetSpec(
            name="diode_indoor", title="DIODE-in", archive="diode/diode_val.tar",
            split_file="diode_depth/diode_val_indoor_filename_list.txt", num_samples=325, layout="diode",
            depth_format="npy", min_depth=0.6, max_depth=350.0, mask_from_file=True,
            processing_res=640, subset="indoors",
        ),
        DatasetSpec(
            name="diode_outdoor", title="DIODE-out", archive="diode/diode_val.tar",
            split_file="diode_depth/diode_val_outdoor_filename_list.txt", num_samples=446, layout="diode",
            depth_format="npy", min_depth=0.6, max_depth=350.0, mask_from_file=True,
            processing_res=640, subset="outdoor",
        ),
    )
}
# What `--datasets all` runs: the five datasets of the published tables.
BENCHMARK_DATASETS = ("nyu", "kitti", "eth3d", "scannet", "diode")


def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset by name, with the list of known names when it is unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        raise InputError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}") from None


@dataclass(frozen=True)
class Sample:
    """One benchmark sample: archive member paths of image, ground truth and extra raster."""

    rgb: str
    depth: str
    extra: str | None = None  # NYU filled depth (unused by the protocol) or the DIODE mask

    @property
    def sample_id(self) -> str:
        """A stable id: the image path inside the archive."""
        return self.rgb


@dataclass
class GroundTruth:
    """Metric depth in metres at the evaluated resolution, and the shipped mask if any."""

    depth: np.ndarray
    mask: np.ndarray | None


# ------------------------------------------------------------------------------- archives


def resolve_archive(spec: DatasetSpec, data_dir: str | Path) -> Path:
    """Find the dataset's tar: `data_dir` itself, `data_dir/<archive>` or `data_dir/<name>.tar`."""
    data_dir = Path(data_dir)
    candidates = [data_dir / spec.archive, data_dir / Path(spec.archive).name]
    if data_dir.is_file():
        candidates.insert(0, data_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(
        f"{spec.title} archive not found: looked for {', '.join(str(c) for c in candidates)}. "
        f"Download the evaluation archives from {DOWNLOAD_URL} (see primedepth.eval.datasets)."
    )


class TarArchive:
    """Random access to the members of an uncompressed tar, accepting './'-prefixed names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._tar = tarfile.open(path, "r:*")
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError) as error:
            raise InputError(f"cannot read tar archive {path}: {error}") from None
        self._members = {_clean(m.name): m for m in members if m.isfile()}

    def names(self) -> list[str]:
        """Sorted member file names, without a leading './'."""
        return sorted(self._members)

    def __contains__(self, name: str) -> bool:
        return _clean(name) in self._members

    def read(self, name: str) -> bytes:
        """Bytes of one member, with a clear error when it is missing."""
        member = self._members.get(_clean(name))
        if member is None:
            raise InputError(f"{name!r} is not in archive {self.path}")
        handle = self._tar.extractfile(member)
        assert handle is not None  # regular files always have a payload
        return handle.read()

    def close(self) -> None:
        self._tar.close()


def _clean(name: str) -> str:
    """Member name without a leading './' (the official archives use it)."""
    while name.startswith("./"):
        name = name[2:]
    return name


# ------------------------------------------------------------------------------- listing


def read_split_file(spec: DatasetSpec, split_file: str | Path) -> list[Sample]:
    """Samples of an official split list (KITTI lines without ground truth are dropped)."""
    path = Path(split_file)
    if not path.is_file():
        raise InputError(f"split file not found: {path}")
    samples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise InputError(f"{path}:{number}: expected '<image> <depth> ...', got {line!r}")
        if fields[1] == "None":  # KITTI: 45 of the 697 Eigen test frames have no ground truth
            continue
        # The third column is the NYU filled depth or the DIODE mask; KITTI's is the focal.
        extra = fields[2] if len(fields) > 2 and spec.layout != "kitti" else None
        samples.append(Sample(fields[0], fields[1], extra))
    return _in_subset(spec, samples)


def list_archive(spec: DatasetSpec, archive: TarArchive) -> list[Sample]:
    """Samples found by scanning the archive with the dataset's layout rules."""
    names = archive.names()
    pair = _LAYOUTS[spec.layout]
    samples = []
    for name in names:
        sample = pair(name)
        if sample is None or sample.depth not in archive:
            continue  # not an image, or (KITTI) a frame without ground truth
        if spec.mask_from_file and (sample.extra is None or sample.extra not in archive):
            continue
        samples.append(sample)
    return _in_subset(spec, samples)


def _in_subset(spec: DatasetSpec, samples: list[Sample]) -> list[Sample]:
    """Keep the samples of the spec's top folder (NYU test/, DIODE indoors/ or outdoor/)."""
    if spec.subset is None:
        return samples
    return [s for s in samples if s.rgb.split("/", 1)[0] == spec.subset]


def _nyu_pair(name: str) -> Sample | None:
    match = re.fullmatch(r"(.*/)rgb_(\d+)\.png", name)
    if match is None:
        return None
    folder, number = match.groups()
    return Sample(name, f"{folder}depth_{number}.png", f"{folder}filled_{number}.png")


def _kitti_pair(name: str) -> Sample | None:
    match = re.fullmatch(r"[^/]+/([^/]+_sync)/image_02/data/([^/]+\.png)", name)
    if match is None:
        return None
    drive, frame = match.groups()
    return Sample(name, f"{drive}/proj_depth/groundtruth/image_02/{frame}")


def _eth3d_pair(name: str) -> Sample | None:
    match = re.fullmatch(r"rgb/([^/]+)/images/dslr_images/([^/]+\.JPG)", name)
    if match is None:
        return None
    scene, frame = match.groups()
    return Sample(name, f"depth/{scene}_dslr_depth/{scene}/ground_truth_depth/dslr_images/{frame}")


def _scannet_pair(name: str) -> Sample | None:
    match = re.fullmatch(r"([^/]+)/color/(\d+)\.jpg", name)
    if match is None:
        return None
    scene, frame = match.groups()
    return Sample(name, f"{scene}/depth/{frame}.png")


def _diode_pair(name: str) -> Sample | None:
    match = re.fullmatch(r"((?:indoors|outdoor)/.+)\.png", name)
    if match is None:
        return None
    stem = match.group(1)
    return Sample(name, f"{stem}_depth.npy", f"{stem}_depth_mask.npy")


_LAYOUTS = {
    "nyu": _nyu_pair,
    "kitti": _kitti_pair,
    "eth3d": _eth3d_pair,
    "scannet": _scannet_pair,
    "diode": _diode_pair,
}


# ------------------------------------------------------------------------------- dataset


class EvalDataset:
    """A benchmark dataset: its spec, its sample list and decoders for its archive."""

    def __init__(
        self, spec: DatasetSpec | str, data_dir: str | Path, split_file: str | Path | None = None
    ) -> None:
        self.spec = get_spec(spec) if isinstance(spec, str) else spec
        self.archive_path = resolve_archive(self.spec, data_dir)
        self.archive = TarArchive(self.archive_path)
        if split_file is not None:
            self.samples = read_split_file(self.spec, split_file)
        else:
            self.samples = list_archive(self.spec, self.archive)
        if not self.samples:
            raise InputError(f"no {self.spec.title} samples found in {self.archive_path}")

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, sample: Sample) -> np.ndarray:
        """RGB image as (H, W, 3) uint8, KB-cropped for KITTI: what the model sees."""
        with Image.open(io.BytesIO(self.archive.read(sample.rgb))) as image:
            rgb = np.asarray(image.convert("RGB"))
        return kb_crop(rgb) if self.spec.kb_crop else rgb

    def load_ground_truth(self, sample: Sample) -> GroundTruth:
        """Metric depth (float32, metres, invalid = 0) and, for DIODE, the shipped mask."""
        depth = self._decode_depth(sample)
        mask = None
        if self.spec.mask_from_file:
            if sample.extra is None:
                raise InputError(f"{self.spec.title} sample {sample.rgb} lists no mask file")
            mask = _load_npy(self.archive.read(sample.extra)).astype(bool)
            if mask.shape != depth.shape:
                raise InputError(f"mask {sample.extra} is {mask.shape}, depth is {depth.shape}")
        if self.spec.kb_crop:
            depth = kb_crop(depth)
        return GroundTruth(depth=depth, mask=mask)

    def _decode_depth(self, sample: Sample) -> np.ndarray:
        """Decode the ground-truth member according to the dataset's encoding."""
        data = self.archive.read(sample.depth)
        fmt = self.spec.depth_format
        if fmt == "png_mm":
            raw = read_png_uint16(data, sample.depth)
            return raw.astype(np.float32) / np.float32(PNG_MM_PER_METRE)
        if fmt == "png_kitti":
            raw = read_png_uint16(data, sample.depth)
            return raw.astype(np.float32) / np.float32(PNG_KITTI_UNITS_PER_METRE)
        if fmt == "npy":
            return _load_npy(data).astype(np.float32)
        return self._decode_eth3d(data, sample)

    def _decode_eth3d(self, data: bytes, sample: Sample) -> np.ndarray:
        """ETH3D raw float32 depth; its shape is that of the RGB image (4032 x 6048)."""
        with Image.open(io.BytesIO(self.archive.read(sample.rgb))) as image:
            width, height = image.size
        depth = np.frombuffer(data, dtype=ETH3D_DEPTH_DTYPE).astype(np.float32)
        if depth.size != height * width:
            raise InputError(
                f"{sample.depth}: {depth.size} floats do not fill the {height}x{width} image "
                f"(ETH3D frames are {ETH3D_SHAPE[0]}x{ETH3D_SHAPE[1]})"
            )
        depth[np.isinf(depth)] = 0.0
        return depth.reshape(height, width)

    def close(self) -> None:
        self.archive.close()


def _load_npy(data: bytes) -> np.ndarray:
    """A .npy member, squeezed to (H, W)."""
    return np.load(io.BytesIO(data), allow_pickle=False).squeeze()


def prediction_name(spec: DatasetSpec, sample: Sample) -> str:
    """Relative cache path of a sample's prediction, as the protocol names it.

    `test/kitchen_0004/rgb_0001.png` -> `test/kitchen_0004/pred_0001.npy` (NYU) and
    `scene/color/000300.jpg` -> `scene/color/pred_000300.npy` (the others).
    """
    folder, _, basename = sample.rgb.rpartition("/")
    stem = basename.rsplit(".", 1)[0]
    if spec.pred_name == "rgb_id":
        stem = stem.split("_", 1)[1] if "_" in stem else stem
    name = f"pred_{stem}.npy"
    return f"{folder}/{name}" if folder else name
