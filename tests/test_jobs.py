"""`primedepth predict` end to end on a tiny random model, and the job engine behind it."""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys

import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from primedepth import cli, io
from primedepth.errors import InputError, PrimeDepthError
from primedepth.jobs import JOB_RECORD, JobOptions, collect_items, predict, run_job

from .extras import require_extra

RNG = np.random.default_rng(0)
SIZE = (32, 48)  # height, width of most test images


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from primedepth.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def run_cli(capsys, *args: str | Path) -> tuple[int, str]:
    """Run the command line in-process; return the exit code and what went to stderr."""
    code = cli.main(["predict", *map(str, args)])
    return code, capsys.readouterr().err


def _rgb(height: int = SIZE[0], width: int = SIZE[1]) -> np.ndarray:
    return RNG.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _exif_rotated_jpeg(path: Path) -> Path:
    """Stored 48 wide x 32 high, EXIF orientation 6: upright it is 32 wide x 48 high."""
    image = Image.fromarray(_rgb())
    exif = image.getexif()
    exif[io.ORIENTATION_TAG] = 6
    return _save(path, image, exif=exif)


def _video(path: Path, frames: int = 5) -> Path:
    with io.DepthVideoWriter(path, Fraction(8)) as writer:
        for _ in range(frames):
            writer.write(RNG.random(SIZE, dtype=np.float32))
    return path


@pytest.fixture()
def photos(tmp_path) -> Path:
    """One of each input format, some in a sub-folder."""
    root = tmp_path / "photos"
    _save(root / "plain.jpg", Image.fromarray(_rgb()))
    _save(root / "rgba.png", Image.fromarray(RNG.integers(0, 256, (*SIZE, 4), dtype=np.uint8)))
    _save(root / "gray16.png", Image.fromarray(RNG.integers(0, 65536, SIZE, dtype=np.uint16)))
    _save(root / "palette.png", Image.fromarray(_rgb()).convert("P"))
    _save(root / "sub" / "pic.webp", Image.fromarray(_rgb()))
    _save(root / "sub" / "pic_tif.tif", Image.fromarray(_rgb()).convert("L"))
    _save(root / "sub" / "deep" / "pic.bmp", Image.fromarray(_rgb()))
    _exif_rotated_jpeg(root / "sub" / "rotated.jpg")
    return root


EXPECTED_NAMES = [
    "gray16", "palette", "plain", "rgba", "sub/deep/pic", "sub/pic", "sub/pic_tif", "sub/rotated"
]


