"""The Parquet cache: ``convert`` raw sessions into it, ``scan_*``/``sql`` across sessions.

Layout (``docs/cache.md``)::

    <cache>/catalog.parquet                              one row per (session_id, component)
    <cache>/<component>/session_id=<id>/data.parquet     one file per component per session

Files are replaced atomically (:mod:`npc_frames.storage`), so scans never see half a session; the
catalog is merged on write under a file lock (locally) or by re-reading before each PUT (S3), so
two converts into one cache leave it consistent. The cache knows nothing about how a component is
computed: it calls ``npc_frames.components`` and conforms to ``npc_frames.schemas``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import datetime as dt
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from npc_frames import storage
from npc_frames.cache_layout import (
    LAYOUTS,
    PACKED_KEY,
    packed_columns,
    to_parquet_bytes,
    unpack,
    unpack_expr,
)
from npc_frames.errors import CacheError, InvalidIdError, NpcFramesError, ParameterError

if TYPE_CHECKING:
    import duckdb

    from npc_frames.schemas import Schema

__all__ = [
    "CATALOG_FILE",
    "CATALOG_SCHEMA",
    "DATA_FILE",
    "cache_root",
    "connect",
    "convert",
    "data_path",
    "read_catalog",
    "read_manifest",
    "read_session",
    "scan",
    "sql",
]

DATA_FILE = "data.parquet"
CATALOG_FILE = "catalog.parquet"
CATALOG_LOCK = ".catalog.lock"
DEFAULT_CACHE = "npc_frames_cache"
ENV_CACHE = "NPC_FRAMES_CACHE"
#: memory one conversion worker may need at worst (a full-scale session's units), for pool sizing
WORKER_MEMORY_BYTES = 4 * 1024**3

CATALOG_SCHEMA: pl.Schema = pl.Schema(
    {  # type: ignore[arg-type]
        "session_id": pl.String,
        "component": pl.String,
        "status": pl.String,  # "ok" | "empty" | "failed"
        "rows": pl.Int64,
        "error": pl.String,  # "<ErrorType>: <message>" for failed components
        "fingerprint": pl.String,  # sha256 of (relative path, size, mtime/etag) of the raw inputs
        "input_files": pl.Int64,
        "input_bytes": pl.Int64,
        "raw_path": pl.String,
        "library_version": pl.String,
        "schema_version": pl.Int64,
        "written_at": pl.Datetime("us", "UTC"),
        "seconds": pl.Float64,  # time spent computing + writing this component
    }
)


# ------------------------------------------------------------------------------------ paths
def cache_root(cache: str | os.PathLike[str] | None = None) -> str:
    """Return the cache root: `cache`, else ``$NPC_FRAMES_CACHE``, else ``./npc_frames_cache``."""
    if cache is None:
        cache = os.environ.get(ENV_CACHE) or DEFAULT_CACHE
    return storage.strip_protocol(os.fspath(cache))


def _component_names() -> list[str]:
    from npc_frames.components import COMPONENTS

    return list(COMPONENTS)


def _check_component(component: str) -> str:
    if component not in _component_names():
        from npc_frames.errors import SchemaError

        raise SchemaError(
            f"unknown component {component!r}",
            field=component,
            expected=f"one of {_component_names()}",
        )
    return component


def _safe_id(session_id: object) -> str:
    from npc_frames.ids import safe_session_id

    return safe_session_id(session_id)


def data_path(cache: str, component: str, session_id: object) -> str:
    """Return the path of one component file of one session (the id is validated first).

    Raises InvalidIdError for an id that would escape the cache root (``../x``, ``/abs``).
    """
    return storage.join(
        cache, _check_component(component), f"session_id={_safe_id(session_id)}", DATA_FILE
    )


def _glob(cache: str, component: str) -> str:
    return storage.join(cache, component, "session_id=*", DATA_FILE)


# ---------------------------------------------------------------------------------- catalog
def _empty_catalog() -> pl.DataFrame:
    return pl.DataFrame(schema=CATALOG_SCHEMA)


def read_catalog(cache: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """Return the catalog: one row per (session_id, component) ever converted into `cache`.

    Examples
    --------
    >>> catalog = nf.read_catalog("cache/")
    >>> catalog.filter(component="units").select("session_id", "status", "rows").row(0)
    ('603074_2023-08-31', 'ok', 8)
    """
    root = cache_root(cache)
    path = storage.join(root, CATALOG_FILE)
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        return _empty_catalog()
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # a catalog is only ever replaced atomically; this is corruption
        raise CacheError(f"catalog cannot be read: {exc}", path=path) from exc
    missing = [c for c in CATALOG_SCHEMA if c not in df.columns]
    df = df.with_columns(pl.lit(None, dtype=CATALOG_SCHEMA[c]).alias(c) for c in missing)
    return df.select(pl.col(c).cast(t) for c, t in CATALOG_SCHEMA.items())


def _merge_catalog(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Return `old` updated with `new`: per (session_id, component) the latest written_at wins."""
    both = pl.concat([old, new.select(CATALOG_SCHEMA.names())], how="vertical")
    return (
        both.with_row_index("_order")
        .sort(["session_id", "component", "written_at", "_order"], nulls_last=False)
        .unique(["session_id", "component"], keep="last", maintain_order=True)
        .drop("_order")
        .sort(["session_id", "component"])
    )


