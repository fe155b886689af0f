"""Interval-aligned spike analysis across sessions: counts, aligned spike times, PSTHs, histograms.

All functions accept eager frames or LazyFrames (e.g. ``nf.scan_units(...)`` and
``nf.scan_trials(...)`` filtered), possibly spanning many sessions. Within a session the work is
one pass of numpy over the spikes of all selected units — there is no Python loop over spikes or
intervals. Any interval table works (trials, epochs, optotagging, RF mapping): see `index`.

Conventions shared by every function here (docs/analysis.md):

- ``session_id`` and ``unit_id`` are Categorical in every result: a result has one row per
  unit × interval (× window or bin) — 48 M rows for 20 full-scale sessions — and a Categorical is
  4 bytes a row where a String is 16+. Filter them with plain strings; cast to ``pl.String``
  before joining with a String column.
- A result with no rows still has all its columns and dtypes.
- Windows are half-open: a spike at time ``t`` is counted in ``[window start, window stop)``.
- A result larger than :data:`MAX_RESULT_BYTES` raises :class:`~npc_frames.errors.ParameterError`
  before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.analysis._spikes import (
    UNIT_KEY,
    Spikes,
    cache_file_exists,
    cache_root_of,
    load_cache_spikes,
    load_frame_spikes,
)
from npc_frames.errors import ParameterError, SchemaError
from npc_frames.lists import flat_list, list_from_flat

if TYPE_CHECKING:
    import pynapple

__all__ = [
    "MAX_RESULT_BYTES",
    "aligned_spikes",
    "psth",
    "session_count_arrays",
    "spike_counts",
    "spike_histograms",
    "to_pynapple",
    "to_pynapple_intervals",
]

FrameLike = pl.DataFrame | pl.LazyFrame
#: ``(event column, start offset, stop offset)`` in seconds, or ``(start, stop)`` where each is a
#: column name or a Polars expression over the interval table giving absolute times in seconds
Window = tuple[str, float, float] | tuple[str | pl.Expr, str | pl.Expr]

#: results estimated to need more memory than this raise ParameterError before any allocation
MAX_RESULT_BYTES = 8 * 2**30
#: index column used by default when the interval table has it
TRIAL_KEY = "trial_index"
#: name of the row-number index given to interval tables without an index column
ROW_KEY = "interval_index"
ID_DTYPE = pl.Categorical()

# test hook: called with ("start" | "end", session_id) around each session of spike_counts
_on_session: Callable[[str, str], None] | None = None


# ----------------------------------------------------------------------------------- plumbing
def _lazy(frame: FrameLike) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _require(frame: pl.LazyFrame, columns: Sequence[str], what: str, hint: str = "") -> None:
    names = frame.collect_schema().names()
    missing = [c for c in dict.fromkeys(columns) if c not in names]
    if missing:
        raise SchemaError(
            f"{what} frame lacks columns {missing}{hint}",
            field=", ".join(missing),
            expected=f"columns {list(dict.fromkeys(columns))} (available: {names})",
        )


def _check_size(n_bytes: float, what: str) -> None:
    if n_bytes > MAX_RESULT_BYTES:
        raise ParameterError(
            f"{what} would need ~{n_bytes / 2**30:.1f} GiB, more than "
            f"npc_frames.analysis.MAX_RESULT_BYTES ({MAX_RESULT_BYTES / 2**30:.1f} GiB)",
            field=what,
            expected="fewer units, intervals, windows or bins (or a larger MAX_RESULT_BYTES)",
        )


def _ids(values: pl.Series | str, n: int | None = None) -> pl.Series:
    if isinstance(values, str):
        return pl.repeat(values, n or 0, dtype=ID_DTYPE, eager=True)
    return values.cast(pl.String).cast(ID_DTYPE)


def _resolve_index(frame: pl.LazyFrame, index: str | None) -> str | None:
    """Return the index column to use (None: number rows per session); it must be integer."""
    schema = frame.collect_schema()
    key = index if index is not None else (TRIAL_KEY if TRIAL_KEY in schema else None)
    if key is not None and key in schema and not schema[key].is_integer():
        raise SchemaError(
            f"index column {key!r} is {schema[key]}",
            field=key,
            expected="an integer column identifying each interval (or index=None)",
        )
    return key


def _normalize_windows(
    windows: Mapping[str, Window],
) -> dict[str, tuple[pl.Expr, pl.Expr, list[str]]]:
    """Return name -> (absolute start expr, absolute stop expr, columns they read)."""
    if not windows:
        raise ParameterError(
            "no windows given",
            field="windows",
            expected='e.g. {"response": ("stim_start_time", 0.0, 0.5)} or '
            '{"to_response": ("stim_start_time", "response_time")}',
        )
    out = {}
    for name, spec in windows.items():
        if not isinstance(spec, tuple | list) or len(spec) not in (2, 3):
            raise ParameterError(
                f"window {name!r} is {spec!r}",
                field="windows",
                expected="(event, start offset, stop offset) or (start, stop) columns/expressions",
            )
        if len(spec) == 3:
            event, start, stop = spec
            if not isinstance(event, str) or not float(stop) > float(start):
                raise ParameterError(
                    f"window {name!r} on {event!r} has stop {stop} <= start {start}",
                    field="windows",
                    expected="an event column name and start < stop (seconds from the event)",
                )
            col = pl.col(event).cast(pl.Float64)
            out[name] = (col + float(start), col + float(stop), [event])
        else:
            exprs = [pl.col(x) if isinstance(x, str) else x for x in spec]
            if not all(isinstance(e, pl.Expr) for e in exprs):
                raise ParameterError(
                    f"window {name!r} is {spec!r}",
                    field="windows",
                    expected="(start, stop) as column names or Polars expressions",
                )
            roots = [r for e in exprs for r in e.meta.root_names()]
            out[name] = (exprs[0].cast(pl.Float64), exprs[1].cast(pl.Float64), roots)
    return out


def _intervals_by_session(
    iv: pl.LazyFrame,
    sessions: Sequence[str],
    index: str | None,
    exprs: Mapping[str, pl.Expr],
    carried: Sequence[str],
) -> dict[str, pl.DataFrame]:
    """Return per session the interval rows: index column, evaluated `exprs`, carried columns.

    Interval tables are small (hundreds of rows a session): they are collected once.
    """
    frame = iv.filter(pl.col("session_id").is_in(list(sessions))).with_columns(
        pl.col("session_id").cast(pl.String)
    )
    if index is None:
        frame = frame.with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).over("session_id").alias(ROW_KEY)
        )
        key = ROW_KEY
    else:
        key = index
    cols = [
        pl.col("session_id"),
        pl.col(key),
        *(e.alias(f"__{n}") for n, e in exprs.items()),
        *(pl.col(c) for c in carried if c != key),
    ]
    df = frame.select(cols).collect()
    if index is not None:
        df = df.sort("session_id", key, maintain_order=True)
    parts = df.partition_by("session_id", as_dict=True, maintain_order=True)
    return {str(k[0]): v for k, v in parts.items()}


def _float(df: pl.DataFrame, name: str) -> npt.NDArray[np.float64]:
    return df[name].cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64, copy=False)


def _in_obs(
    spikes: Spikes, a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Return a (units, intervals) mask: [a, b) lies within one of the unit's obs intervals."""
    assert spikes.obs is not None
    ok = np.zeros((spikes.n_units, a.size), dtype=bool)
    for r in range(spikes.obs.shape[1]):  # rank of the interval: units have one or a few
        lo, hi = spikes.obs[:, r, 0, None], spikes.obs[:, r, 1, None]
        ok |= (lo <= a[None, :]) & (b[None, :] <= hi)
    return ok


