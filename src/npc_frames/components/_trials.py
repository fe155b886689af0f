"""The `trials` component: one row per completed DynamicRouting1 trial.

:func:`trials` picks the task file (the largest DynamicRouting1 file with valid timing),
reads it, and calls :func:`build_trials`, a pure function of the stim file, its frame times and the
sync edges, which tests can call on hand-built inputs.

Decisions on the reference's quirks (also in the column descriptions of `schemas/behavior.py`):

* all-NaN float columns are kept (stable schema), as NaN/null;
* multi-location galvo trials are *not* exploded into several rows: `opto_location_bregma_x/_y`
  are list columns (one element per location), so `trial_index` stays a unique key;
* `is_single_opto_location` is True for a single location (the reference says True for >1);
* `is_task_control_correct` is True where the task's response agrees with the sync licks (the
  reference says True where they disagree);
* timeouts are placed on the trials that had one (a response to a non-rewarded, non-catch stimulus
  while `incorrectTimeoutFrames` > 0, as DynamicRouting1.py does), not inferred from the next trial
  being a repeat;
* a missing `trialGratingPhase` gives NaN phases instead of raising;
* sound and opto onsets use, per trial, method 1 (sync line), else method 2 (NI-DAQ analog copy,
  :mod:`~npc_frames.components._nidaq`) when the session has an NI-DAQ stream covering the
  trial's window, else method 3 (flip time), as docs/formats.md describes;
* sound offsets use the task's sound-array length computed from `trialSoundDur`
  (:func:`~npc_frames.components._sound_opto.sound_waveform_duration`) rather than reading every
  saved `trialSoundArray`;
* opto power comes from `optoPowerCalibrationData` in the file, else from the rig's OptoGui
  power file of each trial's device when the manifest names the calibration folder
  (:mod:`npc_frames.opto_calibration`), else NaN. Bregma locations come from the `optoParams`
  rows; legacy galvo files (per-trial `trialGalvoVoltage`, no `optoParams`) convert the trial
  voltages (:func:`npc_frames.opto_calibration.legacy_bregma`: the file's bregma table, else its
  bregma-galvo calibration, else the rig's OptoGui file).

Differences from DynamicRoutingTask's DynRoutData on the same file: `is_go` includes
auto-reward-scheduled trials (DynRoutData.goTrials excludes them), so `is_hit`/`is_miss` do too;
`is_nogo`, `is_false_alarm` and `is_correct_reject` equal DynRoutData's nogo/falseAlarm/
correctReject arrays exactly. Without sync, licks equal DynRoutData.lickTimes and task-control
response times equal its stimStartTimes + responseTimes, while display/flip-based times (e.g. visual
stim_start_time) are one frame interval later than DynRoutData's, because the session clock takes
the no-sync flip time of frame i as cumsum(frameIntervals)[i] and DynRoutData uses [0, cumsum][i]
(tests/test_trials.py checks each statement).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames._log import timed
from npc_frames.components import _nidaq
from npc_frames.components import _sound_opto as so
from npc_frames.components._task import (
    check_task_version,
    drop_invalid,
    first_after,
    first_column,
    frames_at,
    invalid_intervals,
    open_stim,
    opto_power_coefficients,
    probe_label,
    stim_first_value,
    stim_float,
    stim_int,
    stim_scalar,
    stim_strs,
    sync_data,
    sync_edges,
    task_file,
)
from npc_frames.errors import BadFormatError, InconsistentDataError
from npc_frames.schemas.behavior import TRIALS

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.opto_calibration import RigLookup
    from npc_frames.paths import RawSession
    from npc_frames.readers.stim import StimFile
    from npc_frames.readers.sync import SyncData
    from npc_frames.timing import FrameTimes

__all__ = ["build_trials", "trials"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: reward solenoid sync bit, used from this date (before it, rewardFrames)
REWARD_LINE = 15
FIRST_REWARD_ON_SYNC_DATE = datetime.date(2024, 4, 1)
LICK_LINE = "lick_sensor"
#: opto device names -> wavelength (nm); pre-2023-08 files have no device and used 488 nm
LED_WAVELENGTH = 470
DEFAULT_WAVELENGTH = 488


@timed
def trials(raw: RawSession) -> pl.DataFrame:
    """Return the trials frame of a session's DynamicRouting1 task.

    Rows overlapping an invalid-times interval are dropped (touching is allowed). Raises
    MissingFileError without a task file, AlignmentError if no task file has valid timing, and
    BadFormatError/UnsupportedVersionError naming the file and key for unreadable task files.
    """
    path, ft = task_file(raw)
    stim = open_stim(path)
    sync = sync_data(raw)
    df = build_trials(
        stim,
        ft,
        sync,
        session_id=str(raw.session_id),
        session_date=raw.session_id.date,
        nidaq=lambda: _nidaq.nidaq_stream(raw),  # read only if a trial needs method 2
        rig=_rig_lookup(raw, stim),  # OptoGui files, only where the file has no calibration
    )
    df = drop_invalid(df, invalid_intervals(raw))
    return TRIALS.validate(df, source=path)


def build_trials(
    stim: StimFile,
    ft: FrameTimes,
    sync: SyncData | None,
    *,
    session_id: str,
    session_date: datetime.date,
    nidaq: _nidaq.NidaqSource = None,
    rig_power: Callable[[str], FloatArray | None] | None = None,
    rig: RigLookup | None = None,
) -> pl.DataFrame:
    """Return the trials frame (all rows, not yet filtered by invalid times) of one task file.

    Pure function of its inputs: `ft` carries flip/input/display times per frame on the session
    clock, `sync` (None without sync) the lick, sound, opto and solenoid lines, `nidaq` (or a
    function returning it, called only when some trial needs it) the NI-DAQ recording for
    method 2 of the sound and opto onsets (docs/formats.md), `rig_power` a device's rig V -> mW
    polynomial for files without their own calibration, `rig` the rig's OptoGui calibration
    (power and galvo -> bregma; its power is used when `rig_power` is not given).
    """
    if rig_power is None and rig is not None:
        rig_power = rig.power
    daq = _nidaq.NidaqOnDemand(nidaq)
    path = stim.path
    check_task_version(stim)
    end_frame = stim_int(stim, "trialEndFrame")
    n = int(end_frame.size)
    flip = np.asarray(ft.flip, dtype=np.float64)
    inp = np.asarray(ft.input, dtype=np.float64)
    disp = np.asarray(ft.display, dtype=np.float64)

    def at(vec: FloatArray, frames: npt.ArrayLike, field: str) -> FloatArray:
        return frames_at(vec, frames, path=path, field=field)

    stim_frame = stim_int(stim, "trialStimStartFrame", n)
    stim_names = stim_strs(stim, "trialStim", n)
    stim_name = np.array(stim_names, dtype=object)
    block = stim_int(stim, "trialBlock", n)
    if n and block.min() != 1:
        raise BadFormatError(
            f"trialBlock starts at {block.min()}",
            path=path,
            field="trialBlock",
            expected="1-based block numbers (min 1)",
        )
    block_rewarded = stim_strs(stim, "blockStimRewarded")
    if n and block.max() > len(block_rewarded):
        raise InconsistentDataError(
            f"trialBlock reaches {block.max()} but blockStimRewarded has {len(block_rewarded)}",
            path=path,
            field="blockStimRewarded",
            expected="one rewarded stimulus per block",
        )
    rewarded_stim = np.array(block_rewarded, dtype=object)[block - 1] if n else np.array([])

    # -------------------------------------------------------------------- frame-derived times
    quiescent_frames = int(stim_scalar(stim, "quiescentFrames"))
    rw = np.asarray(stim.array("responseWindow")).astype(np.int64).ravel()
    post_frames = int(stim_scalar(stim, "postResponseWindowFrames"))
    timeout_frames = int(stim_scalar(stim, "incorrectTimeoutFrames", default=0))

    quiescent_start = at(flip, stim_frame - quiescent_frames, "trialStimStartFrame")
    quiescent_stop = at(inp, stim_frame - 1, "trialStimStartFrame")
    stop_time = at(flip, end_frame, "trialEndFrame")
    rw_start = at(inp, stim_frame + rw[0], "responseWindow")
    rw_stop = at(flip, stim_frame + rw[1], "responseWindow")

    is_vis = np.array(["vis" in s for s in stim_names], dtype=bool)
    is_aud = np.array(["sound" in s for s in stim_names], dtype=bool)
    is_catch = stim_name == "catch"
    is_multimodal = np.array(["+" in s for s in stim_names], dtype=bool)

    # --------------------------------------------------------------------- stimulus times
    vis_frames = (
        stim_float(stim, "trialVisStimFrames", n)
        if stim.has("trialVisStimFrames")
        else np.full(n, float(stim_scalar(stim, "visStimFrames", default=30)))
    )
    stim_start = np.full(n, np.nan)
    stim_stop = np.full(n, np.nan)
    disp_start = at(disp, stim_frame, "trialStimStartFrame")
    vis_like = is_vis | is_catch
    stim_start[vis_like] = disp_start[vis_like]
    vis_stop = at(disp, stim_frame + np.nan_to_num(vis_frames), "trialVisStimFrames")
    stim_stop[is_vis] = vis_stop[is_vis]
    stim_stop[is_catch] = stim_start[is_catch]
    aud_only = is_aud & ~is_vis
    if aud_only.any():
        sound_dur = stim_float(stim, "trialSoundDur", n)
        rate = float(stim_scalar(stim, "soundSampleRate", default=so.DEFAULT_SOUND_SAMPLE_RATE))
        trigger = np.where(aud_only, at(flip, stim_frame, "trialStimStartFrame"), np.nan)
        rising = None
        if sync is not None and session_date >= so.FIRST_SOUND_ON_SYNC_DATE:
            rising = sync_edges(sync, so.SOUND_LINE)
        onset, offset, _ = so.sound_times(
            trigger,
            sound_dur,
            so.sound_waveform_duration(sound_dur, rate),
            rising,
            nidaq_onset=lambda untimed: _sound_nidaq(stim, n, untimed, sound_dur, rate, daq),
        )
        stim_start[aud_only] = onset[aud_only]
        stim_stop[aud_only] = offset[aud_only]

    # ---------------------------------------------------------------------------------- opto
    opto = _opto_columns(stim, n, stim_frame, flip, sync, at, daq, rig_power=rig_power, rig=rig)

    # ----------------------------------------------------------------- responses and rewards
    response = stim_float(stim, "trialResponse", n).astype(bool)
    response_frame = stim_float(stim, "trialResponseFrame", n)
    tc_response_time = at(inp, np.where(response, response_frame, np.nan), "trialResponseFrame")
    if sync is not None:
        licks = sync_edges(sync, LICK_LINE)
        first = first_after(licks, rw_start)
        response_time = np.where(first < rw_stop, first, np.nan)
    else:
        response_time = tc_response_time.copy()

    is_rewarded = stim_float(stim, "trialRewarded", n).astype(bool)
    scheduled, auto_delivered = _auto_rewards(stim, n, block, stim_frame)
    trial_in_block = _index_in_block(block)

    # ----------------------------------------------------------------------------- timeouts
    task_go = stim_name == rewarded_stim
    had_timeout = response & ~task_go & ~is_catch & (timeout_frames > 0)
    timeout_start_frame = np.where(had_timeout, stim_frame + rw[1] + 1, np.nan)
    timeout_start = at(inp, timeout_start_frame, "incorrectTimeoutFrames")
    timeout_stop_frame = timeout_start_frame + timeout_frames
    timeout_stop = at(disp, timeout_stop_frame, "incorrectTimeoutFrames")
    prw_frame = np.where(had_timeout, timeout_stop_frame, stim_frame + rw[1])
    prw_start = at(disp, prw_frame, "postResponseWindowFrames")
    prw_stop = at(disp, prw_frame + post_frames, "postResponseWindowFrames")

    # ------------------------------------------------------------------------------ flags
    is_go = task_go
    is_nogo = (stim_name != rewarded_stim) & ~is_catch & ~is_multimodal
    targets = set(block_rewarded)
    is_target = np.array([s in targets for s in stim_names], dtype=bool)
    is_nontarget = ~is_target & ~is_catch & (is_vis | is_aud)
    vis_rewarded = np.array(["vis" in s for s in rewarded_stim], dtype=bool)
    aud_rewarded = np.array([("sound" in s) or ("aud" in s) for s in rewarded_stim], dtype=bool)
    modality = np.where(
        vis_rewarded,
        "vis",
        np.where(aud_rewarded, "aud", [re.sub(r"\d", "", s) for s in rewarded_stim] or ""),
    )
    is_repeat = stim_float(stim, "trialRepeat", n).astype(bool)
    n_instruction = sum(
        int(stim_scalar(stim, k, default=0))
        for k in ("newBlockGoTrials", "newBlockNogoTrials", "newBlockCatchTrials")
    )
    reward_time = _reward_times(
        stim, sync, session_date, flip, quiescent_start, stop_time, is_rewarded, at
    )

    is_hit = response & is_go
    is_fa = response & is_nogo
    is_cr = ~response & is_nogo
    is_miss = ~response & is_go
    cols: dict[str, Any] = {
        "session_id": [session_id] * n,
        "start_time": quiescent_start,
        "stop_time": stop_time,
        "quiescent_start_time": quiescent_start,
        "quiescent_stop_time": quiescent_stop,
        "stim_start_time": stim_start,
        "stim_stop_time": stim_stop,
        "opto_start_time": opto["start"],
        "opto_stop_time": opto["stop"],
        "response_window_start_time": rw_start,
        "response_window_stop_time": rw_stop,
        "task_control_response_time": tc_response_time,
        "response_time": response_time,
        "reward_time": reward_time,
        "timeout_start_time": timeout_start,
        "timeout_stop_time": timeout_stop,
        "post_response_window_start_time": prw_start,
        "post_response_window_stop_time": prw_stop,
        "stim_name": list(stim_names),
        "grating_phase": _grating_phase(stim, n, is_vis),
        "block_index": block - 1,
        "rewarded_modality": [str(m) for m in modality],
        "trial_index": np.arange(n, dtype=np.int64),
        "trial_index_in_block": trial_in_block,
        "opto_wavelength": opto["wavelength"],
        "opto_location_bregma_x": opto["bregma_x"],
        "opto_location_bregma_y": opto["bregma_y"],
        "opto_duration": opto["duration"],
        "opto_label": opto["label"],
        "opto_power": opto["power"],
        "opto_stim_name": opto["stim_name"],
        "repeat_index": _repeat_index(is_repeat),
        "is_response": response,
        "is_correct": is_hit | is_cr | (is_catch & ~response),
        "is_incorrect": is_miss | is_fa | (is_catch & response),
        "is_hit": is_hit,
        "is_false_alarm": is_fa,
        "is_correct_reject": is_cr,
        "is_miss": is_miss,
        "is_go": is_go,
        "is_nogo": is_nogo,
        "is_rewarded": is_rewarded,
        "is_noncontingent_reward": auto_delivered,
        "is_contingent_reward": is_rewarded & ~auto_delivered,
        "is_reward_scheduled": scheduled,
        "is_instruction": trial_in_block < n_instruction,
        "is_aud_stim": is_aud,
        "is_vis_stim": is_vis,
        "is_catch": is_catch,
        "is_target": is_target,
        "is_aud_target": is_target & is_aud,
        "is_vis_target": is_target & is_vis,
        "is_nontarget": is_nontarget,
        "is_aud_nontarget": is_nontarget & is_aud,
        "is_vis_nontarget": is_nontarget & is_vis,
        "is_vis_rewarded": vis_rewarded,
        "is_aud_rewarded": aud_rewarded,
        "is_block_switch": (trial_in_block == 0) & (block - 1 != 0),
        "is_repeat": is_repeat,
        "is_opto": np.isfinite(opto["start"]),
        "is_single_opto_location": opto["single_location"],
        "is_task_control_correct": np.isnan(response_time) == np.isnan(tc_response_time),
    }
    schema = TRIALS.polars_schema
    return pl.DataFrame({k: pl.Series(k, v, dtype=schema[k]) for k, v in cols.items()})


# ------------------------------------------------------------------------------------ helpers
def _index_in_block(block: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Return the 0-based index of each trial within its block (reset at every block change)."""
    n = block.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(n)
    change = np.concatenate(([True], block[1:] != block[:-1]))
    first = np.maximum.accumulate(np.where(change, idx, 0))
    return (idx - first).astype(np.int64)


