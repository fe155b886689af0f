"""DuckDB over the cache: ``connect`` (views), ``sql`` (queries, shared connections), UDFs.

Every view carries its schema as comments (``COMMENT ON VIEW``/``COLUMN``), so ``SHOW TABLES``,
``DESCRIBE trials`` and ``information_schema.columns`` document the cache. No helper object is
created: an absent component's view is a typed zero-row ``SELECT``, not a registered table.

``sql`` is read-only by default (:data:`READ_ONLY_RULES`): the query must be one statement whose
DuckDB statement type is a query, and it runs on a shared connection inside a transaction that is
always rolled back, so even a statement that slipped through could not change the shared views.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames import storage
from npc_frames import views as _derived
from npc_frames.cache.catalog import (
    DATA_FILE,
    _component_names,
    _glob,
    cache_root,
    read_catalog,
)
from npc_frames.cache.scan import _schema_of, corrupt_file_error
from npc_frames.cache_layout import (
    LAYOUTS,
    packed_columns,
    unpack,
)
from npc_frames.errors import CacheError, ParameterError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import duckdb

    from npc_frames.schemas import Schema

#: what a read-only query may be (the text of ``sql``'s docstring and ``npc-frames sql --help``)
READ_ONLY_RULES = (
    "Read-only queries (the default) are exactly one statement of DuckDB type SELECT — which "
    "includes WITH, FROM-first, VALUES, SHOW, DESCRIBE and SUMMARIZE — or EXPLAIN [ANALYZE] of "
    "one, or a read-only PRAGMA (table_info, show_tables, show, database_size, version, …). "
    "Writes (CREATE, INSERT, COPY … TO, ATTACH, SET, …) and several statements in one query are "
    "refused unless read_only=False, which runs the query on a private connection that is "
    "closed afterwards."
)
#: PRAGMAs that only read (a PRAGMA that sets an option changes the shared connection)
READ_ONLY_PRAGMAS = frozenset(
    {
        "collations",
        "database_list",
        "database_size",
        "functions",
        "metadata_info",
        "platform",
        "show",
        "show_databases",
        "show_tables",
        "show_tables_expanded",
        "storage_info",
        "table_info",
        "user_agent",
        "version",
    }
)
#: words that make a query list the cache's tables (so every present view must exist)
_DISCOVERY = re.compile(
    r"\b(show|describe|information_schema|duckdb_\w+|pg_\w+|sqlite_master|table_info)\b",
    re.IGNORECASE,
)
_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*", re.DOTALL)
_EXPLAIN = re.compile(
    r"EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\((?:[^()]|\([^()]*\))*\)\s*)?(?P<inner>.*)\Z",
    re.IGNORECASE | re.DOTALL,
)
_EXPLAIN_WORDS = re.compile(r"EXPLAIN\s+(?:ANALY[SZ]E\s+)?", re.IGNORECASE)
_PRAGMA = re.compile(r"PRAGMA\s+(?P<name>\w+)\s*(?P<rest>.*)\Z", re.IGNORECASE | re.DOTALL)


def _register_remote_fs(con: duckdb.DuckDBPyConnection, root: str) -> None:
    fs, _ = storage.filesystem(root)
    con.register_filesystem(fs)


def connect(
    cache: str | os.PathLike[str] | None = None, *, views: Iterable[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """Return an in-memory DuckDB connection with one view per component present in the cache.

    Each view reads ``<cache>/<component>/session_id=*/data.parquet`` (the root's glob
    characters escaped) with hive partitioning and union_by_name, in the registered schema's
    column order (absent columns null), and carries the schema's descriptions as view and column
    comments. ``spike_times`` is a long view (session_id, unit_id, spike_time) over ``units``;
    ``catalog`` is a table holding the catalog when connected. For ``s3://`` caches the fsspec
    filesystem (AWS environment) is registered with DuckDB. `views` chooses the views created
    instead (binding a view reads the footers of its files, so :func:`sql` creates only those its
    query names); a named component without files gets a zero-row view of its schema. The
    connection is the caller's: nothing stops it from creating or replacing objects.

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
    present = _present_components(root)
    if views is None:
        wanted = present | {"catalog"} | ({"spike_times"} if "units" in present else set())
        wanted |= _derived.available_views(present)
    else:
        wanted = set(views)
    wanted = _derived.sql_inputs(wanted)
    if "spike_times" in wanted:
        wanted.add("units")
    registered: set[str] = set()
    try:
        for name in _component_names():
            if name in wanted:
                _create_component_view(con, root, name, name in present, registered)
        if "spike_times" in wanted:
            _create_spike_times_view(con)
        if "catalog" in wanted:
            con.from_arrow(read_catalog(root).to_arrow()).create("catalog")
            con.execute(
                "COMMENT ON TABLE catalog IS 'one row per (session_id, component[, part]) ever "
                "converted into this cache: status, rows, error, fingerprint, versions'"
            )
        # session_days, session_records (npc_frames.views); a cache whose sessions lack the columns
        # they read simply has no such view (the query then names an unknown table)
        _derived.create_derived_views(con, wanted, strict=False, root=root)
    except duckdb.Error as exc:
        con.close()
        _raise_for_corrupt_files(root, wanted, cause=exc)
        raise CacheError(f"cache views cannot be created: {exc}", path=root) from exc
    return con


