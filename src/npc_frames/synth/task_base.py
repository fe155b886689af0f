"""Building blocks of the simulated stimulus computer: frame timing, sync lines, licks, waveforms.

Everything here is on the **sync clock** (seconds since the first sync sample) unless a name says
``stim``. Times that become sync-line edges are quantised to the 100 kHz sample grid with
``round(t * 100_000) / 100_000`` — the same rule as the sync writer — so the truth and the file agree
bit for bit.

Physical model of one TaskControl frame ``i`` (FORMATS §3.3 event ordering):

* ``poll[i]``: inputs (encoder, lick line) are read at the start of the frame routine, ~1-2 ms
  after the previous flip (for frame 0: one refresh before the first flip);
* ``vsync_rise[i]``: the frame signal goes high after the task logic, a few ms after the poll;
* ``flip[i]``: the flip returns and the frame signal goes low (vsync falling edge = frame time);
* the photodiode edge follows the flip by ~0.01955 s (small jitter) on frames where the diode box
  toggles (``i % diodeBoxFrameInterval == 0``; the first toggle is black -> white, i.e. rising);
* display time at the screen centre = photodiode edge + 0.008 s (for frames that do not toggle the
  box: flip + that frame's lag + 0.008 s);
* sound / opto / reward actions triggered on frame ``i`` start right after ``flip[i]``.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.signal

__all__ = [
    "FRAME_PERIOD",
    "SYNC_RATE",
    "Frames",
    "LickModel",
    "ScriptRun",
    "active_duration",
    "common_attrs",
    "contacts_detection",
    "diode_interval_for",
    "make_frames",
    "opto_waveform",
    "q",
    "running_counts",
    "sound_array",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Sync NI-DAQ sample rate (FORMATS §2.1).
SYNC_RATE = 100_000.0
#: Nominal monitor refresh of the NP rigs (TaskControl ``frameRate`` = 60).
FRAME_PERIOD = 1.0 / 60.0
#: Average vsync-fall -> photodiode-edge latency (FORMATS §2.5).
DIODE_LAG = 0.01955
#: Screen refresh from top to centre (FORMATS §2.5, MONITOR_CENTER_REFRESH_TIME).
CENTER_REFRESH = 0.008
#: Dropped frames: one 2-refresh interval per ~2000 frames.
DROP_PROB = 1.0 / 2000.0
#: Date gates (FORMATS §2.3, §2.5, §8.2).
SOUND_LINE_DATE = datetime.date(2023, 8, 31)
SOLENOID_LINE_DATE = datetime.date(2024, 4, 1)
DIODE_EVERY_3_DATE = datetime.date(2025, 7, 15)
#: Minimum gap between two lick-sensor contacts: longer than any poll interval (incl. one dropped
#: frame), so each contact is detected (or missed) on its own.
LICK_MIN_GAP = 0.04


def q(t: npt.ArrayLike) -> FloatArray:
    """Return times snapped to the 100 kHz sync sample grid (``round(t * rate) / rate``)."""
    return np.round(np.asarray(t, dtype=np.float64) * SYNC_RATE) / SYNC_RATE


def diode_interval_for(date: datetime.date) -> int:
    """Return ``diodeBoxFrameInterval``: 1 before 2025-07-15, else 3 (FORMATS §2.5)."""
    return 3 if date >= DIODE_EVERY_3_DATE else 1


@dataclasses.dataclass(frozen=True)
class Frames:
    """Return value of :func:`make_frames`: per-frame sync times of one script."""

    flip: FloatArray
    vsync_rise: FloatArray
    poll: FloatArray
    diode: FloatArray  # flip + lag, quantised: photodiode edge time if the frame toggles the box

    def __len__(self) -> int:
        return int(self.flip.size)

    def truncate(self, n: int) -> Frames:
        """Return the first ``n`` frames."""
        return Frames(self.flip[:n], self.vsync_rise[:n], self.poll[:n], self.diode[:n])

    @property
    def display(self) -> FloatArray:
        """Return the display time of each frame at the screen centre."""
        return self.diode + CENTER_REFRESH

    def input_time(self, frames: npt.ArrayLike) -> FloatArray:
        """Return the npc input-data time of frames (flip of frame - 1; NaN for frame 0 / NaN)."""
        idx = np.asarray(frames, dtype=np.float64)
        out = np.full(idx.shape, np.nan)
        ok = np.isfinite(idx) & (idx >= 1)
        out[ok] = self.flip[idx[ok].astype(np.int64) - 1]
        return out

    def at(self, frames: npt.ArrayLike, which: str = "flip") -> FloatArray:
        """Return flip/display times of frames (NaN for NaN or out-of-range frames)."""
        vec = self.flip if which == "flip" else self.display
        idx = np.asarray(frames, dtype=np.float64)
        out = np.full(idx.shape, np.nan)
        ok = np.isfinite(idx) & (idx >= 0) & (idx < vec.size)
        out[ok] = vec[idx[ok].astype(np.int64)]
        return out


def make_frames(rng: np.random.Generator, n_frames: int, first_flip: float) -> Frames:
    """Return the sync times of ``n_frames`` frames whose first flip is at ``first_flip`` (vectorized).

    60 Hz flips with ~0.1 ms jitter and an occasional dropped frame (a 2-refresh interval).
    """
    n = int(n_frames)
    intervals = FRAME_PERIOD + rng.normal(0.0, 1e-4, max(n - 1, 0))
    intervals[rng.random(intervals.size) < DROP_PROB] += FRAME_PERIOD
    flip = q(first_flip + np.concatenate(([0.0], np.cumsum(intervals))))
    routine_start = rng.uniform(0.0008, 0.002, n)
    previous_flip = np.concatenate(([flip[0] - FRAME_PERIOD], flip[:-1]))
    poll = previous_flip + routine_start
    vsync_rise = q(poll + rng.uniform(0.0015, 0.004, n))
    lag = DIODE_LAG + rng.normal(0.0, 2e-4, n)
    diode = q(flip + lag)
    return Frames(flip=flip, vsync_rise=vsync_rise, poll=poll, diode=diode)


def frame_lines(frames: Frames, diode_interval: int) -> dict[int, tuple[FloatArray, FloatArray]]:
    """Return the vsync (2), photodiode (4) and stim_running (5) edges of one script."""
    toggles = frames.diode[:: int(diode_interval)]
    rising, falling = toggles[0::2], toggles[1::2]
    if rising.size > falling.size:
        # The box is left white after the last frame: the photodiode goes dark when the task
        # window closes, ~0.2-0.5 s later (well beyond npc's last-vsync + 5 frames diode window),
        # so the line is low between scripts and the next script's first toggle is again rising.
        close = frames.flip[-1] + 0.2 + 0.3 * ((frames.flip.size * 7919) % 1000) / 1000
        falling = np.concatenate((falling, q([close])))
    return {
        2: (frames.vsync_rise, frames.flip),
        4: (rising, falling),
        5: (
            q([frames.vsync_rise[0] - 1e-4]),
            q([frames.flip[-1] + 1e-4]),
        ),
    }


def truth_display(frames: Frames) -> FloatArray:
    """Return the truth display time of every frame (diode edge or flip + lag, + 0.008 s)."""
    return frames.display


# ---------------------------------------------------------------------------------------------
# licks


@dataclasses.dataclass
class LickModel:
    """Mutable list of lick-sensor contacts (sync seconds) built up while a script is simulated.

    Contacts are kept in time order and separated by at least :data:`LICK_MIN_GAP`, so each one is
    detected by the once-per-frame poll independently: detected on the first frame whose poll time
    falls inside ``[onset, offset)``; contacts shorter than a frame can be missed (as on real rigs).
    """

    rng: np.random.Generator
    poll: FloatArray
    spont_rate: float = 0.05  # spontaneous lick bouts per second
    onsets: list[float] = dataclasses.field(default_factory=list)
    offsets: list[float] = dataclasses.field(default_factory=list)

    @property
    def free_from(self) -> float:
        """Return the earliest onset time allowed for the next contact."""
        return self.offsets[-1] + LICK_MIN_GAP if self.offsets else -np.inf

    def duration(self) -> float:
        """Return a random contact duration: mostly 30-70 ms, some very short, some grooming."""
        u = self.rng.random()
        if u < 0.04:
            return float(self.rng.uniform(0.006, 0.014))  # brief touch, may fall between polls
        if u < 0.06:
            return float(self.rng.uniform(0.6, 1.5))  # long contact: not a "likely lick"
        return float(np.clip(self.rng.lognormal(np.log(0.045), 0.25), 0.02, 0.09))

    def add(self, onset: float, duration: float | None = None) -> tuple[float, int]:
        """Return (onset, detected frame or -1) after adding a contact at ``onset`` or later."""
        onset = float(q(max(onset, self.free_from)))
        dur = self.duration() if duration is None else duration
        offset = float(q(onset + dur))
        if offset <= onset:
            offset = onset + 1.0 / SYNC_RATE
        self.onsets.append(onset)
        self.offsets.append(offset)
        return onset, self.detect(onset, offset)

    def detect(self, onset: float, offset: float) -> int:
        """Return the frame whose input poll first sees the contact high, or -1."""
        i = int(np.searchsorted(self.poll, onset, side="left"))
        if i < self.poll.size and self.poll[i] < offset:
            return i
        return -1

    def bout(self, start: float, n_licks: int) -> list[int]:
        """Return detected frames of a lick bout of ``n_licks`` at ~7 Hz starting at ``start``."""
        detected = []
        t = start
        for _ in range(n_licks):
            onset, frame = self.add(
                t, float(np.clip(self.rng.lognormal(np.log(0.045), 0.25), 0.02, 0.08))
            )
            if frame >= 0:
                detected.append(frame)
            t = onset + float(np.clip(self.rng.normal(0.14, 0.02), 0.1, 0.2))
        return detected

    def next_bout(self, start: float, stop: float, rate: float | None = None) -> list[int] | None:
        """Return detected frames of the next spontaneous bout starting in ``[start, stop)``.

        Draws the Poisson process of bout onsets lazily from ``max(start, free_from)``; returns None
        when the next onset falls at or after ``stop`` (the process is memoryless, so the caller
        simply asks again from a later time). A bout is 1-3 contacts. ``rate`` overrides
        :attr:`spont_rate` (bouts/s) for this draw.
        """
        rate = self.spont_rate if rate is None else rate
        t = max(start, self.free_from) + float(self.rng.exponential(1.0 / rate))
        if t >= stop:
            return None
        frames = []
        for _ in range(int(self.rng.integers(1, 4))):
            onset, frame = self.add(t)
            if frame >= 0:
                frames.append(frame)
            t = onset + float(np.clip(self.rng.normal(0.15, 0.03), 0.1, 0.25))
        return frames

    def arrays(self, until: float) -> tuple[FloatArray, FloatArray]:
        """Return (onsets, offsets) of contacts starting before ``until``."""
        on = np.asarray(self.onsets, dtype=np.float64)
        off = np.asarray(self.offsets, dtype=np.float64)
        keep = on < until
        return on[keep], off[keep]


def contacts_detection(
    onsets: FloatArray, offsets: FloatArray, poll: FloatArray
) -> tuple[IntArray, IntArray]:
    """Return (lickFrames, lickDetectorFrames) of contacts polled once per frame (vectorized).

    ``lickFrames``: frames whose poll saw the line high after a low poll; ``lickDetectorFrames``:
    every frame whose poll saw the line high.
    """
    first = np.searchsorted(poll, onsets, side="left")
    stop = np.searchsorted(poll, offsets, side="left")
    counts = np.maximum(stop - first, 0)
    lick_frames = first[counts > 0].astype(np.int64)
    total = int(counts.sum())
    starts = np.repeat(first, counts)
    offsets_in_run = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    detector = (starts + offsets_in_run).astype(np.int64)
    return lick_frames, detector


def licks_truth(onsets: FloatArray, offsets: FloatArray) -> dict[str, list[Any]]:
    """Return the licks table (FORMATS §8.1) of sync lick contacts."""
    dur = offsets - onsets
    return {
        "timestamps": onsets.tolist(),
        "duration": dur.tolist(),
        "is_likely_lick": (dur <= 0.5).tolist(),
    }


# ---------------------------------------------------------------------------------------------
# running wheel


def running_counts(
    rng: np.random.Generator, poll: FloatArray, *, wheel_radius: float, counts_per_rev: int
) -> IntArray:
    """Return cumulative rotary-encoder counts read at each poll time (OU running-speed trace)."""
    n = poll.size
    tau, mean, sd = 2.0, 18.0, 9.0
    a = np.exp(-FRAME_PERIOD / tau)
    noise = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
    ou = scipy.signal.lfilter([1.0], [1.0, -a], noise)
    speed = np.maximum(mean + ou, -2.0)  # cm/s; mice rarely walk backwards
    # occasional stops: multiply by a slow 0/1 gate
    gate = scipy.signal.lfilter([1.0], [1.0, -np.exp(-FRAME_PERIOD / 8.0)], rng.normal(0, 1, n))
    speed = np.where(gate < -0.8 * gate.std(), 0.2 * speed, speed)
    dt = np.diff(poll, prepend=poll[0])
    revs = np.cumsum(speed * dt) / (2 * np.pi * wheel_radius)
    return np.round(revs * counts_per_rev).astype(np.int64)


def running_truth(
    counts: IntArray, frames: Frames, *, wheel_radius: float, counts_per_rev: int
) -> dict[str, list[float]]:
    """Return per-frame unfiltered running speed (FORMATS §7) with each frame's input time."""
    speed = np.concatenate(
        ([np.nan], np.diff(counts) * (2 * np.pi * wheel_radius * 60.0) / counts_per_rev)
    )
    return {
        "timestamps": frames.input_time(np.arange(len(frames))).tolist(),
        "speed": speed.tolist(),
    }


