"""Derived cross-session views of the cache: ``session_days`` and ``session_records``.

They depend on several sessions (a subject's experiment day is the rank of its date among the
subject's sessions) or on several components, so they are computed at query time over the cached
components and never stored in one session's files, where they would go stale as sessions are
added. Each view is one DuckDB statement over the component views; :data:`DERIVED_VIEWS` is the
single registry that ``npc_frames.cache.sql`` (SQL access), the ``scan_<view>`` functions and
:func:`sessions` use.

* ``session_days``: one row per session with ``experiment_day`` (the manifest ``day`` when given,
  else the dense rank of the date among the subject's sessions of the same kind — ephys, behavior
  with sync, behavior — and project; same-day sessions share a day), its source, ``behavior_day``
  (training-record row) and the keywords with ``day_<n>`` added.
* ``session_records``: one row per session with every ``sessions`` column (keywords from
  ``session_days``), the days, and what the other components say: probes, areas hit, units passing
  QC per area, per-block performance lists, passing blocks, epochs, opto targets.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames.errors import NpcFramesError, ParameterError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "DERIVED_VIEWS",
    "DerivedView",
    "available_views",
    "derived",
    "scan_session_days",
    "scan_session_records",
    "session_summary",
    "sessions",
]

logger = logging.getLogger(__name__)

#: a block "passes" when its cross-modality d' reaches this value
PASSING_BLOCK_DPRIME = 1.0


@dataclass(frozen=True)
class DerivedView:
    """A view computed at query time: its SQL body and the views it reads."""

    name: str
    description: str
    sql: str
    depends_on: tuple[str, ...]


_SESSION_DAYS = """
SELECT
    session_id,
    subject_id,
    date,
    day_group,
    experiment_day,
    experiment_day_source,
    behavior_day,
    CASE
        WHEN experiment_day IS NULL THEN keywords
        WHEN session_type IS NOT NULL AND len(keywords) > 0
            AND keywords[len(keywords)] = replace(session_type, ' ', '_')
        THEN list_concat(
            keywords[1:len(keywords) - 1],
            ['day_' || experiment_day::VARCHAR],
            [keywords[len(keywords)]]
        )
        ELSE list_append(keywords, 'day_' || experiment_day::VARCHAR)
    END AS keywords
