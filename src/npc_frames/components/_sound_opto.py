"""Sound and opto onset/offset times per trial, and which of three methods times each trial.

docs/formats.md ("Sound and opto onset timing") states the order and the facts used here. Per trial:

* **method 1** (a dedicated sync line): :func:`line_onsets` decides whether the line timed the
  trial and when; the sound offset is onset + waveform duration; the opto offset is the falling
  edge between the onset and the next rising edge closest to onset + active duration of the command
  waveform (else onset + nominal duration);
* **method 2** (the NI-DAQ analog copy, :mod:`npc_frames.components._nidaq`) for the trials method
  1 did not time: callers pass per-trial times, or a function that computes them for the untimed
  trials only, through the keyword `nidaq_onset` of :func:`sound_times` / `nidaq_start` of
  :func:`opto_times`;
* **method 3** (nothing recorded): onset = flip time of the trigger frame; offset = onset + nominal
  duration (`trialSoundDur` / `trialOptoDur`).

Decision: a rising edge more than :data:`MAX_ONSET_LATENCY` after the trigger (plus, for opto, the
delay before the command turns positive) is not this trial's onset (the line missed the pulse; the
edge belongs to a later event); such trials fall back to methods 2/3 instead of borrowing a later
trial's onset, which the reference would do. Likewise a session dated on/after 2023-08-31 whose
sound line has no edges falls back for every trial (the reference raises "missing sync line"), so
that one dead TTL line does not cost the whole trials table; flip-time onsets are ~0–100 ms early.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from npc_frames.components._task import first_after

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: bit of the "sound running" TTL on NP rigs, recorded from this date (docs/formats.md)
SOUND_LINE = 1
FIRST_SOUND_ON_SYNC_DATE = datetime.date(2023, 8, 31)
#: opto marker bits: 488 nm laser (preferred when it has edges), else 633 nm (docs/formats.md)
OPTO_LINE_488 = 11
OPTO_LINE_633 = 10
#: largest plausible delay (s) from trigger vsync to the hardware onset (synthetic/real ~0-0.1 s)
MAX_ONSET_LATENCY = 0.5
#: TaskControl defaults of `soundSampleRate` / `optoSampleRate`, Hz
DEFAULT_SOUND_SAMPLE_RATE = 48000.0
DEFAULT_OPTO_SAMPLE_RATE = 2000.0

#: method-2 times of a table: per-trial times (NaN where unavailable), or a function given the
#: trigger times of the trials the line did not time (NaN elsewhere) that returns their times
#: (None when the session has no NI-DAQ recording) -- called only when some trial needs it
Method2 = FloatArray | Callable[[FloatArray], FloatArray | None] | None


def line_onsets(
    edges: FloatArray | None,
    trigger: npt.ArrayLike,
    *,
    lead: npt.ArrayLike = 0.0,
    tolerance: float = MAX_ONSET_LATENCY,
) -> FloatArray:
    """Return per trial the onset a sync line gives it, NaN where the line did not time the trial.

    The onset is the first edge strictly after the trigger time, provided it comes at most
    ``lead + tolerance`` s after the trigger (`lead`: scalar or per trial, the delay before the
    hardware signal can start, e.g. an opto command's prepended delay; NaN counts as 0). `edges`
    (sorted; None or empty = no usable line) times no trial; a NaN trigger is never timed. This is
    the one rule, for every table, of which trials method 1 times (docs/formats.md).
    """
    t = np.asarray(trigger, dtype=np.float64)
    if edges is None or edges.size == 0:
        return np.full(t.shape, np.nan)
    first = first_after(edges, t)
    lag = np.asarray(lead, dtype=np.float64)
    limit = np.where(np.isfinite(lag), lag, 0.0) + tolerance
    return np.where(first - t <= limit, first, np.nan)


def _method2_times(source: Method2, trigger: FloatArray, timed: BoolArray) -> FloatArray:
    """Return the method-2 times of `source` per trial (NaN where it gives none)."""
    none = np.full(trigger.shape, np.nan)
    if source is None:
        return none
    if callable(source):
        untimed = ~timed & np.isfinite(trigger)
        if not untimed.any():
            return none
        got = source(np.where(untimed, trigger, np.nan))
        return none if got is None else np.asarray(got, dtype=np.float64)
    return np.asarray(source, dtype=np.float64)


def sound_waveform_duration(dur: FloatArray, sample_rate: float) -> FloatArray:
    """Return the duration (s) of the task's sound arrays: len(arange(0, dur, 1/rate)) / rate.

    TaskUtils.makeSoundArray builds every sound on that time base, so this equals the length of a
    saved `trialSoundArray` without reading the (large) arrays. NaN/0 durations give NaN.
    """
    d = np.asarray(dur, dtype=np.float64)
    out = np.full(d.shape, np.nan)
    ok = np.isfinite(d) & (d > 0)
    step = 1.0 / sample_rate
    out[ok] = np.ceil(d[ok] / step - 1e-9) / sample_rate
    return out


def sound_times(
    trigger: FloatArray,
    nominal_dur: FloatArray,
    waveform_dur: FloatArray,
    rising: FloatArray | None,
    *,
    nidaq_onset: Method2 = None,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Return (onset, offset, from_line) per trial: method 1 where the line timed it, else 2, else 3.

    `trigger` = flip time of the stimulus frame (NaN for trials without sound); `rising` = rising
    edges of the sound line, or None when there is no usable line. `nidaq_onset` (method 2: the
    sound onsets on the NI-DAQ, or a function computing them, see :data:`Method2`) times the trials
    the line did not. `from_line` is True for method-1 trials only.
    """
    trigger = np.asarray(trigger, dtype=np.float64)
    line = line_onsets(rising, trigger)
    from_line = np.isfinite(line)
    daq = _method2_times(nidaq_onset, trigger, from_line)
    from_daq = ~from_line & np.isfinite(trigger) & np.isfinite(daq)
    onset = np.where(from_line, line, np.where(from_daq, daq, trigger))
    offset = np.where(from_line | from_daq, onset + waveform_dur, onset + nominal_dur)
    return onset, offset, from_line


def opto_active_window(
    voltage: FloatArray,
    dur: FloatArray,
    delay: FloatArray,
    on_ramp: FloatArray,
    off_ramp: FloatArray,
    sin_freq: FloatArray,
    offset_voltage: float,
    sample_rate: float,
) -> tuple[FloatArray, FloatArray]:
    """Return (active_start, active_stop) in s from the trigger, per trial's command waveform.

    The marker line is high while the analog command is > 0, so the active part is first to last
    sample > 0 of TaskUtils.getOptoPulseWaveform(rate, voltage, dur, delay, freq, ramps, offset).
    Computed once per unique parameter set (a handful per session). NaN where there is no opto.
    """
    params = np.stack([voltage, dur, delay, on_ramp, off_ramp, sin_freq], axis=1)
    n = params.shape[0]
    start = np.full(n, np.nan)
    stop = np.full(n, np.nan)
    has = np.isfinite(voltage) & (voltage != 0) & np.isfinite(dur) & (dur > 0)
    if not has.any():
        return start, stop
    filled = np.where(np.isfinite(params), params, 0.0)
    uniq, inverse = np.unique(filled[has], axis=0, return_inverse=True)
    u_start = np.full(len(uniq), np.nan)
    u_stop = np.full(len(uniq), np.nan)
    for k, (amp, d, dl, onr, offr, freq) in enumerate(uniq):  # loop over waveforms, not events
        w = opto_waveform(sample_rate, amp, d, dl, freq, onr, offr, offset_voltage)
        pos = np.flatnonzero(w > 0)
        if pos.size:
            u_start[k] = pos[0] / sample_rate
            u_stop[k] = pos[-1] / sample_rate
    start[has] = u_start[inverse.ravel()]
    stop[has] = u_stop[inverse.ravel()]
    return start, stop


def opto_waveform(
    rate: float,
    amp: float,
    dur: float,
    delay: float,
    freq: float,
    on_ramp: float,
    off_ramp: float,
    offset: float,
) -> FloatArray:
    """Return the opto command waveform of one condition, as TaskUtils.getOptoPulseWaveform builds
    it (docs/formats.md): constant or sinusoidal pulse, linear ramps, last sample 0, `delay` s of
    zeros prepended."""
    n = max(int((dur + on_ramp + off_ramp) * rate) + 1, 2)
    if freq > 0:
        t = np.arange(n) / rate
        w = np.sin(2 * np.pi * freq * t) * 0.5 * (amp - offset) + 0.5 * (amp + offset)
    else:
        w = np.zeros(n)
        w[:-1] = amp
    w[-1] = 0.0
    if on_ramp > 0:
        ramp = np.linspace(offset, 1, int(on_ramp * rate))
        w[: ramp.size] *= ramp
    if off_ramp > 0:
        ramp = np.linspace(1, offset, int(off_ramp * rate))
        w[-(ramp.size + 1) : -1] *= ramp
    if delay > 0:
        w = np.concatenate((np.zeros(int(delay * rate)), w))
    return w


def opto_times(
    trigger: FloatArray,
    active_start: FloatArray,
    active_stop: FloatArray,
    nominal_dur: FloatArray,
    rising: FloatArray | None,
    falling: FloatArray | None,
    *,
    nidaq_start: Method2 = None,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Return (onset, offset, from_line) per trial: method 1 where the line timed it, else 2, else 3.

    `trigger` = flip time of the opto onset frame (NaN for non-opto trials); `rising`/`falling` =
    edges of the laser marker line (method 1 needs both). `nidaq_start` (method 2: sync time at
    which the command waveform starts on the NI-DAQ, or a function computing it, see
    :data:`Method2`) gives onset/offset = start + active_start/active_stop. `from_line` is True for
    method-1 trials only.
    """
    trigger = np.asarray(trigger, dtype=np.float64)
    line = line_onsets(None if falling is None else rising, trigger, lead=active_start)
    from_line = np.isfinite(line)
    line_off = np.full(trigger.shape, np.nan)
    if from_line.any() and rising is not None and falling is not None:
        active = active_stop - active_start
        expected = line + np.where(np.isfinite(active), active, nominal_dur)
        line_off = _falling_edge_near(rising, falling, line, expected)
        line_off = np.where(np.isfinite(line_off), line_off, line + nominal_dur)
    daq = _method2_times(nidaq_start, trigger, from_line)
    from_daq = ~from_line & np.isfinite(trigger) & np.isfinite(daq) & np.isfinite(active_start)
    onset = np.where(from_line, line, np.where(from_daq, daq + active_start, trigger))
    offset = np.where(
        from_line, line_off, np.where(from_daq, daq + active_stop, trigger + nominal_dur)
    )
    return onset, offset, from_line


def _falling_edge_near(
    rising: FloatArray, falling: FloatArray, onset: FloatArray, expected: FloatArray
) -> FloatArray:
    """Return per onset the falling edge closest to `expected` among those after the onset and
    before the next rising edge (NaN where there is none, or the onset is NaN)."""
    out = np.full(onset.shape, np.nan)
    if falling.size == 0:
        return out
    next_rise = first_after(rising, onset)
    next_rise = np.where(np.isfinite(next_rise), next_rise, np.inf)
    lo = np.searchsorted(falling, onset, side="right")
    hi = np.searchsorted(falling, next_rise, side="left")  # candidates falling[lo:hi]
    j = np.searchsorted(falling, expected)
    top = np.maximum(hi - 1, lo)
    v1 = falling[np.clip(np.clip(j - 1, lo, top), 0, falling.size - 1)]
    v2 = falling[np.clip(np.clip(j, lo, top), 0, falling.size - 1)]
    pick = np.where(np.abs(v1 - expected) <= np.abs(v2 - expected), v1, v2)
    return np.where(np.isfinite(onset) & (hi > lo), pick, out)