# ---------------------------------------------------------------------------------------------
# waveforms (own implementations of the task's recipes, FORMATS §3.6)


@functools.lru_cache(maxsize=64)
def _sound_array_cached(
    sound_type: str,
    sample_rate: float,
    dur: float,
    hanning_dur: float,
    vol: float,
    freq: tuple[float, ...],
    am: float,
    seed: int,
) -> FloatArray:
    t = np.arange(0, dur, 1 / sample_rate)
    if sound_type == "tone":
        x = np.sin(2 * np.pi * freq[0] * t)
    else:
        noise = 2 * np.random.RandomState(seed).random_sample(t.size) - 1
        sos = scipy.signal.butter(10, list(freq), btype="bandpass", fs=sample_rate, output="sos")
        x = scipy.signal.sosfiltfilt(sos, noise)
    if np.isfinite(am) and am > 0:
        x = x * (np.sin(1.5 * np.pi + 2 * np.pi * am * t) + 1) / 2
    elif hanning_dur > 0:
        k = int(sample_rate * hanning_dur)
        window = np.hanning(2 * k + 1)
        x[:k] *= window[:k]
        x[-k:] *= window[k + 1 :]
    x = x / np.abs(x).max() * vol
    x.setflags(write=False)
    return x


def sound_array(
    sound_type: str,
    *,
    sample_rate: float,
    dur: float,
    hanning_dur: float,
    vol: float,
    freq: tuple[float, ...],
    am: float = np.nan,
    seed: int = 0,
) -> FloatArray:
    """Return a task sound waveform (tone or band-passed, optionally AM, noise; max |x| = vol)."""
    return _sound_array_cached(
        sound_type,
        float(sample_rate),
        float(dur),
        float(hanning_dur),
        float(vol),
        tuple(float(f) for f in freq),
        float(am),
        int(seed),
    )


