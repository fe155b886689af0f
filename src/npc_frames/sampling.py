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


class _Column:
    """One column of one session, sorted by time, with cumulative sums for O(1) window sums."""

    def __init__(self, values: npt.NDArray[np.float64], agg: str) -> None:
        self.values = values
        valid = np.isfinite(values)
        self.n_valid_cum = np.concatenate([[0], np.cumsum(valid)])
        self.cum = (
            np.concatenate([[0.0], np.cumsum(np.where(valid, values, 0.0))])
            if agg in ("mean", "sum")
            else None
        )


def _window_stats(
    t: npt.NDArray[np.float64],
    col: _Column,
    starts: npt.NDArray[np.float64],
    stops: npt.NDArray[np.float64],
    agg: str,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return (aggregate of valid values, frames in window, NaN frames in window) per window
    [start, stop) over frames sorted by time `t` (NaN times are never inside a window)."""
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, stops, side="left")
    bad_event = ~(np.isfinite(starts) & np.isfinite(stops))
    lo[bad_event] = hi[bad_event] = 0
    hi = np.maximum(hi, lo)
    n = hi - lo
    n_valid = col.n_valid_cum[hi] - col.n_valid_cum[lo]
    out = np.full(starts.size, np.nan)
    has = n_valid > 0
    if col.cum is not None:
        total = col.cum[hi] - col.cum[lo]
        out[has] = total[has] / n_valid[has] if agg == "mean" else total[has]
    elif col.values.size:
        fn = np.fmin if agg == "min" else np.fmax
        # reduceat over [lo, hi) of non-empty windows; NaN is ignored by fmin/fmax
        idx = np.flatnonzero(has)
        if idx.size:
            padded = np.append(col.values, np.nan)
            order = np.stack([lo[idx], hi[idx]], axis=1).ravel()
            out[idx] = fn.reduceat(padded, order)[::2]
    return out, n.astype(np.int64), (n - n_valid).astype(np.int64)


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
    parts: list[pl.DataFrame] = []
    # a String session_id compared as is lets Polars prune hive partitions / row groups
    sid_col = pl.col("session_id")
    if f_schema["session_id"] != pl.String:
        sid_col = sid_col.cast(pl.String)
    groups = trials.partition_by("session_id", maintain_order=True, as_dict=True)
    queries = [
        f.filter(sid_col == sid).select(
            pl.col(tcol).cast(pl.Float64),
            *(pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in columns),
        )
        for (sid,) in groups
    ]
    # sessions are read concurrently; only the time column and `columns` are materialised
    for ((sid,), tr), data in zip(groups.items(), pl.collect_all(queries), strict=True):
        t = data[tcol].fill_null(float("nan")).to_numpy()
        order = np.argsort(t, kind="stable")  # NaN times sort last: never inside a window
        t = t[order]
        prepared = {c: _Column(data[c].to_numpy()[order], agg) for c in columns}
        for wname, (event, start, stop) in windows.items():
            ev = tr[event].cast(pl.Float64).fill_null(float("nan")).to_numpy()
            cols: dict[str, Any] = {
                "session_id": pl.Series([sid] * tr.height, dtype=pl.String),
                "trial_index": tr["trial_index"],
                "window": pl.Series([wname] * tr.height, dtype=window_enum),
            }
            n_frames: npt.NDArray[np.int64] | None = None
            for c in columns:
                value, n, n_nan = _window_stats(t, prepared[c], ev + start, ev + stop, agg)
                n_frames = n
                cols[c] = pl.Series(value).fill_nan(None)
                cols[f"{c}_n_nan"] = pl.Series(n_nan, dtype=pl.UInt32)
            cols["n_frames"] = pl.Series(n_frames, dtype=pl.UInt32)
            parts.append(pl.DataFrame(cols))
    order_cols = ["session_id", "trial_index", "window", "n_frames"]
    for c in columns:
        order_cols += [c, f"{c}_n_nan"]
    if not parts:
        schema: dict[str, Any] = {
            "session_id": pl.String,
            "trial_index": trials.schema["trial_index"],
            "window": window_enum,
            "n_frames": pl.UInt32,
        }
        for c in columns:
            schema.update({c: pl.Float64, f"{c}_n_nan": pl.UInt32})
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(order_cols).sort("session_id", "trial_index", "window")