def _outputs(directory: Path) -> list[str]:
    """Output files of a job, without its record (primedepth_job.json)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and p.name != JOB_RECORD)


# --------------------------------------------------------------------------------------------
# End to end on the tiny model


def test_folder_of_every_format_with_every_output(capsys, tiny_model, photos, tmp_path):
    out = tmp_path / "out"
    code, err = run_cli(capsys, photos, "-r", "-o", out, "--model", tiny_model, "--seed", "0",
                        "--batch-size", "3", "--outputs", "png16,npy,color", "--segmentation")
    assert code == 0, err
    assert "done 8, skipped 0 (outputs existed), failed 0" in err
    suffixes = ["_depth.npy", "_depth.png", "_depth_color.png", "_seg.png"]
    assert _outputs(out) == sorted(f"{name}{suffix}" for name in EXPECTED_NAMES for suffix in suffixes)
    for name in EXPECTED_NAMES:
        raw = np.load(out / f"{name}_depth.npy")
        expected = (48, 32) if name == "sub/rotated" else SIZE  # EXIF orientation applied
        assert raw.dtype == np.float32 and raw.shape == expected and np.isfinite(raw).all()
        step = (raw.max() - raw.min()) / 65535
        np.testing.assert_allclose(io.read_depth_png16(out / f"{name}_depth.png"), raw, atol=step + 1e-6)
        with Image.open(out / f"{name}_depth_color.png") as colour:
            assert colour.mode == "RGB" and colour.size == expected[::-1]
        with Image.open(out / f"{name}_seg.png") as labels:
            assert np.asarray(labels).max() < 5  # the tiny model has 5 classes


def test_single_files_globs_and_list_files_name_outputs(capsys, tiny_model, photos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("photos/sub/pic.webp\n# a comment\n\nphotos/rgba.png\n")
    out = tmp_path / "out"
    code, err = run_cli(capsys, photos / "plain.jpg", str(photos / "sub" / "*.jpg"), listing,
                        "-o", out, "--model", tiny_model, "--outputs", "png16")
    assert code == 0, err
    assert _outputs(out) == [
        "photos/rgba_depth.png", "photos/sub/pic_depth.png", "plain_depth.png", "rotated_depth.png"
    ]


def test_resume_skips_finished_work_and_never_overwrites(capsys, tiny_model, photos, tmp_path):
    out = tmp_path / "out"
    args = (photos, "-o", out, "--model", tiny_model, "--outputs", "npy,color")
    assert run_cli(capsys, *args)[0] == 0
    (out / "plain_depth.npy").write_bytes(b"my own file")
    (out / "rgba_depth_color.png").unlink()
    code, err = run_cli(capsys, *args)
    assert code == 0 and "done 1, skipped 3" in err and "--overwrite" in err
    assert (out / "plain_depth.npy").read_bytes() == b"my own file"  # refused to overwrite
    assert (out / "rgba_depth_color.png").exists()  # the missing output was made again
    # Nothing left to do: the model is not even loaded (this path does not exist).
    code, err = run_cli(capsys, photos, "-o", out, "--model", tmp_path / "nowhere", "--outputs", "npy,color")
    assert code == 0 and "skipped 4" in err
    code, err = run_cli(capsys, *args, "--overwrite")
    assert code == 0 and "done 4, skipped 0" in err
    assert np.load(out / "plain_depth.npy").shape == SIZE


def test_bad_files_are_reported_and_the_rest_go_on(capsys, tiny_model, photos, tmp_path):
    (photos / "broken.jpg").write_bytes((photos / "plain.jpg").read_bytes()[:200])
    (photos / "empty.png").write_bytes(b"")
    (photos / "text.png").write_text("not a picture")
    out = tmp_path / "out"
    code, err = run_cli(capsys, photos, "-o", out, "--model", tiny_model, "--outputs", "png16")
    assert code == 1
    assert "done 4, skipped 0 (outputs existed), failed 3" in err
    assert f"failed: {photos / 'broken.jpg'}: corrupt or truncated image" in err
    assert f"failed: {photos / 'empty.png'}: file is empty" in err
    assert f"failed: {photos / 'text.png'}: not an image file" in err
    assert "Traceback" not in err
    assert _outputs(out) == ["gray16_depth.png", "palette_depth.png", "plain_depth.png", "rgba_depth.png"]
    code, err = run_cli(capsys, photos, "-o", tmp_path / "fast", "--model", tiny_model, "--fail-fast")
    assert code == 1 and "failed 1" in err and "--fail-fast" in err


def test_video_gives_frames_and_a_depth_video(capsys, tiny_model, tmp_path):
    clip = _video(tmp_path / "in" / "clip.mp4", frames=5)
    out = tmp_path / "out"
    args = (clip, "-o", out, "--model", tiny_model, "--outputs", "png16,video", "--batch-size", "2")
    code, err = run_cli(capsys, *args)
    assert code == 0, err
    assert _outputs(out) == ["clip_depth.mp4"] + [f"clip_frames/{i:06d}_depth.png" for i in range(5)]
    info = io.probe_video(out / "clip_depth.mp4")
    assert info.frames == 5 and info.fps == 8
    assert io.read_depth_png16(out / "clip_frames/000003_depth.png").shape == SIZE
    code, err = run_cli(capsys, *args)
    assert code == 0 and "skipped 1" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--colormap", "nope"], "unknown colormap 'nope'"),
        (["--dtype", "fp16", "--device", "cpu"], "fp16 is for GPUs"),
        (["--offload", "--device", "cpu"], "offloading moves models between CPU memory and a CUDA GPU"),
        (["--model", "/no/such/model"], "model not found"),
    ],
)
def test_bad_options_fail_cleanly(capsys, photos, tmp_path, extra, message):
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "out", *extra)
    assert code != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or _outputs(tmp_path / "out") == []


def test_bad_batch_size_is_a_usage_error(capsys, photos):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, photos / "plain.jpg", "--batch-size", "many")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--batch-size: 'many' is neither 'auto' nor a whole number" in err
    assert "Traceback" not in err


def test_out_of_range_numbers_are_checked_once_by_the_api(capsys, photos, tmp_path):
    """The CLI parses numbers; their range is the job's to check, with the same message as the API."""
    for flag, value, message in (("--batch-size", "0", "batch size must be 'auto' or a whole number >= 1, got 0"),
                                 ("--max-size", "32", "max size must be at least 64 pixels")):
        code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "out", flag, value)
        assert code == 2 and message in err and "Traceback" not in err
        with pytest.raises(InputError, match=message.split(",")[0]):
            predict(photos / "plain.jpg", **{flag.strip("-").replace("-", "_"): int(value)})