def _overlaps(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], invalid: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Return True where [a, b) overlaps one of the (k, 2) `invalid` intervals."""
    hit = np.zeros(a.size, dtype=bool)
    for lo, hi in invalid:  # a session has a few invalid intervals
        hit |= (a < hi) & (lo < b)
    return hit


def _invalid_by_session(
    invalid_times: FrameLike | None, units: pl.LazyFrame, exclude: bool
) -> dict[str, npt.NDArray[np.float64]] | None:
    if not exclude:
        if invalid_times is not None:
            raise ParameterError(
                "invalid_times given without exclude_invalid_times=True",
                field="invalid_times",
                expected="exclude_invalid_times=True to use them",
            )
        return None
    if invalid_times is None:
        root = cache_root_of(units, strict=False)
        if root is None:
            raise ParameterError(
                "exclude_invalid_times=True but the units frame is not a scan of a cache",
                field="invalid_times",
                expected="invalid_times=nf.scan_invalid_times(cache) (or any frame with "
                "session_id, start_time, stop_time)",
            )
        from npc_frames.cache import scan

        invalid_times = scan("invalid_times", root)
    inv = _lazy(invalid_times)
    _require(inv, ["session_id", "start_time", "stop_time"], "invalid_times")
    df = inv.select(pl.col("session_id").cast(pl.String), "start_time", "stop_time").collect()
    out: dict[str, npt.NDArray[np.float64]] = {}
    for (sid,), part in df.partition_by("session_id", as_dict=True).items():
        out[str(sid)] = part.select("start_time", "stop_time").to_numpy().astype(np.float64)
    return out


def _invalid_mask(
    invalid: Mapping[str, npt.NDArray[np.float64]] | None,
    session_id: str,
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Return True where [a, b) overlaps one of the session's invalid times (all False without
    any)."""
    spans = invalid.get(session_id) if invalid is not None else None
    if spans is None or not spans.size:
        return np.zeros(a.size, dtype=bool)
    return _overlaps(a, b, spans)


def _null_where(series: pl.Series, null: npt.NDArray[np.bool_]) -> pl.Series:
    """Return `series` with the rows where `null` is True set to null."""
    return pl.select(pl.when(pl.lit(pl.Series(~null))).then(series)).to_series().alias(series.name)


