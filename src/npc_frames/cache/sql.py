"""DuckDB over the cache: ``connect`` (views), ``sql`` (queries, shared connections), UDFs."""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames import storage
from npc_frames import views as _derived
from npc_frames.cache.catalog import DATA_FILE, _component_names, _glob, cache_root, read_catalog
from npc_frames.cache.scan import _schema_of
from npc_frames.cache_layout import (
    LAYOUTS,
    packed_columns,
    unpack,
)
from npc_frames.errors import CacheError, ParameterError

if TYPE_CHECKING:
    import duckdb


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
    """
    import duckdb

    root = cache_root(cache)
    con = duckdb.connect()
    if storage.is_remote(root):
        _register_remote_fs(con, root)
    wanted = set(_component_names()) | {"spike_times", "catalog"} if views is None else set(views)
    wanted = _derived.with_dependencies(
        wanted | (set(_derived.DERIVED_VIEWS) if views is None else set())
    )
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
    _derived.create_derived_views(con, wanted)  # session_days, session_records (npc_frames.views)
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
    return words & ({*_component_names(), "spike_times", "catalog", *_derived.DERIVED_VIEWS})


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_query_error(exc: Exception) -> bool:
    """Return True when DuckDB rejected the query itself (syntax, names, types, parameters)."""
    import duckdb

    query_errors = (
        duckdb.ParserException,
        duckdb.BinderException,
        duckdb.CatalogException,
        duckdb.ConversionException,
        duckdb.TypeMismatchException,
        duckdb.OutOfRangeException,
        duckdb.InvalidTypeException,
        duckdb.NotImplementedException,
    )
    if isinstance(exc, query_errors):
        return True
    # invalid input is either the query's (parameter count) or a file's (not Parquet)
    text = str(exc).lower()
    return isinstance(exc, duckdb.InvalidInputException) and not any(
        w in text for w in ("parquet", "file", "magic bytes")
    )


def _typed_sql_error(exc: Exception, query: str, root: str) -> Exception:
    """Return the npc_frames error for a DuckDB error: ParameterError when the query is at
    fault, CacheError when reading the cache failed (I/O, S3, corrupt files, memory)."""
    if _is_query_error(exc):
        return ParameterError(
            f"SQL query failed: {exc}", field="query", expected=f"a valid DuckDB query: {query}"
        )
    return CacheError(
        f"SQL query could not read the cache ({type(exc).__name__}): {exc}",
        path=root,
        field="query",
        expected="readable component files (local or s3://)",
    )


def sql(
    query: str,
    cache: str | os.PathLike[str] | None = None,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """Return the result of a DuckDB `query` over the cache's views as a Polars DataFrame.

    `params` are bound by DuckDB (``?`` / ``$name`` placeholders), never formatted into the text.
    Raises ParameterError when DuckDB rejects the query (syntax, unknown table or column, types,
    parameters) and CacheError when the cache cannot be read (I/O, S3, a corrupt file); the
    DuckDB error is the ``__cause__``.
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
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        raise _typed_sql_error(exc, query, root) from exc
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