@pytest.mark.parametrize("offload, placement", [(True, "enable_model_cpu_offload"), (False, "move_depth_path_to")])
def test_gpu_placement(tiny_model, monkeypatch, offload, placement):
    """On a GPU: `--offload` hands every model to diffusers' CPU offload; otherwise the depth path
    goes to the GPU and the text encoder and segmentation head are streamed from CPU memory."""
    from primedepth.pipeline import PrimeDepthPipeline

    loading = importlib.import_module("primedepth.loading")
    calls = []
    monkeypatch.setattr(loading, "parse_device", lambda name: torch.device("cuda:0"))
    for name in ("enable_model_cpu_offload", "move_depth_path_to"):
        monkeypatch.setattr(PrimeDepthPipeline, name, lambda self, device=None, name=name: calls.append((name, device)))
    monkeypatch.setattr(PrimeDepthPipeline, "to", lambda self, *args, **kwargs: calls.append(("to", args)))
    loading.load_pipeline(tiny_model, device="cuda:0", offload=offload)
    assert calls == [(placement, torch.device("cuda:0"))]


def test_python_api_on_in_memory_images_is_reproducible_per_image(tiny_model):
    from primedepth.loading import load_pipeline

    pipeline = load_pipeline(tiny_model, device="cpu")
    images = [_rgb(), Image.fromarray(_rgb(40, 24)), _rgb()]
    one_by_one = predict(images, model=pipeline, seed=3, batch_size=1, segmentation=True)
    batched = predict(images, model=pipeline, seed=3, batch_size=3)
    assert [p.name for p in one_by_one] == ["image_0000", "image_0001", "image_0002"]
    assert one_by_one[1].depth.shape == (40, 24) and one_by_one[1].segmentation.shape == (40, 24)
    assert one_by_one[1].segmentation.dtype == np.int16  # labels: the argmax at the processing size
    for single, batch in zip(one_by_one, batched):
        # Batched kernels round differently and random weights amplify it (up to 0.5% of the
        # range seen); noise not drawn per image would change the result by its whole range.
        np.testing.assert_allclose(single.depth, batch.depth, atol=1e-2 * np.abs(single.depth).max())


# --------------------------------------------------------------------------------------------
# The job engine with a stand-in pipeline (no model): batching, failures, interruption


