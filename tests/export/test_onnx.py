"""ONNX export of the depth path and the ONNX Runtime pipeline, on the tiny model.

The exported graph is `primedepth.model.forward` traced; ONNX Runtime (CPU provider) must
reproduce the torch depth within 1e-4 relative (fp32), and the runtime must go through the same
job engine as the torch pipeline.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch

from ..extras import require_extra

require_extra("onnxruntime", "onnx")
require_extra("onnxscript", "onnx")

from primedepth import predict  # noqa: E402
from primedepth.cli import main as cli_main  # noqa: E402
from primedepth.errors import InputError, PrimeDepthError  # noqa: E402
from primedepth.export import EXPORT_MANIFEST, GRAPH_FILE, export_onnx, load_onnx_pipeline  # noqa: E402
from primedepth.export.onnx import EXPORT_KERNELS, parse_size, write_graph  # noqa: E402
from primedepth.export.onnx import DepthPathModule as DepthPathOf  # noqa: E402
from primedepth.model.attention_maps import chunked_capture, preferring_self_capture  # noqa: E402
from primedepth.testing import save_tiny_model, tiny_prompt_embeds  # noqa: E402
from primedepth.pipeline import PrimeDepthPipeline  # noqa: E402

SIZE = (64, 96)
RELATIVE = 1e-4
TOP_LEVEL_TOKENS = (SIZE[0] // 8) * (SIZE[1] // 8)
BLOCK_ROWS = 16  # queries per block of the exported chunked kernel at the top level


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model folder and its fixed-size fp32 export (one trace for the whole module).

    The chunked kernel is given a block budget of BLOCK_ROWS query rows at the top level (the
    real budget is never reached by the tiny model), so the graph holds several blocks per layer.
    """
    root = tmp_path_factory.mktemp("onnx")
    model = save_tiny_model(root / "model", segmentation=False)
    small_blocks = partial(chunked_capture, budget_bytes=BLOCK_ROWS * TOP_LEVEL_TOKENS * 8, query_block=2**31)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EXPORT_KERNELS, "chunked", small_blocks)
        export_onnx(model, root / "export", size=SIZE)
    return model, root / "export"


def _relative(actual: np.ndarray | torch.Tensor, expected: np.ndarray | torch.Tensor) -> float:
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def test_export_folder_holds_graph_weights_configs_and_manifest(exported):
    _, folder = exported
    manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
    assert manifest["size"] == list(SIZE) and manifest["dtype"] == "fp32" and manifest["opset"] >= 23
    assert (folder / GRAPH_FILE).is_file() and any(p.name.startswith(GRAPH_FILE) and p.name != GRAPH_FILE for p in folder.iterdir())
    for name in ("model_index.json", "vae/config.json", "unet/config.json", "refiner/config.json", "depth_head/config.json",
                 "scheduler/scheduler_config.json", "text_encoder/config.json"):
        assert (folder / name).is_file(), name
    assert not list((folder / "unet").glob("*.safetensors"))  # configs only: the weights are in the graph


