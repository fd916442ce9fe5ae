"""`primedepth info` is fast (issue 24, point 8): it imports neither torch nor diffusers.

Before, the CLI's start-up imported the pipeline (torch, diffusers) to quiet their progress bars
and every sub-command's module, so printing a fixed table took seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from primedepth.cli import main

PROBE = """
import json, sys, time
start = time.perf_counter()
from primedepth.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - start,
                  "heavy": sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)}))
"""


def _run_info(*args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, "info", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_info_imports_no_torch_and_takes_under_a_second() -> None:
    report = _run_info()
    assert report["code"] == 0 and report["heavy"] == []
    assert report["seconds"] < 1.0, report


def test_info_reads_a_model_folder_without_torch(tmp_path: Path, capsys) -> None:
    from primedepth.testing import tiny_pipeline

    folder = tiny_pipeline().save_model_folder(tmp_path / "tiny")
    report = _run_info(str(folder))
    assert report["code"] == 0 and report["heavy"] == []
    assert main(["info", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    unet = next(line for line in lines if line.startswith("unet "))
    expected = sum(p.numel() for p in tiny_pipeline().unet.parameters())
    assert f"{expected:,}" in unet and "float32" in unet
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x05")
    assert main(["info", str(folder)]) == 2  # a clear error, no traceback
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_info_lists_the_segmentation_classes(capsys) -> None:
    assert main(["info", "--classes"]) == 0
    legend = json.loads(capsys.readouterr().out)
    assert len(legend) == 150 and legend["2"] == {"name": "sky", "rgb": [6, 230, 230]}
    assert _run_info("--classes")["heavy"] == []
