"""fsspec helpers shared by the cache: paths that may be local or ``s3://``, atomic writes, listing.

Every function here does I/O on a local path or an fsspec URL. Remote endpoints and credentials
come from the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``~/.aws/config``), so a local S3-compatible
server works with no code change.

Atomicity:
- local: the bytes go to a temporary file in the destination folder whose name starts with ``.``
  and ends with ``.tmp`` (so it never matches a reader's ``data.parquet`` glob), are fsynced, then
  ``os.replace``-d over the destination. A crash leaves at most an orphaned temporary file, which
  :func:`remove_stale_temp_files` deletes once its writer process is gone.
- S3: one ``PUT`` (or one multipart upload, which S3 also publishes atomically on completion).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec

from npc_frames._log import timed
from npc_frames.errors import CacheError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_local_path",
    "atomic_write_bytes",
    "download",
    "exists",
    "file_lock",
    "filesystem",
    "glob",
    "is_remote",
    "join",
    "list_files",
    "polars_storage_options",
    "read_bytes",
    "remove",
    "remove_stale_temp_files",
    "stat_key",
    "strip_protocol",
    "version_of",
]

logger = logging.getLogger(__name__)

#: suffix of temporary files written before an atomic replace (prefix is ".")
TEMP_SUFFIX = ".tmp"


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Return True when `path` is an fsspec URL other than ``file://``."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def strip_protocol(path: str | os.PathLike[str]) -> str:
    """Return `path` as a local absolute path, or the URL unchanged (no trailing slash)."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_remote(text):
        return text.rstrip("/")
    return os.path.abspath(os.path.expanduser(text))


def join(root: str, *parts: str) -> str:
    """Return `root` joined with `parts` using ``/`` for URLs and os.path for local paths."""
    if is_remote(root):
        return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(root, *parts)


def s3_options() -> dict[str, Any]:
    """Return s3fs keyword arguments taken from the standard AWS environment variables."""
    opts: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    return opts