def sound_samples(sample_rate: float, dur: float) -> int:
    """Return the number of samples of a task sound of ``dur`` seconds."""
    return int(np.arange(0, dur, 1 / sample_rate).size)


def opto_waveform(
    sample_rate: float,
    amp: float,
    dur: float,
    *,
    delay: float = 0.0,
    on_ramp: float = 0.0,
    off_ramp: float = 0.0,
    offset: float = 0.0,
) -> FloatArray:
    """Return a square opto command with linear ramps (FORMATS §3.6 recipe; last sample 0)."""
    n = max(int((dur + on_ramp + off_ramp) * sample_rate) + 1, 2)
    w = np.zeros(n)
    w[:-1] = amp
    if on_ramp > 0:
        ramp = np.linspace(offset, 1, int(on_ramp * sample_rate))
        w[: ramp.size] *= ramp
    if off_ramp > 0:
        ramp = np.linspace(1, offset, int(off_ramp * sample_rate))
        w[-(ramp.size + 1) : -1] *= ramp
    if delay > 0:
        w = np.concatenate((np.zeros(int(delay * sample_rate)), w))
    return w


def active_duration(waveform: FloatArray, sample_rate: float) -> tuple[float, float]:
    """Return (start, duration) in seconds of the part of a command that is > 0."""
    pos = np.flatnonzero(waveform > 0)
    if pos.size == 0:
        return 0.0, 0.0
    return pos[0] / sample_rate, (pos[-1] - pos[0] + 1) / sample_rate


