"""``convert``: raw sessions -> component Parquet files + catalog rows (local or pooled)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames import parts, storage
from npc_frames.cache import pool
from npc_frames.cache.catalog import (
    BAD_STATUSES,
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
from npc_frames.cache.scan import corrupt_file
from npc_frames.cache_layout import to_parquet_bytes
from npc_frames.errors import AbsentModalityError, CacheError, NpcFramesError, ParameterError

if TYPE_CHECKING:
    from npc_frames.schemas import Schema

logger = logging.getLogger(__name__)


def _library_version() -> str:
    from npc_frames import __version__

    return str(__version__)


def _schema_version() -> int:
    from npc_frames.schemas import SCHEMA_VERSION

    return int(SCHEMA_VERSION)


@dataclass(frozen=True)
class _Inputs:
    """The files of one session as listed now: relative path -> (size, stamp)."""

    root: str
    files: Mapping[str, tuple[int, str]]
    #: digest of the file names: a file added or removed anywhere changes every component
    names: str
    #: ``manifest:<key>`` -> (0, digest of the value) of every manifest annotation; the
    #: training-records file's size and stamp are part of its key's digest
    annotations: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: Any) -> _Inputs:
        stats: Mapping[str, tuple[int, str]] = getattr(raw, "file_stats", {}) or {}
        root = str(raw.root).rstrip("/")
        files = {r: (int(n), str(v)) for r, n, v in storage.list_files(root)}
        for p, (size, stamp) in stats.items():
            if not p.startswith(root + "/"):  # an asset outside the session folder
                files.setdefault(p, (int(size), str(stamp)))
        names = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()
        return cls(root, files, names, _annotation_stamps(raw))

    def relative(self, reads: Iterable[str]) -> list[str]:
        """Return the listed files among `reads` (absolute paths/URLs; a folder means all its
        files), relative to the session root, sorted."""
        out: set[str] = set()
        prefix = self.root + "/"
        for p in reads:
            if p.startswith(parts.ANNOTATION_PREFIX):
                out.add(p)  # an annotation looked up, present or not
                continue
            p = p.removeprefix("file://").rstrip("/")
            rel = p[len(prefix) :] if p.startswith(prefix) else p
            if rel in self.files:
                out.add(rel)
            elif p.startswith(prefix) or p == self.root:
                folder = "" if p == self.root else rel + "/"
                out.update(f for f in self.files if f.startswith(folder))
        return sorted(out)

    def fingerprint(self, inputs: Sequence[str], schema: str = "") -> tuple[str, int, int]:
        """Return (sha256 hex, file count, bytes) of `inputs` as they are now, plus the names and
        `schema` (the component's :func:`~npc_frames.schemas.structure_digest`)."""
        items = [(r, *self.files.get(r, self.annotations.get(r, (-1, "missing")))) for r in inputs]
        text = json.dumps([self.names, items, schema], separators=(",", ":"))
        files = [i for i in items if not str(i[0]).startswith(parts.ANNOTATION_PREFIX)]
        return (
            hashlib.sha256(text.encode()).hexdigest(),
            len(files),
            sum(max(0, int(i[1])) for i in files),
        )


def _annotation_stamps(raw: Any) -> dict[str, tuple[int, str]]:
    """Return ``manifest:<key>`` -> (0, digest) of every annotation of `raw`: a component that
    looked a key up is recomputed when the manifest changes its value (or adds or removes it).
    The ``training_records`` value is a file: its size and modification stamp join the digest,
    so editing the records recomputes the components that used them."""
    ann = getattr(raw, "annotations", None) or {}
    values = ann.unrecorded() if isinstance(ann, parts.Annotations) else dict(ann)
    out: dict[str, tuple[int, str]] = {}
    for key, value in values.items():
        text = json.dumps(value, sort_keys=True, default=str)
        if key == "training_records" and value is not None:
            try:
                st = storage.stat_key(str(value))
            except Exception:  # absent or unreadable: the sessions component reports it
                st = None
            text += json.dumps(st, default=str)
        out[parts.ANNOTATION_PREFIX + str(key)] = (0, hashlib.sha256(text.encode()).hexdigest())
    return out


def fingerprint(raw: Any) -> tuple[str, int, int]:
    """Return (sha256 hex, file count, total bytes) of every input file of a RawSession.

    The inputs are every file under the session folder (listed recursively, so files no
    discovery step names — ``structure.oebin``, TTL events, ``sync_messages.txt`` — are
    included) plus any discovered file outside it. Paths are taken relative to the session root,
    so the fingerprint names the content (size + mtime/etag), not where the folder is mounted.
    """
    stats: Mapping[str, tuple[int, str]] = getattr(raw, "file_stats", {}) or {}
    root = str(raw.root).rstrip("/") + "/"
    listed = {
        rel: (int(size), str(stamp)) for rel, size, stamp in storage.list_files(str(raw.root))
    }
    for p, (size, stamp) in stats.items():
        if not p.startswith(root):  # an asset outside the session folder
            listed.setdefault(p, (int(size), str(stamp)))
    items = sorted((rel, size, stamp) for rel, (size, stamp) in listed.items())
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    return digest, len(items), sum(i[1] for i in items)


#: the column naming the probe (``probe<letter>``) of each ephys component's rows: one catalog
#: part row per probe is derived from it
PROBE_COLUMNS: dict[str, str] = {
    "devices": "electrode_group_name",
    "electrode_groups": "name",
    "electrodes": "group_name",
    "units": "electrode_group_name",
    "spike_amplitudes": "electrode_group_name",
    "unit_waveforms": "electrode_group_name",
}


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
    #: component -> its catalog rows (component row first, then part rows)
    previous: Mapping[str, Sequence[Mapping[str, Any]]]
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
    error_type: str | None = None
    error_location: str | None = None


def _schema_digest(task: _Task, name: str) -> str:
    """Return the structure digest of component `name`'s schema ("" for one without a schema)."""
    schema = task.schemas.get(name)
    return schema.digest if schema is not None else ""


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _resolve(target: str) -> Callable[[Any], pl.DataFrame]:
    module, func = target.split(":")
    fn: Callable[[Any], pl.DataFrame] = getattr(importlib.import_module(module), func)
    return fn


def _is_unchanged(task: _Task, name: str, inputs: _Inputs, path: str) -> bool:
    """Return True when component `name` can be taken unchanged from the catalog: the files it
    read last time are unchanged (and no file was added or removed), same schema version, …"""
    prev_rows = task.previous.get(name) or ()
    prev = prev_rows[0] if prev_rows else None
    if task.overwrite or prev is None or prev.get("part") is not None:
        return False
    if prev.get("inputs") is None:
        return False  # a row from before per-component inputs were recorded
    fp = inputs.fingerprint(list(prev["inputs"]), _schema_digest(task, name))[0]
    status = prev["status"]
    retry = status in ("failed", "partial") and prev["library_version"] != task.library_version
    # a file whose footer cannot be read (truncated, overwritten) is recomputed even when the
    # fingerprint is unchanged; reading the footer is one ranged read on S3
    has_file = status in ("failed", "absent") or corrupt_file(path) is None
    return bool(
        prev["fingerprint"] == fp
        and prev["schema_version"] == task.schema_version
        and not retry
        and has_file
    )


def _status_rows(
    name: str, df: pl.DataFrame | None, exc: BaseException | None, found: Sequence[parts.Part]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return (component row fields, part rows fields) from a component's outcome.

    ``ok``/``empty`` only when nothing was reported damaged; a reported failed part makes the
    component ``partial`` (rows written) or ``failed`` (no rows); AbsentModalityError: ``absent``.
    """
    whole = [p for p in found if p.part == parts.COMPONENT]  # report_absent_component
    found = [p for p in found if p.part != parts.COMPONENT]
    failures = [p for p in found if p.status == "failed"]
    part_rows: list[dict[str, Any]] = []
    by_part: dict[str, dict[str, Any]] = {}
    probe_col = PROBE_COLUMNS.get(name)
    if df is not None and probe_col is not None and probe_col in df.columns and df.height:
        counts = df.group_by(probe_col).len().sort(probe_col)
        for group, n in counts.iter_rows():
            letter = str(group).removeprefix("probe") if group is not None else None
            by_part[str(group)] = {"part": str(group), "probe": letter, "status": "ok", "rows": n}
    for p in found:
        if p.part in by_part and p.status == "absent":
            continue  # rows were written for it after all
        by_part[p.part] = {
            "part": p.part,
            "probe": p.probe,
            "status": p.status,
            "rows": 0,
            "error": p.error,
            "error_type": p.error_type,
            "error_location": p.location,
        }
    part_rows = list(by_part.values())
    rows = df.height if df is not None else 0
    comp: dict[str, Any] = {"rows": rows, "error": None, "error_type": None, "error_location": None}
    if isinstance(exc, AbsentModalityError):
        part_rows = []  # what was tried before the modality was found missing does not matter
    if exc is not None:
        comp.update(
            status="absent" if isinstance(exc, AbsentModalityError) else "failed",
            rows=0,
            error=_error_text(exc),
            error_type=type(exc).__name__,
            error_location=parts.error_location(exc),
        )
    elif failures:
        first = failures[0]
        comp.update(
            status="partial" if rows else "failed",
            error="; ".join(f"{p.part}: {p.error}" for p in failures),
            error_type=first.error_type,
            error_location=first.location,
        )
    elif whole and not rows:
        comp.update(
            status="absent",
            error="; ".join(dict.fromkeys(p.error for p in whole)),
            error_type=whole[0].error_type,
        )
    else:
        comp["status"] = "ok" if rows else "empty"
    return comp, part_rows


def _convert_component(
    task: _Task, raw: Any, name: str, target: str, path: str
) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
    """Return (component row fields, part rows, paths read) after computing and writing one
    component."""
    df: pl.DataFrame | None = None
    error: BaseException | None = None
    with parts.collect() as found, parts.record_reads() as reads:
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
        except Exception as exc:
            error, df = exc, None
            logger.debug("component %s of %s failed", name, raw.session_id, exc_info=exc)
    comp, part_rows = _status_rows(name, df, error, found)
    try:
        if df is not None and comp["status"] not in ("failed", "absent"):
            # no fingerprint or timestamp here: a file's bytes depend only on the frame and the
            # versions, so the same session converted anywhere (local, S3, Dask) is identical
            meta = {
                "npc_frames.component": name,
                "npc_frames.schema_version": str(task.schema_version),
                "npc_frames.library_version": task.library_version,
            }
            data = to_parquet_bytes(
                df, component=name, metadata=meta, schema=task.schemas.get(name)
            )
            storage.atomic_write_bytes(path, data)
        else:
            # a stale file from an earlier success would contradict the catalog: remove it
            storage.remove(path)
    except Exception as exc:
        logger.debug("component %s of %s not written", name, raw.session_id, exc_info=exc)
        storage.remove(path)
        comp, part_rows = _status_rows(name, None, exc, ())
    for p in found:
        if p.status == "failed":
            logger.debug(
                "component %s of %s: part %s failed: %s", name, raw.session_id, p.part, p.error
            )
    return comp, part_rows, reads


def _convert_task(
    task: _Task, on_component: Callable[[str, str, int, int], None] | None = None
) -> _Result:
    """Convert one session (runs in a worker): compute, validate and write each component.

    `on_component(session_id, component, index, total)` is called before each component (the
    progress of a session converted in this process); in a pool worker the same message goes
    to the parent through :func:`npc_frames.cache.pool.progress`.
    """
    from npc_frames.paths import RawSession

    def notify(sid: str, name: str, index: int, total: int) -> None:
        if on_component is not None:
            on_component(sid, name, index, total)
        else:
            pool.progress(("component", sid, name, index, total))

    result = _Result(raw_path=task.raw_path, session_id=task.session_id)
    try:
        raw = RawSession.from_path(
            task.raw_path,
            session_id=task.session_id,
            annotations=dict(task.annotations),
            assets=task.annotations.get("assets"),  # manifest `assets: {kind: path}`
        )
        sid = _safe_id(str(raw.session_id))
        inputs = _Inputs.of(raw)
    except Exception as exc:
        logger.debug("session %s cannot be opened", task.raw_path, exc_info=exc)
        result.error = _error_text(exc)
        result.error_type = type(exc).__name__
        result.error_location = parts.error_location(exc)
        return result
    result.session_id = sid
    storage_dirs: set[str] = set()
    for index, (name, target) in enumerate(task.targets):
        notify(sid, name, index, len(task.targets))
        path = data_path(task.cache, name, sid)
        if _is_unchanged(task, name, inputs, path):
            result.skipped.append(name)
            continue
        folder = path.rsplit("/", 1)[0] if storage.is_remote(path) else os.path.dirname(path)
        if folder not in storage_dirs:
            storage.remove_stale_temp_files(folder)
            storage_dirs.add(folder)
        t0 = time.perf_counter()
        comp, part_rows, reads = _convert_component(task, raw, name, target, path)
        read = inputs.relative(reads)
        fp, n_files, n_bytes = inputs.fingerprint(read, _schema_digest(task, name))
        common: dict[str, Any] = {
            "session_id": sid,
            "component": name,
            "fingerprint": fp,
            "inputs": read,
            "input_files": n_files,
            "input_bytes": n_bytes,
            "raw_path": raw.root,
            "library_version": task.library_version,
            "schema_version": task.schema_version,
            # one timestamp for the component row and its part rows: the catalog merge
            # replaces the whole group
            "written_at": dt.datetime.now(dt.UTC),
            "seconds": time.perf_counter() - t0,
        }
        result.rows.append({**common, "part": None, "probe": None, **comp})
        for pr in part_rows:
            result.rows.append(
                {
                    **common,
                    "error": None,
                    "error_type": None,
                    "error_location": None,
                    **pr,
                    "seconds": None,
                }
            )
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


class _NoBar:
    """A disabled progress bar: every call does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class _Progress:
    """Two tqdm bars on stderr: sessions done / total, and components done / total (with the
    session and component being computed)."""

    def __init__(self, n_sessions: int, n_components: int, enabled: bool) -> None:
        self.n_components = n_components
        self.sessions: Any = _NoBar()
        self.components: Any = _NoBar()
        if enabled:  # tqdm's import alone is ~0.1-0.2 s of the converting process's serial work
            from tqdm.auto import tqdm

            self.sessions = tqdm(total=n_sessions, desc="sessions", unit="session", position=0)
            self.components = tqdm(
                total=n_sessions * n_components,
                desc="components",
                unit="comp",
                position=1,
                leave=False,
            )
        self.bad = 0
        self._counted: dict[str, int] = {}

    def component(self, session_id: str, name: str, index: int, total: int) -> None:
        done = self._counted.get(session_id, 0)
        if index > done:
            self.components.update(index - done)
            self._counted[session_id] = index
        self.components.set_postfix_str(f"{session_id}: {name}")

    def message(self, msg: tuple[Any, ...]) -> None:
        if msg and msg[0] == "component":
            self.component(*msg[1:5])

    def session(self, result: _Result) -> None:
        bad = [r for r in result.rows if r["part"] is None and r["status"] in BAD_STATUSES]
        if bad or result.error:
            self.bad += 1
            self.sessions.set_postfix_str(f"{self.bad} with failures")
        self.sessions.update(1)
        done = self._counted.get(result.session_id or "", 0)
        self.components.update(max(0, self.n_components - done))
        if result.session_id:
            self._counted[result.session_id] = self.n_components

    def close(self) -> None:
        self.components.close()
        self.sessions.close()


# ----------------------------------------------------------------------------------- inputs
def _id_of(name: str) -> str | None:
    """Return the session id a folder name parses to, or None."""
    from npc_frames.ids import parse_session_id

    try:
        return str(parse_session_id(name))
    except NpcFramesError:
        return None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _has_suffix(name: str) -> bool:
    """Return True for a name with a file-type suffix (``x.truth``, ``x.zip``): not a session."""
    ext = os.path.splitext(name)[1]
    return len(ext) > 1 and ext[1:].isalpha()


def _subfolders(path: str) -> list[str]:
    fs, p = storage.filesystem(path)
    try:
        entries = fs.ls(p, detail=True)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return []
    prefix = path[: len(path) - len(path.lstrip("/"))] if not storage.is_remote(path) else ""
    out = []
    for e in entries:
        if e.get("type") != "directory":
            continue
        name = str(e["name"]).rstrip("/")
        if storage.is_remote(path):
            name = path.rstrip("/") + "/" + name.rsplit("/", 1)[-1]
        out.append(prefix + name if prefix and not name.startswith(prefix) else name)
    return sorted(out)


#: an AIND asset name with something after its acquisition time: a derived asset (``…_sorted_
#: <date>_<time>``, ``….truth``) unless it is a raw asset name (``…_surface_channels``)
_ASSET_PREFIX_RE = re.compile(r"^(?:ecephys|behavior)_\d{6,7}_20\d\d-\d\d-\d\d_\d\d-\d\d-\d\d.")


def _is_session_name(name: str) -> bool:
    """Return True for a folder name that names a raw session (not a derived asset)."""
    from npc_frames.ids import index_sessions

    if _has_suffix(name):
        return False
    if _ASSET_PREFIX_RE.match(name):
        return name in index_sessions([name])
    return _id_of(name) is not None


def _expand(path: str) -> tuple[list[str], list[str]]:
    """Return (session folders, ignored non-session folders) for one path given to convert.

    A folder whose name parses as a session id is a session, unless it is a derived asset (a
    type suffix such as synth's ``*.truth``, or an AIND name with a process suffix such as
    ``…_sorted_<date>_<time>``); any other folder that holds session folders is a parent and is
    searched one level deep (its other subfolders are ignored); else it is taken as a session
    whose id comes from its files.
    """
    name = _basename(path)
    if _id_of(name) is not None:
        return ([path], []) if _is_session_name(name) else ([], [path])
    if _has_suffix(name):
        return [], [path]
    children = _subfolders(path)
    sessions = [c for c in children if _is_session_name(_basename(c))]
    if not sessions:
        return [path], []
    return sessions, [c for c in children if c not in sessions]


def _key_of(path: str, sid: str | None) -> tuple[str | None, int]:
    """Return (the session id `path` will be converted as, by discovery's rule, which indexes a
    subject's same-day recordings from the folder's siblings, or None when unknown; the bytes of
    the files discovery found, a cost estimate, or -1 when discovery did not run)."""
    if sid is not None:
        return sid, -1
    from npc_frames.paths import RawSession

    try:
        raw = RawSession.from_path(path)
    except NpcFramesError:
        return _id_of(_basename(path)), -1
    return str(raw.session_id), sum(int(size) for size, _ in raw.file_stats.values())


def _resolve_inputs(
    raw_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    manifest: str | os.PathLike[str] | Mapping[str, Any] | None,
) -> tuple[list[tuple[str, str | None, dict[str, Any]]], list[str]]:
    """Return ([(raw path, session id or None, annotations)] per session, ignored folders)."""
    if isinstance(raw_paths, str | os.PathLike):
        raw_paths = [raw_paths]
    given = [os.fspath(p) for p in (raw_paths or [])]
    entries: dict[str, dict[str, Any]] = {}
    if manifest is not None:
        if isinstance(manifest, Mapping):
            entries = {_safe_id(k): dict(v or {}) for k, v in manifest.items()}
        else:
            entries = read_manifest(manifest)
    out: list[tuple[str, str | None, dict[str, Any]]] = []
    if not given:
        for key, entry in entries.items():
            if not entry.get("raw_path"):
                raise ParameterError(
                    f"manifest entry {key} has no raw_path and no raw path was given",
                    path=None if isinstance(manifest, Mapping) else manifest,
                    field=key,
                    expected="raw_path: <folder or s3:// URL>",
                )
            out.append((str(entry["raw_path"]), key, _annotations(entry)))
        return out, []
    paths: list[str] = []
    ignored: list[str] = []
    for p in given:
        found, skipped = _expand(p)
        paths.extend(found)
        ignored.extend(skipped)
    by_path = {
        storage.strip_protocol(str(e["raw_path"])): sid
        for sid, e in entries.items()
        if e.get("raw_path")
    }
    for p in paths:
        sid: str | None = by_path.get(storage.strip_protocol(p))
        if sid is None and entries:
            sid = _id_of(_basename(p))
            if sid not in entries:
                sid = None
        out.append((p, None, _annotations(entries[sid]) if sid else {}))
    return out, ignored


def _same_path(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        p = storage.strip_protocol(p).rstrip("/")
        return p if storage.is_remote(p) or "://" in p else os.path.abspath(p)

    return norm(a) == norm(b)


def _check_unique(keys: Sequence[tuple[str | None, str]]) -> None:
    """Raise ParameterError when two inputs resolve to one session id (before any write)."""
    seen: dict[str, str] = {}
    for key, path in keys:
        if key is None:
            continue
        if key in seen and not _same_path(seen[key], path):
            raise ParameterError(
                f"two inputs resolve to session {key}: {seen[key]} and {path}",
                path=path,
                field=key,
                expected="one raw folder per session id in one convert",
            )
        seen[key] = path


# ---------------------------------------------------------------------------------- convert
def convert(
    raw_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    cache: str | os.PathLike[str] | None = None,
    *,
    executor: cf.Executor | None = None,
    workers: int | None = None,
    components: Sequence[str] | None = None,
    overwrite: bool = False,
    manifest: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Return the catalog rows of this run after writing every component of every session.

    Parameters
    ----------
    raw_paths:
        Raw session folders (local paths or ``s3://`` URLs), or parent folders of session folders
        (searched one level deep; subfolders that are not sessions, such as ``*.truth``, are
        ignored and listed). ``None``/empty with a `manifest` converts every session it lists.
    cache:
        Cache root (local folder or ``s3://bucket/prefix``); default ``$NPC_FRAMES_CACHE``, else
        ``./npc_frames_cache``.
    executor:
        Any ``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client(...).get_executor()``);
        it is not shut down. Default: in this process for one session, else spawned worker
        processes (:mod:`npc_frames.cache.pool`: they die with this process, and a worker crash
        fails only its session).
    workers:
        Worker processes of the default pool (default: sized to the cores and available memory).
        ``1`` converts in this process.
    components:
        Subset of component names (default: all, in registry order).
    overwrite:
        Recompute even when the inputs' fingerprint and the schema version are unchanged, and
        replace a session that the catalog has from a different raw folder.
    manifest:
        Tracked-sessions file (YAML/JSON, see :func:`read_manifest`) or an equivalent mapping; an
        entry's ``notes``/``issues``/``invalid_times`` reach the components through
        ``RawSession.annotations``.
    progress:
        Show progress bars (tqdm) on stderr; default: only when stderr is a terminal.

    Statuses (docs/cache.md): ``ok``, ``empty``, ``absent`` (the session has no such modality),
    ``partial`` (some parts failed, the rest written; one row per failed part) and ``failed``.
    Ephys components also get one row per probe (``part`` = ``probe<letter>``).

    Incremental rule: a (session, component) whose catalog row has the same input fingerprint
    (input files, the session's file names and the component's schema structure) and schema
    version (and, for failed/partial ones, the same library version — a fixed bug gets a
    retry) and whose file exists is skipped. The returned frame has the catalog columns plus
    ``skipped`` (True for rows taken unchanged from the catalog). Rows with ``component = "*"`` are
    not in the catalog: a session whose folder cannot be opened (``failed``), one the catalog has
    from a different raw folder (``failed``, CacheError; pass ``overwrite=True``), and a folder that
    is not a session (``ignored``).

    Raises ParameterError when two inputs resolve to one session id (nothing is written), and
    CacheError when called while a worker process imports an unguarded ``__main__``.

    Examples
    --------
    >>> status = nf.convert(["raw/ecephys_603074_2023-08-31_12-33-31"], cache="cache/")
    >>> status.filter(component="trials").select("session_id", "status", "rows").row(0)
    ('603074_2023-08-31', 'ok', 18)
    >>> sorted(set(status["status"]))  # converting again is incremental: nothing changed
    ['absent', 'ok']
    """
    from npc_frames.components import COMPONENTS
    from npc_frames.schemas import SCHEMAS

    if pool.in_worker_bootstrap():
        raise CacheError(
            "convert was called while a worker process was importing the main script",
            field="__main__",
            expected='the script\'s convert() call under if __name__ == "__main__":',
        )
    if workers is not None and workers < 1:
        raise ParameterError("workers must be >= 1", field="workers", expected=">= 1")
    root = cache_root(cache)
    names = list(components) if components is not None else list(COMPONENTS)
    for n in names:
        _check_component(n)
    inputs, ignored = _resolve_inputs(raw_paths, manifest)
    pooled = executor is None and len(inputs) > 1
    if pooled and (workers or default_workers(len(inputs))) > 1 and pool.main_is_importable():
        # the fork server imports the library while this process discovers the sessions
        pool.start_server()
    keyed = [_key_of(p, sid) for p, sid, _ in inputs]
    keys = [(key, p) for (key, _), (p, _, _) in zip(keyed, inputs, strict=True)]
    _check_unique(keys)
    # the largest sessions first: a pool then ends with small ones and no worker idles while
    # one converts a large session last (a stable sort keeps the given order among equals)
    order = sorted(range(len(inputs)), key=lambda i: -keyed[i][1])
    inputs = [inputs[i] for i in order]
    keys = [keys[i] for i in order]
    catalog = read_catalog(root)
    previous: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in catalog.sort("part", nulls_last=False).iter_rows(named=True):
        previous.setdefault(r["session_id"], {}).setdefault(r["component"], []).append(r)
    lib, schema_version = _library_version(), _schema_version()
    targets = tuple((n, COMPONENTS[n]) for n in names)
    schemas = {n: SCHEMAS[n] for n in names if n in SCHEMAS}

    results: list[_Result] = []
    tasks: list[_Task] = []
    for (raw_path, sid, ann), (key, _) in zip(inputs, keys, strict=True):
        prev = previous.get(key or "", {})
        old = next((rows[0]["raw_path"] for rows in prev.values() if rows), None)
        if old and not overwrite and not _same_path(old, raw_path):
            err = CacheError(
                f"session {key} is in the catalog from {old}; not replaced by {raw_path}",
                path=raw_path,
                field=key,
                expected="the same raw folder, or overwrite=True to replace the session",
            )
            results.append(_Result(raw_path, key, error=_error_text(err), error_type="CacheError"))
            continue
        tasks.append(
            _Task(
                raw_path=raw_path,
                cache=root,
                targets=targets,
                schemas=schemas,
                annotations=ann,
                previous=prev,
                overwrite=overwrite,
                library_version=lib,
                schema_version=schema_version,
                session_id=sid,
            )
        )
    bar = _Progress(len(tasks), len(targets), sys.stderr.isatty() if progress is None else progress)

    def collect(res: _Result) -> None:
        results.append(res)
        if res.rows:
            _write_catalog_rows(root, pl.DataFrame(res.rows, schema=CATALOG_SCHEMA))
        bar.session(res)

    def crashed(t: _Task, exc: BaseException) -> _Result:
        logger.debug("worker converting %s died", t.raw_path, exc_info=exc)
        return _Result(
            raw_path=t.raw_path,
            session_id=t.session_id or _id_of(_basename(t.raw_path)),
            error=_error_text(exc),
            error_type=type(exc).__name__,
        )

    n_workers = workers if workers is not None else default_workers(len(tasks))
    n_workers = max(1, min(n_workers, len(tasks)))
    try:
        if executor is None and n_workers > 1 and not pool.main_is_importable():
            warnings.warn(
                "convert() runs its sessions one after another in this process: worker "
                "processes would re-run this script's top level. Put the call under "
                'if __name__ == "__main__": to convert in parallel.',
                RuntimeWarning,
                stacklevel=2,
            )
            n_workers = 1
        if executor is None and n_workers > 1:
            pool.run_in_pool(
                _convert_task,
                tasks,
                n_workers,
                on_result=lambda i, res: collect(res),
                on_crash=lambda i, exc: collect(crashed(tasks[i], exc)),
                on_message=bar.message,
            )
        elif executor is None:
            for t in tasks:
                collect(_convert_task(t, bar.component))
        else:
            futures = {executor.submit(_convert_task, t): t for t in tasks}
            for fut in cf.as_completed(futures):
                t = futures[fut]
                try:
                    collect(fut.result())
                except Exception as exc:  # a worker died (OOM, killed): record and go on
                    collect(crashed(t, exc))
    finally:
        bar.close()
    _materialize_views(root)
    return _run_frame(results, previous, ignored)


def _materialize_views(root: str) -> None:
    """Bring the cache's session summary (the per-session part of ``session_records``) up to date
    for the sessions just converted, so the first selection afterwards reads one file."""
    from npc_frames import views

    try:
        views.session_summary(root)
    except Exception:  # the summary is rebuilt on the next selection; never fail a convert
        logger.debug("session summary of %s not materialized", root, exc_info=True)


def _run_frame(
    results: list[_Result],
    previous: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    ignored: Sequence[str] = (),
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
                    "error_type": res.error_type,
                    "error_location": res.error_location,
                    "raw_path": res.raw_path,
                    "skipped": False,
                }
            )
            continue
        rows.extend({**r, "skipped": False} for r in res.rows)
        for name in res.skipped:
            rows.extend({**r, "skipped": True} for r in previous[res.session_id or ""][name])
    for path in ignored:
        rows.append(
            {
                "session_id": None,
                "component": "*",
                "status": "ignored",
                "rows": 0,
                "error": "not a session folder",
                "raw_path": path,
                "skipped": False,
            }
        )
    schema = pl.Schema({**dict(CATALOG_SCHEMA), "skipped": pl.Boolean()})
    if not rows:
        return pl.DataFrame(schema=schema)
    return pl.DataFrame(rows, schema=schema).sort(
        ["session_id", "component", "part"], nulls_last=True
    )