def filesystem(path: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the fsspec filesystem for `path` and the path in that filesystem's terms."""
    if not is_remote(path):
        return fsspec.filesystem("file"), strip_protocol(path)
    protocol = path.split("://", 1)[0]
    opts = s3_options() if protocol in ("s3", "s3a") else {}
    # fsspec caches instances by options, so a changed endpoint gets a new one; the listing cache
    # is dropped on every call because other writers (a concurrent convert) change the bucket
    fs = fsspec.filesystem(protocol, **opts)
    fs.invalidate_cache()
    return fs, fs._strip_protocol(path)


def polars_storage_options(path: str) -> dict[str, str] | None:
    """Return ``storage_options`` for Polars' object_store reader of `path` (None if local)."""
    if not is_remote(path):
        return None
    opts: dict[str, str] = {}
    env = {
        "aws_endpoint_url": os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL"),
        "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        "aws_session_token": os.environ.get("AWS_SESSION_TOKEN"),
        "aws_region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    }
    opts.update({k: v for k, v in env.items() if v})
    if opts.get("aws_endpoint_url", "").startswith("http://"):
        opts["aws_allow_http"] = "true"
    return opts or None


def exists(path: str) -> bool:
    """Return True when the file or folder at `path` exists."""
    fs, p = filesystem(path)
    return bool(fs.exists(p))


def read_bytes(path: str) -> bytes:
    """Return the whole content of the file at `path`."""
    fs, p = filesystem(path)
    return bytes(fs.cat_file(p))


def remove(path: str) -> None:
    """Delete the file at `path` if it exists."""
    fs, p = filesystem(path)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(p)


def _unprotocol_like(root: str, found: str) -> str:
    if is_remote(root):
        return f"{root.split('://', 1)[0]}://{found}"
    return found


def glob(pattern: str) -> list[str]:
    """Return the sorted paths (URLs for remote patterns) matching a glob `pattern`."""
    fs, p = filesystem(pattern)
    return sorted(_unprotocol_like(pattern, f) for f in fs.glob(p))


def list_files(root: str) -> list[tuple[str, int, str]]:
    """Return ``(relative path, size, version)`` of every file under `root`, sorted by path.

    ``version`` is the modification time (ns) for local files and the ETag (else last-modified) for
    objects on S3, so that a changed file changes the tuple.
    """
    fs, p = filesystem(root)
    if not is_remote(root):
        out: list[tuple[str, int, str]] = []
        for dirpath, _dirnames, filenames in os.walk(p):
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                out.append(
                    (os.path.relpath(full, p).replace(os.sep, "/"), st.st_size, str(st.st_mtime_ns))
                )
        return sorted(out)
    found = fs.find(p, detail=True)
    out = []
    base = p.rstrip("/") + "/"
    for name, info in found.items():
        rel = name[len(base) :] if name.startswith(base) else name
        version = (
            info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        )
        out.append((rel, int(info.get("size") or 0), str(version)))
    return sorted(out)


def _temp_name(dest_name: str) -> str:
    host = socket.gethostname().replace("~", "-")
    return f".{dest_name}~{host}~{os.getpid()}~{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"


@contextlib.contextmanager
def atomic_local_path(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[str]:
    """Yield a temporary path beside local `path`; on a clean exit it replaces `path` atomically.

    The one atomic-publish rule for local files and folders: write (or download, or let a library
    such as h5py create) the new content at the yielded path, and leave the block. The temporary
    name starts with ``.`` and ends with :data:`TEMP_SUFFIX` so no reader's glob matches it and
    :func:`remove_stale_temp_files` can delete what a dead writer left. A file is fsynced before
    the rename; the rename itself is made durable where the filesystem allows. On an error the
    temporary file or folder is deleted and `path` is untouched. A folder cannot replace an
    existing non-empty folder: then the other writer's copy (same content) is kept.

    ``fsync=False`` skips the fsyncs, for large files that are cheap to re-create (an NWB export
    of a GB): a crash of the writing process still never exposes a partial file; only a power
    loss right after the rename might.
    """
    dest = strip_protocol(path)
    folder, name = os.path.split(dest)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, _temp_name(name))
    try:
        yield tmp
        if fsync and os.path.isfile(tmp):
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, dest)
        except OSError:
            if not (os.path.isdir(tmp) and os.path.isdir(dest)):
                raise
            # another process published the same folder first; keep theirs
    finally:
        _remove_path(tmp)
    if not fsync:
        return
    # make the rename durable too (best effort: not every filesystem supports fsync on folders)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    Locally: :func:`atomic_local_path` (temp file in the same folder + fsync + ``os.replace``).
    On S3: a single PUT.
    """
    if is_remote(path):
        fs, p = filesystem(path)
        try:
            fs.pipe_file(p, data)
        except OSError as exc:
            raise CacheError(f"cannot write {len(data)} bytes: {exc}", path=path) from exc
        return
    with atomic_local_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


@timed
def download(url: str, dest: str) -> str:
    """Return `dest` after copying the remote file or folder `url` there, published atomically.

    A folder is fetched recursively. An existing `dest` is kept as it is (the caller names `dest`
    by content, so an existing copy is the same content).
    """
    if os.path.exists(dest):
        return dest
    fs, remote = filesystem(url)
    with atomic_local_path(dest) as tmp:
        if fs.isdir(remote):
            base = remote.rstrip("/")
            for name, info in fs.find(remote, detail=True).items():
                if info.get("type") == "directory":
                    continue
                target = os.path.join(tmp, os.path.relpath(name, base))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                fs.get_file(name, target)
            os.makedirs(tmp, exist_ok=True)
        else:
            fs.get_file(remote, tmp)
    return dest


def stat_key(path: str) -> tuple[int, str]:
    """Return (size in bytes, version) of the file at `path`: the one key of a file's content.

    ``version`` is the modification time (``str(st_mtime)``) of a local file and the
    modification stamp, else ETag, of a remote object, in the form discovery records them
    (:func:`version_of`). A missing file gives ``(-1, "")``, so a later file of that name gets
    another key.
    """
    if not is_remote(path):
        try:
            st = os.stat(strip_protocol(path))
        except OSError:
            return (-1, "")
        return (int(st.st_size), str(st.st_mtime))
    fs, p = filesystem(path)
    try:
        info = fs.info(p)
    except (FileNotFoundError, OSError):
        return (-1, "")
    return (int(info.get("size") or 0), version_of(info))


def version_of(info: Mapping[str, Any]) -> str:
    """Return the version stamp of an fsspec ``info``/``ls`` entry (mtime, else LastModified,
    else ETag), as text."""
    return str(info.get("mtime") or info.get("LastModified") or info.get("ETag") or "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: str) -> list[str]:
    """Delete temporary files in local `folder` left by writers on this host that are gone.

    Returns the deleted paths. Temporary files of live processes (a concurrent convert) are kept.
    Remote folders have no temporary files (writes are single PUTs), so nothing is done there.
    """
    if is_remote(folder) or not os.path.isdir(folder):
        return []
    host = socket.gethostname()
    removed = []
    for name in os.listdir(folder):
        if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
            continue
        parts = name[: -len(TEMP_SUFFIX)].split("~")
        if len(parts) != 4:
            continue
        _, tmp_host, pid, _ = parts
        if tmp_host != host.replace("~", "-"):
            continue  # another machine's writer may be alive; leave it
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
    return removed


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on local `path` (created if needed) for the block.

    Remote paths get no lock (S3 has none); callers merge on write instead.
    """
    if is_remote(path):
        yield
        return
    import fcntl

    p = strip_protocol(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
