"""Training data: formats decode to the known depth, augmentations keep rasters aligned, mixing ratios hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from .train_scenes import scene_depth, write_hypersim, write_unlabelled

from primedepth.errors import InputError
from primedepth.train.data import (
    SEGMENTATION_IGNORE_INDEX,
    HypersimDataset,
    PairedAugmentation,
    PseudoLabelFolderDataset,
    RatioMixer,
    VirtualKITTIDataset,
    collate_items,
    hypersim_distance_to_planar,
    kitti_benchmark_crop,
    read_split_list,
    sample_generator,
)

# uint16 PNGs store millimetres (Hypersim) or centimetres (vKITTI): the decoded depth may be off
# by half a unit.
MM = 0.5e-3
CM = 0.5e-2


def _expected_disparity(depth: np.ndarray, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    valid = (depth > low) & (depth < high)
    return np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0), valid


def test_hypersim_planar_png_decodes_to_disparity_and_mask(hypersim_scenes) -> None:
    dataset = HypersimDataset(hypersim_scenes.root, hypersim_scenes.split)
    assert len(dataset) == 3
    item = dataset[1]
    assert item["pixel_values"].shape == (3, 48, 64) and item["pixel_values"].dtype == torch.float32
    assert -1.0 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1.0
    assert item["valid_mask"].dtype == torch.bool and item["valid_mask"].shape == (1, 48, 64)
    disparity, valid = _expected_disparity(hypersim_scenes.depths[1], 1e-5, 65.0)
    assert np.array_equal(item["valid_mask"][0].numpy(), valid)
    assert not valid[0, 0] and not valid[0, 1]  # 0 m and 70 m are outside the range
    depth = 1.0 / item["disparity"][0].numpy()[valid]
    assert np.allclose(depth, hypersim_scenes.depths[1][valid], atol=MM)
    assert torch.all(item["disparity"][~item["valid_mask"]] == 0)


def test_hypersim_ray_distance_becomes_planar_depth(tmp_path: Path) -> None:
    scenes = write_hypersim(tmp_path / "hs", count=1, size=(24, 32), kind="distance", labels=False)
    dataset = HypersimDataset(scenes.root, scenes.split)  # "auto": no `depth_plane` in the name
    item = dataset[0]
    valid = item["valid_mask"][0].numpy()
    planar = scenes.depths[0]
    assert np.allclose(1.0 / item["disparity"][0].numpy()[valid], planar[valid], atol=2 * MM)
    # Reading the same file as planar would be wrong by the ray factor at the corners.
    as_planar = HypersimDataset(scenes.root, scenes.split, depth_type="planar")[0]
    assert not np.allclose(as_planar["disparity"][0].numpy()[valid], item["disparity"][0].numpy()[valid], rtol=1e-4)


def test_distance_to_planar_matches_pinhole_geometry() -> None:
    distance = np.full((768, 1024), 10.0)
    planar = hypersim_distance_to_planar(distance)
    # Corner pixel centre is at (511.5, 383.5) px from the principal point, f = 886.81 px.
    expected = 10.0 * 886.81 / np.sqrt(511.5**2 + 383.5**2 + 886.81**2)
    assert planar[0, 0] == pytest.approx(expected) and planar[-1, -1] == pytest.approx(expected)
    assert planar[384, 512] == pytest.approx(10.0 * 886.81 / np.hypot(0.5, np.hypot(0.5, 886.81)))


def test_hypersim_segmentation_labels_shift_and_ignore(hypersim_scenes) -> None:
    item = HypersimDataset(hypersim_scenes.root, hypersim_scenes.split)[0]
    labels = item["segmentation"]
    depth = hypersim_scenes.depths[0]
    assert labels.dtype == torch.long and labels.shape == (48, 64)
    assert torch.all(labels[torch.from_numpy(depth > 7.0)] == SEGMENTATION_IGNORE_INDEX)
    near = torch.from_numpy((depth < 2.0) & (depth > 0))
    assert torch.all(labels[near] == 1)  # stored 2 -> class 1
    without = HypersimDataset(hypersim_scenes.root, hypersim_scenes.split, segmentation=False)[0]
    assert "segmentation" not in without


def test_vkitti_decodes_centimetres_and_masks_sky(vkitti_scenes) -> None:
    dataset = VirtualKITTIDataset(vkitti_scenes.root, vkitti_scenes.split)
    assert len(dataset) == 2  # the "None" line is skipped
    item = dataset[0]
    disparity, valid = _expected_disparity(vkitti_scenes.depths[0], 1e-5, 80.0)
    assert np.array_equal(item["valid_mask"][0].numpy(), valid)
    assert not valid[:8].any()  # sky rows
    assert np.allclose(1.0 / item["disparity"][0].numpy()[valid], vkitti_scenes.depths[0][valid], atol=CM)


def test_kitti_benchmark_crop_is_bottom_centred() -> None:
    frame = torch.arange(375 * 1242).reshape(1, 375, 1242)
    crop = kitti_benchmark_crop(frame)
    assert crop.shape == (1, 352, 1216)
    assert crop[0, 0, 0] == frame[0, 375 - 352, 13] and crop[0, -1, -1] == frame[0, -1, 13 + 1215]


def test_split_list_errors_and_comments(tmp_path: Path) -> None:
    split = tmp_path / "s.txt"
    split.write_text("# header\n\na.png b.png  # trailing\nc.png None\nd.png e.png f.png\n")
    entries = read_split_list(split)
    found = [(e.rgb, e.depth, e.segmentation) for e in entries]
    assert found == [("a.png", "b.png", None), ("d.png", "e.png", "f.png")]
    split.write_text("only_one_column.png\n")
    with pytest.raises(InputError, match="expected 'RGB DEPTH"):
        read_split_list(split)
    with pytest.raises(InputError, match="not found"):
        read_split_list(tmp_path / "missing.txt")


class CountingTeacher:
    """Stands in for Depth Anything: disparity = 1 / scene depth, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image) -> np.ndarray:
        self.calls += 1
        return (1.0 / scene_depth(image.height, image.width, seed=0)).astype(np.float32)