class FakePipeline:
    """Depth = mean colour; refuses all-black images, as a model could fail on one input."""

    segmentation_head = "present"

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.prompts: list[str | None] = []

    def __call__(self, images, generator=None, max_size=1024, output_segmentation=False, prompt=None):
        self.prompts.append(prompt)
        arrays = [np.asarray(image, dtype=np.float32) for image in images]
        if any(array.max() == 0 for array in arrays):
            raise InputError("all-black image")
        self.batches.append(len(arrays))
        depth = [array.mean(axis=-1) for array in arrays]
        segmentation = [np.stack([d, -d]) for d in depth] if output_segmentation else None
        return type("Output", (), {"depth": depth, "segmentation": segmentation, "prompts": None})


def test_batches_keep_order_and_isolate_a_failing_image(tmp_path):
    images = [_rgb() for _ in range(5)]
    images[3] = np.zeros_like(images[3])
    fake = FakePipeline()
    options = JobOptions(output_dir=tmp_path, outputs=("npy",), batch_size=2)
    summary = run_job(collect_items(images), lambda: fake, options)
    assert (summary.done, summary.failed) == (4, 1)
    assert summary.failures == [("image_0003", "all-black image")]
    assert fake.batches == [2, 1, 1]  # [0, 1], then [2, 3] failed and was retried singly
    assert [r.name for r in summary.results if r.status == "done"] == [
        "image_0000", "image_0001", "image_0002", "image_0004"
    ]
    np.testing.assert_allclose(np.load(tmp_path / "image_0004_depth.npy"), images[4].mean(-1))


class OutOfMemoryAboveTwo(FakePipeline):
    """A GPU that runs out of memory for batches of more than two images."""

    def __call__(self, images, **kwargs):
        if len(images) > 2:
            self.batches.append(-len(images))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().__call__(images, **kwargs)


def test_out_of_memory_halves_the_batch_for_the_rest_of_the_job(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    clip = _video(tmp_path / "clip.mp4", frames=5)
    images = [_rgb() for _ in range(6)]
    fake = OutOfMemoryAboveTwo()
    options = JobOptions(output_dir=tmp_path / "out", outputs=("npy",), batch_size=5)
    summary = run_job(collect_items([*images, clip]), lambda: fake, options)
    assert (summary.done, summary.failed, summary.images) == (7, 0, 11)
    # images: 5 fail, then 2, 2, 1; the 6th image alone; the video's frames in twos, then 1
    assert fake.batches == [-5, 2, 2, 1, 1, 2, 2, 1]
    for index, image in enumerate(images):
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"image_{index:04d}_depth.npy"), image.mean(-1))


def test_auto_batch_size_is_one_on_the_cpu(tmp_path):
    fake = FakePipeline()
    summary = run_job(collect_items([_rgb() for _ in range(3)]), lambda: fake, JobOptions(outputs=("npy",)))
    assert summary.done == 3 and fake.batches == [1, 1, 1]
    with pytest.raises(InputError, match="'auto' or a whole number"):
        JobOptions(batch_size=0)