# ---------------------------------------------------------------------------- spike_counts
def spike_counts(
    units: FrameLike,
    intervals: FrameLike,
    *,
    windows: Mapping[str, Window],
    index: str | None = None,
    trial_columns: Sequence[str] = (),
    exclude_invalid_times: bool = False,
    invalid_times: FrameLike | None = None,
    workers: int = 2,
) -> pl.DataFrame:
    """Return spike counts per unit, interval and window as a long frame
    ``session_id, unit_id, <index>, window, count`` (+ `trial_columns`).

    Parameters
    ----------
    units:
        Frame or LazyFrame with ``session_id``, ``unit_id``, ``spike_times`` (list[f64], seconds,
        sorted within each unit) and optionally ``obs_intervals`` (list of [start, stop]) — e.g.
        ``nf.scan_units(cache)`` filtered. A plain (filtered, projected) scan of a local cache is
        read from the memory-mapped Parquet pages without copying spikes; any other frame is
        collected one session at a time.
    intervals:
        Frame or LazyFrame with ``session_id`` and the columns the windows read — any interval
        table: ``nf.scan_trials()``, ``scan_epochs()``, ``scan_optotagging()``, ...
    windows:
        name -> window, either ``(event column, start offset, stop offset)`` in seconds relative to
        the event (``{"response": ("stim_start_time", 0.0, 0.5)}``), or ``(start, stop)`` where
        each is a column name or a Polars expression giving absolute times
        (``{"to_response": ("stim_start_time", "response_time")}``,
        ``{"epoch": ("start_time", "stop_time")}``).
    index:
        integer column identifying each interval in the result (Int64 there). Default:
        ``trial_index`` when the table has it, else the intervals are numbered per session in
        their frame order as ``interval_index``.
    trial_columns:
        columns of `intervals` to carry into the result (e.g. ``["stim_name", "is_hit"]``), so
        that no join is needed afterwards.
    exclude_invalid_times:
        give a null count to every window that overlaps one of its session's invalid times
        (`invalid_times`, by default the ``invalid_times`` component of the cache `units` was
        scanned from).
    invalid_times:
        frame with ``session_id, start_time, stop_time`` (used with `exclude_invalid_times`).
    workers:
        sessions counted concurrently (threads: Parquet reads and numpy's binary search release
        the GIL). At most `workers` sessions are in flight, so the memory beyond the result is
        bounded by `workers` × one session's working set: its unit × window-edge matrix
        (8 bytes × units × distinct edges, ~30 MB at full scale) and, for frames that are not a
        plain cache scan, its selected spikes (~0.5 GB at full scale).

    ``count`` is null where the window is not entirely inside one of the unit's observation
    intervals, where a window edge is null/NaN, where stop < start, or (with
    `exclude_invalid_times`) where the window overlaps an invalid time. Sessions present in only
    one input are skipped. ``window`` is an Enum of the window names.

    Examples
    --------
    >>> units, trials = nf.scan_units(cache="cache/"), nf.scan_trials(cache="cache/")
    >>> counts = nf.spike_counts(units, trials, windows={"response": ("stim_start_time", 0.0, 0.5)})
    >>> counts.columns, counts.height  # 8 units x 18 trials x 1 window
    (['session_id', 'unit_id', 'trial_index', 'window', 'count'], 144)
    >>> import numpy as np  # the same total, counted by brute force
    >>> spikes = np.concatenate(units.collect()["spike_times"].to_list())
    >>> onsets = trials.collect()["stim_start_time"].to_numpy()
    >>> int(counts["count"].sum()) == sum(int(((spikes >= t) & (spikes < t + 0.5)).sum()) for t in onsets)
    True
    """
    if workers < 1:
        raise ParameterError(f"workers={workers}", field="workers", expected="an integer >= 1")
    specs = _normalize_windows(windows)
    u, iv = _lazy(units), _lazy(intervals)
    _require(u, ["session_id", UNIT_KEY, "spike_times"], "units")
    key = _resolve_index(iv, index)
    needed = [c for _, _, roots in specs.values() for c in roots]
    _require(iv, ["session_id", *([key] if key else []), *needed, *trial_columns], "intervals")
    with_obs = "obs_intervals" in u.collect_schema().names()
    invalid = _invalid_by_session(invalid_times, u, exclude_invalid_times)

    root = cache_root_of(u)
    units_of: dict[str, pl.DataFrame] = {}
    if root is None:
        # not a local cache scan: each session's units are read once, below (on a remote cache
        # a separate selection pass would fetch every file's row groups a second time)
        sizes = (
            u.group_by(pl.col("session_id").cast(pl.String))
            .len()
            .filter(pl.col("session_id").is_not_null())
            .collect()
        )
        n_units = dict(zip(sizes["session_id"].to_list(), sizes["len"].to_list(), strict=True))
    else:
        selection = u.select(
            pl.col("session_id").cast(pl.String),
            UNIT_KEY,
            *(["obs_intervals"] if with_obs else []),
        ).collect()
        by_session = selection.partition_by("session_id", as_dict=True, maintain_order=True)
        units_of = {str(k[0]): v for k, v in by_session.items()}
        n_units = {s: v.height for s, v in units_of.items()}
    exprs = {f"a{k}": a for k, (a, _, _) in enumerate(specs.values())}
    exprs |= {f"b{k}": b for k, (_, b, _) in enumerate(specs.values())}
    trials_of = _intervals_by_session(iv, sorted(n_units), key, exprs, trial_columns)
    sessions = sorted(set(n_units) & set(trials_of))
    n_rows = sum(n_units[s] * trials_of[s].height for s in sessions) * len(specs)
    _check_size(n_rows * (21 + 8 * len(trial_columns)), "spike_counts result")

    def one(sid: str) -> pl.DataFrame:
        if _on_session is not None:
            _on_session("start", sid)
        spikes = _session_spikes(u, root, sid, units_of.get(sid), with_obs)
        inv = invalid.get(sid) if invalid is not None else None
        out = _session_counts(spikes, sid, trials_of[sid], list(specs), key, trial_columns, inv)
        spikes.close()
        if _on_session is not None:
            _on_session("end", sid)
        return out

    if workers == 1 or len(sessions) < 2:
        parts = [one(s) for s in sessions]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, sessions))
    if not parts:
        schema: dict[str, Any] = {
            "session_id": ID_DTYPE,
            UNIT_KEY: ID_DTYPE,
            key or ROW_KEY: pl.Int64(),
            "window": pl.Enum(list(specs)),
            "count": pl.UInt32(),
        }
        iv_schema = iv.collect_schema()
        schema.update({c: iv_schema[c] for c in trial_columns if c != (key or ROW_KEY)})
        return pl.DataFrame(schema=schema)
    return pl.concat(parts, rechunk=False)


