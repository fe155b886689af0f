"""A moto S3 server on 127.0.0.1 for tests (never any other address).

Usage in a test module::

    from helpers.s3server import s3_endpoint  # noqa: F401  (the fixture)

``s3_endpoint`` (module-scoped) starts ``moto.server.ThreadedMotoServer`` on 127.0.0.1 at a free
port, points the standard AWS environment variables at it (so s3fs, boto3, Polars and DuckDB all
reach it with no code change) and yields a helper that creates buckets with boto3.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """A running moto server: its endpoint and a boto3 client bound to it."""

    endpoint: str
    client: Any

    def bucket(self, prefix: str = "npc") -> str:
        """Create a fresh bucket and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client.create_bucket(Bucket=name)
        return name

    def upload_folder(self, local: Path, bucket: str, prefix: str) -> str:
        """Upload every file under `local` to ``s3://bucket/prefix/<relative path>``; return URL."""
        for path in sorted(Path(local).rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(local).as_posix()}"
                self.client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{prefix}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Return every key under `prefix` in `bucket`."""
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[S3Server]:
    """Start a moto S3 server on 127.0.0.1 and point the AWS environment at it."""
    pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    endpoint = f"http://{HOST}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        yield S3Server(endpoint=endpoint, client=client)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