def _write_catalog_rows(root: str, rows: pl.DataFrame) -> None:
    """Merge `rows` into the catalog of `root` (lock + re-read locally; re-read + PUT on S3)."""
    if rows.is_empty():
        return
    path = storage.join(root, CATALOG_FILE)
    with storage.file_lock(storage.join(root, CATALOG_LOCK)):
        merged = _merge_catalog(read_catalog(root), rows)
        buf = io.BytesIO()
        merged.write_parquet(buf, compression="zstd")
        storage.atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------- manifest
def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Return a tracked-sessions manifest as canonical session id -> entry.

    The file is YAML or JSON; either a mapping ``session id -> entry`` or ``{"sessions": [entry,
    …]}`` whose entries carry ``session_id``. An entry is a raw path string or a mapping with
    ``raw_path`` (or ``path``), ``notes``, ``issues``, ``invalid_times`` (``[{start_time,
    stop_time, reason}]``) and ``assets`` (``{kind: folder}``, see ``RawSession.from_path``). Raises BadFormatError naming the file and the offending entry.
    """
    from npc_frames.errors import BadFormatError

    text = storage.read_bytes(storage.strip_protocol(os.fspath(path))).decode()
    try:
        if os.fspath(path).endswith(".json"):
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as exc:
        raise BadFormatError(f"manifest cannot be parsed: {exc}", path=path) from exc
    if isinstance(doc, Mapping) and "sessions" in doc:
        doc = doc["sessions"]
    if isinstance(doc, list):
        items = []
        for i, entry in enumerate(doc):
            if not isinstance(entry, Mapping) or "session_id" not in entry:
                raise BadFormatError(
                    f"manifest entry {i} has no session_id",
                    path=path,
                    field=f"sessions[{i}]",
                    expected="a mapping with session_id and raw_path",
                )
            items.append((entry["session_id"], entry))
    elif isinstance(doc, Mapping):
        items = list(doc.items())
    else:
        raise BadFormatError(
            "manifest is neither a mapping nor a list",
            path=path,
            expected="session id -> {raw_path, notes, issues, invalid_times}",
        )
    out: dict[str, dict[str, Any]] = {}
    for key, entry in items:
        try:
            sid = _safe_id(str(key))
        except InvalidIdError as exc:
            raise BadFormatError(
                f"manifest key {key!r} is not a session id: {exc.message}",
                path=path,
                field=str(key),
                expected="<subject>_<YYYY-MM-DD>[_<idx>]",
            ) from None
        if isinstance(entry, str):
            entry = {"raw_path": entry}
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise BadFormatError(
                f"manifest entry for {sid} is not a mapping",
                path=path,
                field=str(key),
                expected="{raw_path, notes, issues, invalid_times}",
            )
        entry = dict(entry)
        if "path" in entry and "raw_path" not in entry:
            entry["raw_path"] = entry.pop("path")
        out[sid] = entry
    return out


def _annotations(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("raw_path", "session_id")}


# ---------------------------------------------------------------------------------- convert
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
            task.raw_path,
            session_id=task.session_id,
            annotations=dict(task.annotations),
            assets=task.annotations.get("assets"),  # manifest `assets: {kind: path}`
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

    Examples
    --------
    >>> status = nf.convert(["raw/ecephys_603074_2023-08-31_12-33-31"], cache="cache/")
    >>> status.filter(component="trials").select("session_id", "status", "rows").row(0)
    ('603074_2023-08-31', 'ok', 18)
    >>> sorted(set(status["status"]))  # converting again is incremental: nothing changed
    ['empty', 'ok']
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


# ------------------------------------------------------------------------------------ scans
def _schema_of(component: str) -> pl.Schema | None:
    from npc_frames.schemas import SCHEMAS

    s = SCHEMAS.get(component)
    return s.polars_schema if s is not None else None


def scan(component: str, cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
    """Return a LazyFrame over one component of every session in the cache.

    The schema is the registered one (``npc_frames.schemas``) whatever the files hold: columns
    missing from older files come back null, undeclared extra columns are dropped. Filters on
    ``session_id`` prune whole files (hive partitioning); other filters and projections are pushed
    into the Parquet reader (row-group statistics, column selection). A component with no files yet
    gives an empty frame of its schema.

    Examples
    --------
    >>> trials = nf.scan("trials", cache="cache/")  # the same as nf.scan_trials(cache="cache/")
    >>> trials.collect_schema().names()[:3]
    ['session_id', 'start_time', 'stop_time']
    >>> n_trials = truth.script("DynamicRouting1")["truth"]["n_trials"]
    >>> trials.select(pl.len()).collect().item() == n_trials
    True
    """
    _check_component(component)
    root = cache_root(cache)
    schema = _schema_of(component)
    pattern = _glob(root, component)
    files = storage.glob(pattern)
    if not files:
        return pl.LazyFrame(schema=schema if schema is not None else {"session_id": pl.String})
    packed = _packed(component, schema, files[0])
    kwargs: dict[str, Any] = {
        "hive_partitioning": True,
        "hive_schema": {"session_id": pl.String},
        "storage_options": storage.polars_storage_options(root),
        "missing_columns": "insert",
        "extra_columns": "ignore",
    }
    if schema is not None:
        # packed list columns are byte arrays on disk (cache_layout); unpacked after the scan,
        # which keeps filters on other columns and projections pushed into the reader
        kwargs["schema"] = pl.Schema(
            {n: (pl.Binary() if n in packed else t) for n, t in schema.items()}
        )
    lf = pl.scan_parquet(pattern, **kwargs)
    if packed:
        lf = lf.with_columns(unpack_expr(n, e) for n, e in packed.items())
    return lf


def _packed(component: str, schema: pl.Schema | None, sample_file: str) -> dict[str, str]:
    """Return {column: element dtype} of the packed columns of a component's files."""
    layout = LAYOUTS.get(component)
    if layout is None or not layout.packed:
        return {}
    if schema is not None:
        return packed_columns(layout, schema)
    # no registered schema: the file's own metadata says what is packed
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(sample_file)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    raw = meta.get(PACKED_KEY.encode())
    return dict(json.loads(raw)) if raw else {}


