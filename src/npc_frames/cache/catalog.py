"""Cache layout and catalog: where each file lives, and the one-row-per-part catalog."""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass

import polars as pl

from npc_frames import storage
from npc_frames.errors import CacheError

logger = logging.getLogger(__name__)

DATA_FILE = "data.parquet"
CATALOG_FILE = "catalog.parquet"
CATALOG_LOCK = ".catalog.lock"
DEFAULT_CACHE = "npc_frames_cache"
ENV_CACHE = "NPC_FRAMES_CACHE"
#: memory one conversion worker may need at worst (a full-scale session's units), for pool sizing
WORKER_MEMORY_BYTES = 4 * 1024**3

#: catalog statuses (docs/cache.md, "Catalog statuses"); a component row has one of these, and so
#: has each part row (a probe of an ephys component, a damaged input file)
STATUSES: tuple[str, ...] = ("ok", "empty", "absent", "partial", "failed")
#: statuses that mean the cache holds less than the raw data had (convert exits non-zero)
BAD_STATUSES: frozenset[str] = frozenset({"partial", "failed"})

CATALOG_SCHEMA: pl.Schema = pl.Schema(
    {  # type: ignore[arg-type]
        "session_id": pl.String,
        "component": pl.String,
        #: null on the component's own row; else the part: "probeA", a damaged file's name …
        "part": pl.String,
        #: probe letter of a probe part row (ephys components), else null
        "probe": pl.String,
        "status": pl.String,  # one of STATUSES
        "rows": pl.Int64,
        "error": pl.String,  # "<ErrorType>: <message>"; for absent: the reason
        "error_type": pl.String,  # the typed error's class name
        "error_location": pl.String,  # "module:line" where the error was raised
        # sha256 of (relative path, size, mtime/etag) of the files the component read, and of
        # the names of every file of the session
        "fingerprint": pl.String,
        "inputs": pl.List(pl.String),  # the files the component read, relative to raw_path
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


def _escape_glob(path: str) -> str:
    """Return `path` with its glob characters escaped (``[`` -> ``[[]``, ``*`` -> ``[*]``, …).

    Polars, DuckDB and fsspec all read ``[x]`` as the literal character x, so a cache folder
    named ``ca[c]he*`` is matched as itself, never as a pattern.
    """
    protocol, sep, rest = path.rpartition("://")
    escaped = "".join(f"[{ch}]" if ch in "[*?" else ch for ch in rest)
    return f"{protocol}{sep}{escaped}"


def _glob(cache: str, component: str) -> str:
    """Return the glob of every session's file of `component` (the cache root escaped)."""
    return storage.join(_escape_glob(cache), component, "session_id=*", DATA_FILE)


# ---------------------------------------------------------------------------------- catalog
def _empty_catalog() -> pl.DataFrame:
    return pl.DataFrame(schema=CATALOG_SCHEMA)


def read_catalog(cache: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """Return the catalog: one row per (session_id, component) ever converted into `cache`, plus
    one row per part (probe of an ephys component, damaged input) with ``part`` set.

    Examples
    --------
    >>> catalog = nf.read_catalog("cache/")
    >>> catalog.filter(component="units").select("session_id", "status", "rows").row(0)
    ('603074_2023-08-31', 'ok', 8)
    """
    root = cache_root(cache)
    path = storage.join(root, CATALOG_FILE)
    version = None
    if storage.is_remote(path):
        # one HEAD instead of a GET when this process has read this version before
        version = _object_version(path)
        if version is None:
            return _empty_catalog()
        with _CATALOGS_LOCK:
            cached = _CATALOGS.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
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
    df = df.select(pl.col(c).cast(t) for c, t in CATALOG_SCHEMA.items())
    if version is not None:
        # keyed by the version seen before the GET: if the object changed in between, the
        # next HEAD sees a newer version and reads it again
        with _CATALOGS_LOCK:
            _CATALOGS[path] = (version, df)
    return df


#: remote catalog path -> (object version, catalog frame) of the last read in this process
_CATALOGS: dict[str, tuple[tuple[int, str], pl.DataFrame]] = {}
_CATALOGS_LOCK = threading.Lock()


def _object_version(path: str) -> tuple[int, str] | None:
    """Return (size, ETag + last-modified) of a remote object (one HEAD), None if missing."""
    fs, p = storage.filesystem(path)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        return None
    etag = info.get("ETag") or info.get("etag") or ""
    return int(info.get("size") or 0), f"{etag}|{storage.version_of(info)}"


def _merge_catalog(old: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """Return `old` updated with `new`: per (session_id, component) the latest write wins whole.

    A component's row and its part rows are written together with one ``written_at``; the
    latest such group replaces every older row of the (session_id, component), so a probe that
    is no longer reported does not linger.
    """
    both = pl.concat([old, new.select(CATALOG_SCHEMA.names())], how="vertical").with_row_index(
        "_order"
    )
    key = ["session_id", "component"]
    latest = both.group_by(key).agg(pl.col("written_at").max().alias("_latest"))
    return (
        both.join(latest, on=key, how="left")
        .filter(pl.col("_latest").is_null() | (pl.col("written_at") == pl.col("_latest")))
        .sort([*key, "part", "_order"], nulls_last=False)
        .unique([*key, "part"], keep="last", maintain_order=True)
        .drop("_order", "_latest")
        .sort([*key, "part"], nulls_last=False)
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


@dataclass(frozen=True)
class SessionStatus:
    """What the catalog says about one session: its worst status and every partial/failed part."""

    session_id: str
    #: "ok" (every component ok/empty/absent), "partial" or "failed" (any component failed)
    status: str
    #: component -> status (component rows only)
    components: dict[str, str]
    #: "component[/part]: error" of every partial or failed component and part
    problems: tuple[str, ...]

    @property
    def is_complete(self) -> bool:
        """Return True when nothing of the session is partial or failed."""
        return self.status == "ok"


def session_status(
    session_id: object, cache: str | os.PathLike[str] | None = None
) -> SessionStatus:
    """Return the catalog status of one session (e.g. for an NWB export to note a partial one).

    Raises CacheError when the catalog has no row for the session.
    """
    root = cache_root(cache)
    sid = _safe_id(session_id)
    rows = read_catalog(root).filter(pl.col("session_id") == sid)
    if rows.is_empty():
        raise CacheError(
            f"session {sid} is not in the catalog",
            path=storage.join(root, CATALOG_FILE),
            field=sid,
            expected="a session converted with npc_frames.convert",
        )
    comp = rows.filter(pl.col("part").is_null())
    statuses = dict(zip(comp["component"].to_list(), comp["status"].to_list(), strict=True))
    bad = rows.filter(pl.col("status").is_in(list(BAD_STATUSES)))
    problems = tuple(
        f"{r['component']}{'/' + r['part'] if r['part'] else ''}: {r['status']}: {r['error']}"
        for r in bad.iter_rows(named=True)
    )
    values = set(statuses.values())
    status = "failed" if "failed" in values else "partial" if "partial" in values else "ok"
    return SessionStatus(sid, status, statuses, problems)
