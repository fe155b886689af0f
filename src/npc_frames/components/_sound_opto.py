"""Sound and opto onset/offset times from hardware lines (FORMATS §3.6), vectorized over trials.

Methods implemented:

* **method 1** (dedicated sync line): onset = first rising edge strictly after the trigger's vsync
  time; sound offset = onset + waveform duration; opto offset = the falling edge between the onset
  and the next rising edge closest to onset + active duration of the command waveform (else onset +
  nominal duration).
* **method 3** (no recording): onset = flip time of the trigger frame; offset = onset + nominal
  duration (`trialSoundDur` / `trialOptoDur`).

* **method 2** (cross-correlating the NI-DAQ analog copy recorded by Open Ephys) lives in
  :mod:`npc_frames.components._nidaq`; its per-trial results enter here through the keyword
  `nidaq_onset` of :func:`sound_times` / `nidaq_start` of :func:`opto_times` and are used for the
  trials that method 1 did not time (order 1 → 2 → 3 per trial).  [method 2 wiring: added by the
  method-2 engineer]

Decision: a rising edge more than :data:`MAX_ONSET_LATENCY` after the trigger is not this trial's
onset (the line missed the pulse; the edge belongs to a later event); such trials fall back to
method 3 instead of borrowing a later trial's onset, which the reference would do. Likewise a
session dated on/after 2023-08-31 whose sound line has no edges falls back to method 3 for every
trial (the reference raises "missing sync line"), so that one dead TTL line does not cost the
whole trials table; the flip-time onsets are then ~0–100 ms early.
"""

from __future__ import annotations

import datetime

import numpy as np
import numpy.typing as npt

from npc_frames.components._task import first_after

FloatArray = npt.NDArray[np.float64]

#: bit of the "sound running" TTL on NP rigs, recorded from this date (FORMATS §2.3)
SOUND_LINE = 1
FIRST_SOUND_ON_SYNC_DATE = datetime.date(2023, 8, 31)
#: opto marker bits: 488 nm laser (preferred when it has edges), else 633 nm (FORMATS §2.3)
OPTO_LINE_488 = 11
OPTO_LINE_633 = 10
FIRST_633_ON_SYNC_DATE = datetime.date(2024, 4, 19)
#: largest plausible delay (s) from trigger vsync to the hardware onset (synthetic/real ~0-0.1 s)
MAX_ONSET_LATENCY = 0.5
#: TaskControl defaults (FORMATS §3.3)
DEFAULT_SOUND_SAMPLE_RATE = 48000.0
DEFAULT_OPTO_SAMPLE_RATE = 2000.0


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
    nidaq_onset: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Return (onset, offset, from_line) per trial.

    `trigger` = flip time of the stimulus frame (NaN for trials without sound); `rising` = rising
    edges of the sound line, or None when there is no usable line. `nidaq_onset` (method 2, NaN
    where unavailable) times the trials the line did not; the rest use method 3. `from_line` is
    True for method-1 trials only.
    """
    trigger = np.asarray(trigger, dtype=np.float64)
    onset = np.full(trigger.shape, np.nan)
    from_line = np.zeros(trigger.shape, dtype=bool)
    if rising is not None and rising.size:
        onset = first_after(rising, trigger)
        from_line = np.isfinite(onset) & (onset - trigger <= MAX_ONSET_LATENCY)
        onset[~from_line] = np.nan
    # --- method 2 (NI-DAQ) for the trials method 1 did not time [method-2 edit]
    from_daq = np.zeros(trigger.shape, dtype=bool)
    if nidaq_onset is not None:
        daq = np.asarray(nidaq_onset, dtype=np.float64)
        from_daq = ~from_line & np.isfinite(trigger) & np.isfinite(daq)
        onset[from_daq] = daq[from_daq]
    timed = from_line | from_daq
    # --- end method-2 edit
    fallback = ~timed & np.isfinite(trigger)
    onset[fallback] = trigger[fallback]
    offset = np.where(timed, onset + waveform_dur, onset + nominal_dur)
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
        w = _opto_waveform(sample_rate, amp, d, dl, freq, onr, offr, offset_voltage)
        pos = np.flatnonzero(w > 0)
        if pos.size:
            u_start[k] = pos[0] / sample_rate
            u_stop[k] = pos[-1] / sample_rate
    start[has] = u_start[inverse.ravel()]
    stop[has] = u_stop[inverse.ravel()]
    return start, stop


def _opto_waveform(
    rate: float,
    amp: float,
    dur: float,
    delay: float,
    freq: float,
    on_ramp: float,
    off_ramp: float,
    offset: float,
) -> FloatArray:
    # same construction as TaskUtils.getOptoPulseWaveform (FORMATS §3.6), last value 0
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
    nidaq_start: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Return (onset, offset, from_line) per trial (method 1 where the line has the pulse, else 2,
    else 3).

    `trigger` = flip time of the opto onset frame (NaN for non-opto trials). `nidaq_start`
    (method 2: sync time at which the command waveform starts on the NI-DAQ, NaN where
    unavailable) gives onset/offset = start + active_start/active_stop. `from_line` is True for
    method-1 trials only.
    """
    trigger = np.asarray(trigger, dtype=np.float64)
    onset = np.full(trigger.shape, np.nan)
    offset = np.full(trigger.shape, np.nan)
    from_line = np.zeros(trigger.shape, dtype=bool)
    if rising is not None and rising.size and falling is not None:
        onset = first_after(rising, trigger)
        lead = np.where(np.isfinite(active_start), active_start, 0.0)
        from_line = np.isfinite(onset) & (onset - trigger <= lead + MAX_ONSET_LATENCY)
        onset[~from_line] = np.nan
        next_rise = first_after(rising, onset)
        next_rise = np.where(np.isfinite(next_rise), next_rise, np.inf)
        active = active_stop - active_start
        expected = onset + np.where(np.isfinite(active), active, nominal_dur)
        lo = np.searchsorted(falling, onset, side="right")
        hi = np.searchsorted(falling, next_rise, side="left")  # candidates falling[lo:hi]
        j = np.searchsorted(falling, expected)
        best = np.full(trigger.shape, np.nan)
        if falling.size:
            c1 = np.clip(j - 1, lo, np.maximum(hi - 1, lo))
            c2 = np.clip(j, lo, np.maximum(hi - 1, lo))
            c1 = np.clip(c1, 0, falling.size - 1)
            c2 = np.clip(c2, 0, falling.size - 1)
            v1 = falling[c1]
            v2 = falling[c2]
            pick = np.where(np.abs(v1 - expected) <= np.abs(v2 - expected), v1, v2)
            best = np.where(hi > lo, pick, np.nan)
        offset = np.where(from_line & np.isfinite(best), best, onset + nominal_dur)
    # --- method 2 (NI-DAQ) for the trials method 1 did not time [method-2 edit]
    from_daq = np.zeros(trigger.shape, dtype=bool)
    if nidaq_start is not None:
        daq = np.asarray(nidaq_start, dtype=np.float64)
        from_daq = ~from_line & np.isfinite(trigger) & np.isfinite(daq) & np.isfinite(active_start)
        onset[from_daq] = daq[from_daq] + active_start[from_daq]
        offset[from_daq] = daq[from_daq] + active_stop[from_daq]
    # --- end method-2 edit
    fallback = ~from_line & ~from_daq & np.isfinite(trigger)
    onset[fallback] = trigger[fallback]
    offset[fallback] = trigger[fallback] + nominal_dur[fallback]
    return onset, offset, from_line