def _repeat_index(is_repeat: BoolArray) -> npt.NDArray[np.int64]:
    """Return the number of consecutive repeats preceding and including each trial (0 if none)."""
    idx = np.arange(is_repeat.size)
    last_new = np.maximum.accumulate(np.where(~is_repeat, idx, -1))
    return np.where(is_repeat, idx - last_new, 0).astype(np.int64)


def _auto_rewards(
    stim: StimFile, n: int, block: npt.NDArray[np.int64], stim_frame: npt.NDArray[np.int64]
) -> tuple[BoolArray, BoolArray]:
    """Return (scheduled, delivered) auto-rewards per trial, as DynRoutData reads them."""
    onset = int(stim_scalar(stim, "autoRewardOnsetFrame", default=60))
    reward_frames = np.asarray(stim.array("rewardFrames")).astype(np.int64).ravel()
    new_block_auto = int(stim_scalar(stim, "newBlockAutoRewards", default=0))
    if stim.has("trialAutoRewardScheduled"):
        scheduled = np.asarray(stim.array("trialAutoRewardScheduled")).astype(bool)[:n]
        delivered = np.asarray(stim.array("trialAutoRewarded")).astype(bool)[:n]
        if scheduled.size < n:
            scheduled = _index_in_block(block) < new_block_auto
        if delivered.size < n:
            delivered = scheduled & np.isin(stim_frame + onset, reward_frames)
    else:
        scheduled = np.asarray(stim.array("trialAutoRewarded")).astype(bool)[:n]
        delivered = scheduled & np.isin(stim_frame + onset, reward_frames)
    return scheduled, delivered


