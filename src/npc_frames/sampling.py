"""Time-stamped components (running speed, pupil area, a facemap component, a keypoint) summarised
over trial windows, across sessions — the behavioural companion of ``nf.spike_counts``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import ParameterError, SchemaError

logger = logging.getLogger(__name__)

__all__ = ["sample_at"]

Window = tuple[str, float, float]
FrameLike = pl.DataFrame | pl.LazyFrame
AGGREGATES = ("mean", "sum", "min", "max")
_TIME_COLUMNS = ("timestamp", "timestamps")


def _lazy(frame: FrameLike) -> pl.LazyFrame:
    return frame.lazy() if isinstance(frame, pl.DataFrame) else frame


def _time_column(schema: pl.Schema, given: str | None) -> str:
    if given is not None:
        if given not in schema:
            raise SchemaError(f"frame has no column {given!r}", field=given)
        return given
    for name in _TIME_COLUMNS:
        if name in schema:
            return name
    raise SchemaError(
        "frame has no time column", field="timestamp", expected=f"one of {list(_TIME_COLUMNS)}"
    )


def _sorted_times(
    t: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp] | None]:
    """Return (the finite times in ascending order, the frame indices they came from — None when
    the frames are already in that order). Frames with a NaN time are never inside a window."""
    finite = np.isfinite(t)
    if finite.all():
        keep = None
    else:
        keep = np.flatnonzero(finite)
        t = t[keep]
    if t.size > 1 and not (t[1:] >= t[:-1]).all():  # cached components are in time order
        order = np.argsort(t, kind="stable")
        keep = order if keep is None else keep[order]
        t = t[order]
    return t, keep


def _window_bounds(
    t: npt.NDArray[np.float64], starts: npt.NDArray[np.float64], stops: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (first, end) frame positions of each window [start, stop) over sorted times `t`
    (both 0 for a window whose start or stop is not finite)."""
    lo = np.searchsorted(t, starts, side="left").astype(np.int64)
    hi = np.searchsorted(t, stops, side="left").astype(np.int64)
    bad_event = ~(np.isfinite(starts) & np.isfinite(stops))
    lo[bad_event] = hi[bad_event] = 0
    return lo, np.maximum(hi, lo)