def _with_validity(
    name: str, values: npt.NDArray[np.uint32], valid: npt.NDArray[np.bool_]
) -> pl.Series:
    """Return `values` as a UInt32 Series, null where not `valid` (an Arrow validity bitmap)."""
    if valid.all():
        return pl.Series(name, values)
    import pyarrow as pa

    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(
        pa.uint32(), values.size, [bitmap, pa.py_buffer(values)], null_count=-1
    )
    return pl.Series(name, arr)


def _session_counts(
    spikes: Spikes,
    session_id: str,
    trials: pl.DataFrame,
    names: Sequence[str],
    index: str | None,
    trial_columns: Sequence[str],
    invalid: npt.NDArray[np.float64] | None,
) -> pl.DataFrame:
    key = index or ROW_KEY
    n_u, n_t, n_w = spikes.n_units, trials.height, len(names)
    count, valid = _window_counts(spikes, trials, n_w, invalid)
    counts = _with_validity("count", count.ravel(), valid.ravel())
    n = n_w * n_u * n_t
    # row order: window, then unit, then interval; gathers take UInt32 index Series (Polars'
    # index type: no conversion of the index arrays)
    unit_row = pl.Series(np.tile(np.repeat(np.arange(n_u, dtype=np.uint32), n_t), n_w))
    trial_row = pl.Series(np.tile(np.arange(n_t, dtype=np.uint32), n_w * n_u))
    window_row = pl.Series(np.repeat(np.arange(n_w, dtype=np.uint32), n_u * n_t))
    window = pl.Series("window", list(names), dtype=pl.Enum(list(names)))
    return pl.DataFrame(
        [
            _ids(session_id, n).alias("session_id"),
            _ids(spikes.unit_ids).gather(unit_row).alias(UNIT_KEY),
            trials[key].cast(pl.Int64).gather(trial_row).alias(key),
            window.gather(window_row),
            counts,
            *(trials[c].gather(trial_row) for c in trial_columns if c != key),
        ]
    )