def _create_component_view(
    con: duckdb.DuckDBPyConnection, root: str, name: str, has_files: bool, registered: set[str]
) -> None:
    """Create the view of component `name` on `con`, with the schema's comments."""
    from npc_frames.schemas import SCHEMAS

    schema: Schema | None = SCHEMAS.get(name)
    if has_files and schema is not None and storage.is_remote(root):
        _register_remote_view(con, root, name)
        _comment(con, name, schema.description, {c.name: c.comment for c in schema.columns})
        return
    if has_files:
        source = (
            f"SELECT * FROM read_parquet('{_sql_str(_glob(root, name))}', "
            f"hive_partitioning=true, union_by_name=true, hive_types={{'session_id': VARCHAR}})"
        )
        pl_schema = _schema_of(name)
        layout = LAYOUTS.get(name)
        packed = packed_columns(layout, pl_schema) if layout and pl_schema is not None else {}
        if packed:
            replace = ", ".join(
                f"{_unpack_udf(con, e, registered)}({_sql_ident(c)}) AS {_sql_ident(c)}"
                for c, e in packed.items()
            )
            source = source.replace("SELECT *", f"SELECT * REPLACE ({replace})", 1)
        if schema is not None:
            cols = ", ".join(_sql_ident(c) for c in schema.names)
            source = f"SELECT {cols} FROM ({_typed_empty(con, schema)} UNION ALL BY NAME {source})"
    elif schema is not None:
        source = _typed_empty(con, schema)
    else:
        return
    con.execute(f"CREATE VIEW {_sql_ident(name)} AS {source}")
    if schema is not None:
        _comment(con, name, schema.description, {c.name: c.comment for c in schema.columns})


def _register_remote_view(con: duckdb.DuckDBPyConnection, root: str, name: str) -> None:
    """Register component `name` of the object-store cache `root` as a view of `con` read
    through the planned reader (:mod:`npc_frames.cache.remote`), not DuckDB's own file reads.

    The view is the component's LazyFrame (``scan``: the schema's columns, packed columns
    unpacked). DuckDB hands it each query's filters and columns, which reach the planned reader:
    footers cached by ETag, only the needed column chunks of the row groups the statistics admit,
    merged into a few ranged GETs per file, and one listing of the component per query.
    """
    from npc_frames.cache.scan import scan

    con.register(name, scan(name, root))


def _create_spike_times_view(con: duckdb.DuckDBPyConnection) -> None:
    import duckdb

    # units without unit_id/spike_times (schema not declared yet) get no spike_times view
    with contextlib.suppress(duckdb.Error):
        con.execute(
            "CREATE VIEW spike_times AS SELECT session_id, unit_id, "
            "unnest(spike_times) AS spike_time FROM units"
        )
        _comment(
            con,
            "spike_times",
            "one row per spike of every unit: the long form of units.spike_times",
            {
                "session_id": "canonical session id",
                "unit_id": "unit of the spike (units.unit_id)",
                "spike_time": "spike time on the sync clock [s]",
            },
        )


def _comment(
    con: duckdb.DuckDBPyConnection, view: str, description: str, columns: Mapping[str, str]
) -> None:
    """Attach `description` to `view` and each text of `columns` to its column."""
    v = _sql_ident(view)
    con.execute(f"COMMENT ON VIEW {v} IS '{_sql_str(description)}'")
    for column, text in columns.items():
        con.execute(f"COMMENT ON COLUMN {v}.{_sql_ident(column)} IS '{_sql_str(text)}'")


def _typed_empty(con: duckdb.DuckDBPyConnection, schema: Schema) -> str:
    """Return a zero-row SELECT with the DuckDB types of `schema` (no registered object needed)."""
    arrow = pl.DataFrame(schema=schema.polars_schema).to_arrow()
    types = con.from_arrow(arrow).types
    cols = ", ".join(
        f"CAST(NULL AS {t}) AS {_sql_ident(n)}" for n, t in zip(schema.names, types, strict=True)
    )
    return f"SELECT {cols} WHERE false"


