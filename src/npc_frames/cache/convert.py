"""``convert``: raw sessions -> component Parquet files + catalog rows (local or pooled)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import importlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames import storage
from npc_frames.cache.catalog import (
    CATALOG_SCHEMA,
    WORKER_MEMORY_BYTES,
    _check_component,
    _safe_id,
    _write_catalog_rows,
    cache_root,
    data_path,
    read_catalog,
)
from npc_frames.cache.manifest import _annotations, read_manifest
from npc_frames.cache_layout import to_parquet_bytes
from npc_frames.errors import CacheError, NpcFramesError, ParameterError

if TYPE_CHECKING:
    from npc_frames.schemas import Schema


def _library_version() -> str:
    from npc_frames import __version__

    return str(__version__)


def _schema_version() -> int:
    from npc_frames.schemas import SCHEMA_VERSION

    return int(SCHEMA_VERSION)


def fingerprint(raw: Any) -> tuple[str, int, int]:
    """Return (sha256 hex, file count, total bytes) of a RawSession's input files.

    Paths are taken relative to the session root, so the fingerprint names the content (size +
    mtime/etag), not where the folder happens to be mounted.
    """
    stats: Mapping[str, tuple[int, str]] = getattr(raw, "file_stats", {}) or {}
    root = str(raw.root).rstrip("/") + "/"
    items = sorted(
        (p[len(root) :] if p.startswith(root) else p, int(size), str(stamp))
        for p, (size, stamp) in stats.items()
    )
    if not items:  # discovery recorded nothing: fall back to listing the folder
        items = storage.list_files(str(raw.root))
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    return digest, len(items), sum(i[1] for i in items)


@dataclass(frozen=True)
class _Task:
    """Everything one worker needs to convert one session (picklable for any executor)."""

    raw_path: str
    cache: str
    #: component name -> "module:function" target (resolved in the parent so a patched registry
    #: reaches the worker)
    targets: tuple[tuple[str, str], ...]
    schemas: Mapping[str, Schema]
    annotations: Mapping[str, Any]
    previous: Mapping[str, Mapping[str, Any]]
    overwrite: bool
    library_version: str
    schema_version: int
    session_id: str | None = None


@dataclass
class _Result:
    raw_path: str
    session_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _resolve(target: str) -> Callable[[Any], pl.DataFrame]:
    module, func = target.split(":")
    fn: Callable[[Any], pl.DataFrame] = getattr(importlib.import_module(module), func)
    return fn


def _convert_task(
    task: _Task, on_component: Callable[[str, str, int, int], None] | None = None
) -> _Result:
    """Convert one session (runs in a worker): compute, validate and write each component.

    `on_component(session_id, component, index, total)` is called before each component (used
    for the per-session progress line when the session runs in this process).
    """
    from npc_frames.paths import RawSession

    result = _Result(raw_path=task.raw_path, session_id=task.session_id)
    try:
        raw = RawSession.from_path(
            task.raw_path, session_id=task.session_id, annotations=dict(task.annotations)
        )
        sid = _safe_id(str(raw.session_id))
        fp, n_files, n_bytes = fingerprint(raw)
    except Exception as exc:
        result.error = _error_text(exc)
        return result
    result.session_id = sid
    storage_dirs: set[str] = set()
    for index, (name, target) in enumerate(task.targets):
        if on_component is not None:
            on_component(sid, name, index, len(task.targets))
        path = data_path(task.cache, name, sid)
        prev = task.previous.get(name)
        if (
            not task.overwrite
            and prev is not None
            and prev["fingerprint"] == fp
            and prev["schema_version"] == task.schema_version
            and (prev["status"] != "failed" or prev["library_version"] == task.library_version)
            and (prev["status"] == "failed" or storage.exists(path))
        ):
            result.skipped.append(name)
            continue
        folder = path.rsplit("/", 1)[0] if storage.is_remote(path) else os.path.dirname(path)
        if folder not in storage_dirs:
            storage.remove_stale_temp_files(folder)
            storage_dirs.add(folder)
        t0 = time.perf_counter()
        row: dict[str, Any] = {
            "session_id": sid,
            "component": name,
            "fingerprint": fp,
            "input_files": n_files,
            "input_bytes": n_bytes,
            "raw_path": raw.root,
            "library_version": task.library_version,
            "schema_version": task.schema_version,
            "error": None,
        }
        try:
            df = _resolve(target)(raw)
            schema = task.schemas.get(name)
            if schema is not None:
                df = schema.validate(df, source=raw.root)
            if df.columns and df.columns[0] != "session_id":
                raise CacheError(
                    f"component {name!r} frame does not start with session_id",
                    path=raw.root,
                    field=name,
                    expected="session_id as first column",
                )
            # no fingerprint or timestamp here: a file's bytes depend only on the frame and the
            # versions, so the same session converted anywhere (local, S3, Dask) is identical
            meta = {
                "npc_frames.component": name,
                "npc_frames.schema_version": str(task.schema_version),
                "npc_frames.library_version": task.library_version,
            }
            storage.atomic_write_bytes(path, to_parquet_bytes(df, component=name, metadata=meta))
            row.update(status="ok" if df.height else "empty", rows=df.height)
        except Exception as exc:
            # a stale file from an earlier success would contradict the catalog: remove it
            storage.remove(path)
            row.update(status="failed", rows=0, error=_error_text(exc))
        row["written_at"] = dt.datetime.now(dt.UTC)
        row["seconds"] = time.perf_counter() - t0
        result.rows.append(row)
    return result


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_workers(n_sessions: int) -> int:
    """Return the worker count of the default pool: cores, memory and session count bound it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = max(1, cores or 1)
    mem = _available_memory()
    if mem:
        workers = min(workers, max(1, mem // WORKER_MEMORY_BYTES))
    return max(1, min(workers, n_sessions))


class _Progress:
    """A one-line stderr bar: sessions done / total, and the current session's components."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self.failed = 0
        self.t0 = time.perf_counter()
        self.detail = ""

    def _draw(self) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        text = (
            f"\r[{bar}] {self.done}/{self.total} sessions"
            f"{f' ({self.failed} with failures)' if self.failed else ''}"
            f" {time.perf_counter() - self.t0:6.1f}s {self.detail}"
        )
        sys.stderr.write(text[:160].ljust(100))
        sys.stderr.flush()

    def session(self, result: _Result) -> None:
        self.done += 1
        bad = [r["component"] for r in result.rows if r["status"] == "failed"]
        if bad or result.error:
            self.failed += 1
        n = len(result.rows) + len(result.skipped)
        self.detail = f"| {result.session_id or result.raw_path}: {n - len(bad)}/{n} components ok"
        self._draw()

    def component(self, session_id: str, name: str, index: int, total: int) -> None:
        self.detail = f"| {session_id}: {name} ({index + 1}/{total})"
        self._draw()

    def start(self) -> None:
        self._draw()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _resolve_inputs(
    raw_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    manifest: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Return (raw path, session id or None, annotations) per session to convert."""
    if isinstance(raw_paths, str | os.PathLike):
        raw_paths = [raw_paths]
    paths = [os.fspath(p) for p in (raw_paths or [])]
    entries: dict[str, dict[str, Any]] = {}
    if manifest is not None:
        if isinstance(manifest, Mapping):
            entries = {_safe_id(k): dict(v or {}) for k, v in manifest.items()}
        else:
            entries = read_manifest(manifest)
    out: list[tuple[str, str | None, dict[str, Any]]] = []
    if not paths:
        for key, entry in entries.items():
            if not entry.get("raw_path"):
                raise ParameterError(
                    f"manifest entry {key} has no raw_path and no raw path was given",
                    path=None if isinstance(manifest, Mapping) else manifest,
                    field=key,
                    expected="raw_path: <folder or s3:// URL>",
                )
            out.append((str(entry["raw_path"]), key, _annotations(entry)))
        return out
    from npc_frames.ids import parse_session_id

    by_path = {
        storage.strip_protocol(str(e["raw_path"])): sid
        for sid, e in entries.items()
        if e.get("raw_path")
    }
    for p in paths:
        sid: str | None = by_path.get(storage.strip_protocol(p))
        if sid is None and entries:
            try:
                sid = str(parse_session_id(p.rstrip("/").rsplit("/", 1)[-1]))
            except NpcFramesError:
                sid = None
            if sid not in entries:
                sid = None
        out.append((p, None, _annotations(entries[sid]) if sid else {}))
    return out


def convert(
    raw_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    cache: str | os.PathLike[str] | None = None,
    *,
    executor: cf.Executor | None = None,
    components: Sequence[str] | None = None,
    overwrite: bool = False,
    manifest: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Return the catalog rows of this run after writing every component of every session.

    Parameters
    ----------
    raw_paths:
        Raw session folders (local paths or ``s3://`` URLs). ``None``/empty with a `manifest`
        converts every session the manifest lists.
    cache:
        Cache root (local folder or ``s3://bucket/prefix``); default ``$NPC_FRAMES_CACHE``, else
        ``./npc_frames_cache``.
    executor:
        Any ``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client(...).get_executor()``).
        Default: in this process for one session, else a spawn-based process pool sized to the
        cores and the available memory. A caller-supplied executor is not shut down.
    components:
        Subset of component names (default: all, in registry order).
    overwrite:
        Recompute even when the inputs' fingerprint and the schema version are unchanged.
    manifest:
        Tracked-sessions file (YAML/JSON, see :func:`read_manifest`) or an equivalent mapping; an
        entry's ``notes``/``issues``/``invalid_times`` reach the components through
        ``RawSession.annotations``.
    progress:
        Draw a progress bar on stderr; default: only when stderr is a terminal.

    Incremental rule: a (session, component) whose catalog row has the same input fingerprint and
    schema version (and, for failures, the same library version — a fixed bug gets a retry) and
    whose file exists is skipped. A failing component is recorded with ``status="failed"`` and its
    error; the session's other components are still written. The returned frame has the catalog
    columns plus ``skipped`` (True for rows taken unchanged from the catalog). Sessions whose
    folder cannot even be opened (missing folder, unparseable or unsafe session id) are returned
    with ``component = "*"`` and are not entered into the catalog.
    """
    from npc_frames.components import COMPONENTS
    from npc_frames.schemas import SCHEMAS

    root = cache_root(cache)
    names = list(components) if components is not None else list(COMPONENTS)
    for n in names:
        _check_component(n)
    inputs = _resolve_inputs(raw_paths, manifest)
    catalog = read_catalog(root)
    previous: dict[str, dict[str, dict[str, Any]]] = {}
    for r in catalog.iter_rows(named=True):
        previous.setdefault(r["session_id"], {})[r["component"]] = r
    lib, schema_version = _library_version(), _schema_version()
    targets = tuple((n, COMPONENTS[n]) for n in names)
    schemas = {n: SCHEMAS[n] for n in names if n in SCHEMAS}

    def task_for(raw_path: str, sid: str | None, ann: dict[str, Any]) -> _Task:
        key = sid
        if key is None:
            try:
                from npc_frames.ids import parse_session_id

                key = str(parse_session_id(raw_path.rstrip("/").rsplit("/", 1)[-1]))
            except NpcFramesError:
                key = None
        return _Task(
            raw_path=raw_path,
            cache=root,
            targets=targets,
            schemas=schemas,
            annotations=ann,
            previous=previous.get(key or "", {}),
            overwrite=overwrite,
            library_version=lib,
            schema_version=schema_version,
            session_id=sid,
        )

    tasks = [task_for(*i) for i in inputs]
    bar = _Progress(len(tasks), sys.stderr.isatty() if progress is None else progress)
    bar.start()
    results: list[_Result] = []

    def collect(res: _Result) -> None:
        results.append(res)
        if res.rows:
            _write_catalog_rows(root, pl.DataFrame(res.rows, schema=CATALOG_SCHEMA))
        bar.session(res)

    own_pool: cf.Executor | None = None
    try:
        if executor is None and len(tasks) > 1 and default_workers(len(tasks)) > 1:
            own_pool = cf.ProcessPoolExecutor(
                max_workers=default_workers(len(tasks)),
                mp_context=multiprocessing.get_context("spawn"),
            )
            executor = own_pool
        if executor is None:
            for t in tasks:
                collect(_convert_task(t, bar.component if bar.enabled else None))
        else:
            futures = {executor.submit(_convert_task, t): t for t in tasks}
            for fut in cf.as_completed(futures):
                t = futures[fut]
                try:
                    collect(fut.result())
                except Exception as exc:  # a worker died (OOM, killed): record and go on
                    collect(_Result(raw_path=t.raw_path, session_id=None, error=_error_text(exc)))
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return _run_frame(results, previous)


def _run_frame(
    results: list[_Result], previous: Mapping[str, Mapping[str, Mapping[str, Any]]]
) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for res in results:
        if res.error is not None:
            rows.append(
                {
                    "session_id": res.session_id,
                    "component": "*",
                    "status": "failed",
                    "rows": 0,
                    "error": res.error,
                    "raw_path": res.raw_path,
                    "skipped": False,
                }
            )
            continue
        rows.extend({**r, "skipped": False} for r in res.rows)
        for name in res.skipped:
            rows.append({**previous[res.session_id or ""][name], "skipped": True})
    schema = pl.Schema({**dict(CATALOG_SCHEMA), "skipped": pl.Boolean()})
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema).sort(["session_id", "component"], nulls_last=True)
