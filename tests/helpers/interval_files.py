"""Hand-built RFMapping, OptoTagging and LuminanceTest files and a raw session holding them, for
the interval-table tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.task_files import FakeFrameTimes, make_raw

NAN = np.nan


RF_NAME = "RFMapping_366122_20230901_115000.hdf5"


OT_NAME = "OptoTagging_366122_20230901_121500.hdf5"


RF_T0, OT_T0, LT_T0 = 2.0, 70.0, 90.0
LT_NAME = "LuminanceTest_366122_20230901_122000.hdf5"


def _frames(t0: float, n: int, lag: float = 0.02) -> FakeFrameTimes:
    flip = t0 + np.arange(n) / 60
    return FakeFrameTimes(
        "x",
        script_name="",
        flip=flip,
        input=np.concatenate(([NAN], flip[:-1])),
        display=flip + lag,
    )


def rf_attrs() -> dict[str, Any]:
    # trials: flash, grating, tone, AM noise (0 Hz), flash; 31 frames apart
    return {
        "frameIntervals": np.full(200, 1 / 60),
        "frameRate": 60,
        "stimFrames": 15,
        "interStimFrames": 15,
        "soundDur": 0.25,
        "soundSampleRate": 48000,
        "stimStartFrame": np.array([0, 31, 62, 93, 124]),
        "trialFullFieldContrast": np.array([1.0, NAN, NAN, NAN, -1.0]),
        "trialVisXY": np.array([[NAN, NAN], [100.0, -50.0], [NAN, NAN], [NAN, NAN], [NAN, NAN]]),
        "trialGratingOri": np.array([NAN, 45.0, NAN, NAN, NAN]),
        "trialToneFreq": np.array([NAN, NAN, 6000.0, NAN, NAN]),
        "trialAMNoiseFreq": np.array([NAN, NAN, NAN, 0.0, NAN]),
    }


def ot_attrs() -> dict[str, Any]:
    return {
        "frameIntervals": np.full(300, 1 / 60),
        "frameRate": 60,
        "optoDev": "laser_488",
        "optoInterval": 60,
        "optoOnRamp": 0.0,
        "optoOffRamp": 0.0,
        "optoSampleRate": 2000,
        "optoOffsetVoltage": 0.0,
        "trialOptoOnsetFrame": np.array([60, 125, 190]),
        "trialOptoDur": np.array([0.01, 0.2, 0.01]),
        "trialOptoVoltage": np.array([1.0, 1.0, 2.0]),
        "trialGalvoVoltage": np.array([[-0.25, -0.4], [0.15, -0.55], [-0.25, -0.4]]),
        "galvoVoltage": np.array([[-0.25, -0.4], [0.15, -0.55]]),
        "bregmaXY": np.array([[-3.2, -2.9], [-1.6, -3.4]]),
        "optoTaggingLocs": {"label": ["A", "C"]},
        "optoPowerCalibrationData": {"poly coefficients": np.array([0.0, 5.0, 0.0])},
    }


def lt_attrs() -> dict[str, Any]:
    return {
        "frameIntervals": np.full(99, 1 / 60),
        "framesPerLevel": 30,
        "trialStartFrame": np.array([0, 30, 60]),
        "trialLevel": np.array([-1.0, 0.25000001, 1.0]),
    }


def _raw(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sync: Any = "default",
    add_lines: bool = True,
    **kw: Any,
) -> Any:
    from helpers.task_files import make_sync

    s = make_sync() if isinstance(sync, str) else sync
    if s is not None and add_lines:
        flip_rf = RF_T0 + np.arange(201) / 60
        aud_on = flip_rf[[62, 93]] + 0.004
        s._lines[1] = (
            np.sort(np.concatenate((s._lines[1][0], aud_on))),
            np.sort(np.concatenate((s._lines[1][1], aud_on + 0.25))),
        )
        flip_ot = OT_T0 + np.arange(301) / 60
        on = flip_ot[[60, 125, 190]] + 0.001
        s._lines[11] = (
            np.sort(np.concatenate((s._lines[11][0], on))),
            np.sort(np.concatenate((s._lines[11][1], on + np.array([0.0095, 0.1995, 0.0095])))),
        )
    return make_raw(
        tmp_path,
        monkeypatch,
        sync=s,
        extra_stims={RF_NAME: rf_attrs(), OT_NAME: ot_attrs(), LT_NAME: lt_attrs()},
        frame_times={
            RF_NAME: _frames(RF_T0, 201),
            OT_NAME: _frames(OT_T0, 301),
            LT_NAME: _frames(LT_T0, 100),
        },
        **kw,
    )