class ScanFunction(Protocol):
    """The type of every ``scan_<component>`` function."""

    __name__: str

    def __call__(self, cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame: ...


def _make_scan(component: str) -> ScanFunction:
    def scan_component(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
        return scan(component, cache)

    scan_component.__name__ = scan_component.__qualname__ = f"scan_{component}"
    scan_component.__doc__ = (
        f"Return a LazyFrame over the ``{component}`` component of every cached session "
        f"(see :func:`scan`).\n\n"
        f"Examples\n--------\n"
        f'>>> lf = nf.scan_{component}(cache="cache/")\n'
        f">>> lf.collect_schema() == nf.SCHEMAS[{component!r}].polars_schema\n"
        f"True\n"
    )
    return scan_component


# one explicit name per component so that type checkers see them (tests/test_public_api.py)
scan_sessions = _make_scan("sessions")
scan_subjects = _make_scan("subjects")
scan_epochs = _make_scan("epochs")
scan_trials = _make_scan("trials")
scan_performance = _make_scan("performance")
scan_vis_rf_mapping = _make_scan("vis_rf_mapping")
scan_aud_rf_mapping = _make_scan("aud_rf_mapping")
scan_optotagging = _make_scan("optotagging")
scan_luminance_test = _make_scan("luminance_test")
scan_invalid_times = _make_scan("invalid_times")
scan_licks = _make_scan("licks")
scan_rewards = _make_scan("rewards")
scan_running_speed = _make_scan("running_speed")
scan_quiescent_violations = _make_scan("quiescent_violations")
scan_video_frame_times = _make_scan("video_frame_times")
scan_eye_tracking = _make_scan("eye_tracking")
scan_dlc_eye_camera = _make_scan("dlc_eye_camera")
scan_lp_side_camera = _make_scan("lp_side_camera")
scan_lp_front_camera = _make_scan("lp_front_camera")
scan_facemap_side_camera = _make_scan("facemap_side_camera")
scan_facemap_front_camera = _make_scan("facemap_front_camera")
scan_devices = _make_scan("devices")
scan_electrode_groups = _make_scan("electrode_groups")
scan_electrodes = _make_scan("electrodes")
scan_units = _make_scan("units")


def __getattr__(name: str) -> Any:
    # scan_<component> for components registered after this module was written
    if name.startswith("scan_") and name[5:] in _component_names():
        return _make_scan(name[5:])
    raise AttributeError(f"module 'npc_frames.cache' has no attribute {name!r}")


def read_session(
    session_id: object, cache: str | os.PathLike[str] | None = None
) -> dict[str, pl.DataFrame]:
    """Return every cached component of one session as name -> DataFrame.

    Components that failed or were never converted are absent; the catalog says why. Raises
    InvalidIdError for an unsafe id, CacheError when the cache holds nothing for the session.

    Examples
    --------
    >>> frames = nf.read_session("603074_2023-08-31", cache="cache/")
    >>> frames["trials"].height, frames["units"].height
    (18, 8)
    """
    root = cache_root(cache)
    sid = _safe_id(session_id)
    out: dict[str, pl.DataFrame] = {}
    for name in _component_names():
        path = data_path(root, name, sid)
        try:
            data = storage.read_bytes(path)
        except FileNotFoundError:
            continue
        df = pl.read_parquet(io.BytesIO(data))
        schema = _schema_of(name)
        layout = LAYOUTS.get(name)
        if layout is not None and layout.packed:
            packed = packed_columns(layout, schema) if schema is not None else {}
            df = df.with_columns(
                unpack(df[c], e) for c, e in packed.items() if df.schema.get(c) == pl.Binary
            )
        if schema is not None:
            df = df.select(
                pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in schema.items()
            )
        out[name] = df
    if not out:
        raise CacheError(
            f"no component of session {sid} in the cache",
            path=root,
            field=sid,
            expected="a session converted with npc_frames.convert",
        )
    return out


# -------------------------------------------------------------------------------------- SQL
def _register_remote_fs(con: duckdb.DuckDBPyConnection, root: str) -> None:
    fs, _ = storage.filesystem(root)
    con.register_filesystem(fs)


def connect(
    cache: str | os.PathLike[str] | None = None, *, views: Iterable[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """Return an in-memory DuckDB connection with one view per component of the cache.

    Each view reads ``<cache>/<component>/session_id=*/data.parquet`` with hive partitioning and
    union_by_name, in the registered schema's column order (absent columns null). ``spike_times``
    is a long view (session_id, unit_id, spike_time) over ``units``; ``catalog`` is the catalog.
    For ``s3://`` caches the fsspec filesystem (AWS environment) is registered with DuckDB.
    `views` restricts the views created (binding a view reads the footers of its files, so
    :func:`sql` creates only those its query names).

    Examples
    --------
    >>> con = nf.connect("cache/")
    >>> con.execute("SELECT count(*) FROM units").fetchone()
    (8,)
    """
    import duckdb

    root = cache_root(cache)
    con = duckdb.connect()
    if storage.is_remote(root):
        _register_remote_fs(con, root)
    wanted = set(_component_names()) | {"spike_times", "catalog"} if views is None else set(views)
    if "spike_times" in wanted:
        wanted.add("units")
    present = _present_components(root)
    registered: set[str] = set()
    for name in _component_names():
        if name not in wanted:
            continue
        schema = _schema_of(name)
        pattern = _glob(root, name)
        typed = f"_schema_{name}"
        if schema is not None:
            con.register(typed, pl.DataFrame(schema=schema).to_arrow())
        if name in present:
            source = (
                f"SELECT * FROM read_parquet('{_sql_str(pattern)}', hive_partitioning=true, "
                f"union_by_name=true, hive_types={{'session_id': VARCHAR}})"
            )
            layout = LAYOUTS.get(name)
            packed = packed_columns(layout, schema) if layout and schema is not None else {}
            if packed:
                replace = ", ".join(
                    f"{_unpack_udf(con, e, registered)}({_sql_ident(c)}) AS {_sql_ident(c)}"
                    for c, e in packed.items()
                )
                source = source.replace("SELECT *", f"SELECT * REPLACE ({replace})", 1)
            if schema is not None:
                cols = ", ".join(_sql_ident(c) for c in schema.names())
                source = f"SELECT {cols} FROM (SELECT * FROM {typed} UNION ALL BY NAME {source})"
        elif schema is not None:
            source = f"SELECT * FROM {typed}"
        else:
            continue
        con.execute(f"CREATE VIEW {_sql_ident(name)} AS {source}")
    if "spike_times" in wanted:
        # units without unit_id/spike_times (schema not declared yet) get no spike_times view
        with contextlib.suppress(duckdb.Error):
            con.execute(
                "CREATE VIEW spike_times AS SELECT session_id, unit_id, "
                "unnest(spike_times) AS spike_time FROM units"
            )
    if "catalog" in wanted:
        con.register("catalog", read_catalog(root).to_arrow())
    return con


_DUCKDB_TYPES = {"float64": "DOUBLE", "float32": "FLOAT", "int64": "BIGINT", "int32": "INTEGER"}


def _present_components(root: str) -> set[str]:
    """Return the components that have at least one file in the cache (one listing)."""
    return {
        p.replace("\\", "/").rsplit("/", 3)[-3]
        for p in storage.glob(storage.join(root, "*", "session_id=*", DATA_FILE))
    }


def _unpack_udf(
    con: duckdb.DuckDBPyConnection, element: str, registered: set[str] | None = None
) -> str:
    """Return the name of a DuckDB function unpacking a packed column (registered on `con`)."""
    import duckdb
    import pyarrow as pa

    name = f"npc_unpack_{element}"
    if registered is not None and name in registered:
        return name
    if registered is not None:
        registered.add(name)

    def fn(arr: Any) -> Any:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        out = unpack(pl.Series("x", arr), element).to_arrow()
        return out.cast(pa.list_(out.type.value_type))

    element_type = duckdb.sqltype(_DUCKDB_TYPES[element])
    con.create_function(  # type: ignore[call-overload]
        name,
        fn,
        [duckdb.sqltype("BLOB")],
        duckdb.list_type(element_type),
        type="arrow",
        null_handling="special",
        side_effects=False,
    )
    return name


def _referenced_views(query: str) -> set[str]:
    """Return the view names (components, spike_times, catalog) that appear as words in `query`."""
    import re

    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.lower()))
    return words & ({*_component_names(), "spike_times", "catalog"})


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql(
    query: str,
    cache: str | os.PathLike[str] | None = None,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Return the result of a DuckDB `query` over the cache's views as a Polars DataFrame.

    `params` are bound by DuckDB (``?`` / ``$name`` placeholders), never formatted into the text.

    Examples
    --------
    >>> nf.sql("SELECT stim_name, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1", cache="cache/").rows()
    [('catch', 1), ('sound1', 5), ('sound2', 3), ('vis1', 7), ('vis2', 2)]
    >>> nf.sql("SELECT count(*) AS n FROM trials WHERE stim_name = ?", cache="cache/", params=["vis1"]).item()
    7
    """
    import duckdb

    root = cache_root(cache)
    views = _referenced_views(query)
    reusable = _is_read_only(query) and "catalog" not in views
    entry = _cached_connection(root, views) if reusable else None
    con = entry[0] if entry is not None else connect(root, views=views)
    lock = entry[1] if entry is not None else threading.Lock()
    try:
        with lock:
            rel = con.sql(query, params=params)
            if rel is None:
                return pl.DataFrame()
            return pl.from_arrow(rel.to_arrow_table())  # type: ignore[return-value]
    except duckdb.Error as exc:
        raise ParameterError(f"SQL query failed: {exc}", field="query", expected=query) from exc
    finally:
        if entry is None:
            con.close()


#: (root, views, components with files, registries) -> (connection, lock); views re-read their
#: globs on every query, so a connection stays valid while those keys are unchanged
_CONNECTIONS: collections.OrderedDict[tuple[Any, ...], tuple[Any, threading.Lock]] = (
    collections.OrderedDict()
)
_CONNECTIONS_MAX = 8
_CONNECTIONS_LOCK = threading.Lock()


def _is_read_only(query: str) -> bool:
    """Return True for a single SELECT-like statement (safe to run on a shared connection)."""
    text = query.strip().rstrip(";").strip()
    first = text.split(None, 1)[0].lower() if text else ""
    return ";" not in text and first in {
        "select",
        "with",
        "from",
        "explain",
        "describe",
        "summarize",
    }


def _cached_connection(root: str, views: set[str]) -> tuple[Any, threading.Lock]:
    """Return a shared (connection, lock) for read-only queries naming `views` in `root`."""
    from npc_frames import components, schemas

    key = (
        root,
        frozenset(views),
        frozenset(_present_components(root)),
        id(components.COMPONENTS),
        id(schemas.SCHEMAS),
        schemas.SCHEMA_VERSION,
    )
    with _CONNECTIONS_LOCK:
        entry = _CONNECTIONS.get(key)
        if entry is not None:
            _CONNECTIONS.move_to_end(key)
            return entry
    entry = (connect(root, views=views), threading.Lock())
    with _CONNECTIONS_LOCK:
        _CONNECTIONS[key] = entry
        while len(_CONNECTIONS) > _CONNECTIONS_MAX:
            _, (old, old_lock) = _CONNECTIONS.popitem(last=False)
            with old_lock:  # never close a connection mid-query
                old.close()
    return entry