def _present_local(root: str) -> set[str]:
    """Return the components with a data file in a local cache: a directory scan per component
    that stops at its first session holding one (fsspec's glob stats every file)."""
    out: set[str] = set()
    try:
        comps = [e for e in os.scandir(root) if e.is_dir()]
    except FileNotFoundError:
        return out
    for comp in comps:
        with os.scandir(comp.path) as it:
            for e in it:
                if e.name.startswith("session_id=") and os.path.isfile(
                    os.path.join(e.path, DATA_FILE)
                ):
                    out.add(comp.name)
                    break
    return out


_DUCKDB_TYPES = {"float64": "DOUBLE", "float32": "FLOAT", "int64": "BIGINT", "int32": "INTEGER"}


def _present_components(root: str) -> set[str]:
    """Return the components that have at least one file in the cache (one listing: on S3 one
    request per 1,000 objects, where a glob lists every component's and session's folder)."""
    if not storage.is_remote(root):
        return _present_local(storage.strip_protocol(root))
    out = set()
    for rel, _, _ in storage.list_files(root):
        parts = rel.split("/")
        if len(parts) == 3 and parts[1].startswith("session_id=") and parts[2] == DATA_FILE:
            out.add(parts[0])
    return out


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


def _referenced_views(query: str, root: str | None = None) -> set[str]:
    """Return the views a query needs: those named in it, or every present one for a query
    that lists tables (SHOW, DESCRIBE, information_schema, duckdb_*()) when `root` is given."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", query.lower()))
    named = words & ({*_component_names(), "spike_times", "catalog", *_derived.DERIVED_VIEWS})
    if root is not None and _DISCOVERY.search(query):
        present = _present_components(root)
        named |= present | {"catalog"} | ({"spike_times"} if "units" in present else set())
        named |= _derived.available_views(present)
    return named


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
    *,
    read_only: bool = True,
) -> pl.DataFrame:
    """Return the result of a DuckDB `query` over the cache's views as a Polars DataFrame.

    Views: one per component (``trials``, ``units``, …; see :func:`connect`), ``spike_times``
    (session_id, unit_id, spike_time) and ``catalog``. ``SHOW TABLES`` lists the components
    present in the cache; ``information_schema.columns`` (``column_comment``) and ``DESCRIBE``
    show the schema's descriptions and units (also :func:`npc_frames.describe`).

    Read-only queries (the default) are exactly one statement of DuckDB type SELECT — which
    includes WITH, FROM-first, VALUES, SHOW, DESCRIBE and SUMMARIZE — or EXPLAIN [ANALYZE] of one,
    or a read-only PRAGMA (table_info, show_tables, show, database_size, version, …); the type is
    DuckDB's own (``duckdb.extract_statements``). They run on a shared, cached connection inside a
    transaction that is rolled back, so they cannot change its views. Writes (CREATE, INSERT,
    COPY … TO, ATTACH, SET, …) and several statements in one query raise ParameterError unless
    ``read_only=False``, which runs the query on a private connection closed afterwards (nothing
    it creates outlives the call, and files it writes are the caller's doing).

    `params` are bound by DuckDB (``?`` / ``$name`` placeholders), never formatted into the text.
    Raises ParameterError for a refused query and when DuckDB rejects the query (syntax, unknown
    table — the message lists the views —, column, types, parameters); CacheError when the cache
    cannot be read (I/O, S3), naming the file when a ``data.parquet`` is corrupt. The DuckDB error
    is the ``__cause__``.

    Examples
    --------
    >>> import npc_frames as nf
    >>> nf.sql("SELECT session_id, count(*) AS n FROM trials GROUP BY 1", cache)  # doctest: +SKIP
    >>> nf.sql("SHOW TABLES", cache)                                                # doctest: +SKIP

    Examples
    --------
    >>> nf.sql("SELECT stim_name, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1", cache="cache/").rows()
    [('catch', 1), ('sound1', 5), ('sound2', 3), ('vis1', 7), ('vis2', 2)]
    >>> nf.sql("SELECT count(*) AS n FROM trials WHERE stim_name = ?", cache="cache/", params=["vis1"]).item()
    7
    """
    import duckdb

    _check_statements(query, read_only=read_only)
    root = cache_root(cache)
    views = _referenced_views(query, root)
    reusable = read_only and "catalog" not in views
    entry = _cached_connection(root, views) if reusable else None
    con = entry[0] if entry is not None else connect(root, views=views)
    lock = entry[1] if entry is not None else threading.Lock()
    try:
        with lock:
            return _run(con, query, params, isolated=entry is not None, root=root)
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        if isinstance(exc, duckdb.CatalogException):
            _raise_unknown_table(exc)
        if not _is_query_error(exc):
            _raise_for_corrupt_files(root, views, cause=exc)
        raise _typed_sql_error(exc, query, root) from exc
    finally:
        if entry is None:
            con.close()


def _run(
    con: duckdb.DuckDBPyConnection,
    query: str,
    params: Sequence[Any] | Mapping[str, Any] | None,
    *,
    isolated: bool,
    root: str,
) -> pl.DataFrame:
    """Return the result of `query` on `con`; inside a rolled-back transaction when `isolated`."""
    import duckdb

    if not isolated:
        rel = con.sql(query, params=params)
        return pl.DataFrame() if rel is None else pl.from_arrow(rel.to_arrow_table())  # type: ignore[return-value]
    con.begin()
    try:
        rel = con.sql(query, params=params)
        return pl.DataFrame() if rel is None else pl.from_arrow(rel.to_arrow_table())  # type: ignore[return-value]
    finally:
        try:
            con.rollback()
        except duckdb.Error:
            # the transaction ended inside the query: the connection can no longer be trusted
            _evict(con)


def _check_statements(query: str, *, read_only: bool) -> None:
    """Raise ParameterError unless `query` parses, and is one read-only statement if `read_only`."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise ParameterError(
            f"SQL query cannot be parsed: {exc}", field="query", expected=query
        ) from exc
    if not read_only:
        return
    if len(statements) != 1:
        raise ParameterError(
            f"a read-only SQL query is exactly one statement; got {len(statements)}",
            field="query",
            expected="one statement, or read_only=False",
        )
    problem = _read_only_problem(statements[0])
    if problem is not None:
        raise ParameterError(
            f"SQL statement refused: {problem}",
            field="query",
            expected=f"{READ_ONLY_RULES} Query: {query}",
        )