def _grating_phase(stim: StimFile, n: int, is_vis: BoolArray) -> FloatArray:
    if not stim.has("trialGratingPhase"):
        return np.full(n, np.nan)
    phase = np.asarray(stim.array("trialGratingPhase"), dtype=np.float64)[:n]
    if phase.ndim == 2:
        a, b = phase[:, 0], phase[:, 1]
        if not np.array_equal(a, b, equal_nan=True):
            raise InconsistentDataError(
                "the two columns of trialGratingPhase differ",
                path=stim.path,
                field="trialGratingPhase",
                expected="equal phases in both columns",
            )
        phase = a
    return np.where(is_vis, phase, np.nan)


def _reward_times(
    stim: StimFile,
    sync: SyncData | None,
    session_date: datetime.date,
    flip: FloatArray,
    start: FloatArray,
    stop: FloatArray,
    is_rewarded: BoolArray,
    at: Callable[[FloatArray, npt.ArrayLike, str], FloatArray],
) -> FloatArray:
    """Return the reward time of each trial (NaN where none): the first reward in the trial."""
    n = start.size
    out = np.full(n, np.nan)
    if n == 0:
        return out
    times = np.empty(0)
    if sync is not None and session_date >= FIRST_REWARD_ON_SYNC_DATE:
        times = sync_edges(sync, REWARD_LINE)
    if times.size == 0:
        frames = np.asarray(stim.array("rewardFrames"), dtype=np.float64).ravel()
        times = np.sort(at(flip, frames, "rewardFrames"))
    times = times[np.isfinite(times)]
    times = times[(times >= np.nanmin(start)) & (times <= np.nanmax(stop))]
    owner = np.searchsorted(start, times, side="right") - 1
    valid = owner >= 0
    owner, times = owner[valid], times[valid]
    mapped = np.zeros(n, dtype=bool)
    mapped[owner] = True
    if np.array_equal(mapped, is_rewarded):
        # first reward of each trial: times are sorted, so take the first occurrence per owner
        _, first = np.unique(owner, return_index=True)
        out[owner[first]] = times[first]
        return out
    # fallback: the first reward strictly inside each rewarded trial
    i = np.searchsorted(times, start, side="right")
    cand = np.where(i < times.size, times[np.minimum(i, times.size - 1)], np.nan)
    inside = is_rewarded & (cand < stop)
    out[inside] = cand[inside]
    return out