def _window_counts(
    spikes: Spikes, trials: pl.DataFrame, n_w: int, invalid: npt.NDArray[np.float64] | None
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """Return (counts, valid) as (windows, units, intervals) arrays for the window edges
    ``__a<k>``, ``__b<k>`` of `trials`."""
    n_u, n_t = spikes.n_units, trials.height
    a = [_float(trials, f"__a{k}") for k in range(n_w)]
    b = [_float(trials, f"__b{k}") for k in range(n_w)]
    # every window edge of every interval in one bounds vector -> one binary search per unit;
    # int32 cumulative counts (exact: a unit has far fewer than 2**31 spikes) halve the traffic
    # of the gathers below
    below, column = spikes.below_unique(np.concatenate([*a, *b]), dtype=np.int32)
    count = np.empty((n_w, n_u, n_t), dtype=np.uint32)
    valid = np.ones((n_w, n_u, n_t), dtype=bool)
    for k in range(n_w):  # a handful of windows
        hi = np.take(below, column[(n_w + k) * n_t : (n_w + k + 1) * n_t], axis=1)
        hi -= np.take(below, column[k * n_t : (k + 1) * n_t], axis=1)
        np.maximum(hi, 0, out=hi)
        count[k] = hi.view(np.uint32)
        ok = np.isfinite(a[k]) & np.isfinite(b[k]) & (b[k] >= a[k])
        if invalid is not None and invalid.size:
            ok &= ~_overlaps(a[k], b[k], invalid)
        valid[k] &= ok[None, :]
        if spikes.obs is not None:
            valid[k] &= _in_obs(spikes, a[k], b[k])
    return count, valid


def session_count_arrays(
    units: FrameLike,
    intervals: FrameLike,
    *,
    windows: Mapping[str, Window],
    index: str | None = None,
) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """Return ``(unit ids, interval index values, counts, valid)`` for one session's units:
    ``counts[w, u, i]`` is :func:`spike_counts`' count for window ``w`` (in `windows` order),
    unit ``u`` (in frame order) and interval ``i`` (in index order); ``valid`` is False where
    :func:`spike_counts` gives null.

    The arrays :func:`spike_counts` builds its frame from, for callers that want matrices (unit
    responses, RF maps) rather than the long frame. `units` must hold one session.

    Examples
    --------
    >>> units, trials = nf.scan_units(cache="cache/"), nf.scan_trials(cache="cache/")
    >>> windows = {"response": ("stim_start_time", 0.0, 0.5)}
    >>> ids, order, counts, valid = nf.analysis.session_count_arrays(units, trials, windows=windows)
    >>> counts.shape, bool(valid.all())  # 1 window x 8 units x 18 trials
    ((1, 8, 18), True)
    >>> long = nf.spike_counts(units, trials, windows=windows)  # the same counts, as a frame
    >>> int(counts.sum()) == int(long["count"].sum())
    True
    """
    specs = _normalize_windows(windows)
    u, iv = _lazy(units), _lazy(intervals)
    _require(u, ["session_id", UNIT_KEY, "spike_times"], "units")
    key = _resolve_index(iv, index)
    needed = [c for _, _, roots in specs.values() for c in roots]
    _require(iv, ["session_id", *([key] if key else []), *needed], "intervals")
    with_obs = "obs_intervals" in u.collect_schema().names()
    selection = u.select(
        pl.col("session_id").cast(pl.String), UNIT_KEY, *(["obs_intervals"] if with_obs else [])
    ).collect()
    sessions = selection["session_id"].unique().to_list()
    if len(sessions) != 1:
        raise ParameterError(
            f"units frame holds {len(sessions)} sessions",
            field="session_id",
            expected="the units of exactly one session",
        )
    sid = str(sessions[0])
    exprs = {f"a{k}": a for k, (a, _, _) in enumerate(specs.values())}
    exprs |= {f"b{k}": b for k, (_, b, _) in enumerate(specs.values())}
    trials = _intervals_by_session(iv, [sid], key, exprs, ()).get(sid)
    if trials is None:
        trials = pl.DataFrame(
            {key or ROW_KEY: pl.Series([], dtype=pl.Int64)}
            | {f"__{n}": pl.Series([], dtype=pl.Float64) for n in exprs}
        )
    spikes = _session_spikes(u, cache_root_of(u), sid, selection, with_obs)
    count, valid = _window_counts(spikes, trials, len(specs), None)
    spikes.close()
    order = trials[key or ROW_KEY].cast(pl.Int64).to_numpy()
    return spikes.unit_ids.cast(pl.String).to_list(), order, count, valid


def _session_spikes(
    u: pl.LazyFrame,
    root: str | None,
    session_id: str,
    selected: pl.DataFrame | None,
    with_obs: bool,
) -> Spikes:
    """Return one session's spikes: from the cache file when `u` is a plain scan of a local
    cache (`root`, with the session's `selected` unit rows) and the file is laid out as expected,
    else collected through Polars."""
    spikes = None
    if root is not None and selected is not None and cache_file_exists(root, session_id):
        spikes = load_cache_spikes(root, session_id, selected, with_obs)
    if spikes is None:
        spikes = load_frame_spikes(u, session_id, with_obs)
    return spikes


# ----------------------------------------------------------------- aligned spikes and PSTH
def _event_sessions(
    u: pl.LazyFrame, iv: pl.LazyFrame, event: str, index: str | None, carried: Sequence[str]
) -> tuple[str, list[str], dict[str, pl.DataFrame], dict[str, pl.DataFrame], dict[str, int]]:
    """Return (index column, sessions in both frames, per-session interval rows, per-session
    ``unit_id`` rows of a local cache scan (empty for other frames), units per session)."""
    key = _resolve_index(iv, index)
    _require(u, ["session_id", UNIT_KEY, "spike_times"], "units")
    _require(iv, ["session_id", *([key] if key else []), event, *carried], "intervals")
    if cache_root_of(u) is None:
        # not a local cache scan: only the number of units per session (each session's spikes
        # are read once, later; on a remote cache a selection pass would fetch the files twice)
        sizes = (
            u.group_by(pl.col("session_id").cast(pl.String))
            .len()
            .filter(pl.col("session_id").is_not_null())
            .collect()
        )
        units_of: dict[str, pl.DataFrame] = {}
        n_units = {str(sid): int(n) for sid, n in sizes.iter_rows()}
    else:
        selection = u.select(pl.col("session_id").cast(pl.String), UNIT_KEY).collect()
        by_session = selection.partition_by("session_id", as_dict=True, maintain_order=True)
        units_of = {str(k[0]): v for k, v in by_session.items()}
        n_units = {sid: v.height for sid, v in units_of.items()}
    trials_of = _intervals_by_session(
        iv, list(n_units), key, {"ev": pl.col(event).cast(pl.Float64)}, carried
    )
    sessions = sorted(set(n_units) & set(trials_of))
    return key or ROW_KEY, sessions, trials_of, units_of, n_units


def _aligned(
    spikes: Spikes, event: npt.NDArray[np.float64], start: float, stop: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (relative times, unit×interval row of each, per-row offsets) for all units ×
    intervals."""
    n_u, n_t = spikes.n_units, event.size
    ev = np.tile(event, n_u)
    bounds = np.where(np.isfinite(event), event, np.inf)
    below = spikes.below(np.concatenate([bounds + start, bounds + stop]))
    lo, hi = below[:, :n_t].ravel(), below[:, n_t:].ravel()
    hi = np.maximum(hi, lo)
    lengths = hi - lo
    _check_size(8 * 2 * float(lengths.sum()), "aligned spikes")
    times, unit_offsets = spikes.flat()
    lo = lo + np.repeat(unit_offsets[:-1], n_t)  # per-unit counts -> indices into `times`
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    row = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    idx = np.arange(offsets[-1], dtype=np.int64) - offsets[row] + lo[row]
    rel = times[idx] - ev[row]
    return rel, row, offsets


def aligned_spikes(
    units: FrameLike,
    intervals: FrameLike,
    *,
    event: str,
    start: float,
    stop: float,
    index: str | None = None,
    exclude_invalid_times: bool = False,
    invalid_times: FrameLike | None = None,
) -> pl.DataFrame:
    """Return per unit × interval the spike times relative to `event` within ``[start, stop)``:
    ``session_id, unit_id, <index>, spike_times`` (list[f64], seconds from the event).

    `index`, `exclude_invalid_times` and `invalid_times` are as in :func:`spike_counts`.
    Intervals whose event time is null/NaN get an empty list; with `exclude_invalid_times`,
    intervals whose ``[event + start, event + stop)`` overlaps one of the session's invalid times
    get a null list.

    Examples
    --------
    >>> units, trials = nf.scan_units(cache="cache/"), nf.scan_trials(cache="cache/")
    >>> aligned = nf.aligned_spikes(units, trials, event="stim_start_time", start=-0.5, stop=1.0)
    >>> aligned.columns, aligned.height  # one row per unit and trial
    (['session_id', 'unit_id', 'trial_index', 'spike_times'], 144)
    >>> aligned["spike_times"].explode().drop_nulls().is_between(-0.5, 1.0, closed="left").all()
    True
    """
    if not stop > start:
        raise ParameterError(f"stop {stop} <= start {start}", field="stop", expected="start < stop")
    u, iv = _lazy(units), _lazy(intervals)
    key, sessions, trials_of, units_of, _ = _event_sessions(u, iv, event, index, ())
    invalid = _invalid_by_session(invalid_times, u, exclude_invalid_times)
    root = cache_root_of(u)
    parts = []
    for sid in sessions:
        spikes = _session_spikes(u, root, sid, units_of.get(sid), with_obs=False)
        trials = trials_of[sid]
        ev = _float(trials, "__ev")
        bad = _invalid_mask(invalid, sid, ev + start, ev + stop)
        rel, _, offsets = _aligned(spikes, np.where(bad, np.nan, ev), start, stop)
        spikes.close()
        n_t = trials.height
        lists = list_from_flat(rel, offsets, "spike_times")
        if bad.any():  # excluded intervals: a null list for every unit
            lists = _null_where(lists, np.tile(bad, spikes.n_units))
        parts.append(
            pl.DataFrame(
                [
                    _ids(sid, spikes.n_units * n_t).alias("session_id"),
                    _ids(spikes.unit_ids)
                    .gather(np.repeat(np.arange(spikes.n_units), n_t))
                    .alias(UNIT_KEY),
                    trials[key].cast(pl.Int64).gather(np.tile(np.arange(n_t), spikes.n_units)),
                    lists,
                ]
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "session_id": ID_DTYPE,
                UNIT_KEY: ID_DTYPE,
                key: pl.Int64,
                "spike_times": pl.List(pl.Float64),
            }
        )
    return pl.concat(parts)


def psth(
    units: FrameLike,
    intervals: FrameLike,
    *,
    event: str,
    start: float,
    stop: float,
    bin_size: float,
    by: Sequence[str] = (),
    index: str | None = None,
    exclude_invalid_times: bool = False,
    invalid_times: FrameLike | None = None,
) -> pl.DataFrame:
    """Return binned firing rates around `event` per unit (and per group of interval columns
    `by`): ``session_id, unit_id, *by, bin_start, bin_stop, n_trials, rate_mean, rate_sem`` (Hz).

    Rates are spike counts per bin divided by `bin_size`, averaged over the group's intervals with
    a null/NaN event excluded; ``rate_sem`` is the standard error of the mean over intervals (NaN
    for a single interval). Bins are ``[start + k·bin_size, start + (k+1)·bin_size)``. `index` is
    as in :func:`spike_counts` (it only decides which interval tables are accepted: rows are
    per group, not per interval). With `exclude_invalid_times` (and `invalid_times`, as in
    :func:`spike_counts`), intervals whose binned span overlaps one of the session's invalid
    times are left out like intervals with a null event: they count in no group's ``n_trials``.

    Examples
    --------
    >>> units, trials = nf.scan_units(cache="cache/"), nf.scan_trials(cache="cache/")
    >>> rates = nf.psth(units, trials, event="stim_start_time", start=0.0, stop=0.5, bin_size=0.1)
    >>> rates.height, rates["bin_start"].unique().sort().round(3).to_list()  # 8 units x 5 bins
    (40, [0.0, 0.1, 0.2, 0.3, 0.4])
    >>> rates["n_trials"].unique().to_list()
    [18]
    """
    if not (bin_size > 0 and stop > start):
        raise ParameterError(
            f"bad binning start={start} stop={stop} bin_size={bin_size}",
            field="bin_size",
            expected="bin_size > 0 and start < stop",
        )
    n_bins_f = np.ceil((stop - start) / bin_size - 1e-9)
    _check_size(8 * float(n_bins_f), "psth bins")  # one float per bin, before any per-unit work
    n_bins = int(n_bins_f)
    u, iv = _lazy(units), _lazy(intervals)
    _, sessions, trials_of, units_of, units_per_session = _event_sessions(u, iv, event, index, by)
    root = cache_root_of(u)
    invalid = _invalid_by_session(invalid_times, u, exclude_invalid_times)
    iv_schema = iv.collect_schema()
    parts = []
    for sid in sessions:
        trials = trials_of[sid]
        ev = _float(trials, "__ev")
        span = (ev + start, ev + start + n_bins * bin_size)
        keep = np.isfinite(ev) & ~_invalid_mask(invalid, sid, *span)
        trials, ev = trials.filter(pl.Series(keep)), ev[keep]
        n_units = units_per_session[sid]
        groups = (
            trials.select(by)
            .with_row_index("_row")
            .group_by(list(by), maintain_order=True)
            .agg(pl.col("_row"))
            if by
            else pl.DataFrame({"_row": [list(range(ev.size))]})
        )
        n_u, n_t, n_g = n_units, ev.size, groups.height
        if n_t == 0 or n_u == 0:
            continue
        # 3 float arrays and ~6 output columns per (unit, group, bin) cell
        _check_size(80.0 * n_u * n_g * n_bins, "psth result")
        spikes = _session_spikes(u, root, sid, units_of.get(sid), with_obs=False)
        group_of_trial = np.empty(n_t, dtype=np.int64)
        n_in_group = np.zeros(n_g, dtype=np.int64)
        for g, rows in enumerate(groups["_row"].to_list()):  # one entry per interval group
            group_of_trial[rows] = g
            n_in_group[g] = len(rows)
        rel, row, _ = _aligned(spikes, ev, start, start + n_bins * bin_size)
        spikes.close()
        b = np.minimum(((rel - start) / bin_size).astype(np.int64), n_bins - 1)
        # non-empty (unit, interval, bin) cells -> per (unit, group, bin) sums of counts and
        # squares; memory follows the spikes in the window, not units × intervals × bins
        cells, c = np.unique(row * n_bins + b, return_counts=True)
        cell_unit, rem = np.divmod(cells, n_t * n_bins)
        cell_trial, cell_bin = np.divmod(rem, n_bins)
        key = (cell_unit * n_g + group_of_trial[cell_trial]) * n_bins + cell_bin
        size = n_u * n_g * n_bins
        s1 = np.bincount(key, weights=c, minlength=size).reshape(n_u, n_g, n_bins)
        s2 = np.bincount(key, weights=c.astype(np.float64) ** 2, minlength=size).reshape(
            n_u, n_g, n_bins
        )
        n = n_in_group[None, :, None].astype(np.float64)
        mean = s1 / n / bin_size
        var = (s2 - s1**2 / n) / np.maximum(n - 1, 1)
        sem = np.where(n > 1, np.sqrt(np.maximum(var, 0) / n) / bin_size, np.nan)
        ug, gg, bb = np.meshgrid(np.arange(n_u), np.arange(n_g), np.arange(n_bins), indexing="ij")
        frame = pl.DataFrame(
            [
                _ids(sid, ug.size).alias("session_id"),
                _ids(spikes.unit_ids).gather(ug.ravel()).alias(UNIT_KEY),
            ]
        )
        if by:
            frame = frame.hstack(groups.select(by)[gg.ravel()].get_columns())
        parts.append(
            frame.with_columns(
                bin_start=pl.Series(start + bb.ravel() * bin_size),
                bin_stop=pl.Series(start + (bb.ravel() + 1) * bin_size),
                n_trials=pl.Series(n_in_group[gg.ravel()], dtype=pl.Int64),
                rate_mean=pl.Series(mean.ravel()),
                rate_sem=pl.Series(sem.ravel()),
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "session_id": ID_DTYPE,
                UNIT_KEY: ID_DTYPE,
                **{c: iv_schema[c] for c in by},
                "bin_start": pl.Float64,
                "bin_stop": pl.Float64,
                "n_trials": pl.Int64,
                "rate_mean": pl.Float64,
                "rate_sem": pl.Float64,
            }
        )
    return pl.concat(parts)


def spike_histograms(
    units: FrameLike,
    *,
    bin_size: float = 1.0,
    by: str = "electrode_group_name",
) -> pl.DataFrame:
    """Return all units' spikes binned over the session per probe (the reference's
    ``all_spike_histograms``): ``session_id, <by>, bin_start, count, rate`` with rate in spikes/s.

    A quick look at probe-wide activity and drift. Bins start at 0 s on the sync clock and run to
    the last spike of the session.
    """
    if not bin_size > 0:
        raise ParameterError(f"bin_size {bin_size} <= 0", field="bin_size", expected="> 0")
    u = _lazy(units)
    _require(u, ["session_id", by, "spike_times"], "units")
    sessions = sorted(
        u.select(pl.col("session_id").cast(pl.String).unique()).collect()["session_id"].to_list()
    )
    by_dtype = u.collect_schema()[by]
    parts = []
    for sid in sessions:
        df = (
            u.filter(pl.col("session_id") == sid)
            .select(by, "spike_times")
            .collect()
            .sort(by, maintain_order=True)
        )
        times, offsets = flat_list(df["spike_times"])
        if times.size == 0:
            continue
        probes, probe_of_unit = np.unique(df[by].to_numpy().astype(str), return_inverse=True)
        n_bins_f = np.floor(max(float(times.max()), 0.0) / bin_size) + 1
        _check_size(24.0 * probes.size * n_bins_f, "spike histogram")
        n_bins = int(n_bins_f)
        probe_of_spike = np.repeat(probe_of_unit, np.diff(offsets))
        b = np.clip((times / bin_size).astype(np.int64), 0, n_bins - 1)
        counts = np.bincount(probe_of_spike * n_bins + b, minlength=probes.size * n_bins)
        pg, bb = np.divmod(np.arange(probes.size * n_bins), n_bins)
        parts.append(
            pl.DataFrame(
                [
                    _ids(sid, counts.size).alias("session_id"),
                    pl.Series(by, probes[pg]).cast(by_dtype),
                    pl.Series("bin_start", bb * bin_size, dtype=pl.Float64),
                    pl.Series("count", counts.astype(np.int64)),
                    pl.Series("rate", counts / bin_size, dtype=pl.Float64),
                ]
            )
        )
    if not parts:
        return pl.DataFrame(
            schema={
                "session_id": ID_DTYPE,
                by: by_dtype,
                "bin_start": pl.Float64,
                "count": pl.Int64,
                "rate": pl.Float64,
            }
        )
    return pl.concat(parts)


# ----------------------------------------------------------------------------- pynapple
def _one_session(frame: pl.DataFrame, session_id: str | None, what: str) -> pl.DataFrame:
    if "session_id" not in frame.columns:
        return frame
    if session_id is not None:
        frame = frame.filter(pl.col("session_id").cast(pl.String) == session_id)
    ids = frame["session_id"].cast(pl.String).unique().to_list()
    if len(ids) > 1:
        raise ParameterError(
            f"{what} frame holds {len(ids)} sessions ({sorted(ids)[:3]}...)",
            field="session_id",
            expected="one session: filter the frame or pass session_id=",
        )
    return frame


def _metadata(frame: pl.DataFrame, skip: Sequence[str]) -> dict[str, Any]:
    """Return the scalar columns of `frame` as numpy arrays (pynapple metadata)."""
    out = {}
    for name, dtype in frame.schema.items():
        if name in skip or dtype.is_nested() or dtype == pl.Object:
            continue
        col = frame[name]
        if dtype in (pl.Categorical, pl.Enum, pl.String) or not dtype.is_numeric():
            out[name] = np.asarray(col.cast(pl.String).to_list(), dtype=object)
        else:
            out[name] = col.to_numpy()
    return out


def to_pynapple(units: FrameLike, *, session_id: str | None = None) -> pynapple.TsGroup:
    """Return one session's units as a ``pynapple.TsGroup``: one ``Ts`` of spike times (seconds)
    per unit, keyed 0..n-1 in frame order, with every scalar column (``unit_id``, ``structure``,
    ``default_qc``, ...) as metadata.

    Requires the ``pynapple`` extra (``pip install npc-frames[pynapple]``). `units` must hold one
    session, or name it with `session_id`.
    """
    import pynapple as nap

    u = _lazy(units)
    _require(u, [UNIT_KEY, "spike_times"], "units")
    df = _one_session(u.collect(), session_id, "units")
    times, offsets = flat_list(df["spike_times"])
    group = {
        k: nap.Ts(t=times[offsets[k] : offsets[k + 1]], time_units="s")
        for k in range(df.height)  # one Ts per unit
    }
    meta = _metadata(df, skip=("spike_times",))
    return nap.TsGroup(group, metadata=meta) if group else nap.TsGroup({})


def to_pynapple_intervals(
    intervals: FrameLike,
    *,
    start: str = "start_time",
    stop: str = "stop_time",
    session_id: str | None = None,
) -> pynapple.IntervalSet:
    """Return one session's intervals (trials, epochs, ...) as a ``pynapple.IntervalSet`` from
    the `start` and `stop` columns, with every other scalar column as metadata.

    Requires the ``pynapple`` extra. Rows with a null/NaN edge are dropped; pynapple sorts the
    intervals by start.
    """
    import pynapple as nap

    iv = _lazy(intervals)
    _require(iv, [start, stop], "intervals")
    df = _one_session(iv.collect(), session_id, "intervals")
    df = df.filter(
        pl.col(start).cast(pl.Float64).is_finite(), pl.col(stop).cast(pl.Float64).is_finite()
    )
    meta = _metadata(df, skip=(start, stop))
    return nap.IntervalSet(
        start=df[start].cast(pl.Float64).to_numpy(),
        end=df[stop].cast(pl.Float64).to_numpy(),
        metadata=meta or None,
    )
