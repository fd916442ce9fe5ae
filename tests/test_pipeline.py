"""PrimeDepthPipeline: pre/post-processing, batching, reproducibility, dtypes and input errors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from primedepth import PrimeDepthPipeline
from primedepth.convert import convert_state_dict
from primedepth.errors import InputError
from primedepth.model.preimage import DecoderStep, encode_latents, iter_decoder_steps, timestep_embedding
from primedepth.processing import processed_size
from primedepth.testing import tiny_pipeline, tiny_prompt_embeds

from .fixtures import tiny_checkpoint
from .official import TINY, load_cases, relative_rms, tiny_config, tiny_state_dict


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(seed=0)


@pytest.fixture(scope="module")
def context():
    return tiny_prompt_embeds()


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "size,expected",
    [((600, 1300), (472, 1024)), ((1080, 1920), (576, 1024)), ((1920, 1080), (1024, 576)), ((2000, 2000), (1024, 1024)),
     ((1024, 700), (1024, 700)), ((300, 202), (300, 202)), ((1100, 1099), (1023, 1023))],
)
def test_official_resize_rule(size, expected):
    assert processed_size(*size, 1024) == expected


def test_depth_has_the_input_size_for_any_size(pipe, context):
    images = [_image(64, 64), _image(61, 83, 1), _image(200, 90, 2)]
    out = pipe(images, prompt_embeds=context, generator=_seeded(0), max_size=96)
    assert [d.shape for d in out.depth] == [(64, 64), (61, 83), (200, 90)]
    assert all(d.dtype == np.float32 and np.isfinite(d).all() for d in out.depth)
    assert out.segmentation is None


def test_batch_equals_one_at_a_time(pipe, context):
    """Same noise per image; only float rounding of batched kernels differs (~1e-5 of the range)."""
    images = [_image(64, 80, s) for s in range(3)]
    batched = pipe(images, prompt_embeds=context, generator=_seeded(7))
    generator = _seeded(7)
    for image, depth in zip(images, batched.depth):
        single = pipe(image, prompt_embeds=context, generator=generator).depth[0]
        np.testing.assert_allclose(depth, single, rtol=0, atol=1e-4 * np.abs(single).max())
    chunked = pipe(images, prompt_embeds=context, generator=_seeded(7), batch_size=2)
    for a, b in zip(batched.depth, chunked.depth):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def test_full_resolution_stages_run_in_chunks_of_one_largest_image(context):
    """VAE encoder and heads see at most `full_resolution_pixels` per call; the UNet the whole batch."""
    images = [_image(64, 80, s) for s in range(3)]
    expected = tiny_pipeline()(images, prompt_embeds=context, generator=_seeded(7), output_segmentation=True)
    pipeline = tiny_pipeline()
    pipeline.full_resolution_pixels = 2 * 64 * 80
    batches: dict[str, list[int]] = {"vae": [], "unet": [], "depth": [], "segmentation": []}
    watched = {"vae": pipeline.vae.encoder, "unet": pipeline.unet.conv_in, "depth": pipeline.depth_head,
               "segmentation": pipeline.segmentation_head}
    for name, module in watched.items():
        module.register_forward_hook(lambda m, args, out, name=name: batches[name].append(args[0].shape[0]))
    got = pipeline(images, prompt_embeds=context, generator=_seeded(7), output_segmentation=True)
    assert batches == {"vae": [2, 1], "unet": [3], "depth": [2, 1], "segmentation": [2, 1]}
    for a, b in zip(got.depth + got.segmentation, expected.depth + expected.segmentation):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max())


def test_generator_makes_results_reproducible(pipe, context):
    image = _image(64, 64)
    first = pipe(image, prompt_embeds=context, generator=_seeded(3)).depth[0]
    again = pipe(image, prompt_embeds=context, generator=_seeded(3)).depth[0]
    other = pipe(image, prompt_embeds=context, generator=_seeded(4)).depth[0]
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_input_kinds_agree(pipe, context):
    image = _image(64, 72)
    results = [
        pipe(x, prompt_embeds=context, generator=_seeded(1)).depth[0]
        for x in (image, PIL.Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1) / 255.0, image.astype(np.float32) / 255.0)
    ]
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], rtol=0, atol=1e-5 * np.abs(results[0]).max())


def test_segmentation_only_when_asked(pipe, context):
    out = pipe(_image(64, 64), prompt_embeds=context, generator=_seeded(0), output_segmentation=True)
    assert out.segmentation[0].shape == (5, 64, 64)
    no_head = tiny_pipeline(segmentation=False)
    with pytest.raises(InputError, match="no segmentation head"):
        no_head(_image(64, 64), prompt_embeds=context, output_segmentation=True)


@pytest.mark.parametrize(
    "bad,match",
    [
        ([], "empty batch"),
        (np.zeros((1, 1, 3), np.uint8), "too small"),
        (np.zeros((4, 2000, 3), np.uint8), "too elongated"),
        (np.zeros((64, 64, 2), np.uint8), "HxW"),
        (np.zeros((64, 64, 3), np.int32), "dtype"),
        (np.full((64, 64, 3), np.nan, np.float32), "NaN"),
        (np.full((64, 64, 3), 3.0, np.float32), r"\[0, 1\]"),
        (torch.zeros(5, 64, 64), "tensor image"),
        ("image.png", "unsupported image type"),
    ],
)
def test_bad_images_raise_clear_value_errors(pipe, context, bad, match):
    with pytest.raises(ValueError, match=match):
        pipe(bad, prompt_embeds=context)


def test_bad_tensors_and_options_raise_clear_value_errors(pipe, context):
    image = _image(64, 64)
    with pytest.raises(ValueError, match="prompt_embeds"):
        pipe(image, prompt_embeds=torch.zeros(1, 77, 7))
    with pytest.raises(ValueError, match="either prompt or prompt_embeds"):
        pipe(image, prompt="a room", prompt_embeds=context)
    with pytest.raises(ValueError, match="no text encoder"):
        tiny_pipeline(text=False)(image, prompt="a room")
    with pytest.raises(ValueError, match="list of 1 strings"):
        pipe(image, prompt=["a", "b"])
    with pytest.raises(ValueError, match="batch_size"):
        pipe(image, prompt_embeds=context, batch_size=0)
    with pytest.raises(ValueError, match="posterior_noise"):
        pipe.predict_raw(torch.zeros(1, 3, 64, 64), context, posterior_noise=torch.zeros(1, 4, 4, 4), step_noise=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="float tensor"):
        pipe.predict_raw(torch.zeros(1, 3, 64, 64, dtype=torch.int64), context)
    with pytest.raises(ValueError, match=r"\(B>0, 3, H, W\)"):
        pipe.predict_raw(torch.zeros(0, 3, 64, 64), context)


def test_save_and_load_round_trip(tmp_path, pipe, context):
    pipe.save_pretrained(tmp_path / "model")
    loaded = PrimeDepthPipeline.from_pretrained(tmp_path / "model")
    image = _image(64, 64)
    expected = pipe(image, prompt_embeds=context, generator=_seeded(0)).depth[0]
    got = loaded(image, prompt_embeds=context, generator=_seeded(0)).depth[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())  # kernel rounding only


# Relative RMS error allowed per stage in half precision: 1% for fp16 (11-bit significand, the
# issue's bound), 4% (about ten bf16 roundings, 2^-8 each) for bf16. Measured on case b: fp16
# <= 0.35%, bf16 <= 3.0% (attention maps).
HALF_PRECISION_STAGE_TOLERANCE = {torch.float16: 0.01, torch.bfloat16: 0.04}


def _in_dtype(pipeline: PrimeDepthPipeline, dtype: torch.dtype) -> PrimeDepthPipeline:
    for model in pipeline.components.values():
        if isinstance(model, torch.nn.Module):
            model.to(dtype=dtype)
    return pipeline


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_stages_stay_within_rounding_of_the_official_fp32(dtype):
    """Every stage, fed the official fp32 inputs, matches the official fp32 output up to its
    dtype's rounding; end to end the prediction is finite.

    End-to-end closeness cannot be asserted on random weights: they amplify rounding chaotically
    (tiny case b, aligned relative RMS of the depth: fp16 6%, bf16 66%; the UNet alone in fp32
    brings bf16 to 14%), so only real weights can show the end-to-end error. Case b is used
    because case a's deepest level is 1x1, where GroupNorm over two values magnifies any
    rounding (bf16 there: 21%).
    """
    pipeline = _in_dtype(PrimeDepthPipeline(**convert_state_dict(tiny_state_dict(), tiny_config())), dtype)
    case = load_cases(TINY / "cases.safetensors", "b")
    tolerance = HALF_PRECISION_STAGE_TOLERANCE[dtype]
    errors: dict[str, float] = {}
    with torch.no_grad():
        latent = encode_latents(pipeline.vae, case["image"].to(dtype), case["posterior_noise"])
        errors["latent"] = relative_rms(latent, case["latent"])
        context = case["context"].to(dtype)
        steps = list(iter_decoder_steps(pipeline.unet, case["x_t"].to(dtype), timestep_embedding(pipeline.unet, case["x_t"].to(dtype)), context))
        for index, step in enumerate(steps):
            errors[f"step{index}.features"] = relative_rms(step.features, case[f"step{index}.features"])
            if step.attention is not None:
                errors[f"step{index}.attention"] = relative_rms(step.attention, case[f"step{index}.attention"])
        official_steps = [
            DecoderStep(case[f"step{i}.features"].to(dtype), None if step.attention is None else case[f"step{i}.attention"].to(dtype), step.upsample_size)
            for i, step in enumerate(steps)
        ]
        refined = pipeline.refiner(official_steps, case["time_emb"].to(dtype), context)
        errors["refiner_final"] = relative_rms(refined, case["refiner_final"])
        errors["depth_raw"] = relative_rms(pipeline.depth_head(case["refiner_final"].to(dtype)), case["depth_raw"])
        errors["segmentation_raw"] = relative_rms(pipeline.segmentation_head(case["refiner_final"].to(dtype)), case["segmentation_raw"])
    worst = max(errors, key=errors.get)
    assert errors[worst] <= tolerance, f"{worst}: relative RMS {errors[worst]:.3%} > {tolerance:.0%} in {dtype}"
    out = pipeline(case["image_uint8"].numpy(), prompt_embeds=case["context"], posterior_noise=case["posterior_noise"],
                   step_noise=case["step_noise"], output_segmentation=True)
    assert np.isfinite(out.depth[0]).all() and np.isfinite(out.segmentation[0]).all()


def test_model_cpu_offload_places_each_stage_while_it_runs(context):
    """Offload keeps every model in CPU memory and moves a stage's models in only while it runs
    (the walk calls the UNet's blocks, so hooks on `unet.forward` could not see it)."""
    image = _image(64, 64)
    expected = tiny_pipeline()(image, prompt="a room", generator=_seeded(0)).depth[0]
    pipeline = tiny_pipeline()
    pipeline.enable_model_cpu_offload(device="cpu")  # the mechanics are the same on any device
    moves = []
    for name in ("text_encoder", "vae", "unet", "refiner", "depth_head"):
        module = getattr(pipeline, name)
        original = module.to
        module.to = lambda *args, name=name, original=original, **kwargs: moves.append(name) or original(*args, **kwargs)
    got = pipeline(image, prompt="a room", generator=_seeded(0)).depth[0]
    # Each stage's models are moved in, then back out: text encoder; VAE; UNet + refiner + head.
    assert moves == ["text_encoder"] * 2 + ["vae"] * 2 + ["unet", "refiner", "depth_head"] * 2
    assert pipeline._execution_device == torch.device("cpu")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_components_given_to_the_pipeline_are_not_changed(context):
    """A VAE or UNet shared with a Stable Diffusion pipeline keeps its eps and attention processors."""
    pipeline = tiny_pipeline()
    processors = dict(pipeline.unet.attn_processors)
    eps = [m.eps for m in pipeline.vae.encoder.modules() if isinstance(m, torch.nn.GroupNorm)]
    pipeline(_image(64, 64), prompt_embeds=context, generator=_seeded(0))
    assert pipeline.unet.attn_processors == processors
    assert [m.eps for m in pipeline.vae.encoder.modules() if isinstance(m, torch.nn.GroupNorm)] == eps


def test_depth_path_on_the_device_text_encoder_and_segmentation_streamed(context):
    """`move_depth_path_to`: same results; the rarely used models keep no weights on the device."""
    image = _image(64, 64)
    reference = tiny_pipeline()
    expected = reference(image, prompt="a room", generator=_seeded(0), output_segmentation=True)
    pipeline = tiny_pipeline()
    pipeline.move_depth_path_to("cpu")  # accelerate's hooks work the same on any device
    for streamed in (pipeline.text_encoder, pipeline.segmentation_head):
        assert {p.device.type for p in streamed.parameters()} == {"meta"}
    assert pipeline.prompt_encoder.device == torch.device("cpu")
    got = pipeline(image, prompt="a room", generator=_seeded(0), output_segmentation=True)
    np.testing.assert_allclose(got.depth[0], expected.depth[0], rtol=0, atol=1e-5 * np.abs(expected.depth[0]).max())
    np.testing.assert_allclose(got.segmentation[0], expected.segmentation[0], rtol=0, atol=1e-5 * np.abs(expected.segmentation[0]).max())


def test_channels_last_changes_layout_not_results(context):
    image = _image(64, 72)
    expected = tiny_pipeline()(image, prompt_embeds=context, generator=_seeded(0)).depth[0]
    pipeline = tiny_pipeline()
    pipeline.enable_channels_last()
    assert pipeline.depth_head.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipeline.vae.encoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    got = pipeline(image, prompt_embeds=context, generator=_seeded(0)).depth[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_unet_tail_that_no_label_uses_is_never_computed(pipe, context):
    """The last up-block resnet/transformer and conv_out only feed SD's own (discarded) output."""
    called = []
    tail = [pipe.unet.conv_out, pipe.unet.conv_norm_out, pipe.unet.up_blocks[-1].resnets[-1], pipe.unet.up_blocks[-1].attentions[-1]]
    hooks = [module.register_forward_hook(lambda m, i, o: called.append(m)) for module in tail]
    used = pipe.unet.up_blocks[-1].resnets[-2].register_forward_hook(lambda m, i, o: called.append("used"))
    try:
        pipe(_image(64, 64), prompt_embeds=context, generator=_seeded(0))
    finally:
        for hook in [*hooks, used]:
            hook.remove()
    assert called == ["used"]


def test_output_types_and_tuple_return(pipe, context):
    """diffusers conventions: output_type "np" (default), "pt", "pil"; return_dict=False -> tuple."""
    image = _image(40, 56)
    kwargs = dict(prompt_embeds=context, generator=_seeded(1), output_segmentation=True)
    as_np = pipe(image, **kwargs)
    as_pt = pipe(image, output_type="pt", **{**kwargs, "generator": _seeded(1)})
    as_pil = pipe(image, output_type="pil", **{**kwargs, "generator": _seeded(1)})
    depth, segmentation, prompts = pipe(image, return_dict=False, **{**kwargs, "generator": _seeded(1)})
    assert isinstance(as_np.depth[0], np.ndarray) and as_np.depth[0].shape == (40, 56)
    assert isinstance(as_pt.depth[0], torch.Tensor) and np.array_equal(as_pt.depth[0].numpy(), as_np.depth[0])
    assert as_pil.depth[0].mode.startswith("I;16") and as_pil.depth[0].size == (56, 40)
    assert as_pil.segmentation[0].mode == "P" and as_pil.segmentation[0].size == (56, 40)
    assert np.array_equal(depth[0], as_np.depth[0]) and segmentation[0].shape[1:] == (40, 56) and prompts is None
    with pytest.raises(InputError, match="output_type"):
        pipe(image, prompt_embeds=context, output_type="latent")


def test_image_processor_visualises_and_exports(pipe):
    depth = np.linspace(0.0, 2.0, 12, dtype=np.float32).reshape(3, 4)
    colour = pipe.image_processor.visualize_depth(depth)[0]
    png16 = pipe.image_processor.export_depth_to_16bit_png([depth, depth])
    assert colour.mode == "RGB" and colour.size == (4, 3)
    assert len(png16) == 2 and np.asarray(png16[0]).max() == 65535 and np.asarray(png16[0]).min() == 0
    with pytest.raises(InputError, match="max_size"):
        pipe.image_processor.preprocess(_image(16, 16), max_size=4)


def test_from_single_file_and_local_files_only(tmp_path, context):
    """An official checkpoint loads through `from_single_file`; a model folder with
    `local_files_only` (and the other diffusers loading options) through `from_pretrained`."""
    checkpoint, config = tiny_checkpoint()
    pipeline = PrimeDepthPipeline.from_single_file(
        checkpoint, original_config=config, text_encoder=False, torch_dtype=torch.bfloat16
    )
    assert pipeline.unet.dtype == torch.bfloat16 and pipeline.text_encoder is None
    folder = pipeline.save_model_folder(tmp_path / "model")
    assert (folder / "LICENSE-MODEL.md").is_file() and (folder / "model_index.json").is_file()
    with pytest.raises(InputError, match="exists and is not empty"):
        pipeline.save_model_folder(folder)
    loaded = PrimeDepthPipeline.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32)
    assert loaded.unet.dtype == torch.float32 and loaded.config.vae_encoder_norm_eps == 1e-5


@pytest.mark.parametrize("size", [(2, 2), (3, 7), (16, 16), (20, 300), (65, 9)])
def test_tiny_images_are_upscaled_to_what_the_network_can_process(pipe, context, size):
    """16 x 16 used to fail inside GroupNorm with a raw torch message; every image of at least
    2 x 2 pixels now works, its depth returned at the input size."""
    from primedepth.processing import smallest_processable_side

    assert smallest_processable_side(pipe.unet.config) == 64  # 8 x 2^3 downsamplings, as for SD
    out = pipe(_image(*size), prompt_embeds=context, generator=_seeded(0))
    assert out.depth[0].shape == size and np.isfinite(out.depth[0]).all()


def test_segmentation_labels_are_the_argmax_resized_nearest(pipe, context):
    """Labels skip full-resolution logits (about 600 bytes per pixel for 150 classes)."""
    image = _image(64, 88)  # processed at its own size: labels are exactly the argmax of the logits
    logits = pipe(image, prompt_embeds=context, generator=_seeded(2), output_segmentation=True).segmentation[0]
    labels = pipe(image, prompt_embeds=context, generator=_seeded(2), output_segmentation="labels").segmentation[0]
    assert labels.dtype == np.int16 and np.array_equal(labels, logits.argmax(axis=0))
    resized = pipe(_image(61, 83), prompt_embeds=context, output_segmentation="labels").segmentation[0]
    assert resized.shape == (61, 83) and set(np.unique(resized)) <= set(range(logits.shape[0]))


def test_colour_lookup_equals_matplotlib():
    from matplotlib import colormaps

    from primedepth.io.outputs import colorize_depth, normalize_depth

    depth = np.random.default_rng(0).normal(size=(31, 47)).astype(np.float32)
    for name in ("Spectral_r", "magma", "tab10"):
        expected = (colormaps[name](normalize_depth(depth)[0])[..., :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(colorize_depth(depth, name), expected)
    near_is_red = colorize_depth(np.array([[0.0, 1.0]], np.float32))  # the default: larger = closer = red
    assert near_is_red[0, 1, 0] > near_is_red[0, 1, 2] and near_is_red[0, 0, 2] > near_is_red[0, 0, 0]