# ---------------------------------------------------------------------------------------------
# stim-file keys common to every script (FORMATS §3.3)

#: NP3 sound calibration (dB -> volume), as in the task program's rig config.
SOUND_CALIBRATION_FIT = (26.532002859656085, -2.820908344083334, 52.33566140075705)


def db_to_volume(db: float) -> float:
    """Return the DAQ volume (0-1) of a sound level in dB with the rig calibration."""
    a, b, c = SOUND_CALIBRATION_FIT
    return float(np.log(1 - ((db - c) / a)) / b)


def common_attrs(
    *,
    subject: int,
    start_time: str,
    rig: str,
    task_version: str | None,
    frame_intervals: FloatArray,
    diode_interval: int,
    encoder_counts: IntArray,
    lick_frames: IntArray,
    lick_detector_frames: IntArray,
    reward_frames: list[int] | IntArray,
    reward_sizes: list[float] | FloatArray,
    solenoid_open_time: float,
    script: str,
) -> dict[str, Any]:
    """Return the TaskControl base attributes (FORMATS §3.3) of one script run."""
    n_frames = frame_intervals.size + 1
    return {
        "configPath": "C:\\ProgramData\\AIBS_MPE\\DynamicRoutingTask\\config.json",
        "rigName": rig,
        "subjectName": str(subject),
        "startTime": start_time,
        "taskVersion": task_version,
        "computerName": f"W10DT{rig}STIM",
        "githubTaskScript": (
            f"https://raw.githubusercontent.com/AllenInstitute/DynamicRoutingTask/main/{script}.py"
        ),
        "optoParamsPath": None,
        "savePath": f"C:\\Data\\{subject}\\{script}_{subject}_{start_time}.hdf5",
        "maxFrames": None,
        "saveParams": True,
        "saveFrameIntervals": True,
        "monBackgroundColor": 0,
        "minWheelAngleChange": 0,
        "maxWheelAngleChange": 0.5,
        "spacebarRewardsEnabled": False,
        "soundSampleRate": 48000,
        "soundHanningDur": 0.005,
        "soundFilter": None,
        "optoSampleRate": 2000,
        "frameRate": 60,
        "screen": 0,
        "monWidth": 52.0,
        "monDistance": 15.3,
        "monGamma": 2.3,
        "gammaErrorPolicy": "raise",
        "monSizePix": (1920, 1200),
        "warp": None,
        "warpFile": None,
        "drawDiodeBox": True,
        "diodeBoxSize": 120,
        "diodeBoxPosition": (900, 540),
        "diodeBoxFrameInterval": int(diode_interval),
        "pixelsPerDeg": 0.5 * 1920 / np.degrees(np.arctan(0.5 * 52.0 / 15.3)),
        "wheelRadius": 4.69,
        "wheelPolarity": -1,
        "rotaryEncoder": "digital",
        "rotaryEncoderCh": 1,
        "rotaryEncoderSerialPort": "COM3",
        "rotaryEncoderCountsPerRev": 8192,
        "rotaryEncoderVolts": [],
        "rotaryEncoderIndex": np.arange(n_frames, dtype=np.int64) + 1,
        "rotaryEncoderCount": encoder_counts,
        "wheelPosRadians": [],
        "deltaWheelPos": [],
        "microphoneCh": None,
        "microphoneData": [],
        "networkNidaqDevices": ["zcDAQ9185-213AB43"],
        "behavNidaqDevice": "Dev0",
        "behavNidaqDeviceSerialNum": 32196632,
        "syncNidaqDevice": "Dev1",
        "syncNidaqDeviceSerialNum": 32196654,
        "rewardLine": (0, 7),
        "rewardSoundLine": (2, 0),
        "lickLine": (0, 0),
        "frameSignalLine": (1, 4),
        "acquisitionSignalLine": (1, 7),
        "rewardSyncLine": (2, 1),
        "digitalSolenoidTrigger": True,
        "solenoidOpenTime": solenoid_open_time,
        "rewardSoundDeviceOpenTime": 0.01,
        "rewardVol": None,
        "waterCalibrationSlope": None,
        "waterCalibrationIntercept": None,
        "soundMode": "daq",
        "soundNidaqDevice": "zcDAQ1Mod1",
        "soundChannel": (0, 1),
        "soundCalibrationFit": SOUND_CALIBRATION_FIT,
        "optoNidaqDevice": "zcDAQ9185-213AB43Mod4",
        "optoNidaqDeviceSerialNum": 32196701,
        "galvoChannels": (0, 1, 2),
        "optoChannels": {"laser_488": (3, 4), "laser_633": (5, 6)},
        "lickFrames": np.asarray(lick_frames, dtype=np.int64),
        "lickDetectorFrames": np.asarray(lick_detector_frames, dtype=np.int64),
        "rewardFrames": np.asarray(reward_frames, dtype=np.int64),
        "manualRewardFrames": np.zeros(0, dtype=np.int64),
        "rewardSize": np.asarray(reward_sizes, dtype=np.float64),
        "lastFrame": n_frames - 1,
        "frameIntervals": frame_intervals,
    }