def _opto_columns(
    stim: StimFile,
    n: int,
    stim_frame: npt.NDArray[np.int64],
    flip: FloatArray,
    sync: SyncData | None,
    at: Callable[[FloatArray, npt.ArrayLike, str], FloatArray],
    daq: _nidaq.NidaqOnDemand,
    *,
    rig_power: Callable[[str], FloatArray | None] | None = None,
    rig: RigLookup | None = None,
) -> dict[str, Any]:
    """Return the opto columns of the trials table (NaN/null for non-opto trials); `rig_power`
    gives a device's rig calibration (V -> mW polynomial) when the file has none, `rig` the rig's
    galvo calibration for legacy galvo files."""
    none_f = np.full(n, np.nan)
    out: dict[str, Any] = {
        "start": none_f,
        "stop": none_f.copy(),
        "duration": none_f.copy(),
        "power": none_f.copy(),
        "wavelength": [None] * n,
        "bregma_x": [None] * n,
        "bregma_y": [None] * n,
        "label": [None] * n,
        "stim_name": [""] * n,
        "single_location": [None] * n,
    }
    p = opto_params(stim, n, stim_frame, flip, at)
    if p is None:
        return out
    has_opto, trigger, rate, offset_v = p.has_opto, p.trigger, p.rate, p.offset_voltage
    voltage, dur, delay, on_ramp, off_ramp, sin_freq = (
        p.voltage,
        p.dur,
        p.delay,
        p.on_ramp,
        p.off_ramp,
        p.sin_freq,
    )
    a_start, a_stop = p.active_start, p.active_stop
    rising, falling = opto_line_edges(sync)

    def nidaq_starts(untimed: FloatArray) -> FloatArray | None:
        rec = daq.get()
        if rec is None:
            return None
        waveform = (voltage, dur, delay, on_ramp, off_ramp, sin_freq, offset_v)
        return _nidaq.opto_starts(rec, untimed, *waveform, sample_rate=rate)

    onset, offset, _ = so.opto_times(
        trigger, a_start, a_stop, dur, rising, falling, nidaq_start=nidaq_starts
    )
    out["start"] = np.where(has_opto, onset, np.nan)
    out["stop"] = np.where(has_opto, offset, np.nan)
    out["duration"] = np.where(has_opto, dur, np.nan)

    # wavelength from the device names
    if stim.has("trialOptoDevice"):
        devices = stim_strs(stim, "trialOptoDevice", n)
        wl = [_wavelength(d) for d in devices]
    else:
        wl = [DEFAULT_WAVELENGTH] * n
    out["wavelength"] = [w if h else None for w, h in zip(wl, has_opto, strict=True)]

    labels: list[str | None] = [None] * n
    if stim.has("trialOptoLabel"):
        raw_labels = stim_strs(stim, "trialOptoLabel", n)
        labels = [
            probe_label(lbl) if h else None for lbl, h in zip(raw_labels, has_opto, strict=True)
        ]
    out["label"] = labels

    # unique waveform index -> opto<k>_<label>
    params = np.stack([voltage, dur, delay, on_ramp, off_ramp, sin_freq], axis=1)
    names = [""] * n
    if has_opto.any():
        _, first_idx, inverse = np.unique(
            np.nan_to_num(params[has_opto]), axis=0, return_index=True, return_inverse=True
        )
        order = np.argsort(np.argsort(first_idx))  # k by first appearance
        ks = order[inverse.ravel()]
        for pos, k in zip(np.flatnonzero(has_opto), ks, strict=True):
            lbl = labels[pos]
            names[pos] = f"opto{k}_{lbl}" if lbl else f"opto{k}"
    out["stim_name"] = names
    out["power"] = _opto_power(stim, voltage, has_opto, rig_power=rig_power)

    bx, by = _bregma_locations(stim, n, has_opto, rig=rig)
    out["bregma_x"], out["bregma_y"] = bx, by
    out["single_location"] = [None if x is None else len(x) == 1 for x in bx]
    return out