FROM (
    SELECT
        *,
        coalesce(
            manifest_day,
            dense_rank() OVER (
                PARTITION BY subject_id, day_group, coalesce(project, '') ORDER BY date
            )
        ) AS experiment_day,
        CASE WHEN manifest_day IS NOT NULL THEN 'manifest' ELSE 'rank' END
            AS experiment_day_source
    FROM (
        SELECT
            session_id, subject_id, date, project, manifest_day, behavior_day, keywords,
            session_type,
            CASE
                WHEN is_ephys THEN 'ephys'
                WHEN is_sync THEN 'behavior_with_sync'
                ELSE 'behavior'
            END AS day_group
        FROM sessions
    )
)
"""

_SESSION_SUMMARY = f"""
WITH
unit_areas AS (
    SELECT
        session_id,
        structure,
        count(*) AS n_units,
        count(*) FILTER (WHERE default_qc) AS n_passing_qc
    FROM units
    WHERE structure IS NOT NULL
    GROUP BY session_id, structure
),
unit_summary AS (
    SELECT
        session_id,
        count(*) AS n_units,
        count(*) FILTER (WHERE default_qc) AS n_units_passing_qc,
        list(DISTINCT replace(electrode_group_name, 'probe', ''))
            AS probe_letters_with_units,
        list(DISTINCT replace(electrode_group_name, 'probe', ''))
            FILTER (WHERE structure IS NOT NULL) AS probe_letters_annotated
    FROM units
    GROUP BY session_id
),
area_summary AS (
    SELECT
        session_id,
        list(structure ORDER BY structure) AS areas_hit,
        list(structure ORDER BY structure) FILTER (WHERE n_passing_qc > 0) AS areas_with_qc_units,
        list({{'area': structure, 'n_units': n_units, 'n_passing_qc': n_passing_qc}}
            ORDER BY structure) AS units_per_area
    FROM unit_areas
    GROUP BY session_id
),
probes AS (
    SELECT session_id, list(DISTINCT replace(name, 'probe', '')) AS probe_letters_available
    FROM electrode_groups
    GROUP BY session_id
),
perf AS (
    SELECT
        session_id,
        count(*) AS n_blocks,
        count(*) FILTER (
            -- DuckDB orders NaN above every number, so NaN must be excluded explicitly
            WHERE NOT isnan(cross_modality_dprime)
                AND cross_modality_dprime >= {PASSING_BLOCK_DPRIME}
        )
            AS n_passing_blocks,
        list(cross_modality_dprime ORDER BY block_index) AS cross_modality_dprime,
        list(CASE WHEN isnan(cross_modality_dprime) THEN NULL ELSE cross_modality_dprime END
            ORDER BY block_index) FILTER (WHERE rewarded_modality = 'vis')
            AS cross_modality_dprime_vis_blocks,
        list(CASE WHEN isnan(cross_modality_dprime) THEN NULL ELSE cross_modality_dprime END
            ORDER BY block_index) FILTER (WHERE rewarded_modality = 'aud')
            AS cross_modality_dprime_aud_blocks,
        list(n_hits ORDER BY block_index) AS n_hits,
        list(n_trials ORDER BY block_index) AS n_trials,
        list(n_responses ORDER BY block_index) AS n_responses,
        list(n_contingent_rewards ORDER BY block_index) AS n_contingent_rewards,
        avg(vis_dprime) FILTER (WHERE NOT isnan(vis_dprime)) AS mean_vis_dprime,
        avg(aud_dprime) FILTER (WHERE NOT isnan(aud_dprime)) AS mean_aud_dprime
    FROM performance
    GROUP BY session_id
),
task AS (
    SELECT
        session_id,
        max(stop_time) - min(start_time) AS task_duration,
        list(DISTINCT opto_label ORDER BY opto_label) FILTER (WHERE is_opto AND opto_label IS NOT NULL)
            AS opto_labels
    FROM trials
    GROUP BY session_id
),
ep AS (
    SELECT
        session_id,
        list(script_name ORDER BY start_time) AS epochs,
        bool_or(lower(script_name) = 'spontaneous') AS is_spontaneous,
        bool_or(lower(script_name) = 'spontaneousrewards') AS is_spontaneous_rewards,
        bool_or(lower(script_name) = 'rfmapping') AS is_rf_mapping,
        bool_or(list_contains(tags, 'invalid_times')) AS is_invalid_times
    FROM epochs
    GROUP BY session_id
)
SELECT
    s.*,
    CASE WHEN s.is_templeton THEN 'Templeton' WHEN s.is_templeton = false THEN 'DynamicRouting'
        END AS record_project,
    list_sort(coalesce(pr.probe_letters_available, [])) AS probe_letters_available,
    list_sort(coalesce(us.probe_letters_with_units, [])) AS probe_letters_with_units,
    list_sort(coalesce(us.probe_letters_annotated, [])) AS probe_letters_annotated,
    coalesce(a.areas_hit, []) AS areas_hit,
    coalesce(a.areas_with_qc_units, []) AS areas_with_qc_units,
    a.units_per_area,
    coalesce(us.n_units, 0) AS n_units,
    coalesce(us.n_units_passing_qc, 0) AS n_units_passing_qc,
    CASE WHEN s.is_opto THEN t.opto_labels END AS perturbation_areas,
    t.task_duration,
    p.n_blocks,
    p.n_passing_blocks,
    p.cross_modality_dprime,
    p.cross_modality_dprime_vis_blocks,
    p.cross_modality_dprime_aud_blocks,
    p.n_hits,
    p.n_trials,
    p.n_responses,
    p.n_contingent_rewards,
    p.mean_vis_dprime,
    p.mean_aud_dprime,
    e.epochs,
    coalesce(e.is_spontaneous, false) AS is_spontaneous,
    coalesce(e.is_spontaneous_rewards, false) AS is_spontaneous_rewards,
    coalesce(e.is_rf_mapping, false) AS is_rf_mapping,
    list_contains(s.keywords, 'optotagging') AS is_optotagging,
    list_contains(s.keywords, 'optotagging_control') AS is_optotagging_control,
    coalesce(e.is_invalid_times, false) AS is_invalid_times