def test_onnx_runtime_equals_torch_within_1e_4(exported):
    model, folder = exported
    torch_pipeline = PrimeDepthPipeline.from_pretrained(model)
    onnx_pipeline = load_onnx_pipeline(folder, providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, *SIZE, generator=generator) * 2 - 1
    context = tiny_prompt_embeds().expand(2, -1, -1)
    noise = {"posterior_noise": torch.randn(2, 4, SIZE[0] // 8, SIZE[1] // 8, generator=generator),
             "step_noise": torch.randn(2, 4, SIZE[0] // 8, SIZE[1] // 8, generator=generator)}
    expected = torch_pipeline.predict_raw(pixels, context, output_segmentation=False, **noise).depth
    got = onnx_pipeline.predict_raw(pixels, context, output_segmentation=False, **noise).depth
    assert got.shape == expected.shape
    assert _relative(got, expected) <= RELATIVE


def test_onnx_pipeline_runs_through_the_job_engine(exported, tmp_path):
    """Same seed, same prompt: the ONNX runtime's outputs equal the torch pipeline's through predict()."""
    model, folder = exported
    image = (np.random.default_rng(0).random((*SIZE, 3)) * 255).astype(np.uint8)
    kwargs = {"prompt": "a room", "seed": 3}
    expected = predict(image, model=PrimeDepthPipeline.from_pretrained(model), **kwargs)[0].depth
    got = predict(image, model=load_onnx_pipeline(folder, providers=["CPUExecutionProvider"]), **kwargs)[0].depth
    assert _relative(got, expected) <= RELATIVE
    with pytest.raises(PrimeDepthError, match="no segmentation head"):  # refused before any image runs
        predict(image, model=load_onnx_pipeline(folder), segmentation=True, prompt="")
    with pytest.raises(InputError, match="depth path only"):
        load_onnx_pipeline(folder).predict_raw(torch.zeros(1, 3, *SIZE), tiny_prompt_embeds())


def test_cli_predict_with_the_onnx_runtime(exported, tmp_path):
    _, folder = exported
    from PIL import Image

    Image.fromarray((np.random.default_rng(1).random((50, 70, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    code = cli_main(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--runtime", "onnx", "--model", str(folder),
                     "--prompt", "", "--outputs", "npy"])
    assert code == 0
    depth = np.load(tmp_path / "out" / "a_depth.npy")
    assert depth.shape == (50, 70) and np.isfinite(depth).all()  # run at 64x96, resized back to the input


@pytest.mark.parametrize("text", ["64", "64x96", "512x768"])
def test_sizes_parse(text):
    height, width = parse_size(text)
    assert height % 8 == 0 and width % 8 == 0


@pytest.mark.parametrize("argv,message", [
    (["--size", "65x64"], "multiples of 8"),
    (["--size", "big"], "HxW"),
    (["--dynamic", "--capture-kernel", "chunked"], "needs a fixed size"),
])
def test_export_command_refuses_bad_sizes(tmp_path, capsys, argv, message):
    model = save_tiny_model(tmp_path / "model", segmentation=False)
    assert cli_main(["export", "onnx", str(model), str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_export_and_runtime_refuse_what_is_not_theirs(tmp_path, capsys):
    assert cli_main(["export", "onnx", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    with pytest.raises(InputError, match="not an ONNX export"):
        load_onnx_pipeline(tmp_path)


def test_export_never_replaces_its_own_model_folder(tmp_path, capsys):
    """--overwrite into the model folder (or a folder holding it) would delete the model."""
    model = save_tiny_model(tmp_path / "models" / "tiny")
    before = sorted(p.relative_to(model) for p in model.rglob("*"))
    for target in (model, model.parent):
        assert cli_main(["export", "onnx", str(model), str(target), "--overwrite"]) == 2
        assert "is (or contains) the model folder" in capsys.readouterr().err
    assert sorted(p.relative_to(model) for p in model.rglob("*")) == before


def _random_feeds(seed: int = 0, size: tuple[int, int] = SIZE) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    latent = (1, 4, size[0] // 8, size[1] // 8)
    return {"pixel_values": torch.rand(1, 3, *size, generator=generator) * 2 - 1, "context": tiny_prompt_embeds(),
            "posterior_noise": torch.randn(latent, generator=generator), "step_noise": torch.randn(latent, generator=generator)}


def _run_graph(graph, feeds) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    return session.run(None, {name: tensor.numpy() for name, tensor in feeds.items()})[0]


def _softmax_shapes(graph) -> list[tuple[int, ...]]:
    """The static output shapes of every Softmax node of the graph (ONNX shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(graph), load_external_data=False))
    shapes = {info.name: tuple(d.dim_value for d in info.type.tensor_type.shape.dim) for info in model.graph.value_info}
    return [shapes[node.output[0]] for node in model.graph.node if node.op_type == "Softmax" and node.output[0] in shapes]


def _op_count(graph, op_type: str) -> int:
    import onnx

    return sum(node.op_type == op_type for node in onnx.load(str(graph), load_external_data=False).graph.node)


def test_chunked_export_never_holds_a_full_score_matrix(exported):
    """Every exported softmax over the top level's keys covers at most BLOCK_ROWS queries (the
    fixture's block budget); test_onnx_runtime_equals_torch_within_1e_4 runs this graph."""
    _, folder = exported
    over_all_keys = [shape for shape in _softmax_shapes(folder / GRAPH_FILE) if shape[-1] == TOP_LEVEL_TOKENS]
    assert len(over_all_keys) >= 2 * TOP_LEVEL_TOKENS // BLOCK_ROWS  # several blocks per layer
    assert max(shape[-2] for shape in over_all_keys) <= BLOCK_ROWS


@torch.no_grad()
def test_dynamic_export_runs_any_multiple_of_64_and_equals_torch(exported, tmp_path):
    """--dynamic: one graph (padded-SDPA capture, an Attention node per captured layer) that runs
    several sizes and aspect ratios, each equal to torch; through predict() it runs images of
    any size, at their processing size rounded to multiples of 64."""
    model, fixed = exported
    pipeline = PrimeDepthPipeline.from_pretrained(model)
    folder = export_onnx(model, tmp_path / "dynamic", size=None, pipeline=pipeline)
    manifest = json.loads((folder / EXPORT_MANIFEST).read_text())
    assert manifest["size"] is None and manifest["size_multiple"] == 64 and manifest["capture_kernel"] == "padded-sdpa"
    assert json.loads((fixed / EXPORT_MANIFEST).read_text())["capture_kernel"] == "chunked"
    captured = []  # the self-attention layers the walk captures (the last up-block's last one is not run)

    def counting(*args):
        captured.append(args[0].shape)
        return chunked_capture(*args)

    for index, size in enumerate([(64, 128), (192, 64), (128, 128)]):
        feeds = _random_feeds(index, size)
        with preferring_self_capture(counting):
            expected = DepthPathOf(pipeline)(**feeds).numpy()
        got = _run_graph(folder / GRAPH_FILE, feeds)
        assert got.shape == expected.shape == (1, 3, *size)
        assert _relative(got, expected) <= RELATIVE
    assert _op_count(folder / GRAPH_FILE, "Attention") == _op_count(fixed / GRAPH_FILE, "Attention") + len(captured) // 3

    runtime = load_onnx_pipeline(folder, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    square = (rng.random((128, 192, 3)) * 255).astype(np.uint8)  # processed at 128x192, a multiple of 64
    kwargs = {"prompt": "a room", "seed": 5}
    assert _relative(predict(square, model=runtime, **kwargs)[0].depth, predict(square, model=pipeline, **kwargs)[0].depth) <= RELATIVE
    odd = (rng.random((100, 150, 3)) * 255).astype(np.uint8)  # run at 128x128
    assert runtime.processing_size(100, 150) == (128, 128)
    depth = predict(odd, model=runtime, **kwargs)[0].depth
    assert depth.shape == (100, 150) and np.isfinite(depth).all()
    with pytest.raises(InputError, match="multiples of 64"):
        runtime.predict_raw(torch.zeros(1, 3, 64, 96), tiny_prompt_embeds(), output_segmentation=False)


def test_export_refuses_an_unknown_capture_kernel(tmp_path, capsys):
    model = save_tiny_model(tmp_path / "model", segmentation=False)
    with pytest.raises(InputError, match="--capture-kernel"):
        export_onnx(model, tmp_path / "out", capture_kernel="flash")
    assert not (tmp_path / "out").exists()
