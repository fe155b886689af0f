"""Derived components: results computed from other cached components, cached beside them.

``unit_responses``, ``vis_rf_maps``, ``aud_rf_maps`` and ``opto_tagging`` are computed from a
session's cached ``units`` and interval tables, not from raw files. :func:`compute_derived` runs
one task per session (serially or on any ``concurrent.futures.Executor``, e.g. a Dask client's),
writes ``<cache>/<component>/session_id=<id>/data.parquet`` atomically and records a catalog row
whose fingerprint is the sha256 of the input partitions' (size, version) and the parameters, so a
session is recomputed only when an input file or a parameter changes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import polars as pl

from npc_frames import parts

__all__ = ["INPUTS", "compute_derived", "scan_derived"]

logger = logging.getLogger(__name__)

#: cached components a derived component may read (those present are passed by name)
INPUTS: tuple[str, ...] = ("units", "trials", "vis_rf_mapping", "aud_rf_mapping", "optotagging")
DATA_FILE = "data.parquet"


def _data_file(root: str, component: str, session_id: str) -> str:
    from npc_frames import storage
    from npc_frames.ids import safe_session_id

    return storage.join(root, component, f"session_id={safe_session_id(session_id)}", DATA_FILE)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _fingerprint(
    root: str, session_id: str, target: str, params: Mapping[str, Any], schema: str
) -> str:
    """Return the sha256 of the input partitions' (component, size, version), the parameters and
    the output's structure digest `schema` (a changed column set recomputes the result)."""
    from npc_frames import storage

    keys = [(c, *storage.stat_key(_data_file(root, c, session_id))) for c in INPUTS]
    text = json.dumps(
        {"inputs": keys, "target": target, "params": _jsonable(params), "schema": schema},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _read_partition(root: str, component: str, session_id: str) -> pl.DataFrame | None:
    from npc_frames import storage
    from npc_frames.cache import scan

    if not storage.exists(_data_file(root, component, session_id)):
        return None
    return scan(component, cache=root).filter(pl.col("session_id") == session_id).collect()


def _resolve(target: str) -> Callable[..., pl.DataFrame]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


def _session_task(
    root: str,
    component: str,
    target: str,
    params: Mapping[str, Any],
    session_id: str,
    previous: str | None,
    schema: str = "",
) -> dict[str, Any] | None:
    """Compute and write one session's derived component (runs in a worker); return its catalog
    row, or None when the stored result's fingerprint is `previous` (nothing to do)."""
    from npc_frames import storage
    from npc_frames.cache.convert import _library_version, _schema_version
    from npc_frames.cache_layout import to_parquet_bytes

    fp = _fingerprint(root, session_id, target, params, schema)
    path = _data_file(root, component, session_id)
    if previous == fp and storage.exists(path):
        return None
    t0 = time.perf_counter()
    sizes = [storage.stat_key(_data_file(root, c, session_id))[0] for c in INPUTS]
    row: dict[str, Any] = {
        "session_id": session_id,
        "component": component,
        "fingerprint": fp,
        "input_files": sum(s >= 0 for s in sizes),
        "input_bytes": sum(max(s, 0) for s in sizes),
        "raw_path": root,
        "library_version": _library_version(),
        "schema_version": _schema_version(),
        "error": None,
    }
    try:
        if not storage.exists(_data_file(root, "units", session_id)):
            raise FileNotFoundError(_data_file(root, "units", session_id))
        # units stay a lazy scan: the analysis functions read its spikes from the file itself
        # (a local cache) instead of decoding every spike of the session into memory
        from npc_frames.cache import scan

        units = scan("units", cache=root).filter(pl.col("session_id") == session_id)
        tables = {c: _read_partition(root, c, session_id) for c in INPUTS[1:]}
        df = _resolve(target)(units, tables, **params)
        meta = {
            "npc_frames.component": component,
            "npc_frames.parameters": json.dumps(_jsonable(params), sort_keys=True),
        }
        storage.atomic_write_bytes(path, to_parquet_bytes(df, component=component, metadata=meta))
        row.update(status="ok" if df.height else "empty", rows=df.height)
    except Exception as exc:
        storage.remove(path)
        row.update(
            status="failed",
            rows=0,
            error=f"{type(exc).__name__}: {exc}",
            error_type=type(exc).__name__,
            error_location=parts.error_location(exc),
        )
        logger.debug("%s failed for %s", component, session_id, exc_info=True)
    row["written_at"] = dt.datetime.now(dt.UTC)
    row["seconds"] = time.perf_counter() - t0
    return row


def _write_catalog(root: str, rows: list[dict[str, Any]]) -> None:
    """Merge catalog rows through the cache's own catalog writer (the one place to adapt)."""
    from npc_frames.cache.catalog import CATALOG_SCHEMA, _write_catalog_rows

    if rows:
        _write_catalog_rows(root, pl.DataFrame(rows, schema=CATALOG_SCHEMA))


def scan_derived(
    component: str, schema: Mapping[str, pl.DataType], cache: str | os.PathLike[str] | None = None
) -> pl.LazyFrame:
    """Return a LazyFrame over a derived component of every session in the cache."""
    from npc_frames import storage
    from npc_frames.cache import cache_root

    root = cache_root(cache)
    pattern = storage.join(root, component, "*", DATA_FILE)
    if not storage.glob(pattern):
        return pl.LazyFrame(schema=dict(schema))
    return pl.scan_parquet(
        pattern,
        hive_partitioning=False,  # session_id is a column of every file
        storage_options=storage.polars_storage_options(root),
        schema=pl.Schema(dict(schema)),
    )


def compute_derived(
    component: str,
    target: str,
    params: Mapping[str, Any],
    schema: Mapping[str, pl.DataType],
    *,
    cache: str | os.PathLike[str] | None = None,
    session_ids: Sequence[str] | None = None,
    executor: cf.Executor | None = None,
    overwrite: bool = False,
    sort: Sequence[str] = ("session_id",),
) -> pl.DataFrame:
    """Return a derived component of the sessions, computing and caching what is missing.

    `target` (``"module:function"``) is called as ``function(units, tables, **params)`` per
    session, with ``units`` a LazyFrame scan of the session's cached units and ``tables`` the
    session's other :data:`INPUTS` by name (DataFrames; None when absent).
    Sessions default to every session whose ``units`` converted. Failures are catalogued (status
    ``failed`` with the error) and logged; their rows are absent from the result.
    """
    from npc_frames.cache import cache_root, read_catalog
    from npc_frames.schemas import structure_digest

    root = cache_root(cache)
    catalog = read_catalog(root)
    if session_ids is None:
        session_ids = sorted(
            catalog.filter((pl.col("component") == "units") & (pl.col("status") == "ok"))[
                "session_id"
            ].to_list()
        )
    prev_rows = catalog.filter((pl.col("component") == component) & (pl.col("status") != "failed"))
    previous = dict(zip(prev_rows["session_id"], prev_rows["fingerprint"], strict=True))
    sids = [str(s) for s in session_ids]
    digest = structure_digest((n, d, True) for n, d in schema.items())
    args = [
        (root, component, target, params, s, None if overwrite else previous.get(s), digest)
        for s in sids
    ]
    if executor is None:
        results = [_session_task(*a) for a in args]
    else:
        futures = [executor.submit(_session_task, *a) for a in args]
        results = [f.result() for f in futures]
    rows = [r for r in results if r is not None]
    _write_catalog(root, rows)
    for r in rows:
        if r["status"] == "failed":
            logger.warning("%s failed for %s: %s", component, r["session_id"], r["error"])
    if not sids:
        return pl.DataFrame(schema=dict(schema))
    return (
        scan_derived(component, schema, root)
        .filter(pl.col("session_id").is_in(sids))
        .collect()
        .sort(list(sort))
    )
