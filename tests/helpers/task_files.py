"""Hand-built DynamicRouting task files, fake sync lines and fake frame times with known
trials (moved from test_trials so other test modules can use them without importing a test)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

N_FRAMES = 3000


DISPLAY_LAG = 0.02


SOUND_LATENCY = 0.01


LICK_LAG = 0.005


OPTO_LATENCY = 0.002


STIMS = ["vis1", "vis2", "vis2", "catch", "sound1", "sound2", "sound1"]


BLOCK = [1, 1, 1, 1, 2, 2, 2]


RESPONSE = [True, True, False, False, False, True, True]


REWARDED = [True, False, False, False, True, False, True]


AUTO = [False, False, False, False, True, False, False]


REPEAT = [False, False, True, False, False, False, False, False]  # n + 1 entries, like the task


TIMEOUT_FRAMES = 30


STIM_FRAME = np.array([400 * k + 100 for k in range(7)])


OPTO_TRIALS = (5, 6)


def flip_times(n: int = N_FRAMES) -> np.ndarray:
    return 10.0 + np.arange(n) / 60.0


@dataclass
class FakeFrameTimes:
    """Stand-in for timing.FrameTimes (same fields)."""

    path: str
    script_name: str = "DynamicRouting1"
    flip: np.ndarray = field(default_factory=flip_times)
    input: np.ndarray = field(default_factory=lambda: np.concatenate(([np.nan], flip_times()[:-1])))
    display: np.ndarray = field(default_factory=lambda: flip_times() + DISPLAY_LAG)
    display_source: str = "photodiode"
    block_index: int | None = 0


class FakeSync:
    """Stand-in for readers.sync.SyncData with explicit edges per line."""

    def __init__(self, lines: dict[Any, tuple[np.ndarray, np.ndarray]], total: float = 100.0):
        self._lines = lines
        self.total_seconds = total
        self.start_time = datetime.datetime(2023, 9, 1, 12, 0, 0, 500000)

    def has_line(self, line: Any) -> bool:
        return line in self._lines

    def rising(self, line: Any) -> np.ndarray:
        return np.asarray(self._lines.get(line, (np.empty(0), np.empty(0)))[0], dtype=float)

    def falling(self, line: Any) -> np.ndarray:
        return np.asarray(self._lines.get(line, (np.empty(0), np.empty(0)))[1], dtype=float)


def _write(f: h5py.File, key: str, value: Any) -> None:
    if isinstance(value, dict):
        g = f.create_group(key)
        for k, v in value.items():
            _write(g, k, v)  # type: ignore[arg-type]
    elif isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    ):
        f.create_dataset(key, data=value, dtype=h5py.string_dtype())
    else:
        f.create_dataset(key, data=value)


def task_attrs(**overrides: Any) -> dict[str, Any]:
    """Return the keys of the hand-built DynamicRouting1 file."""
    n = len(STIMS)
    start = 400 * np.arange(n)
    end = STIM_FRAME + 60 + 180 + np.where(_fa(), TIMEOUT_FRAMES, 0)
    resp_frame = np.where(RESPONSE, STIM_FRAME + 10, np.nan)
    reward_frames = np.array(
        [STIM_FRAME[0] + 10, STIM_FRAME[4] + 60, STIM_FRAME[6] + 10], dtype=np.int64
    )
    opto_onset = np.full(n, np.nan)
    opto_onset[list(OPTO_TRIALS)] = 0.0
    attrs: dict[str, Any] = {
        "rigName": "NP3",
        "computerName": "W10DT0000",
        "subjectName": "366122",
        "taskVersion": "stage 5 ori AMN moving timeouts repeats",
        "startTime": "20230901_120010",
        "githubTaskScript": "https://raw.githubusercontent.com/x/DynamicRouting1.py",
        "frameRate": 60,
        "frameIntervals": np.full(N_FRAMES - 1, 1 / 60),
        "lastFrame": N_FRAMES - 1,
        "trialStartFrame": start,
        "trialEndFrame": end,
        "trialStimStartFrame": np.concatenate((STIM_FRAME, [2900])),  # one incomplete trial
        "trialStim": [*STIMS, "vis1"],
        "trialBlock": np.array(BLOCK),
        "blockStimRewarded": ["vis1", "sound1"],
        "trialVisStimFrames": np.array([30 if "vis" in s else 0 for s in STIMS]),
        "trialGratingPhase": np.array([0.5 if "vis" in s else np.nan for s in STIMS]),
        "trialSoundDur": np.array([0.5 if "sound" in s else 0 for s in STIMS], dtype=float),
        "soundSampleRate": 48000,
        "quiescentFrames": 90,
        "responseWindow": np.array([6, 60]),
        "postResponseWindowFrames": 180,
        "incorrectTimeoutFrames": TIMEOUT_FRAMES,
        "incorrectTrialRepeats": 3,
        "autoRewardOnsetFrame": 60,
        "newBlockAutoRewards": 1,
        "newBlockGoTrials": 1,
        "newBlockNogoTrials": 0,
        "newBlockCatchTrials": 0,
        "trialResponse": np.array(RESPONSE),
        "trialResponseFrame": resp_frame,
        "trialRewarded": np.array(REWARDED),
        "trialAutoRewardScheduled": np.array(AUTO),
        "trialAutoRewarded": np.array(AUTO),
        "trialRepeat": np.array(REPEAT),
        "rewardFrames": reward_frames,
        "rewardSize": np.full(3, 0.005),
        "lickFrames": STIM_FRAME[np.array(RESPONSE)] + 10,
        "quiescentViolationFrames": np.array([50, 450]),
        "visStimContrast": 1.0,
        "trialVisStimContrast": np.array([1.0 if "vis" in s else 0 for s in STIMS]),
        "gratingOri": {"vis1": np.array([0.0]), "vis2": np.array([90.0])},
        "trialGratingOri": np.array([0.0, 90, 90, 0, 0, 0, 0]),
        "soundVolume": 0.08,
        "trialSoundVolume": np.array([0.08 if "sound" in s else 0 for s in STIMS]),
        "rotaryEncoder": "digital",
        "rotaryEncoderCount": np.arange(N_FRAMES) * 10,
        "rotaryEncoderCountsPerRev": 8192,
        "wheelRadius": 4.69,
        "trialOptoOnsetFrame": opto_onset,
        "trialOptoDur": np.where(np.isfinite(opto_onset), 0.5, np.nan),
        "trialOptoVoltage": np.where(np.isfinite(opto_onset), 1.0, np.nan),
        "trialOptoDelay": np.zeros(n),
        "trialOptoOnRamp": np.zeros(n),
        "trialOptoOffRamp": np.zeros(n),
        "trialOptoSinFreq": np.zeros(n),
        "trialOptoDevice": ["['']"] * 5 + ["['laser_488']"] * 2,
        "trialOptoLabel": ["no opto"] * 5 + ["A", "V1"],
        "trialOptoParamsIndex": np.array([np.nan] * 5 + [0, 1]),
        "trialGalvoX": np.zeros((n, 1)),
        "trialGalvoY": np.zeros((n, 1)),
        "trialGalvoDwellTime": np.zeros(n),
        "optoSampleRate": 2000,
        "optoParams": {
            "label": ["A", "V1"],
            "device": ["['laser_488']", "['laser_488']"],
            "bregmaX": np.array([[-1.0], [-3.5]]),
            "bregmaY": np.array([[2.0], [-3.0]]),
            "bregma offset X": np.array([0.5, 0.0]),
            "bregma offset Y": np.array([0.0, 0.0]),
        },
        "optoPowerCalibrationData": {"poly coefficients": np.array([1.0, 2.0, 0.0])},
    }
    attrs.update(overrides)
    return {k: v for k, v in attrs.items() if v is not None}


def _fa() -> np.ndarray:
    rewarded = np.array(["vis1", "sound1"])[np.array(BLOCK) - 1]
    stims = np.array(STIMS)
    return np.array(RESPONSE) & (stims != rewarded) & (stims != "catch")


def write_task(
    folder: Path, name: str = "DynamicRouting1_366122_20230901_120010.hdf5", **kw: Any
) -> Path:
    """Write the hand-built task file into `folder` and return its path."""
    path = folder / name
    with h5py.File(path, "w") as f:
        for k, v in task_attrs(**kw).items():
            _write(f, k, v)
    return path


def make_sync(
    *, with_sound: bool = True, with_opto: bool = True, extra_licks: bool = True
) -> FakeSync:
    """Return a fake sync with lick, sound and opto edges placed relative to the frame times."""
    flip = flip_times()
    resp = np.flatnonzero(RESPONSE)
    lick_r = flip[STIM_FRAME[resp] + 10] + LICK_LAG
    if extra_licks:
        # a lick before trial 1's window (frame stim+3) must not count as its response
        lick_r = np.sort(np.concatenate((lick_r, [flip[STIM_FRAME[1] + 3]])))
    lines: dict[Any, tuple[np.ndarray, np.ndarray]] = {"lick_sensor": (lick_r, lick_r + 0.05)}
    if with_sound:
        aud = [k for k, s in enumerate(STIMS) if "sound" in s]
        on = flip[STIM_FRAME[aud]] + SOUND_LATENCY
        lines[1] = (on, on + 0.5)
    if with_opto:
        on = flip[STIM_FRAME[list(OPTO_TRIALS)]] + OPTO_LATENCY
        lines[11] = (on, on + 0.4995)
    return FakeSync(lines)


# ------------------------------------------------------------------ whole-component (RawSession)
SESSION_FOLDER = "ecephys_366122_2023-09-01_12-00-00"


def make_raw(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sync: Any = "default",
    extra_stims: dict[str, dict[str, Any]] | None = None,
    annotations: dict[str, Any] | None = None,
    top_files: dict[str, str] | None = None,
    frame_times: dict[str, Any] | None = None,
    **task_overrides: Any,
) -> Any:
    """Return a RawSession of a hand-built folder, with timing.frame_times/sync_data patched to
    the fakes of this module (flip = 10 + i/60 for the task; `frame_times` adds others)."""
    import dataclasses

    from npc_frames import timing
    from npc_frames.paths import RawSession

    root = tmp_path / SESSION_FOLDER
    (root / "behavior").mkdir(parents=True)
    task = write_task(root / "behavior", **task_overrides)
    for name, attrs in (extra_stims or {}).items():
        with h5py.File(root / "behavior" / name, "w") as f:
            for k, v in attrs.items():
                _write(f, k, v)
    for name, text in (top_files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    raw = RawSession.from_path(root, annotations=annotations)
    fake_sync = make_sync() if isinstance(sync, str) else sync
    if fake_sync is not None:
        raw = dataclasses.replace(raw, sync_path=str(root / "behavior" / "20230901T120000.h5"))
    fts: dict[str, Any] = {str(task): FakeFrameTimes(str(task))}
    for name, ft in (frame_times or {}).items():
        ft.path = str(root / "behavior" / name)
        fts[ft.path] = ft
    if fake_sync is None:  # task clock: flip/input per FORMATS §3.4 without sync
        fi = np.full(N_FRAMES - 1, 1 / 60)
        cs = np.cumsum(fi)
        fts[str(task)] = FakeFrameTimes(
            str(task),
            flip=np.concatenate((cs, [cs[-1] + 1 / 60])),
            input=np.concatenate(([0.0], cs)),
            display=np.concatenate((cs, [cs[-1] + 1 / 60])),
            display_source="flip",
        )
    monkeypatch.setattr(timing, "frame_times", lambda r: fts)
    monkeypatch.setattr(timing, "sync_data", lambda r: fake_sync)
    monkeypatch.setattr(timing, "timing_failures", lambda r: {})
    return raw
