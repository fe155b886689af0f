"""Sync-based QC of a raw session: the ``qc`` (one row per check) and ``qc_timing`` (distributions
per stim block) components.

Computed at convert time from the sync file, the stim files and the NI-DAQ recording, so the QC
report and cross-session QC queries read the cache instead of the raw files:

* **vsync intervals** per matched stim block (flip to flip): a dropped frame is an interval longer
  than :data:`DROPPED_FACTOR` times the block's median interval; a long frame one longer than
  :data:`LONG_FRAME`;
* **photodiode lag** per block timed by the photodiode: diode edge − flip, i.e. display time minus
  the top-to-centre refresh minus the flip time (blocks whose display times fell back to flips
  have no lag; see :func:`npc_frames.timing.frame_times`);
* **sound latency** of the task's auditory trials: onset on the sound sync line and onset found
  on the NI-DAQ copy, each minus the flip of the stimulus frame, and line − NI-DAQ;
* **opto latency** of the task's opto trials: laser-marker onset and NI-DAQ command onset, each
  minus the flip of the onset frame and the commanded delay before the waveform turns on.

A session without a sync file has no QC rows (status ``absent``). A modality the session lacks
(no photodiode edges, no sound line, no opto marker line, no usable NI-DAQ samples) is reported as
an absent part and its checks have no row — except ``photodiode_blocks``, which then fails: a
session whose display times come from flips alone did not pass display-timing QC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.errors import AbsentModalityError, NpcFramesError
from npc_frames.memo import Memo
from npc_frames.schemas.qc import QC, QC_TIMING

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["qc", "qc_timing"]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: vsync intervals longer than this multiple of the block's median interval are dropped frames
DROPPED_FACTOR = 1.5
#: vsync intervals longer than this are long frames (s)
LONG_FRAME = 0.1
MAX_DROPPED_FRACTION = 0.002
MAX_VSYNC_JITTER = 0.001
#: plausible photodiode lag range (s) and its largest 5-95 % spread within a block
PHOTODIODE_LAG_RANGE = (0.005, 0.05)
MAX_LAG_SPREAD = 0.005
#: largest median sound/opto latency after the flip (s) and largest line - NI-DAQ disagreement
MAX_SOUND_LATENCY = 0.1
MAX_OPTO_LATENCY = 0.02
MAX_LINE_NIDAQ = 0.001
#: fraction of sound/opto trials the sync line must time
MIN_LINE_TIMED = 0.95
#: histogram bin edges (s) of each measure
HIST_EDGES: dict[str, FloatArray] = {
    "vsync_interval": np.round(np.arange(0.0, 0.0505, 0.0005), 6),
    "photodiode_lag": np.round(np.arange(0.0, 0.0605, 0.0005), 6),
    "latency": np.round(np.arange(-0.005, 0.1005, 0.0005), 6),
    "difference": np.round(np.arange(-0.002, 0.00201, 0.0001), 6),
}


@dataclass
class _Measures:
    """What the QC components need, computed once per session."""

    timing_rows: list[dict[str, Any]] = field(default_factory=list)
    check_rows: list[dict[str, Any]] = field(default_factory=list)
    #: (part, reason) of every modality the session lacks
    absent: list[tuple[str, str]] = field(default_factory=list)


def _summary(
    measure: str,
    values: FloatArray,
    *,
    script: str,
    block: int | None,
    edges: FloatArray,
    outlier: float,
) -> dict[str, Any]:
    """Return the qc_timing row of `values` (finite ones only)."""
    v = values[np.isfinite(values)]
    counts = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0] if v.size else None
    q = np.quantile(v, [0.05, 0.5, 0.95]) if v.size else [np.nan] * 3
    return {
        "measure": measure,
        "script_name": script,
        "block_index": block,
        "unit": "s",
        "n": int(v.size),
        "n_outliers": int((v > outlier).sum()),
        "outlier_threshold": float(outlier),
        "median": float(q[1]),
        "p05": float(q[0]),
        "p95": float(q[2]),
        "min": float(v.min()) if v.size else np.nan,
        "max": float(v.max()) if v.size else np.nan,
        "hist_edges": edges.tolist(),
        "hist_counts": np.zeros(edges.size - 1, np.int64).tolist()
        if counts is None
        else counts.astype(np.int64).tolist(),
    }


def _check(
    rows: list[dict[str, Any]],
    name: str,
    value: float | None,
    threshold: str,
    passed: bool | None,
    unit: str | None,
    description: str,
) -> None:
    ok = value is not None and np.isfinite(value)
    rows.append(
        {
            "name": name,
            "value": float(value) if ok else None,  # type: ignore[arg-type]
            "threshold": threshold,
            "passed": bool(passed) if ok and passed is not None else None,
            "unit": unit,
            "description": description,
        }
    )


def _frame_measures(raw: RawSession, m: _Measures) -> None:
    """vsync intervals and photodiode lag per matched stim block."""
    from npc_frames.timing import MONITOR_CENTER_REFRESH, frame_times

    times = [t for t in frame_times(raw).values() if t.block_index is not None]
    if not times:
        m.absent.append(("vsync", "no stim file is matched to a vsync block"))
        return
    intervals: list[FloatArray] = []
    n_dropped = 0
    lags: list[FloatArray] = []
    spreads: list[float] = []
    notes: list[str] = []
    for t in times:
        flip = np.asarray(t.flip, dtype=np.float64)
        dt = np.diff(flip)
        dt = dt[np.isfinite(dt)]
        med = float(np.median(dt)) if dt.size else np.nan
        limit = DROPPED_FACTOR * med if np.isfinite(med) else np.inf
        m.timing_rows.append(
            _summary(
                "vsync_interval",
                dt,
                script=t.script_name,
                block=t.block_index,
                edges=HIST_EDGES["vsync_interval"],
                outlier=limit,
            )
        )
        intervals.append(dt)
        n_dropped += int((dt > limit).sum())
        if t.display_source == "photodiode":
            lag = np.asarray(t.display, dtype=np.float64) - MONITOR_CENTER_REFRESH - flip
            lag = lag[np.isfinite(lag)]
            m.timing_rows.append(
                _summary(
                    "photodiode_lag",
                    lag,
                    script=t.script_name,
                    block=t.block_index,
                    edges=HIST_EDGES["photodiode_lag"],
                    outlier=PHOTODIODE_LAG_RANGE[1],
                )
            )
            lags.append(lag)
            if lag.size:
                p05, p95 = np.quantile(lag, [0.05, 0.95])
                spreads.append(float(p95 - p05))
        elif t.display_note:
            notes.append(f"{t.script_name}: {t.display_note}")
    dt_all = np.concatenate(intervals)
    rows = m.check_rows
    n = dt_all.size
    _check(
        rows,
        "vsync_dropped_fraction",
        n_dropped / n if n else None,
        f"<= {MAX_DROPPED_FRACTION}",
        n_dropped / n <= MAX_DROPPED_FRACTION if n else None,
        "fraction",
        f"fraction of vsync intervals longer than {DROPPED_FACTOR} x their block's median "
        "(dropped frames of the stimulus display)",
    )
    longest = float(dt_all.max()) if n else None
    _check(
        rows,
        "vsync_max_interval",
        longest,
        f"<= {LONG_FRAME}",
        longest is not None and longest <= LONG_FRAME,
        "s",
        "longest flip-to-flip interval inside a stim block (a long frame freezes the display)",
    )
    # jitter of the regular intervals: dropped frames are counted above, not here
    regular = np.concatenate(
        [d[d <= DROPPED_FACTOR * np.median(d)] for d in intervals if d.size] or [np.empty(0)]
    )
    jitter = float(np.std(regular)) if regular.size > 1 else None
    _check(
        rows,
        "vsync_jitter",
        jitter,
        f"<= {MAX_VSYNC_JITTER}",
        jitter is not None and jitter <= MAX_VSYNC_JITTER,
        "s",
        "standard deviation of the regular (not dropped) flip-to-flip intervals",
    )
    frac = len(lags) / len(times)
    _check(
        rows,
        "photodiode_blocks",
        frac,
        "== 1",
        frac == 1,
        "fraction",
        "fraction of stim blocks whose display times come from the photodiode (else flips: "
        "display times ~20 ms early)",
    )
    if not lags:
        reason = "; ".join(dict.fromkeys(notes)) or "no block is timed by the photodiode"
        m.absent.append(("photodiode", reason))
        return
    lag_all = np.concatenate(lags)
    lag_med = float(np.median(lag_all)) if lag_all.size else None
    lo, hi = PHOTODIODE_LAG_RANGE
    _check(
        rows,
        "photodiode_lag",
        lag_med,
        f"in [{lo}, {hi}]",
        lag_med is not None and lo <= lag_med <= hi,
        "s",
        "median photodiode edge - flip over every photodiode-timed frame (monitor latency)",
    )
    spread = max(spreads) if spreads else None
    _check(
        rows,
        "photodiode_lag_spread",
        spread,
        f"<= {MAX_LAG_SPREAD}",
        spread is not None and spread <= MAX_LAG_SPREAD,
        "s",
        "largest 5-95 % range of the photodiode lag within a block (a wide range means "
        "mis-assigned diode edges)",
    )


def _latency_checks(
    m: _Measures,
    kind: str,
    script: str,
    trigger: FloatArray,
    line: FloatArray | None,
    daq: FloatArray | None,
    max_latency: float,
) -> None:
    """Rows and checks of one latency kind (sound or opto) from per-trial onsets."""
    has = np.isfinite(trigger)
    if not has.any():
        return
    edges, diff_edges = HIST_EDGES["latency"], HIST_EDGES["difference"]
    rows = m.check_rows
    if line is not None:
        lat = (line - trigger)[has]
        m.timing_rows.append(
            _summary(
                f"{kind}_latency_line",
                lat,
                script=script,
                block=None,
                edges=edges,
                outlier=max_latency,
            )
        )
        timed_frac = float(np.isfinite(lat).mean())
        _check(
            rows,
            f"{kind}_line_timed_fraction",
            timed_frac,
            f">= {MIN_LINE_TIMED}",
            timed_frac >= MIN_LINE_TIMED,
            "fraction",
            f"fraction of {kind} trials whose onset the {kind} sync line recorded",
        )
        med = float(np.nanmedian(lat)) if np.isfinite(lat).any() else None
        _check(
            rows,
            f"{kind}_latency_line",
            med,
            f"in [0, {max_latency}]",
            med is not None and 0 <= med <= max_latency,
            "s",
            f"median {kind} onset on the sync line - flip of the triggering frame",
        )
    if daq is not None:
        lat = (daq - trigger)[has]
        m.timing_rows.append(
            _summary(
                f"{kind}_latency_nidaq",
                lat,
                script=script,
                block=None,
                edges=edges,
                outlier=max_latency,
            )
        )
        med = float(np.nanmedian(lat)) if np.isfinite(lat).any() else None
        _check(
            rows,
            f"{kind}_latency_nidaq",
            med,
            f"in [0, {max_latency}]",
            med is not None and 0 <= med <= max_latency,
            "s",
            f"median {kind} onset on the NI-DAQ copy - flip of the triggering frame",
        )
    if line is not None and daq is not None:
        d = (line - daq)[has]
        both = np.isfinite(d)
        if both.any():
            m.timing_rows.append(
                _summary(
                    f"{kind}_line_minus_nidaq",
                    d,
                    script=script,
                    block=None,
                    edges=diff_edges,
                    outlier=MAX_LINE_NIDAQ,
                )
            )
            worst = float(np.max(np.abs(d[both])))
            _check(
                rows,
                f"{kind}_line_vs_nidaq",
                worst,
                f"<= {MAX_LINE_NIDAQ}",
                worst <= MAX_LINE_NIDAQ,
                "s",
                f"largest |sync-line onset - NI-DAQ onset| over the {kind} trials both recorded",
            )


def _task_latencies(raw: RawSession, m: _Measures) -> None:
    """Sound and opto latencies of the task file's trials."""
    from npc_frames.components import _nidaq
    from npc_frames.components import _sound_opto as so
    from npc_frames.components._task import (
        frames_at,
        open_stim,
        stim_float,
        stim_int,
        stim_scalar,
        stim_strs,
        sync_data,
        sync_edges,
        task_file,
    )
    from npc_frames.components._trials import _sound_nidaq, opto_line_edges, opto_params

    try:
        path, ft = task_file(raw)
        stim = open_stim(path)
        n = int(stim_int(stim, "trialEndFrame").size)
        stim_frame = stim_int(stim, "trialStimStartFrame", n)
        names = stim_strs(stim, "trialStim", n)
    except NpcFramesError as exc:
        m.absent.append(("task", f"no timed task file: {exc}"))
        return
    sync = sync_data(raw)
    flip = np.asarray(ft.flip, dtype=np.float64)

    def at(vec: FloatArray, frames: npt.ArrayLike, fld: str) -> FloatArray:
        return frames_at(vec, frames, path=path, field=fld)

    daq = _nidaq.NidaqOnDemand(lambda: _nidaq.nidaq_stream(raw))
    daq_checked: list[bool] = []

    def nidaq_or_none(compute: Callable[[], FloatArray | None]) -> FloatArray | None:
        """Return NI-DAQ onsets, or None (reported absent once) when there are none."""
        out = compute()
        if out is None or not np.isfinite(out).any():
            if not daq_checked:
                daq_checked.append(True)
                why = (
                    "no NI-DAQ recording"
                    if daq.get() is None
                    else "NI-DAQ samples do not cover the trials (clipped upload)"
                )
                m.absent.append(("nidaq", why))
            return None
        return out

    script = ft.script_name
    aud = np.array(["sound" in s and "vis" not in s for s in names], dtype=bool)
    if aud.any() and stim.has("trialSoundDur"):
        dur = stim_float(stim, "trialSoundDur", n)
        rate = float(stim_scalar(stim, "soundSampleRate", default=so.DEFAULT_SOUND_SAMPLE_RATE))
        trigger = np.where(aud, at(flip, stim_frame, "trialStimStartFrame"), np.nan)
        rising = None
        if sync is not None and raw.session_id.date >= so.FIRST_SOUND_ON_SYNC_DATE:
            rising = sync_edges(sync, so.SOUND_LINE)
        line = None
        if rising is not None and rising.size:
            line = so.line_onsets(rising, trigger)
        else:
            m.absent.append(("sound_line", "the sync file has no sound-line edges"))
        daq_on = nidaq_or_none(lambda: _sound_nidaq(stim, n, trigger, dur, rate, daq))
        _latency_checks(m, "sound", script, trigger, line, daq_on, MAX_SOUND_LATENCY)
    p = opto_params(stim, n, stim_frame, flip, at)
    if p is not None and p.has_opto.any():
        rising, falling = opto_line_edges(sync)
        lead = np.where(np.isfinite(p.active_start), p.active_start, 0.0)
        line = None
        if rising is not None and falling is not None:
            line = so.line_onsets(rising, p.trigger, lead=p.active_start) - lead
        else:
            m.absent.append(("opto_line", "the sync file has no laser-marker edges"))

        def starts() -> FloatArray | None:
            rec = daq.get()
            if rec is None:
                return None
            return _nidaq.opto_starts(
                rec,
                p.trigger,
                p.voltage,
                p.dur,
                p.delay,
                p.on_ramp,
                p.off_ramp,
                p.sin_freq,
                p.offset_voltage,
                sample_rate=p.rate,
            )

        # the NI-DAQ gives the command's start; the laser turns on active_start later, so the
        # start is already "onset - commanded delay"
        daq_start = nidaq_or_none(starts)
        _latency_checks(m, "opto", script, p.trigger, line, daq_start, MAX_OPTO_LATENCY)