def _window_stats(
    values: npt.NDArray[np.float64],
    lo: npt.NDArray[np.int64],
    hi: npt.NDArray[np.int64],
    agg: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return (aggregate of the valid values, NaN frames) per window of frames [lo, hi) of
    `values` (in time order); the aggregate is NaN for a window without a valid value.

    Only the frames inside windows are read: they are gathered window after window (a frame in
    two windows twice) and reduced per window, so the cost follows the windows' total length,
    not the session's."""
    lengths = hi - lo
    n_in = int(lengths.sum())
    first = np.cumsum(lengths) - lengths  # each window's first position among the gathered
    idx = np.arange(n_in, dtype=np.int64) + np.repeat(lo - first, lengths)
    g = values[idx]
    valid = np.isfinite(g)
    window = np.repeat(np.arange(lo.size), lengths)
    n_valid = np.bincount(window, weights=valid, minlength=lo.size).astype(np.int64)
    out = np.full(lo.size, np.nan)
    has = n_valid > 0
    if agg in ("mean", "sum"):
        total = np.bincount(window, weights=np.where(valid, g, 0.0), minlength=lo.size)
        out[has] = total[has] / n_valid[has] if agg == "mean" else total[has]
    else:
        fn = np.fmin if agg == "min" else np.fmax
        # reduceat over each non-empty window's gathered run; NaN is ignored by fmin/fmax
        nonempty = np.flatnonzero(lengths > 0)
        if nonempty.size:
            reduced = fn.reduceat(g, first[nonempty])
            ok = has[nonempty]
            out[nonempty[ok]] = reduced[ok]
    return out, lengths - n_valid


def sample_at(
    frame: FrameLike,
    intervals: FrameLike,
    *,
    windows: Mapping[str, Window],
    columns: Sequence[str],
    agg: str = "mean",
    time_column: str | None = None,
) -> pl.DataFrame:
    """Return `columns` of a time-stamped frame summarised per session, trial and window:
    ``session_id, trial_index, window, n_frames`` and, per column, ``<column>`` (the aggregate
    over frames whose value is not NaN/null) and ``<column>_n_nan`` (frames excluded).

    Parameters
    ----------
    frame:
        Frame or LazyFrame with ``session_id``, a time column (``timestamp`` or ``timestamps``,
        seconds) and `columns` — e.g. ``nf.scan("eye_tracking")``, ``nf.scan_running_speed()``.
        Only the sessions of `intervals` and the needed columns are collected.
    intervals:
        Frame or LazyFrame with ``session_id``, ``trial_index`` and the event columns named in
        `windows` — e.g. ``nf.scan_trials()``.
    windows:
        name -> (event column, start offset, stop offset) in seconds; a frame is inside when its
        time is in ``[event + start, event + stop)``.
    columns:
        numeric columns of `frame` to summarise (e.g. ``["pupil_area"]``).
    agg:
        ``mean`` (default), ``sum``, ``min`` or ``max``.
    time_column:
        the frame's time column, when not ``timestamp``/``timestamps``.

    Frames with a NaN time (the video metadata frame) belong to no window. A window with no valid
    value (no frames, or all NaN — blinks, bad fits) gets a null aggregate; a null or NaN event
    time gives ``n_frames`` 0.

    Examples
    --------
    >>> import polars as pl, npc_frames as nf
    >>> pupil = pl.DataFrame({"session_id": ["s"] * 4, "timestamp": [0.0, 1.0, 2.0, 3.0],
    ...                       "pupil_area": [1.0, float("nan"), 3.0, 5.0]})
    >>> trials = pl.DataFrame({"session_id": ["s"], "trial_index": [0], "stim_start_time": [1.0]})
    >>> nf.sample_at(pupil, trials, windows={"w": ("stim_start_time", -1.0, 2.0)},
    ...              columns=["pupil_area"]).row(0)
    ('s', 0, 'w', 3, 2.0, 1)

    Examples
    --------
    >>> pupil = nf.sample_at(
    ...     nf.scan("eye_tracking", cache="cache/"), nf.scan_trials(cache="cache/"),
    ...     windows={"response": ("stim_start_time", 0.0, 1.0)}, columns=["pupil_area"],
    ... )
    >>> pupil.columns
    ['session_id', 'trial_index', 'window', 'n_frames', 'pupil_area', 'pupil_area_n_nan']
    >>> pupil.height, bool((pupil["n_frames"] > 0).all())  # one row per trial; frames in every window
    (18, True)
    """
    if agg not in AGGREGATES:
        raise ParameterError(f"unknown agg {agg!r}", field="agg", expected=f"one of {AGGREGATES}")
    if not windows:
        raise ParameterError("no windows given", field="windows", expected="name -> (event, a, b)")
    for name, spec in windows.items():
        if len(spec) != 3 or not spec[1] < spec[2]:
            raise ParameterError(
                f"window {name!r} is {spec!r}",
                field="windows",
                expected="(event column, start, stop) with start < stop",
            )
    if not columns:
        raise ParameterError("no columns given", field="columns", expected="numeric column names")
    f, iv = _lazy(frame), _lazy(intervals)
    f_schema, iv_schema = f.collect_schema(), iv.collect_schema()
    tcol = _time_column(f_schema, time_column)
    for c in ("session_id", *columns):
        if c not in f_schema:
            raise SchemaError(f"frame has no column {c!r}", field=c, expected=str(f_schema.names()))
    events = list(dict.fromkeys(e for e, _, _ in windows.values()))
    for c in ("session_id", "trial_index", *events):
        if c not in iv_schema:
            raise SchemaError(
                f"intervals have no column {c!r}", field=c, expected=str(iv_schema.names())
            )
    trials = (
        iv.select("session_id", "trial_index", *events)
        .with_columns(pl.col("session_id").cast(pl.String))
        .sort("session_id", "trial_index")
        .collect()
    )
    window_enum = pl.Enum(list(windows))
    # a String session_id compared as is lets Polars prune hive partitions / row groups
    sid_col = pl.col("session_id")
    if f_schema["session_id"] != pl.String:
        sid_col = sid_col.cast(pl.String)
    sessions = trials.group_by("session_id", maintain_order=True).len()
    sids = sessions["session_id"].to_list()
    bounds = np.concatenate([[0], np.cumsum(sessions["len"].to_numpy(), dtype=np.int64)])
    # events of every trial × window (row-major: a trial's windows are adjacent, in `windows`
    # order — the output's (trial_index, window) order), in seconds; NaN for a null event
    ev = trials.select(
        pl.col(e).cast(pl.Float64).fill_null(float("nan")).alias(str(j))
        for j, (e, _, _) in enumerate(windows.values())
    ).to_numpy()
    queries = [
        f.filter(sid_col == sid).select(
            pl.col(tcol).cast(pl.Float64),
            *(pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in columns),
        )
        for sid in sids
    ]
    n_win = len(windows)
    offsets = np.array([[a for _, a, _ in windows.values()], [b for _, _, b in windows.values()]])
    out_sid: list[pl.Series] = []
    out_n: list[npt.NDArray[np.int64]] = []
    out_val: dict[str, list[npt.NDArray[np.float64]]] = {c: [] for c in columns}
    out_nan: dict[str, list[npt.NDArray[np.int64]]] = {c: [] for c in columns}
    # sessions are read concurrently; only the time column and `columns` are materialised
    for i, (sid, data) in enumerate(zip(sids, pl.collect_all(queries), strict=True)):
        t, keep = _sorted_times(data[tcol].to_numpy())
        session_ev = ev[bounds[i] : bounds[i + 1]]
        starts, stops = (session_ev + offsets[0]).ravel(), (session_ev + offsets[1]).ravel()
        lo, hi = _window_bounds(t, starts, stops)
        for c in columns:
            v = data[c].to_numpy()
            value, n_nan = _window_stats(v if keep is None else v[keep], lo, hi, agg)
            out_val[c].append(value)
            out_nan[c].append(n_nan)
        out_n.append(hi - lo)
        out_sid.append(pl.Series([sid] * (session_ev.size), dtype=pl.String))
    order_cols = ["session_id", "trial_index", "window", "n_frames"]
    for c in columns:
        order_cols += [c, f"{c}_n_nan"]
    if not out_sid:
        schema: dict[str, Any] = {
            "session_id": pl.String,
            "trial_index": trials.schema["trial_index"],
            "window": window_enum,
            "n_frames": pl.UInt32,
        }
        for c in columns:
            schema.update({c: pl.Float64, f"{c}_n_nan": pl.UInt32})
        return pl.DataFrame(schema=schema)
    cols: dict[str, Any] = {
        "session_id": pl.concat(out_sid),
        "trial_index": trials["trial_index"].gather(np.repeat(np.arange(trials.height), n_win)),
        "window": pl.Series(list(windows), dtype=pl.String)
        .gather(np.tile(np.arange(n_win), trials.height))
        .cast(window_enum),
        "n_frames": pl.Series(np.concatenate(out_n), dtype=pl.UInt32),
    }
    for c in columns:
        cols[c] = pl.Series(np.concatenate(out_val[c])).fill_nan(None)
        cols[f"{c}_n_nan"] = pl.Series(np.concatenate(out_nan[c]), dtype=pl.UInt32)
    return pl.DataFrame(cols).select(order_cols)