# ---------------------------------------------------------------------------------------------
# the result record


@dataclasses.dataclass
class ScriptRun:
    """One simulated stim script: its file, its frame times and the sync-line edges it caused.

    Attributes
    ----------
    script_name:
        TaskControl class name (``DynamicRouting1``, ``RFMapping``, …).
    path:
        The written ``<Script>_<subject>_<YYYYMMDD_HHMMSS>.hdf5``.
    start_time:
        The stored ``startTime`` (local wall clock, whole seconds).
    flip:
        Sync seconds of every frame's flip (vsync falling edge).
    vsync_rise:
        Sync seconds of every frame's vsync rising edge.
    display:
        Truth display time of each frame at the screen centre (photodiode edge + 0.008 s; for frames
        that do not toggle the diode box, flip + that frame's lag + 0.008 s).
    lines:
        ``{bit: (rising, falling)}`` sync seconds this script puts on bits 1 (sound), 2 (vsync),
        4 (photodiode), 5 (stim_running), 11 (opto marker), 15 (solenoid), 31 (lick sensor). Every
        key is present; date-gated or unused lines have empty arrays. All times are on the 100 kHz
        grid.
    truth:
        JSON-serialisable dict (lists / scalars) of what a parser must recover from the files.
    """

    script_name: str
    path: Path
    start_time: datetime.datetime
    flip: FloatArray
    vsync_rise: FloatArray
    display: FloatArray
    lines: dict[int, tuple[FloatArray, FloatArray]]
    truth: dict[str, Any]