_MEMO: Memo[_Measures] = Memo("qc measures", maxsize=4)


def _measures(raw: RawSession) -> _Measures:
    from npc_frames.timing import sync_data

    key = (raw.root, tuple(sorted((str(k), v) for k, v in raw.file_stats.items())))

    def compute() -> _Measures:
        if sync_data(raw) is None:
            raise AbsentModalityError(
                "session has no sync file: no sync-based QC",
                path=raw.root,
                field="sync_path",
                expected="a sync .h5 file in behavior/",
            )
        m = _Measures()
        _frame_measures(raw, m)
        _task_latencies(raw, m)
        return m

    return _MEMO.get(key, compute)


def _frame(schema: Any, raw: RawSession, rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    sid = str(raw.session_id)
    if not rows:
        return schema.empty()  # type: ignore[no-any-return]
    df = pl.DataFrame(
        [{"session_id": sid, **r} for r in rows],
        schema=schema.polars_schema,
        orient="row",
    )
    return schema.validate(df, source=raw.root)  # type: ignore[no-any-return]


def _report(raw: RawSession) -> None:
    """Report every stim file without timing as a failed part (outside the memo, so both
    components say so): its blocks are missing from the QC."""
    from npc_frames.components._task import report_timing_failures

    if raw.sync_path is not None:
        report_timing_failures(raw)


@timed
def qc(raw: RawSession) -> pl.DataFrame:
    """Return one row per sync-based QC check (value, threshold, passed, unit, description).

    Raises AbsentModalityError for a session without a sync file; modalities the session lacks
    are reported as absent parts and have no check rows.
    """
    _report(raw)
    m = _measures(raw)
    for part, reason in m.absent:
        parts.report_absent(part, reason)
    if not m.check_rows and m.absent:
        parts.report_absent_component("; ".join(r for _, r in m.absent))
    return _frame(QC, raw, m.check_rows)


@timed
def qc_timing(raw: RawSession) -> pl.DataFrame:
    """Return one row per timing measure and stim block: quantiles, outliers and a histogram.

    Raises AbsentModalityError for a session without a sync file.
    """
    _report(raw)
    m = _measures(raw)
    for part, reason in m.absent:
        parts.report_absent(part, reason)
    if not m.timing_rows and m.absent:
        parts.report_absent_component("; ".join(r for _, r in m.absent))
    return _frame(QC_TIMING, raw, m.timing_rows)