@dataclass(frozen=True)
class OptoParams:
    """The opto trials of a task file: which trials have opto, their trigger (flip of the onset
    frame, s), command-waveform parameters per trial and the active window of each waveform."""

    has_opto: BoolArray
    trigger: FloatArray
    voltage: FloatArray
    dur: FloatArray
    delay: FloatArray
    on_ramp: FloatArray
    off_ramp: FloatArray
    sin_freq: FloatArray
    offset_voltage: float
    rate: float
    active_start: FloatArray
    active_stop: FloatArray


def opto_params(
    stim: StimFile,
    n: int,
    stim_frame: npt.NDArray[np.int64],
    flip: FloatArray,
    at: Callable[[FloatArray, npt.ArrayLike, str], FloatArray],
) -> OptoParams | None:
    """Return the opto trials' triggers and waveform parameters (None when the file has none)."""
    if not stim.has("trialOptoOnsetFrame"):
        return None
    onset_frame = first_column(np.asarray(stim.array("trialOptoOnsetFrame"), dtype=np.float64))
    onset_frame = onset_frame[:n]
    if onset_frame.size < n or not np.isfinite(onset_frame).any():
        return None
    finite = np.isfinite(onset_frame)
    trial_start = stim_int(stim, "trialStartFrame", n)
    if not np.all(np.diff(onset_frame[finite]) > 0) or np.any(
        onset_frame[finite] < trial_start[finite]
    ):
        # DynamicRouting1 stores onsets relative to the stimulus frame (feedback mode: absolute).
        # The reference tests only "not strictly increasing"; an onset before its own trial's
        # start can only be relative too (this also catches a session with one opto trial).
        onset_frame = onset_frame + stim_frame
    dur = first_column(stim_float(stim, "trialOptoDur", n))
    voltage = first_column(stim_float(stim, "trialOptoVoltage", n))

    def opt(key: str) -> FloatArray:
        return first_column(stim_float(stim, key, n, default=0.0))

    delay, on_ramp, off_ramp, sin_freq = (
        opt(k)
        for k in ("trialOptoDelay", "trialOptoOnRamp", "trialOptoOffRamp", "trialOptoSinFreq")
    )
    has_opto = finite & np.isfinite(dur) & (dur > 0) & np.isfinite(voltage) & (voltage != 0)
    trigger = np.where(
        has_opto, at(flip, np.where(has_opto, onset_frame, np.nan), "trialOptoOnsetFrame"), np.nan
    )
    rate = float(stim_scalar(stim, "optoSampleRate", default=so.DEFAULT_OPTO_SAMPLE_RATE))
    offset_v = stim_first_value(stim, "optoOffsetVoltage")
    a_start, a_stop = so.opto_active_window(
        voltage, dur, delay, on_ramp, off_ramp, sin_freq, offset_v, rate
    )
    return OptoParams(
        has_opto,
        trigger,
        voltage,
        dur,
        delay,
        on_ramp,
        off_ramp,
        sin_freq,
        float(offset_v),
        rate,
        a_start,
        a_stop,
    )


