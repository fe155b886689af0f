"""Behavior time series components: licks, rewards, running speed, quiescent violations.

The format facts they rely on are in docs/formats.md ("Clocks, frame times and behavior time
series").

Each component is a separate function of the raw session; they share only pure helpers. Pure
builders (`*_from_*`) take arrays so tests can call them on hand-made inputs.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames import _iir, parts
from npc_frames._log import timed
from npc_frames.components._task import (
    TASK_SCRIPT,
    frames_at,
    open_stim,
    script_of,
    stim_scalar,
    sync_data,
    sync_edges,
    task_file,
    valid_frame_times,
)
from npc_frames.errors import BadFormatError, InconsistentDataError
from npc_frames.schemas.behavior import LICKS, QUIESCENT_VIOLATIONS, REWARDS, RUNNING_SPEED

if TYPE_CHECKING:
    from npc_frames.paths import RawSession
    from npc_frames.readers.stim import StimFile

__all__ = [
    "filter_running_speed",
    "licks",
    "licks_from_edges",
    "licks_from_frames",
    "quiescent_violations",
    "rewards",
    "running_speed",
    "running_speed_from_counts",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

LICK_LINE = "lick_sensor"
#: contacts longer than this are likely grooming, not licks (docs/formats.md, licks)
MAX_LICK_DURATION = 0.5
#: DynRoutData's de-bounce of frame-polled licks (docs/formats.md, licks)
MIN_LICK_INTERVAL = 0.05
REWARD_LINE = 15
FIRST_REWARD_ON_SYNC_DATE = datetime.date(2024, 4, 1)
#: running speed: the encoder is read once per frame at exactly 60 Hz (docs/formats.md)
RUNNING_SAMPLE_RATE = 60.0
RUNNING_FILTER_ORDER = 3
RUNNING_CUTOFF_HZ = 4.0


# -------------------------------------------------------------------------------------- licks
def licks_from_edges(rising: FloatArray, falling: FloatArray) -> pl.DataFrame:
    """Return timestamps/duration/is_likely_lick from lick-sensor edges.

    A leading falling edge and a trailing rising edge are dropped; then every rising edge must pair
    with the following falling edge (InconsistentDataError otherwise).
    """
    r = np.asarray(rising, dtype=np.float64)
    f = np.asarray(falling, dtype=np.float64)
    if r.size and f.size and f[0] < r[0]:
        f = f[1:]
    if r.size and (not f.size or r[-1] > f[-1]):
        r = r[:-1]
    if r.size != f.size or np.any(f < r):
        raise InconsistentDataError(
            f"lick_sensor has {r.size} rising and {f.size} falling edges after trimming",
            field=LICK_LINE,
            expected="alternating rising/falling edges",
        )
    dur = f - r
    return pl.DataFrame(
        {"timestamps": r, "duration": dur, "is_likely_lick": dur <= MAX_LICK_DURATION}
    )


def licks_from_frames(lick_frames: npt.ArrayLike, frame_times: FloatArray) -> pl.DataFrame:
    """Return lick timestamps from task lickFrames, de-bounced like DynRoutData.lickTimes.

    Keeps the first lick and each detected lick more than 0.05 s after the previous *detected*
    lick; duration NaN and is_likely_lick null (the task polls once per frame).
    """
    t = frames_at(frame_times, np.asarray(lick_frames, dtype=np.float64).ravel())
    t = t[np.isfinite(t)]
    if t.size:
        keep = np.concatenate(([True], np.diff(t) > MIN_LICK_INTERVAL))
        t = t[keep]
    return pl.DataFrame(
        {
            "timestamps": t,
            "duration": np.full(t.size, np.nan),
            "is_likely_lick": pl.Series([None] * t.size, dtype=pl.Boolean),
        }
    )


@timed
def licks(raw: RawSession) -> pl.DataFrame:
    """Return every lick-sensor contact of the session (sync line, else the task's lickFrames)."""
    sid = str(raw.session_id)
    sync = sync_data(raw)
    if sync is not None:
        rising = sync_edges(sync, LICK_LINE)
        if rising.size:
            try:
                df = licks_from_edges(rising, sync_edges(sync, LICK_LINE, rising=False))
            except InconsistentDataError as exc:
                raise InconsistentDataError(
                    exc.message, path=raw.sync_path, field=exc.field, expected=exc.expected
                ) from None
            return LICKS.validate(df.with_columns(pl.lit(sid).alias("session_id")), source=raw.root)
    path, ft = task_file(raw)
    stim = open_stim(path)
    # DynRoutData's frame times [0, cumsum(frameIntervals)] are the input-data times (docs/formats.md)
    # (on sync: the previous vsync; frame 0 has none and its licks are dropped)
    df = licks_from_frames(stim.array("lickFrames"), np.asarray(ft.input, dtype=np.float64))
    return LICKS.validate(df.with_columns(pl.lit(sid).alias("session_id")), source=path)


# ------------------------------------------------------------------------------------ rewards
@timed
def rewards(raw: RawSession) -> pl.DataFrame:
    """Return the water rewards: solenoid line (sync, from 2024-04-01), else reward-frame flips.

    Without the solenoid line, `rewardFrames` and `manualRewardFrames` of every stim file with
    valid timing except mapping/tagging scripts are used.
    """
    if not raw.stim_paths_for(TASK_SCRIPT):
        parts.report_absent_component("no DynamicRouting1 task file")
    sid = str(raw.session_id)
    sync = sync_data(raw)
    if sync is not None and raw.session_id.date >= FIRST_REWARD_ON_SYNC_DATE:
        rising = sync_edges(sync, REWARD_LINE)
        if rising.size:
            falling = sync_edges(sync, REWARD_LINE, rising=False)
            i = np.searchsorted(falling, rising, side="right")
            fall = np.where(i < falling.size, falling[np.minimum(i, falling.size - 1)], np.nan)
            df = pl.DataFrame(
                {
                    "session_id": [sid] * rising.size,
                    "timestamps": rising,
                    "duration": fall - rising,
                    "is_solenoid_time": np.ones(rising.size, dtype=bool),
                }
            )
            return REWARDS.validate(df, source=raw.sync_path)
    times: list[FloatArray] = []
    for path, ft in valid_frame_times(raw).items():
        name = script_of(path).lower()
        if "mapping" in name or "tagging" in name:
            continue
        stim = open_stim(path)
        for key in ("rewardFrames", "manualRewardFrames"):
            if stim.has(key):
                frames = np.asarray(stim.array(key), dtype=np.float64).ravel()
                times.append(frames_at(np.asarray(ft.flip), frames, path=path, field=key))
    t = np.sort(np.concatenate(times)) if times else np.empty(0)
    t = t[np.isfinite(t)]
    df = pl.DataFrame(
        {
            "session_id": [sid] * t.size,
            "timestamps": t,
            "duration": np.full(t.size, np.nan),
            "is_solenoid_time": np.zeros(t.size, dtype=bool),
        }
    )
    return REWARDS.validate(df, source=raw.root)


# ------------------------------------------------------------------------------ running speed
def filter_running_speed(speed: FloatArray) -> FloatArray:
    """Return speed low-passed at 4 Hz by a zero-phase 3rd-order Butterworth (NaN → 0 first)."""
    x = np.nan_to_num(np.asarray(speed, dtype=np.float64), nan=0.0)
    # numpy (npc_frames._iir), equal to scipy.signal's butter + filtfilt without its import cost
    zpk = _iir.butter(RUNNING_FILTER_ORDER, RUNNING_CUTOFF_HZ, RUNNING_SAMPLE_RATE)
    padlen = 3 * (RUNNING_FILTER_ORDER + 1)  # filtfilt's odd extension of each end
    if x.size <= padlen:  # too short to filter forward-backward: leave as is
        return x
    return _iir.filtfilt(zpk, x)


def running_speed_from_counts(
    counts: npt.ArrayLike,
    input_times: FloatArray,
    *,
    counts_per_rev: float,
    wheel_radius_cm: float,
) -> tuple[FloatArray, FloatArray]:
    """Return (timestamps, filtered speed in cm/s) of one stim file.

    speed[i] = Δrevolutions · 2π · radius · 60, speed[0] = NaN; the longer of values/times loses
    its first value or last time; both then drop their first element, and timestamps move by half
    the median sample interval (a speed is the difference between two reads).
    """
    c = np.asarray(counts, dtype=np.float64).ravel()
    rev = c / counts_per_rev
    speed = np.concatenate(([np.nan], np.diff(rev) * 2 * np.pi * wheel_radius_cm * 60.0))
    t = np.asarray(input_times, dtype=np.float64).ravel()
    if speed.size == t.size + 1:
        speed = speed[1:]
    elif t.size == speed.size + 1:
        t = t[:-1]
    elif t.size != speed.size:
        raise InconsistentDataError(
            f"{c.size} encoder reads but {t.size} frame times",
            field="rotaryEncoderCount",
            expected="one encoder read per frame (±1)",
        )
    speed, t = speed[1:], t[1:]
    if t.size > 1:
        t = t + 0.5 * float(np.median(np.diff(t)))
    return t, filter_running_speed(speed)


def _encoder_counts(stim: StimFile) -> FloatArray | None:
    if not stim.has("rotaryEncoder") or stim.get("rotaryEncoder") != "digital":
        return None
    if not stim.has("rotaryEncoderCount"):
        return None
    c = np.asarray(stim.array("rotaryEncoderCount"), dtype=np.float64).ravel()
    if c.size == 0 or not np.any(np.nan_to_num(c)):
        return None
    return c


@timed
def running_speed(raw: RawSession) -> pl.DataFrame:
    """Return filtered running speed from every stim file with a digital encoder, in time order."""
    if not raw.stim_paths_for(TASK_SCRIPT):
        parts.report_absent_component("no DynamicRouting1 task file")
    sid = str(raw.session_id)
    pieces: list[tuple[float, FloatArray, FloatArray]] = []
    for path, ft in valid_frame_times(raw).items():
        stim = open_stim(path)
        counts = _encoder_counts(stim)
        if counts is None:
            continue
        rate = stim_scalar(stim, "frameRate", default=60)
        if float(rate) != RUNNING_SAMPLE_RATE:
            raise BadFormatError(
                f"frameRate is {rate}",
                path=path,
                field="frameRate",
                expected="60 (running speed assumes one encoder read per 60 Hz frame)",
            )
        try:
            t, v = running_speed_from_counts(
                counts,
                np.asarray(ft.input, dtype=np.float64),
                counts_per_rev=float(stim_scalar(stim, "rotaryEncoderCountsPerRev")),
                wheel_radius_cm=float(stim_scalar(stim, "wheelRadius")),
            )
        except InconsistentDataError as exc:
            raise InconsistentDataError(
                exc.message, path=path, field=exc.field, expected=exc.expected
            ) from None
        if t.size:
            pieces.append((float(t[0]), t, v))
    pieces.sort(key=lambda p: p[0])
    t = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0)
    v = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0)
    if t.size > 1 and np.any(np.diff(t) <= 0):
        raise InconsistentDataError(
            "running-speed timestamps of different stim files overlap",
            path=raw.root,
            field="timestamps",
            expected="strictly increasing timestamps across stim files",
        )
    df = pl.DataFrame({"session_id": [sid] * t.size, "timestamps": t, "speed": v})
    return RUNNING_SPEED.validate(df, source=raw.root)


# ------------------------------------------------------------------------ quiescent violations
@timed
def quiescent_violations(raw: RawSession) -> pl.DataFrame:
    """Return input-data times of the task's quiescent-violation frames, unique and sorted."""
    path, ft = task_file(raw)
    stim = open_stim(path)
    key = (
        "quiescentViolationFrames"
        if stim.has("quiescentViolationFrames")
        else "quiescentMoveFrames"
    )
    frames = np.unique(np.asarray(stim.array(key), dtype=np.float64).ravel())
    t = np.unique(frames_at(np.asarray(ft.input, dtype=np.float64), frames, path=path, field=key))
    t = t[np.isfinite(t)]
    df = pl.DataFrame({"session_id": [str(raw.session_id)] * t.size, "timestamps": t})
    return QUIESCENT_VIOLATIONS.validate(df, source=path)