def empty_lines() -> dict[int, tuple[FloatArray, FloatArray]]:
    """Return an all-empty line map for the bits a script may drive."""
    return {bit: (np.zeros(0), np.zeros(0)) for bit in (1, 2, 4, 5, 11, 15, 31)}


def table(columns: Mapping[str, npt.ArrayLike]) -> dict[str, list[Any]]:
    """Return a JSON-serialisable column dict (numpy scalars converted to Python)."""
    return {k: np.asarray(v).tolist() for k, v in columns.items()}


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Parameters shared by every script of one simulated session."""

    out_dir: Path
    rng: np.random.Generator
    subject: int
    sync_start: datetime.datetime
    rig: str
    stim_clock: float  # stimulus-computer seconds per sync second (1 + ~2e-6)
    solenoid_open_time: float = 0.03
    #: DynamicRouting1 saves each trial's waveform in ``trialSoundArray`` (``saveSoundArray``)
    save_sound_array: bool = False

    @property
    def date(self) -> datetime.date:
        """Return the session date (drives the date gates)."""
        return self.sync_start.date()

    @property
    def diode_interval(self) -> int:
        """Return ``diodeBoxFrameInterval`` for this session's date."""
        return diode_interval_for(self.date)

    @property
    def sound_on_sync(self) -> bool:
        """Return True if the sound-running TTL is recorded on sync bit 1."""
        return self.date >= SOUND_LINE_DATE

    @property
    def solenoid_on_sync(self) -> bool:
        """Return True if the reward solenoid is recorded on sync bit 15."""
        return self.date >= SOLENOID_LINE_DATE