def opto_line_edges(sync: SyncData | None) -> tuple[FloatArray | None, FloatArray | None]:
    """Return (rising, falling) edges of the laser marker line (488 nm first, else 633 nm), or
    (None, None) without sync or without edges on either line."""
    if sync is not None:
        for line in (so.OPTO_LINE_488, so.OPTO_LINE_633):
            r = sync_edges(sync, line)
            if r.size:
                return r, sync_edges(sync, line, rising=False)
    return None, None


def _wavelength(device: str) -> int | None:
    m = re.search(r"laser_?(\d{3})", device)
    if m:
        return int(m.group(1))
    if "led" in device.lower():
        return LED_WAVELENGTH
    return DEFAULT_WAVELENGTH if device.strip("[]' ") == "" else None


def _opto_power(
    stim: StimFile,
    voltage: FloatArray,
    has_opto: BoolArray,
    *,
    rig_power: Callable[[str], FloatArray | None] | None = None,
) -> FloatArray:
    """Return mW per trial: the file's calibration, else the rig's for each trial's device
    (``trialOptoDevice``; files without it used ``laser_488``), else NaN."""
    out = np.full(voltage.shape, np.nan)
    coeffs = opto_power_coefficients(stim)
    if coeffs is not None:
        out[has_opto] = np.polyval(coeffs, voltage[has_opto])
        return out
    if rig_power is None or not has_opto.any():
        return out
    n = voltage.shape[0]
    if stim.has("trialOptoDevice"):
        devices = [d.strip("[]' \"").split("'")[0] for d in stim_strs(stim, "trialOptoDevice", n)]
    else:
        devices = ["laser_488"] * n
    dev = np.asarray(devices, dtype=object)
    for device in sorted({d for d, h in zip(devices, has_opto, strict=True) if h and d}):
        rig = rig_power(device)
        if rig is not None:
            pick = has_opto & (dev == device)
            out[pick] = np.polyval(rig, voltage[pick])
    return out


