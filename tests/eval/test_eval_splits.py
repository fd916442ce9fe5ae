"""The protocol's split lists: pinned checksums, a verified fetch, and the CLI (issue 24, point 3)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from primedepth.cli import main
from primedepth.errors import PrimeDepthError
from primedepth.eval import splits
from primedepth.eval.datasets import DATASETS

LISTS = {"nyu_depth/labeled/filename_list_test.txt": b"test/a/rgb_0001.png test/a/depth_0001.png x\n",
         "eth3d_depth/eth3d_filename_list.txt": b"rgb/s/images/dslr_images/DSC_1.JPG depth/s_dslr_depth/s/x\n"}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server holding two small lists, and the checksum table pinned to them."""
    root = tmp_path / "served"
    for path, data in LISTS.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    table = {path: splits.SplitList(path, hashlib.sha256(data).hexdigest(), len(data), 1) for path, data in LISTS.items()}
    monkeypatch.setattr(splits, "SPLIT_LISTS", table)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", requests
    server.shutdown()
    server.server_close()
    thread.join()


def test_every_dataset_names_a_pinned_list() -> None:
    for spec in DATASETS.values():
        entry = splits.SPLIT_LISTS[spec.split_file]
        assert entry.lines >= spec.num_samples and len(entry.sha256) == 64
    assert set(splits.EVAL_SPLITS) == {spec.split_file for spec in DATASETS.values()}
    assert splits.SPLIT_LISTS["kitti_depth/eigen_test_files_with_gt.txt"].lines == 697  # 652 with ground truth


def test_fetch_checks_every_byte(served, tmp_path: Path) -> None:
    base, requests = served
    paths = tuple(LISTS)
    written = splits.fetch_split_lists(tmp_path / "out", paths, base_url=base)
    assert [p.read_bytes() for p in written] == list(LISTS.values())
    assert splits.official_split(written[0]) == paths[0]
    assert splits.fetch_split_lists(tmp_path / "out", paths, base_url=base) == written
    assert len(requests) == 2  # correct files already there are kept, not fetched again
    (tmp_path / "served").joinpath(paths[1]).write_bytes(b"tampered\n")
    written[1].unlink()
    with pytest.raises(PrimeDepthError, match="checksum mismatch"):
        splits.fetch_split_lists(tmp_path / "out", paths, base_url=base)
    assert not written[1].exists() and not list((tmp_path / "out").rglob("*.tmp"))
    written[0].write_text("my own list\n")
    assert splits.official_split(written[0]) is None


def test_unreachable_source_and_cli_misuse_are_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(PrimeDepthError, match="cannot download"):
        splits.fetch_split_lists(tmp_path, splits.EVAL_SPLITS[:1], base_url="http://127.0.0.1:9/", timeout_s=2)
    assert main(["download", "--train-splits"]) == 2
    assert "--splits DIR" in capsys.readouterr().err