def solenoid_edges(
    ctx: RunContext, frames: Frames, reward_frames: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Return (open, close) sync times of the solenoid for rewards triggered on ``reward_frames``."""
    rf = np.asarray(reward_frames, dtype=np.int64)
    rise = q(frames.flip[rf] + ctx.rng.uniform(3e-4, 1e-3, rf.size))
    fall = q(rise + ctx.solenoid_open_time + ctx.rng.uniform(5e-4, 2e-3, rf.size))
    return rise, fall


def finish_run(
    ctx: RunContext,
    *,
    script: str,
    frames: Frames,
    task_version: str | None,
    licks: LickModel | None,
    reward_frames: npt.ArrayLike,
    script_attrs: Mapping[str, Any],
    lines: Mapping[int, tuple[FloatArray, FloatArray]],
    truth: dict[str, Any],
) -> ScriptRun:
    """Return the :class:`ScriptRun` after writing the script's stim file (common keys + own keys)."""
    from npc_frames.synth.stimfiles import write_stim_file

    n = len(frames)
    start_dt = (ctx.sync_start + datetime.timedelta(seconds=float(frames.flip[0]))).replace(
        microsecond=0
    )
    start_str = start_dt.strftime("%Y%m%d_%H%M%S")
    path = Path(ctx.out_dir) / f"{script}_{ctx.subject}_{start_str}.hdf5"
    frame_intervals = np.diff(frames.flip) * ctx.stim_clock

    if licks is not None:
        on, off = licks.arrays(until=float(frames.flip[-1]))
    else:
        on, off = np.zeros(0), np.zeros(0)
    lick_frames, detector_frames = contacts_detection(on, off, frames.poll)
    counts = running_counts(ctx.rng, frames.poll, wheel_radius=4.69, counts_per_rev=8192)
    rf = np.asarray(reward_frames, dtype=np.int64)

    attrs = common_attrs(
        subject=ctx.subject,
        start_time=start_str,
        rig=ctx.rig,
        task_version=task_version,
        frame_intervals=frame_intervals,
        diode_interval=ctx.diode_interval,
        encoder_counts=counts,
        lick_frames=lick_frames,
        lick_detector_frames=detector_frames,
        reward_frames=rf,
        reward_sizes=np.full(rf.size, ctx.solenoid_open_time),
        solenoid_open_time=ctx.solenoid_open_time,
        script=script,
    )
    attrs["savePath"] = str(attrs["savePath"])
    attrs.update(script_attrs)
    write_stim_file(path, attrs)

    all_lines = empty_lines()
    all_lines.update(frame_lines(frames, ctx.diode_interval))
    all_lines.update(lines)
    all_lines[31] = (on, off)
    if rf.size and ctx.solenoid_on_sync:
        all_lines[15] = solenoid_edges(ctx, frames, rf)
    reward_open = all_lines[15][0] if ctx.solenoid_on_sync else frames.at(rf)

    truth = dict(truth)
    truth.update(
        {
            "script_name": script,
            "file_name": path.name,
            "start_time": start_dt.isoformat(),
            "n_frames": n,
            "vsync_count": n,
            "first_flip_time": float(frames.flip[0]),
            "last_flip_time": float(frames.flip[-1]),
            "stim_running_rise": float(all_lines[5][0][0]),
            "stim_running_fall": float(all_lines[5][1][0]),
            "diode_box_frame_interval": ctx.diode_interval,
            "stim_clock_scale": ctx.stim_clock,
            "licks": licks_truth(on, off),
            "lick_frames": lick_frames.tolist(),
            "rewards": {
                "timestamps": np.asarray(reward_open).tolist(),
                "frame": rf.tolist(),
                "flip_time": frames.at(rf).tolist(),
                "is_solenoid_time": bool(ctx.solenoid_on_sync),
            },
            "running_speed": running_truth(counts, frames, wheel_radius=4.69, counts_per_rev=8192),
        }
    )
    return ScriptRun(
        script_name=script,
        path=path,
        start_time=start_dt,
        flip=frames.flip,
        vsync_rise=frames.vsync_rise,
        display=frames.display,
        lines=all_lines,
        truth=truth,
    )