def test_pseudo_label_folder_computes_then_reuses_cache(tmp_path: Path) -> None:
    paths = write_unlabelled(tmp_path / "ade", count=2)
    teacher = CountingTeacher()
    dataset = PseudoLabelFolderDataset(tmp_path / "ade", teacher=teacher)
    first = dataset[0]
    assert teacher.calls == 1
    assert PseudoLabelFolderDataset.cache_path(paths[0]).is_file()
    assert first["disparity"].shape == (1, 32, 40) and bool(first["valid_mask"].all())

    def refuse(image):
        raise AssertionError("the cached target should have been used")

    again = PseudoLabelFolderDataset(tmp_path / "ade", teacher=refuse)[0]
    assert torch.equal(again["disparity"], first["disparity"])
    assert torch.equal(again["pixel_values"], first["pixel_values"])


def test_pseudo_label_folder_reads_mirrored_segmentation(tmp_path: Path) -> None:
    paths = write_unlabelled(tmp_path / "ade", count=1)
    labels = np.zeros((32, 40), np.uint8)
    labels[:, 20:] = 150
    label_path = tmp_path / "annotations" / paths[0].relative_to(tmp_path / "ade").with_suffix(".png")
    label_path.parent.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(labels).save(label_path)
    item = PseudoLabelFolderDataset(
        tmp_path / "ade", teacher=CountingTeacher(), cache=False, segmentation_root=tmp_path / "annotations"
    )[0]
    assert torch.all(item["segmentation"][:, 20:] == 149)
    assert torch.all(item["segmentation"][:, :20] == SEGMENTATION_IGNORE_INDEX)
    assert not PseudoLabelFolderDataset.cache_path(paths[0]).exists()


def _ramp_item(height: int = 60, width: int = 90) -> dict[str, torch.Tensor]:
    """Image, disparity, mask and labels all derived from one ramp, so alignment is checkable."""
    rows, cols = torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32)
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    ramp = (x + 0.5 * y) / (width + 0.5 * height)  # in [0, 1)
    return {
        "pixel_values": (ramp * 2 - 1).expand(3, height, width).clone(),
        "disparity": ramp[None].clone(),
        "valid_mask": (ramp > 0.4)[None],
        "segmentation": (ramp * 10).long(),
    }


@pytest.mark.parametrize("index", range(6))
def test_augmentation_keeps_image_depth_mask_labels_aligned(index: int) -> None:
    augment = PairedAugmentation((32, 48), min_scale=0.3, flip_p=0.5)
    out = augment(_ramp_item(), sample_generator(7, index))
    assert out["pixel_values"].shape == (3, 32, 48) and out["disparity"].shape == (1, 32, 48)
    assert out["valid_mask"].dtype == torch.bool and out["segmentation"].dtype == torch.long
    image_ramp = (out["pixel_values"][0] + 1) / 2
    # Bilinear (image) and nearest (depth) samplings differ by at most ~one source pixel of ramp.
    assert torch.allclose(image_ramp, out["disparity"][0], atol=0.03)
    # Mask and labels are resampled exactly like the disparity.
    assert torch.equal(out["valid_mask"][0], out["disparity"][0] > 0.4)
    assert torch.equal(out["segmentation"], (out["disparity"][0] * 10).long())


