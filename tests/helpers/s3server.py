"""A moto S3 server on 127.0.0.1 for tests and benchmarks (never any other address).

Usage in a test module::

    from helpers.s3server import s3_endpoint  # noqa: F401  (the fixture)

``s3_endpoint`` (module-scoped) starts a moto server on 127.0.0.1 at a free port, points the
standard AWS environment variables at it (so s3fs, boto3, Polars and DuckDB all reach it with no
code change) and yields a helper that creates buckets with boto3.

The server counts what it serves: :class:`CountingMotoServer` wraps moto's WSGI application in a
middleware that records, per request, the method, bucket, key, ``Range`` header, status and the
bytes of the response body actually sent. Request and byte figures therefore come from the
server, whatever the client believes it asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HOST = "127.0.0.1"
#: path at which a counting server answers with its request log (GET) or clears it (DELETE);
#: requests to it are not recorded
LOG_PATH = "/_npc_frames_requests"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    bucket: str
    key: str
    range: str | None
    status: int
    bytes_sent: int


@dataclass
class RequestLog:
    """Every request a :class:`CountingMotoServer` answered, in arrival order (thread-safe)."""

    entries: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request) -> None:
        """Record one answered request."""
        with self.lock:
            self.entries.append(request)

    def clear(self) -> None:
        """Forget every recorded request."""
        with self.lock:
            self.entries.clear()

    def snapshot(self) -> list[Request]:
        """Return a copy of the recorded requests."""
        with self.lock:
            return list(self.entries)


def _bucket_key(environ: dict[str, Any]) -> tuple[str, str]:
    """Return (bucket, key) of a path-style or virtual-host-style S3 request."""
    path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
    host = environ.get("HTTP_HOST", "").split(":")[0]
    if host and not host[0].isdigit() and host.count(".") and host != "localhost":
        return host.split(".")[0], path.lstrip("/")  # virtual-host style
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


class _CountingApp:
    """WSGI middleware that records every request and the body bytes it sends back."""

    def __init__(self, app: Callable[..., Iterable[bytes]], log: RequestLog) -> None:
        self.app, self.log = app, log

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        if environ.get("PATH_INFO") == LOG_PATH:  # the log itself, for a server in a subprocess
            if environ.get("REQUEST_METHOD") == "DELETE":
                self.log.clear()
            body = json.dumps([dataclasses.astuple(r) for r in self.log.snapshot()]).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            yield body
            return
        status: list[int] = [0]

        def recording_start_response(code: str, headers: Any, *args: Any) -> Any:
            status[0] = int(code.split()[0])
            return start_response(code, headers, *args)

        body = self.app(environ, recording_start_response)
        sent = 0
        try:
            for chunk in body:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            bucket, key = _bucket_key(environ)
            self.log.add(
                Request(
                    environ.get("REQUEST_METHOD", ""),
                    bucket,
                    key,
                    environ.get("HTTP_RANGE"),
                    status[0],
                    sent,
                )
            )


def start_counting_server(host: str = HOST, port: int | None = None) -> tuple[Any, RequestLog]:
    """Start a moto S3 server whose every request is recorded; return (server, its log).

    The server listens on `host` (127.0.0.1) only; stop it with ``server.stop()``.
    """
    from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
    from werkzeug.serving import make_server

    try:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
    except ImportError:  # older moto
        MotoRequestHandler = None

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    log = RequestLog()

    class CountingMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _CountingApp(DomainDispatcherApplication(create_backend_app), log)
            kwargs = {"request_handler": MotoRequestHandler} if MotoRequestHandler else {}
            self._server = make_server(self._ip_address, self._port, app, True, **kwargs)
            self._server_ready_event.set()
            self._server.serve_forever()

    server = CountingMotoServer(ip_address=host, port=port or _free_port(), verbose=False)
    server.start()
    return server, log


class RemoteRequestLog:
    """The request log of a counting server running in another process (read over HTTP)."""

    def __init__(self, endpoint: str) -> None:
        self.url = endpoint + LOG_PATH

    def _call(self, method: str) -> list[Request]:
        import urllib.request

        req = urllib.request.Request(self.url, method=method)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return [Request(*row) for row in json.loads(resp.read())]

    def snapshot(self) -> list[Request]:
        """Return the recorded requests."""
        return self._call("GET")

    def clear(self) -> None:
        """Forget every recorded request."""
        self._call("DELETE")


def start_server_process(host: str = HOST) -> tuple[Any, str, RemoteRequestLog]:
    """Start a counting moto server in a child process on `host`; return (process, endpoint, log).

    The server's CPU time is then not the client's. Stop it with ``process.terminate()``.
    """
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--host", host, "--port", str(port)],
        stdout=subprocess.DEVNULL,
    )
    endpoint = f"http://{host}:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(endpoint + LOG_PATH, timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the S3 server exited with {proc.returncode}") from None
            time.sleep(0.1)
    return proc, endpoint, RemoteRequestLog(endpoint)


def aws_environment(endpoint: str) -> dict[str, str]:
    """Return the AWS environment variables that point every client at `endpoint`."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


@dataclass
class S3Server:
    """A running moto server: its endpoint, a boto3 client bound to it and its request log."""

    endpoint: str
    client: Any
    log: RequestLog = field(default_factory=RequestLog)

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
    server, log = start_counting_server()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = aws_environment(endpoint)
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN"]}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        yield S3Server(endpoint=endpoint, client=client, log=log)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":  # a counting server in its own process (start_server_process)
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default=HOST)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    if a.host != HOST:
        raise SystemExit(f"the test S3 server listens on {HOST} only")
    server, _ = start_counting_server(a.host, a.port)
    parent = os.getppid()
    while os.getppid() == parent:  # exit with the process that started this server
        server._thread.join(timeout=1.0)
        if not server._thread.is_alive():
            break