def _rig_lookup(raw: RawSession, stim: StimFile) -> RigLookup:
    """Return the rig calibration of the task file's rig (read on first use)."""
    from npc_frames.opto_calibration import RigLookup

    return RigLookup(raw, stim.strs("rigName")[0] if stim.has("rigName") else None)


def _legacy_bregma_locations(
    stim: StimFile, n: int, has_opto: BoolArray, rig: RigLookup | None
) -> tuple[list[list[float] | None], list[list[float] | None]]:
    """Return per trial the bregma x/y lists of a legacy file's ``trialGalvoVoltage``."""
    from npc_frames.opto_calibration import legacy_bregma

    none: list[list[float] | None] = [None] * n
    if not stim.has("trialGalvoVoltage"):
        return none, list(none)
    tv = np.asarray(stim.array("trialGalvoVoltage"), dtype=np.float64)[:n]
    if tv.shape[0] != n:
        return none, list(none)
    key = next((k for k in ("optoBregma", "bregmaXY") if stim.has(k)), None)
    cal_key = "bregmaGalvoCalibrationData"
    got = legacy_bregma(
        tv,
        galvo_voltage=stim.array("galvoVoltage") if stim.has("galvoVoltage") else None,
        bregma_xy=stim.array(key) if key else None,
        file_calibration=stim.group(cal_key) if stim.has(cal_key) else None,
        rig=rig,
        path=stim.path,
    )
    if got is None:
        return none, list(none)
    bx, by = got
    keep = np.isfinite(bx) & np.isfinite(by) & has_opto[:, None]
    out_x: list[list[float] | None] = []
    out_y: list[list[float] | None] = []
    for i in range(n):  # per-trial lists of a few locations
        k = keep[i]
        out_x.append([float(v) for v in bx[i][k]] if k.any() else None)
        out_y.append([float(v) for v in by[i][k]] if k.any() else None)
    return out_x, out_y