def test_augmentation_flips_and_crops_with_every_seed() -> None:
    augment = PairedAugmentation((32, 48), min_scale=0.5, flip_p=0.5)
    flips = 0
    for index in range(40):
        out = augment(_ramp_item(), sample_generator(3, index))
        row = out["disparity"][0, 0]
        flips += int(row[0] > row[-1])  # the ramp rises left to right unless flipped
    assert 8 < flips < 32


def test_augmentation_rejects_sizes_not_multiple_of_8() -> None:
    with pytest.raises(InputError, match="multiples of 8"):
        PairedAugmentation((30, 48))


class _Sized(torch.utils.data.Dataset):
    def __init__(self, length: int, tag: int) -> None:
        self.length, self.tag = length, tag

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"tag": torch.tensor(self.tag), "index": torch.tensor(index)}


def test_mixer_respects_ratio_statistically() -> None:
    mixer = RatioMixer([_Sized(50, 0), _Sized(7, 1)], length=4000, seed=5)  # default 0.9 / 0.1
    sources = np.array([mixer.locate(i)[0] for i in range(len(mixer))])
    share = sources.mean()
    # Binomial std for p = 0.1, n = 4000 is 0.0047; allow four of them.
    assert abs(share - 0.1) < 0.019
    items = [mixer.locate(i)[1] for i in range(len(mixer)) if sources[i] == 1]
    assert set(items) == set(range(7))


def test_mixer_is_a_pure_function_of_seed_and_index(hypersim_scenes, vkitti_scenes) -> None:
    datasets = [
        HypersimDataset(hypersim_scenes.root, hypersim_scenes.split, segmentation=False),
        VirtualKITTIDataset(vkitti_scenes.root, vkitti_scenes.split),
    ]
    augment = PairedAugmentation((24, 32))
    mixer = RatioMixer(datasets, [0.5, 0.5], length=10, seed=1, augment=augment)
    again = RatioMixer(datasets, [0.5, 0.5], length=10, seed=1, augment=augment)
    for index in (0, 3, 9):
        a, b = mixer[index], again[index]
        assert all(torch.equal(a[key], b[key]) for key in a)
    batch = collate_items([mixer[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 24, 32) and batch["valid_mask"].dtype == torch.bool


def test_mixer_rejects_bad_ratios() -> None:
    with pytest.raises(InputError, match="ratios"):
        RatioMixer([_Sized(3, 0)], [0.5, 0.5])
    with pytest.raises(InputError, match="non-negative"):
        RatioMixer([_Sized(3, 0), _Sized(3, 1)], [-1.0, 2.0])


def test_collate_fills_missing_segmentation_with_ignore() -> None:
    item = _ramp_item(8, 16)
    bare = {key: value for key, value in item.items() if key != "segmentation"}
    batch = collate_items([item, bare])
    assert batch["segmentation"].shape == (2, 8, 16)
    assert torch.all(batch["segmentation"][1] == SEGMENTATION_IGNORE_INDEX)
    assert torch.equal(batch["segmentation"][0], item["segmentation"])


def test_depth_anything_teacher_runs_a_local_transformers_model(tmp_path: Path) -> None:
    """The real teacher class, on a tiny random Depth Anything saved locally (no download)."""
    from PIL import Image

    from primedepth.testing import save_tiny_depth_anything
    from primedepth.train.data import DepthAnythingTeacher

    save_tiny_depth_anything(tmp_path / "da")
    teacher = DepthAnythingTeacher(str(tmp_path / "da"))
    assert teacher._model is None  # nothing loads before the first call
    image = Image.fromarray((np.random.default_rng(0).random((30, 45, 3)) * 255).astype(np.uint8))
    disparity = teacher(image)
    assert disparity.shape == (30, 45) and disparity.dtype == np.float32 and np.isfinite(disparity).all()


def test_cache_pseudo_labels_fills_only_missing_targets(tmp_path: Path) -> None:
    from primedepth.train.data import cache_pseudo_labels

    paths = write_unlabelled(tmp_path / "ade", count=3)
    teacher = CountingTeacher()
    dataset = PseudoLabelFolderDataset(tmp_path / "ade", teacher=teacher)
    dataset[1]
    assert cache_pseudo_labels(dataset) == 2 and teacher.calls == 3
    assert all(PseudoLabelFolderDataset.cache_path(p).is_file() for p in paths)
    assert cache_pseudo_labels(dataset) == 0
