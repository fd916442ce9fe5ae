"""Shared by the Ray engine tests: the tiny random model, a local S3-compatible server and one
small local Ray instance for the package.

The S3 server is moto's (`ThreadedMotoServer`) on 127.0.0.1 with an ephemeral port: real HTTP,
pyarrow's real S3 filesystem, no mocks. The engine reaches it as a user reaches MinIO, Ceph or
R2: through the standard ``AWS_ENDPOINT_URL`` variable (set before Ray starts, so every worker
inherits it) or through pyarrow's URI options (``?endpoint_override=...``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from primedepth.testing import save_tiny_model

from ..extras import require_extra

OBJECT_STORE_BYTES = 150 * 1024**2


@pytest.fixture(scope="package")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@dataclass(frozen=True)
class S3Server:
    """The running server: its endpoint and a boto3 client for checking what the engine wrote."""

    endpoint: str
    client: object

    def uri(self, bucket: str, key: str = "", **options: str) -> str:
        """An ``s3://`` URI, with pyarrow's URI options when given."""
        query = "&".join(f"{name}={value}" for name, value in options.items())
        return f"s3://{bucket}/{key}" + (f"?{query}" if query else "")

    def keys(self, bucket: str, prefix: str) -> dict[str, object]:
        """Key -> last-modified time of every object below a prefix; folder markers (keys ending
        in '/', which the output check leaves as `mkdir` would) are not objects of interest."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {item["Key"]: item["LastModified"] for page in pages for item in page.get("Contents", [])
                if not item["Key"].endswith("/")}

    def set_auth(self, enforced: bool) -> None:
        """Make the server check credentials (then the tests' made-up keys are refused)."""
        import requests

        value = b"0" if enforced else b"inf"
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=value, timeout=10).raise_for_status()


@pytest.fixture(scope="package")
def s3() -> Iterator[S3Server]:
    """A local S3-compatible server for the package, reached via AWS_ENDPOINT_URL."""
    server_module = require_extra("moto.server", "test")
    boto3 = require_extra("boto3", "test")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "primedepth-test",
                            "AWS_SECRET_ACCESS_KEY": "primedepth-test", "AWS_DEFAULT_REGION": "us-east-1",
                            "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
            patch.setenv(name, value)
        try:
            yield S3Server(endpoint, boto3.client("s3"))
        finally:
            server.stop()


@pytest.fixture(scope="package")
def local_ray(s3: S3Server) -> Iterator[object]:
    """A small local Ray instance (2 CPUs, a small object store) for the package, started after
    the S3 server so that its workers inherit the endpoint variables."""
    ray = require_extra("ray", "ray")
    require_extra("ray.data", "ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
             logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def upload_folder(s3: S3Server, folder: Path, bucket: str, prefix: str) -> None:
    """Every file of a local folder as objects below `prefix` (the bucket is created)."""
    existing = [entry["Name"] for entry in s3.client.list_buckets().get("Buckets", [])]
    if bucket not in existing:
        s3.client.create_bucket(Bucket=bucket)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.client.upload_file(str(path), bucket, f"{prefix.rstrip('/')}/{path.relative_to(folder).as_posix()}")


