"""BLIP-2 captioner: laziness, batching, official decoding, unload, clear errors — all offline.

The tiny random BLIP-2 of `conftest.py` goes through the captioner's real `from_pretrained` path.
Availability (probe, cache, sticky failures, the one message) is in `test_captioner_availability.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor

from primedepth.errors import CaptionerUnavailableError, InputError, WeightsNotFoundError
from primedepth.text.captioning import BLIP2_MODEL_ID, Blip2Captioner, default_caption_dtype


def _official_caption(folder: Path, image: Image.Image) -> tuple[str, str]:
    """Spec §1 step 2 done by hand for one image: raw decoded text and its strip()."""
    processor = Blip2Processor.from_pretrained(folder)
    model = Blip2ForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        generated = model.generate(**processor(images=image, return_tensors="pt"))
    raw = processor.batch_decode(generated, skip_special_tokens=True)[0]
    return raw, raw.strip()


def test_loads_lazily_and_unloads(tiny_blip2: Path, images) -> None:
    captioner = Blip2Captioner(tiny_blip2, device="cpu")
    assert not captioner.is_loaded  # construction reads nothing
    assert captioner.caption([]) == [] and not captioner.is_loaded
    first = captioner.caption(images[0])
    assert captioner.is_loaded and len(first) == 1
    captioner.unload()
    assert not captioner.is_loaded
    assert captioner.caption(images[0]) == first  # loads again on demand


def test_batched_captions_match_official_decoding(tiny_blip2: Path, images) -> None:
    captioner = Blip2Captioner(tiny_blip2, device="cpu", batch_size=2)
    captioner.load()
    batch_sizes: list[int] = []
    generate = captioner._model.generate

    def counting_generate(*args, **kwargs):
        batch_sizes.append(kwargs["pixel_values"].shape[0])
        return generate(*args, **kwargs)

    captioner._model.generate = counting_generate
    captions = captioner.caption(images)
    assert batch_sizes == [2, 2, 1]
    assert len(captions) == len(images) and all(isinstance(c, str) for c in captions)
    assert any(captions) and len(set(captions)) > 1

    raws = []
    for image, caption in zip(images, captions):
        raw, official = _official_caption(tiny_blip2, image)
        raws.append(raw)
        assert caption == official
    assert any(raw != raw.strip() for raw in raws), "choose a WEIGHT_SEED whose captions need strip()"
    assert not any("<image>" in c or "</s>" in c for c in captions)


def test_accepts_arrays_tensors_and_non_rgb(tiny_blip2: Path, images) -> None:
    captioner = Blip2Captioner(tiny_blip2, device="cpu")
    pil = images[1]
    array = np.array(pil)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    expected = captioner.caption(pil)[0]
    assert captioner.caption([array, tensor, pil.convert("RGBA")]) == [expected] * 3
    assert len(captioner.caption(tensor.unsqueeze(0).repeat(2, 1, 1, 1))) == 2  # a 4-D tensor is a batch
    assert len(captioner.caption(pil.convert("L"))) == 1
    with pytest.raises(InputError):
        captioner.caption(["not an image"])  # type: ignore[list-item]
    with pytest.raises(InputError):
        captioner.caption(array.astype(np.float32))


def test_defaults_follow_the_device() -> None:
    captioner = Blip2Captioner(device="cpu")
    assert captioner.model_id == BLIP2_MODEL_ID and captioner.dtype == torch.float32
    assert default_caption_dtype(torch.device("cuda")) == torch.float16
    assert not captioner.is_loaded
    with pytest.raises(InputError):
        Blip2Captioner(batch_size=0)


def test_missing_weights_give_clear_error(tmp_path: Path, images) -> None:
    with pytest.raises(CaptionerUnavailableError, match="primedepth download --captioner") as missing:
        Blip2Captioner(device="cpu").caption(images[0])  # hub is offline in tests, nothing cached
    assert isinstance(missing.value, WeightsNotFoundError) and missing.value.exit_code == 3
    assert "HF_HUB_OFFLINE" in str(missing.value) and '--prompt ""' in str(missing.value)
    with pytest.raises(CaptionerUnavailableError, match="does not exist"):
        Blip2Captioner(tmp_path / "missing", device="cpu").caption(images[0])


def test_pipeline_auto_prompt_captions_each_image(tiny_blip2: Path, images) -> None:
    """prompt="auto" conditions each image on its BLIP-2 caption and reports it."""
    from primedepth.testing import tiny_pipeline

    pipeline = tiny_pipeline()
    pipeline.captioner = Blip2Captioner(tiny_blip2, device="cpu", batch_size=2)
    arrays = [np.asarray(image.convert("RGB").resize((64, 64))) for image in images[:3]]
    captions = Blip2Captioner(tiny_blip2, device="cpu").caption(arrays)
    out = pipeline(arrays, prompt="auto", generator=torch.Generator().manual_seed(0))
    assert out.prompts == captions
    explicit = pipeline(arrays, prompt=captions, generator=torch.Generator().manual_seed(0))
    for auto, given in zip(out.depth, explicit.depth):
        np.testing.assert_array_equal(auto, given)
    mixed = pipeline(arrays, prompt=["a red car", "auto", ""], generator=torch.Generator().manual_seed(0))
    assert mixed.prompts == ["a red car", captions[1], ""]
    pipeline.unload_captioner()
    assert not pipeline.captioner.is_loaded