def _bregma_locations(
    stim: StimFile, n: int, has_opto: BoolArray, *, rig: RigLookup | None = None
) -> tuple[list[list[float] | None], list[list[float] | None]]:
    """Return per trial the bregma x/y lists of the galvo locations (None without galvo data)."""
    none: list[list[float] | None] = [None] * n
    if not (stim.has("optoParams") and stim.has("trialOptoParamsIndex")):
        return _legacy_bregma_locations(stim, n, has_opto, rig)
    params = stim.group("optoParams")
    if "bregmaX" not in params or "bregmaY" not in params:
        return none, list(none)
    idx = stim_float(stim, "trialOptoParamsIndex", n)

    def rows(key: str) -> list[FloatArray]:
        v = params[key]
        return [np.atleast_1d(np.asarray(r, dtype=np.float64)) for r in v]

    bx_rows, by_rows = rows("bregmaX"), rows("bregmaY")
    n_rows = len(bx_rows)
    off_x = np.asarray(params.get("bregma offset X", np.zeros(n_rows)), dtype=np.float64).ravel()
    off_y = np.asarray(params.get("bregma offset Y", np.zeros(n_rows)), dtype=np.float64).ravel()
    xs: list[list[float] | None] = []
    ys: list[list[float] | None] = []
    for i in range(n_rows):  # one entry per opto-parameter row (a handful), not per event
        x = bx_rows[i] + np.nan_to_num(off_x[i] if i < off_x.size else 0.0)
        y = by_rows[i] + np.nan_to_num(off_y[i] if i < off_y.size else 0.0)
        keep = np.isfinite(x) & np.isfinite(y)  # rows are NaN-padded to the most locations
        xs.append([float(v) for v in x[keep]])
        ys.append([float(v) for v in y[keep]])
    ok = has_opto & np.isfinite(idx) & (idx >= 0) & (idx < n_rows)
    ii = np.where(ok, idx, 0).astype(np.int64)
    out_x = [xs[k] if o and xs[k] else None for k, o in zip(ii, ok, strict=True)]
    out_y = [ys[k] if o and ys[k] else None for k, o in zip(ii, ok, strict=True)]
    return out_x, out_y


# ------------------------------------------------------------------------- sounds, method 2
def _sound_nidaq(
    stim: StimFile,
    n: int,
    trigger: FloatArray,
    sound_dur: FloatArray,
    rate: float,
    daq: _nidaq.NidaqOnDemand,
) -> FloatArray | None:
    """Return method-2 onsets of the sounds with a finite `trigger` (None: no NI-DAQ recording)."""
    if not (stim.has("trialSoundType") and stim.has("trialSoundFreq")):
        return None
    freq = np.asarray(stim.array("trialSoundFreq"), dtype=np.float64)[:n]
    if freq.shape[0] != n:
        return None  # cannot rebuild the waveforms: method 3
    rec = daq.get()
    if rec is None:
        return None
    types = stim_strs(stim, "trialSoundType", n)
    am = stim_float(stim, "trialSoundAM", n, default=np.nan)
    volume = stim_float(stim, "trialSoundVolume", n, default=1.0)
    seed = stim_float(stim, "trialSoundSeed", n) if stim.has("trialSoundSeed") else None
    hanning = float(stim_scalar(stim, "soundHanningDur", default=0.0) or 0.0)
    return _nidaq.sound_onsets(
        rec,
        trigger,
        types,
        freq,
        sound_dur,
        volume,
        am,
        seed,
        sample_rate=rate,
        hanning_dur=hanning,
    )
