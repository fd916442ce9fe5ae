"""Dataset readers: layouts, encodings, listing, split files, masks, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from .eval_archive_builders import DIODE_SHAPE, KITTI_FRAMES, kitti_split_lines, write_tar

from primedepth.errors import InputError
from primedepth.eval import DATASETS, EvalDataset, evaluate_prediction, get_spec, kb_crop
from primedepth.eval.datasets import prediction_name


def test_spec_table_protocol_constants():
    nyu, kitti, eth3d = DATASETS["nyu"], DATASETS["kitti"], DATASETS["eth3d"]
    assert (nyu.min_depth, nyu.max_depth, nyu.eval_crop, nyu.num_samples) == (1e-3, 10.0, "nyu_eigen", 654)
    assert (kitti.min_depth, kitti.max_depth, kitti.eval_crop, kitti.kb_crop) == (1e-5, 80.0, "kitti_eigen", True)
    assert kitti.num_samples == 652
    assert (eth3d.processing_res, eth3d.alignment_max_res, eth3d.max_depth) == (756, 1024, np.inf)
    assert DATASETS["diode"].processing_res == 640 and DATASETS["diode"].mask_from_file
    assert DATASETS["diode_indoor"].num_samples + DATASETS["diode_outdoor"].num_samples == 771
    assert DATASETS["scannet"].num_samples == 800 and DATASETS["scannet"].processing_res is None


@pytest.mark.parametrize(
    "name, count", [("nyu", 2), ("kitti", 2), ("eth3d", 2), ("scannet", 2), ("diode", 3),
                    ("diode_indoor", 2), ("diode_outdoor", 1)],
)
def test_listing_the_archive_and_decoding_the_truth_exactly(eval_data, name, count):
    root, truth = eval_data
    dataset = EvalDataset(name, root)
    assert len(dataset) == count
    table = truth[name.split("_")[0]]
    for sample in dataset.samples:
        gt = dataset.load_ground_truth(sample)
        expected = table[sample.rgb]
        if name.startswith("diode"):
            expected, mask = expected
            np.testing.assert_array_equal(gt.mask, mask)
            assert gt.depth.shape == DIODE_SHAPE
        else:
            assert gt.mask is None
        if name == "kitti":
            expected = kb_crop(expected)
        assert gt.depth.dtype == np.float32
        np.testing.assert_array_equal(gt.depth, expected.astype(np.float32))
        assert dataset.load_image(sample).shape == (*gt.depth.shape, 3)
    dataset.close()


def test_eth3d_inf_becomes_zero_and_is_invalid(eval_data):
    dataset = EvalDataset("eth3d", eval_data[0])
    gt = dataset.load_ground_truth(dataset.samples[0])
    assert np.all(gt.depth[0, :5] == 0) and np.isfinite(gt.depth).all()


def test_kitti_split_file_drops_frames_without_ground_truth(eval_data, tmp_path):
    split = tmp_path / "eigen_test_files_with_gt.txt"
    split.write_text("\n".join(kitti_split_lines()) + "\n")
    dataset = EvalDataset("kitti", eval_data[0], split_file=split)
    assert len(kitti_split_lines()) == 3 and len(dataset) == 2
    assert [s.extra for s in dataset.samples] == [None, None]  # the focal column is not a file
    listed = EvalDataset("kitti", eval_data[0]).samples
    assert [s.rgb for s in dataset.samples] == [s.rgb for s in sorted(listed, key=lambda s: s.rgb)]
    without_gt = [frame for _, frame, has_gt in KITTI_FRAMES if not has_gt]
    assert not any(frame in s.rgb for s in listed + dataset.samples for frame in without_gt)


def test_split_files_select_samples_and_subsets(eval_data, tmp_path):
    root = eval_data[0]
    nyu = tmp_path / "nyu.txt"
    nyu.write_text("test/office_0005/rgb_0009.png test/office_0005/depth_0009.png test/office_0005/filled_0009.png\n")
    assert [s.rgb for s in EvalDataset("nyu", root, split_file=nyu).samples] == ["test/office_0005/rgb_0009.png"]
    all_list = tmp_path / "diode_all.txt"
    lines = [f"{s.rgb} {s.depth} {s.extra}" for s in EvalDataset("diode", root).samples]
    all_list.write_text("\n".join(lines))
    assert len(EvalDataset("diode_indoor", root, split_file=all_list)) == 2
    assert len(EvalDataset("diode_outdoor", root, split_file=all_list)) == 1


def test_prediction_names_follow_the_protocol():
    from primedepth.eval.datasets import Sample

    nyu = Sample("test/kitchen_0004/rgb_0001.png", "test/kitchen_0004/depth_0001.png")
    kitti = Sample("2011_09_26/d_sync/image_02/data/0000000069.png", "x.png")
    assert prediction_name(DATASETS["nyu"], nyu) == "test/kitchen_0004/pred_0001.npy"
    assert prediction_name(DATASETS["kitti"], kitti) == "2011_09_26/d_sync/image_02/data/pred_0000000069.npy"


@pytest.mark.parametrize("name", ["nyu", "kitti", "eth3d", "scannet", "diode"])
def test_affine_truth_scores_perfectly_with_each_dataset_protocol(eval_data, name):
    dataset = EvalDataset(name, eval_data[0])
    spec = dataset.spec
    for sample in dataset.samples:
        gt = dataset.load_ground_truth(sample)
        with np.errstate(divide="ignore"):
            pred = np.where(gt.depth > 0, 2.0 / gt.depth + 0.5, 0.0)
        metrics, _ = evaluate_prediction(
            pred, gt.depth, valid_mask=gt.mask, min_depth=spec.min_depth, max_depth=spec.max_depth,
            space="disparity", crop=spec.eval_crop, alignment_max_res=spec.alignment_max_res,
        )
        assert metrics["abs_rel"] < 1e-6 and metrics["delta1"] == 1.0


def test_kitti_eigen_mask_is_applied_in_dataset_evaluation(eval_data):
    dataset = EvalDataset("kitti", eval_data[0])
    spec = dataset.spec
    gt = dataset.load_ground_truth(dataset.samples[0]).depth
    pred = np.where(gt > 0, 1.0 / np.where(gt > 0, gt, 1), 0.0)
    valid_rows = np.flatnonzero((gt > 0).any(axis=1))
    corrupted = pred.copy()
    corrupted[116] = 50.0  # last row above the Eigen mask (starts at 117)
    corrupted[321] = 50.0  # first row below it
    kwargs = dict(min_depth=spec.min_depth, max_depth=spec.max_depth, crop=spec.eval_crop)
    assert evaluate_prediction(corrupted, gt, **kwargs)[0]["delta1"] == 1.0
    corrupted[117] = 50.0
    assert 117 in valid_rows and evaluate_prediction(corrupted, gt, **kwargs)[0]["delta1"] < 1.0


def test_errors_are_clear(eval_data, tmp_path):
    with pytest.raises(InputError, match="unknown dataset 'nyuv3'"):
        get_spec("nyuv3")
    with pytest.raises(InputError, match="archive not found.*share.phys.ethz.ch"):
        EvalDataset("nyu", tmp_path)
    with pytest.raises(InputError, match="split file not found"):
        EvalDataset("nyu", eval_data[0], split_file=tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("test/nowhere/rgb_0001.png test/nowhere/depth_0001.png\n")
    dataset = EvalDataset("nyu", eval_data[0], split_file=bad)
    with pytest.raises(InputError, match="is not in archive"):
        dataset.load_image(dataset.samples[0])


def test_eth3d_raw_of_the_wrong_size_is_reported(tmp_path):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buffer, format="JPEG")
    write_tar(tmp_path / "eth3d.tar", {
        "rgb/s/images/dslr_images/DSC_1.JPG": buffer.getvalue(),
        "depth/s_dslr_depth/s/ground_truth_depth/dslr_images/DSC_1.JPG": np.zeros(5, "<f4").tobytes(),
    })
    dataset = EvalDataset("eth3d", tmp_path)  # flat folder: the tar's own name works too
    with pytest.raises(InputError, match="do not fill the 4x6 image"):
        dataset.load_ground_truth(dataset.samples[0])