def _read_only_problem(statement: Any, depth: int = 0) -> str | None:
    """Return why `statement` (a DuckDB Statement) is not read-only, or None when it is."""
    import duckdb

    kind = statement.type
    text = _COMMENTS.sub("", statement.query, count=1).strip().rstrip(";").strip()
    if kind == duckdb.StatementType.SELECT:
        return None
    if kind == duckdb.StatementType.EXPLAIN and depth == 0:
        m = _EXPLAIN.match(text)
        if m is None:
            return "an EXPLAIN whose explained statement cannot be found"
        try:
            inner = duckdb.extract_statements(m["inner"])
            if not inner:  # "EXPLAIN (SELECT 1)": the parenthesis was the query, not options
                inner = duckdb.extract_statements(_EXPLAIN_WORDS.sub("", text, count=1))
        except duckdb.Error:
            return "an EXPLAIN whose explained statement cannot be parsed"
        if len(inner) != 1:
            return "an EXPLAIN of several statements"
        problem = _read_only_problem(inner[0], depth + 1)
        return None if problem is None else f"EXPLAIN of {problem}"
    if kind == duckdb.StatementType.PRAGMA:
        m = _PRAGMA.match(text)
        if m is not None and m["name"].lower() in READ_ONLY_PRAGMAS and "=" not in m["rest"][:1]:
            return None
        name = m["name"] if m is not None else text
        return f"PRAGMA {name} is not a read-only PRAGMA"
    return f"a statement of type {kind.name}"


def _raise_unknown_table(exc: Exception) -> None:
    """Raise ParameterError listing the views if `exc` says a table does not exist."""
    m = re.search(r"Table with name (\S+?) does not exist", str(exc))
    if m is None:
        return
    name = m[1].strip("\"'!")
    views = [*_component_names(), "spike_times", "catalog"]
    close = difflib.get_close_matches(name, views, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ParameterError(
        f"SQL query failed: no table {name!r}{hint}",
        field=name,
        expected=f"one of the views {views}",
    ) from exc


def _raise_for_corrupt_files(root: str, views: Iterable[str], *, cause: Exception) -> None:
    """Raise CacheError naming the first unreadable ``data.parquet`` of `views`, if any."""
    names = set(views)
    if "spike_times" in names:
        names.add("units")
    for name in sorted(names & set(_component_names())):
        for path in storage.glob(_glob(root, name)):
            error = corrupt_file_error(path, name)
            if error is not None:
                raise error from cause


#: (root, views, components with files, registries) -> (connection, lock); views re-read their
#: globs on every query, so a connection stays valid while those keys are unchanged
_CONNECTIONS: collections.OrderedDict[tuple[Any, ...], tuple[Any, threading.Lock]] = (
    collections.OrderedDict()
)
_CONNECTIONS_MAX = 8
_CONNECTIONS_LOCK = threading.Lock()


def _evict(con: Any) -> None:
    """Drop `con` from the shared connections and close it."""
    with _CONNECTIONS_LOCK:
        for key, (c, _) in list(_CONNECTIONS.items()):
            if c is con:
                del _CONNECTIONS[key]
    con.close()


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
        _derived.state_key(root, views),  # derived views are tables: rebuilt when inputs change
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