def test_api_raises_on_the_first_bad_input_unless_told_to_skip(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG" + struct.pack(">I", 7))
    with pytest.raises(InputError, match="bad.png"):
        predict([bad, _rgb()], model=FakePipeline())
    results = predict([bad, _rgb()], model=FakePipeline(), errors="skip")
    assert [r.status for r in results] == ["failed", "done"]


def test_interrupted_video_leaves_no_partial_file(tmp_path, monkeypatch):
    clip = _video(tmp_path / "clip.mp4", frames=4)
    calls = []

    class Interrupting(FakePipeline):
        def __call__(self, images, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().__call__(images, **kwargs)

    out = tmp_path / "out"
    options = JobOptions(output_dir=out, outputs=("video",), batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run_job(collect_items([clip]), Interrupting, options)
    assert _outputs(out) == []


@pytest.mark.parametrize(
    "flags, prompt", [([], None), (["--prompt", "a kitchen"], "a kitchen"), (["--caption"], "auto")]
)
def test_prompt_options_reach_the_pipeline(capsys, monkeypatch, tmp_path, flags, prompt):
    fake = FakePipeline()
    monkeypatch.setattr(importlib.import_module("primedepth.loading"), "load_pipeline", lambda *args, **kwargs: fake)
    image = _save(tmp_path / "a.png", Image.fromarray(_rgb()))
    code, err = run_cli(capsys, image, "-o", tmp_path / "out", *flags)
    assert code == 0, err
    assert fake.prompts == [prompt]


def test_segmentation_without_a_segmentation_head_is_refused_once(tmp_path):
    fake = FakePipeline()
    fake.segmentation_head = None
    options = JobOptions(output_dir=tmp_path, segmentation=True)
    with pytest.raises(PrimeDepthError, match="no segmentation head"):
        run_job(collect_items([_rgb(), _rgb()]), lambda: fake, options)


def test_default_seed_makes_a_resumed_job_match_and_outputs_record_what_made_them(capsys, tiny_model, photos, tmp_path):
    """Adding --outputs npy to a finished folder writes the same prediction as the PNG already there,
    and every depth PNG and the job record say which model, dtype, seed and settings made it."""
    out = tmp_path / "out"
    assert run_cli(capsys, photos / "plain.jpg", "-o", out, "--model", tiny_model, "--outputs", "png16")[0] == 0
    assert run_cli(capsys, photos / "plain.jpg", "-o", out, "--model", tiny_model, "--outputs", "png16,npy")[0] == 0
    from_png = io.read_depth_png16(out / "plain_depth.png")
    from_npy = np.load(out / "plain_depth.npy")
    np.testing.assert_allclose(from_png, from_npy, rtol=0, atol=2e-5 * np.ptp(from_npy))
    text = Image.open(out / "plain_depth.png").text
    assert text["model"] == str(tiny_model) and text["seed"] == "0" and text["dtype"] == "fp32"
    assert text["primedepth_version"] and text["max_size"] == "1024"
    runs = json.loads((out / JOB_RECORD).read_text())
    assert [run["outputs"] for run in runs] == [["png16"], ["png16", "npy"]] and runs[1]["done"] == 1


def test_output_folder_is_checked_before_the_model_loads(capsys, photos, tmp_path, monkeypatch):
    loads = []
    monkeypatch.setattr(importlib.import_module("primedepth.loading"), "load_pipeline", lambda *a: loads.append(a))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", blocker / "out")
    assert code == 2 and "cannot write to the output folder" in err and "Traceback" not in err
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "out", "--outputs", "video")
    assert code == 2 and "none of the inputs is a video" in err
    assert loads == []


def test_stale_temporaries_of_a_killed_run_are_removed(capsys, tiny_model, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".plain_depth.png.ab12cd_3.tmp", out / ".sub.zz99yy11.tmp"]
    stale[0].write_text("half")
    stale[1].mkdir()
    keep = out / ".my_notes.txt"
    keep.write_text("not ours")
    assert run_cli(capsys, photos / "plain.jpg", "-o", out, "--model", tiny_model, "--outputs", "npy")[0] == 0
    assert not any(path.exists() for path in stale) and keep.exists()


def test_sigterm_cleans_up_like_ctrl_c(tiny_model, photos, tmp_path):
    """`kill`, `timeout` and schedulers send SIGTERM: the file being written is removed, exit 143."""
    script = (
        "import sys, time\n"
        "import primedepth.io.atomic as atomic\n"
        "from primedepth.cli import main\n"
        "original = atomic.commit_temporary\n"
        "def slow(temporary, destination):\n"
        "    print('WRITING', flush=True)\n"
        "    time.sleep(60)\n"
        "    original(temporary, destination)\n"
        "atomic.commit_temporary = slow\n"
        f"sys.exit(main(['predict', {str(photos / 'plain.jpg')!r}, '-o', {str(tmp_path / 'out')!r}, "
        f"'--model', {str(tiny_model)!r}, '--device', 'cpu', '--outputs', 'npy']))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "WRITING"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_missing_list_entries_and_clashes_are_reported_and_the_rest_runs(capsys, tiny_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("good.png", "twin.jpg", "twin.png"):
        _save(folder / name, Image.fromarray(_rgb()))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{folder / 'good.png'}\nmissing.jpg\n")
    code, err = run_cli(capsys, listing, folder / "twin.jpg", folder / "twin.png", str(tmp_path / "*.gif"),
                        "-o", tmp_path / "out", "--model", tiny_model, "--outputs", "npy")
    assert code == 1 and "Traceback" not in err
    assert "line 2: missing.jpg: no such file" in err and "no file matches this pattern" in err
    assert "would both write outputs named 'twin'; rename one of them" in err
    assert _outputs(tmp_path / "out") == ["good_depth.npy"]
    assert "done 1" in err and "failed 4" in err


def test_3d_and_metric_outputs_from_the_command_line(capsys, tiny_model, tmp_path):
    """--outputs ply,normals,metric with --align-to: files a real reader loads; a bad known-depth
    file fails its image after its depth outputs were written; metric without --align-to is refused."""
    plyfile = require_extra("plyfile", "test")
    image = _save(tmp_path / "room.png", Image.fromarray(_rgb(48, 64)))
    points = tmp_path / "points.csv"
    points.write_text("x,y,depth_m\n5,5,2.0\n60,40,4.0\n30,20,3.0\n10,40,2.5\n")
    out = tmp_path / "out"
    code, err = run_cli(capsys, image, "-o", out, "--model", tiny_model, "--fov", "60", "--align-to", points,
                        "--outputs", "png16,ply,normals,metric", "--frame", "opencv")
    assert code == 0, err
    assert _outputs(out) == ["room_depth.png", "room_depth_m.npy", "room_normals.png", "room_points.ply"]
    vertices = plyfile.PlyData.read(str(out / "room_points.ply"))["vertex"]
    assert 0 < vertices.count <= 48 * 64 and np.all(vertices["z"] > 0)  # valid pixels, in front of the camera (z forward)
    metres = np.load(out / "room_depth_m.npy")
    assert metres.shape == (48, 64) and np.nanmin(metres) > 0
    points.write_text("x,y,depth_m\n5,5,2.0\n")  # one point: no fit possible
    code, err = run_cli(capsys, image, "-o", tmp_path / "out2", "--model", tiny_model, "--align-to", points,
                        "--outputs", "png16,metric")
    assert code == 1 and "room.png" in err and (tmp_path / "out2" / "room_depth.png").is_file()
    code, err = run_cli(capsys, image, "-o", tmp_path / "out3", "--outputs", "metric")
    assert code == 2 and "align" in err and "Traceback" not in err


def test_prompt_embeddings_from_a_file_condition_a_model_without_text_encoder(capsys, photos, tmp_path):
    from safetensors.torch import save_file

    from primedepth.testing import save_tiny_model, tiny_prompt_embeds

    model = save_tiny_model(tmp_path / "no_text", text=False)
    context = tmp_path / "context.safetensors"
    save_file({"context": tiny_prompt_embeds(1)}, str(context))
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "a", "--model", model, "--outputs", "npy")
    assert code == 1 and "--prompt-embeds FILE" in err
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "b", "--model", model, "--outputs", "npy",
                        "--prompt-embeds", context)
    assert code == 0, err
    [expected] = predict(photos / "plain.jpg", model=str(model), prompt_embeds=tiny_prompt_embeds(1), device="cpu")
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "plain_depth.npy"), expected.depth)
    code, err = run_cli(capsys, photos / "plain.jpg", "-o", tmp_path / "c", "--model", model,
                        "--prompt-embeds", tmp_path / "missing.pt")
    assert code == 2 and "prompt embeddings file not found" in err