FROM sessions s
LEFT JOIN unit_summary us USING (session_id)
LEFT JOIN area_summary a USING (session_id)
LEFT JOIN probes pr USING (session_id)
LEFT JOIN perf p USING (session_id)
LEFT JOIN task t USING (session_id)
LEFT JOIN ep e USING (session_id)
"""

#: the columns session_records adds to the summary, from session_days (inserted after
#: record_project)
DAY_COLUMNS = ("experiment_day", "experiment_day_source", "ephys_day")

_SESSION_RECORDS = f"""
SELECT
    sm.* REPLACE (d.keywords AS keywords),
    d.experiment_day,
    d.experiment_day_source,
    CASE WHEN sm.is_ephys THEN d.experiment_day END AS ephys_day
FROM ({_SESSION_SUMMARY}) sm
LEFT JOIN session_days d USING (session_id)
"""

#: derived view name -> definition; the one registration hook for SQL, scans and `sessions`
DERIVED_VIEWS: dict[str, DerivedView] = {
    v.name: v
    for v in (
        DerivedView(
            "session_days",
            "experiment day (manifest day, else rank of the date among the subject's sessions "
            "of the same kind), behavior day and keywords with day_<n>",
            _SESSION_DAYS,
            ("sessions",),
        ),
        DerivedView(
            "session_records",
            "one row per session: sessions columns, days, probes, areas hit, units passing QC "
            "per area, per-block performance, passing blocks, epochs",
            _SESSION_RECORDS,
            (
                "sessions",
                "session_days",
                "units",
                "electrode_groups",
                "performance",
                "trials",
                "epochs",
            ),
        ),
    )
}


def with_dependencies(names: Iterable[str]) -> set[str]:
    """Return `names` plus every view a derived view among them reads (transitively)."""
    out = set(names)
    todo = [n for n in out if n in DERIVED_VIEWS]
    while todo:
        for dep in DERIVED_VIEWS[todo.pop()].depends_on:
            if dep not in out:
                out.add(dep)
                if dep in DERIVED_VIEWS:
                    todo.append(dep)
    return out


def available_views(present: Iterable[str]) -> set[str]:
    """Return the derived views whose every component input is among `present` (the components
    that have files), i.e. those a listing of the cache shows."""
    have = set(present)
    return {
        name for name in DERIVED_VIEWS if with_dependencies({name}) - set(DERIVED_VIEWS) <= have
    }


def create_derived_views(
    con: duckdb.DuckDBPyConnection,
    wanted: Iterable[str],
    *,
    strict: bool = True,
    root: str | None = None,
) -> None:
    """Create the derived views named in `wanted` on a connection.

    With `root` (a cache root) each is a table holding :func:`derived` over that cache (read from
    the materialized session summary: no component view is needed, and none is read); without,
    a live view over the connection's component views. With ``strict=False`` a view whose inputs
    lack a column it reads (a cache written by an older schema) is left out, logged at debug
    level, instead of failing the whole connection."""
    import duckdb

    wanted = set(wanted)
    for name, view in DERIVED_VIEWS.items():  # registry order respects dependencies
        if name not in wanted:
            continue
        try:
            if root is not None:
                con.from_arrow(derived(name, root).to_arrow()).create(name)
                con.execute(
                    f"COMMENT ON TABLE \"{name}\" IS '{view.description.replace(chr(39), chr(39) * 2)}'"
                )
            else:
                con.execute(f'CREATE VIEW "{name}" AS {view.sql}')
        except (duckdb.Error, pl.exceptions.PolarsError, KeyError, NpcFramesError):
            # KeyError: an input component without a registered schema
            if strict:
                raise
            logger.debug("derived view %s left out: its inputs lack columns", name, exc_info=True)


def state_key(root: str, names: Iterable[str]) -> str | None:
    """Return a digest of the input files of the derived views among `names` (None when there
    are none): a connection holding their tables is stale once it changes."""
    if not set(names) & set(DERIVED_VIEWS):
        return None
    return _digest(_listing(root, _inputs()))


def _digest(listing: Mapping[str, Mapping[str, str]]) -> str:
    return hashlib.sha256(repr(sorted(_stamps(listing).items())).encode()).hexdigest()


def sql_inputs(names: Iterable[str]) -> set[str]:
    """Return `names` plus the component views the SQL connection must create for them: none for
    the derived views, which are tables computed from the materialized session summary."""
    return set(names)


#: the component columns the derived views read (the others are never loaded)
COLUMNS: dict[str, tuple[str, ...] | None] = {
    "sessions": None,  # every column
    "units": ("session_id", "electrode_group_name", "structure", "default_qc"),
    "electrode_groups": ("session_id", "name"),
    "performance": (
        "session_id",
        "block_index",
        "rewarded_modality",
        "cross_modality_dprime",
        "vis_dprime",
        "aud_dprime",
        "n_hits",
        "n_trials",
        "n_responses",
        "n_contingent_rewards",
    ),
    "trials": ("session_id", "start_time", "stop_time", "is_opto", "opto_label"),
    "epochs": ("session_id", "start_time", "script_name", "tags"),
}

#: the per-session part of session_records, materialized in the cache (one file for every
#: session): each row carries the digest of its session's input files, so a changed, added or
#: removed session is recomputed alone and the others are read back from this one file
STORE = "session_summary.parquet"
STAMP = "_stamp"

#: (cache root, view) -> (fingerprint of its input files, frame): repeated selections over an
#: unchanged cache reuse the frame; any added, removed or rewritten input file recomputes it
_MEMO: dict[tuple[str, str], tuple[str, pl.DataFrame]] = {}
_MEMO_LOCK = threading.Lock()


def _inputs(name: str = "session_records") -> list[str]:
    return sorted(d for d in with_dependencies([name]) if d not in DERIVED_VIEWS)


def _listing(root: str, components: Sequence[str]) -> dict[str, dict[str, str]]:
    """Return component -> {session id: "size:stamp"} of every data file of `components`.

    Local caches: one directory scan per component and one stat per file; remote: one listing.
    """
    from npc_frames import storage
    from npc_frames.cache.catalog import DATA_FILE

    out: dict[str, dict[str, str]] = {}
    for comp in components:
        found: dict[str, str] = {}
        folder = storage.join(root, comp)
        if storage.is_remote(root):
            if storage.exists(folder):
                for rel, size, version in storage.list_files(folder):
                    head, _, tail = rel.partition("/")
                    if tail == DATA_FILE and head.startswith("session_id="):
                        found[head[len("session_id=") :]] = f"{size}:{version}"
        else:
            try:
                entries = [e.name for e in os.scandir(folder) if e.is_dir()]
            except FileNotFoundError:
                entries = []
            for name in entries:
                if not name.startswith("session_id="):
                    continue
                try:
                    st = os.stat(os.path.join(folder, name, DATA_FILE))
                except FileNotFoundError:
                    continue
                found[name[len("session_id=") :]] = f"{st.st_size}:{st.st_mtime_ns}"
        out[comp] = found
    return out


def _stamps(listing: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """Return session id -> digest of its input files (sessions with a sessions file only)."""
    from npc_frames.schemas import SCHEMA_VERSION

    comps = sorted(listing)
    out: dict[str, str] = {}
    for sid in listing.get("sessions", {}):
        text = f"{SCHEMA_VERSION}\0" + "\0".join(f"{c}={listing[c].get(sid, '-')}" for c in comps)
        out[sid] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return out


def _read_inputs(
    root: str, component: str, sessions: Sequence[str], listing: Mapping[str, str]
) -> pl.DataFrame:
    """Return the columns the views read of `component` for `sessions` (only their files)."""
    from npc_frames import storage
    from npc_frames.cache.catalog import data_path
    from npc_frames.schemas import SCHEMAS

    schema = SCHEMAS[component]
    cols = COLUMNS.get(component) or tuple(schema.names)
    want = pl.Schema({c: schema.polars_schema[c] for c in cols})
    files = [data_path(root, component, sid) for sid in sessions if sid in listing]
    if not files:
        return pl.DataFrame(schema=want)
    return pl.scan_parquet(
        files,
        schema=want,
        missing_columns="insert",
        extra_columns="ignore",
        storage_options=storage.polars_storage_options(root),
    ).collect()


def _summarize(
    root: str, sessions: Sequence[str], listing: Mapping[str, Mapping[str, str]]
) -> pl.DataFrame:
    """Return the session summary rows of `sessions`, computed from their component files."""
    import duckdb

    con = duckdb.connect()
    try:
        for comp in _inputs():
            frame = _read_inputs(root, comp, sessions, listing.get(comp, {}))
            con.register(comp, frame.to_arrow())
        return pl.from_arrow(
            con.sql(f"SELECT * FROM ({_SESSION_SUMMARY}) ORDER BY session_id").to_arrow_table()
        )  # type: ignore[return-value]
    finally:
        con.close()


def _read_store(root: str) -> pl.DataFrame | None:
    from npc_frames import storage

    path = storage.join(root, STORE)
    try:
        if not storage.exists(path):
            return None
        df = pl.read_parquet(io.BytesIO(storage.read_bytes(path)))
    except Exception:  # damaged or from an incompatible version: rebuilt
        logger.debug("session summary store %s unreadable; rebuilding", path, exc_info=True)
        return None
    return df if STAMP in df.columns else None


def _write_store(root: str, df: pl.DataFrame) -> None:
    from npc_frames import storage

    buf = io.BytesIO()
    df.write_parquet(buf)
    try:
        storage.atomic_write_bytes(storage.join(root, STORE), buf.getvalue())
    except Exception:  # a read-only cache still answers, it just recomputes the summary
        logger.debug("session summary store not written under %s", root, exc_info=True)


def session_summary(
    cache: str | os.PathLike[str] | None = None,
    *,
    listing: Mapping[str, Mapping[str, str]] | None = None,
) -> pl.DataFrame:
    """Return the per-session part of ``session_records`` (no days) for every cached session.

    Reads the materialized summary (``session_summary.parquet`` at the cache root), recomputes
    the rows of sessions whose input files changed (or that are new), drops removed sessions and
    writes the file back when anything changed. ``convert`` calls it after each run, so a
    selection reads one file plus a listing of the cache.
    """
    from npc_frames.cache.catalog import cache_root

    root = cache_root(cache)
    listing = listing if listing is not None else _listing(root, _inputs())
    stamps = _stamps(listing)
    store = _read_store(root)
    keep = (
        store.filter(
            pl.col("session_id").is_in(list(stamps))
            & (pl.col(STAMP) == pl.col("session_id").replace_strict(stamps, default=None))
        )
        if store is not None
        else None
    )
    have = set(keep["session_id"]) if keep is not None else set()
    todo = sorted(set(stamps) - have)
    if todo:
        fresh = _summarize(root, todo, listing).with_columns(
            pl.col("session_id").replace_strict(stamps, default=None).alias(STAMP)
        )
        if keep is not None and keep.height:
            try:
                fresh = pl.concat([keep, fresh], how="vertical_relaxed")
            except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
                # a store written by another schema: recompute every session instead
                fresh = _summarize(root, sorted(stamps), listing).with_columns(
                    pl.col("session_id").replace_strict(stamps, default=None).alias(STAMP)
                )
        keep = fresh.sort("session_id")
    if keep is None:
        keep = _summarize(root, [], listing).with_columns(pl.lit(None, pl.String).alias(STAMP))
    if store is None or todo or store.height != keep.height:
        _write_store(root, keep)
    return keep.drop(STAMP)


def _days(summary: pl.DataFrame) -> pl.DataFrame:
    """Return session_days from the summary rows: the Polars form of the ``session_days`` SQL
    (the same rules; tests keep the two in step)."""
    group = (
        pl.when(pl.col("is_ephys"))
        .then(pl.lit("ephys"))
        .when(pl.col("is_sync"))
        .then(pl.lit("behavior_with_sync"))
        .otherwise(pl.lit("behavior"))
    )
    df = summary.select(
        "session_id",
        "subject_id",
        "date",
        "project",
        "manifest_day",
        "behavior_day",
        "keywords",
        "session_type",
        group.alias("day_group"),
    )
    rank = (
        pl.col("date")
        .rank("dense")
        .over("subject_id", "day_group", pl.col("project").fill_null(""))
        .cast(pl.Int64)
    )
    df = df.with_columns(
        pl.coalesce(pl.col("manifest_day"), rank).alias("experiment_day"),
        pl.when(pl.col("manifest_day").is_not_null())
        .then(pl.lit("manifest"))
        .otherwise(pl.lit("rank"))
        .alias("experiment_day_source"),
    )
    kw = pl.col("keywords")
    last = kw.list.last()
    tag = pl.concat_str(pl.lit("day_"), pl.col("experiment_day").cast(pl.String))
    before_type = (
        pl.col("session_type").is_not_null()
        & (kw.list.len() > 0)
        & (last == pl.col("session_type").str.replace_all(" ", "_", literal=True))
    )
    keywords = (
        pl.when(pl.col("experiment_day").is_null())
        .then(kw)
        .when(before_type)
        .then(pl.concat_list(kw.list.head(kw.list.len() - 1), tag, last))
        .otherwise(pl.concat_list(kw.fill_null(pl.lit([], dtype=pl.List(pl.String))), tag))
    )
    return (
        df.with_columns(keywords.alias("keywords"))
        .select(
            "session_id",
            "subject_id",
            "date",
            "day_group",
            "experiment_day",
            "experiment_day_source",
            "behavior_day",
            "keywords",
        )
        .sort("session_id")
    )


def _from_summary(name: str, summary: pl.DataFrame) -> pl.DataFrame:
    """Return view `name` computed from the session summary (days ranked across sessions)."""
    days = _days(summary)
    if name == "session_days":
        return days
    d = days.select(
        "session_id",
        pl.col("keywords").alias("_day_keywords"),
        "experiment_day",
        "experiment_day_source",
    )
    df = (
        summary.join(d, on="session_id", how="left")
        .with_columns(
            pl.col("_day_keywords").alias("keywords"),
            pl.when(pl.col("is_ephys")).then(pl.col("experiment_day")).alias("ephys_day"),
        )
        .drop("_day_keywords")
        .sort("session_id")
    )
    cols = [c for c in summary.columns if c not in DAY_COLUMNS]
    at = cols.index("record_project") + 1
    return df.select([*cols[:at], *DAY_COLUMNS, *cols[at:]])


def derived(name: str, cache: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """Return derived view `name` over every cached session (recomputed when any input changed).

    Only sessions whose files changed since the summary was materialized are read again (see
    :func:`session_summary`). Raises ParameterError for an unknown view name.
    """
    from npc_frames.cache.catalog import cache_root

    if name not in DERIVED_VIEWS:
        raise ParameterError(
            f"unknown derived view {name!r}",
            field="name",
            expected=f"one of {', '.join(DERIVED_VIEWS)}",
        )
    root = cache_root(cache)
    key = (root, name)
    listing = _listing(root, _inputs())
    fp = _digest(listing)
    with _MEMO_LOCK:
        hit = _MEMO.get(key)
    if hit is not None and hit[0] == fp:
        return hit[1]
    df = _from_summary(name, session_summary(root, listing=listing))
    with _MEMO_LOCK:
        _MEMO[key] = (fp, df)
        while len(_MEMO) > 16:
            _MEMO.pop(next(iter(_MEMO)))
    return df


def _scan(name: str) -> Callable[..., pl.LazyFrame]:
    def scan_view(cache: str | os.PathLike[str] | None = None) -> pl.LazyFrame:
        return derived(name, cache).lazy()

    scan_view.__name__ = scan_view.__qualname__ = f"scan_{name}"
    scan_view.__doc__ = (
        f"Return a LazyFrame of the derived ``{name}`` view over every cached session (computed "
        f"at call time, reused while no input file changes): {DERIVED_VIEWS[name].description}."
    )
    return scan_view


scan_session_days = _scan("session_days")
scan_session_records = _scan("session_records")


def _filter_expr(column: str, value: Any, dtype: pl.DataType) -> pl.Expr:
    col = pl.col(column)
    if value is None:
        return col.is_null()
    if isinstance(dtype, pl.List):
        wanted = [value] if isinstance(value, str) or not isinstance(value, Sequence) else value
        return pl.all_horizontal([col.list.contains(v) for v in wanted])
    if isinstance(value, Sequence) and not isinstance(value, str):
        return col.is_in(list(value))
    return col.eq(value)


def sessions(cache: str | os.PathLike[str] | None = None, **filters: Any) -> pl.DataFrame:
    """Return the sessions with days and records joined (``session_records``), filtered.

    Each keyword filter names a column: a scalar keeps rows equal to it, ``None`` keeps nulls, a
    list keeps rows whose value is in it — or, for a list column such as ``areas_hit`` or
    ``keywords``, rows whose list contains every element. Example::

        nf.sessions(session_type="brainwide survey", is_good_behavior=True, areas_hit=["MOs"])

    Raises ParameterError for a filter naming no column.
    """
    df = derived("session_records", cache)
    unknown = sorted(set(filters) - set(df.columns))
    if unknown:
        raise ParameterError(
            f"unknown session filter(s) {', '.join(unknown)}",
            field=", ".join(unknown),
            expected=f"columns of session_records: {', '.join(df.columns)}",
        )
    if filters:
        schema: Mapping[str, pl.DataType] = df.schema
        df = df.filter(*[_filter_expr(k, v, schema[k]) for k, v in filters.items()])
    return df
