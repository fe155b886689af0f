"""FORMATS §3.6 method 2 in the interval tables: RF-mapping sounds and OptoTagging from the NI-DAQ.

A synthetic session dated 2023-08-01 (before the sound line existed) runs RFMapping and
OptoTagging; its sync file loses the opto marker line (bit 11) and its NI-DAQ stream gets a
full-length recording with the speaker signal on channel 1 at the generator's truth sound onsets
and the laser command on channel 5 at the truth laser onsets (helpers of
tests/test_sound_opto_method2.py). Tones are drawn analytically (a smooth speaker signal), noise
from the waveform the stim file saved, the laser command with the generator's recipe.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.nidaq_files import (
    _rec,
    _rewrite_sync_without_line,
    _tone_events,
    _write_nidaq,
)
from npc_frames.components import _nidaq
from npc_frames.components import _sound_opto as so
from npc_frames.errors import BadFormatError
from npc_frames.synth import make_session
from npc_frames.synth.task_base import active_duration, opto_waveform

TOL = 1e-4  # 0.1 ms
#: a tone at the NI-DAQ's Nyquist frequency keeps only its envelope in the samples
NYQUIST_TOL = 2.5e-4
SOUND_RATE = 48000.0
HANNING = 0.005  # RFMapping's Hanning edges (the synthetic generator's too)


# --------------------------------------------------------------------------- fixtures
def _h5(path: Path, key: str) -> Any:
    with h5py.File(path, "r") as f:
        return f[key][()]


def _saved_arrays(path: Path) -> list[np.ndarray]:
    with h5py.File(path, "r") as f:
        return [np.asarray(a, dtype=float) for a in f["trialSoundArray"][()]]


@pytest.fixture(scope="module")
def m2_session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Return truth, raw roots (full NI-DAQ; clipped copy) and the truth tables."""
    tmp = tmp_path_factory.mktemp("m3_intervals")
    truth = make_session(
        tmp,
        seed=21,
        minutes=4,
        n_probes=1,
        units_per_probe=2,
        date=dt.date(2023, 8, 1),
        scripts=["RFMapping", "OptoTagging"],
        opto=True,
        video=False,
        clip_seconds=0.05,
    )
    root = Path(truth.raw_path)
    _rewrite_sync_without_line(next((root / "behavior").glob("*.h5")), so.OPTO_LINE_488)
    clipped = tmp / "clipped" / root.name
    shutil.copytree(root, clipped)

    rf = truth.script("RFMapping")
    aud = {k: np.asarray(v) for k, v in rf["truth"]["aud_rf_mapping"].items()}
    ot = {k: np.asarray(v) for k, v in truth.script("OptoTagging")["truth"]["optotagging"].items()}
    rf_path = next((root / "behavior").glob("RFMapping_*.hdf5"))
    ot_path = next((root / "behavior").glob("OptoTagging_*.hdf5"))
    arrays = _saved_arrays(rf_path)
    tone = np.asarray(_h5(rf_path, "trialToneFreq"), dtype=float)
    volume = float(_h5(rf_path, "soundVolume"))
    dur = float(_h5(rf_path, "soundDur"))
    n = tone.size
    p = {
        "freq": tone[:, None],
        "vol": np.full(n, volume),
        "dur": np.full(n, dur),
        "sound_rate": SOUND_RATE,
        "hanning": HANNING,
    }
    events: list[tuple[int, float, np.ndarray, float]] = []
    for i, onset in zip(aud["trial_index"], aud["stim_start_time"], strict=True):
        if np.isfinite(tone[i]):  # smooth speaker copy of the tone
            events.append((_nidaq.SOUND_CHANNEL, float(onset), _tone_events(p, int(i)), -1.0))
        else:  # noise: the samples the task played (saved in the stim file)
            events.append((_nidaq.SOUND_CHANNEL, float(onset), arrays[i], SOUND_RATE))
    volt = np.asarray(_h5(ot_path, "trialOptoVoltage"), dtype=float)
    opto_dur = np.asarray(_h5(ot_path, "trialOptoDur"), dtype=float)
    on_ramp = float(_h5(ot_path, "optoOnRamp"))
    off_ramp = float(_h5(ot_path, "optoOffRamp"))
    offset_v = float(_h5(ot_path, "optoOffsetVoltage"))
    for i, rise in zip(ot["trial_index"], ot["stim_start_time"], strict=True):
        w = opto_waveform(
            2000.0, volt[i], opto_dur[i], on_ramp=on_ramp, off_ramp=off_ramp, offset=offset_v
        )
        a_start, _ = active_duration(w, 2000.0)
        events.append((_nidaq.OPTO_CHANNEL, float(rise) - a_start, w, 2000.0))
    stream = next(s for s in truth.ephys.streams if s.kind == "nidaq")
    _write_nidaq(root, stream, events)
    return {
        "truth": truth,
        "root": root,
        "clipped": clipped,
        "aud": aud,
        "ot": ot,
        "tone": tone,
        "flip": np.asarray(rf["flip"], dtype=float),
        "start_frame": np.asarray(_h5(rf_path, "stimStartFrame"), dtype=np.int64),
        "ot_flip": np.asarray(truth.script("OptoTagging")["flip"], dtype=float),
        "ot_frame": np.asarray(_h5(ot_path, "trialOptoOnsetFrame"), dtype=np.int64),
        "dur": dur,
    }


def _raw(root: Path) -> Any:
    from npc_frames.paths import RawSession

    return RawSession.from_path(str(root))


# ------------------------------------------------------------------------ aud_rf_mapping
def test_aud_rf_mapping_onsets_from_nidaq_within_0p1ms_of_truth(m2_session: dict[str, Any]):
    from npc_frames.components.intervals import aud_rf_mapping

    s = m2_session
    df = aud_rf_mapping(_raw(s["root"]))
    aud = s["aud"]
    np.testing.assert_array_equal(df["trial_index"].to_numpy(), aud["trial_index"])
    assert df["is_pure_tone"].sum() >= 5 and df["is_AM_noise"].sum() >= 3
    err = np.abs(df["stim_start_time"].to_numpy() - aud["stim_start_time"])
    nyq = _at_nidaq_nyquist(df)
    assert nyq.sum() < err.size // 2
    assert err[~nyq].max() < TOL, err
    assert err[nyq].max(initial=0) < NYQUIST_TOL, err[nyq]
    # offsets: onset + the saved waveform's duration (len / 48 kHz) = the truth's
    np.testing.assert_allclose(
        df["stim_stop_time"].to_numpy() - df["stim_start_time"].to_numpy(),
        aud["stim_stop_time"] - aud["stim_start_time"],
        atol=1e-9,
    )
    # method 2 actually ran: the onsets are not the flip times of the trigger frames
    flip = s["flip"][s["start_frame"][aud["trial_index"]]]
    assert np.all(np.abs(df["stim_start_time"].to_numpy() - flip) > 1e-3)
    np.testing.assert_array_equal(df["start_time"].to_numpy(), flip)


def _at_nidaq_nyquist(df: pl.DataFrame) -> np.ndarray:
    """Return the rows whose tone is at the NI-DAQ's Nyquist frequency (15 kHz at 30 kHz)."""
    return (df["is_pure_tone"] & (df["freq"] == 15000.0)).to_numpy()


class _WithoutSavedSounds:
    """A stim file that hides trialSoundArray (older files, or saveSoundArray False)."""

    def __init__(self, stim: Any) -> None:
        self._stim = stim
        self.path = stim.path

    def has(self, key: str) -> bool:
        return key != "trialSoundArray" and bool(self._stim.has(key))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stim, name)


def test_aud_rf_mapping_regenerated_templates_without_saved_arrays(m2_session: dict[str, Any]):
    """Without trialSoundArray, tones are regenerated ("tone" at [f, NaN]) and recover the onset
    within 0.1 ms; unmodulated noise (0 Hz: "noise", no seed) is matched by its Hanning-edged
    envelope within 0.1 ms; AM noise (periodic envelope, ambiguous) keeps the flip time."""
    from npc_frames.components._task import files_for, open_stim, sync_data
    from npc_frames.components.intervals import build_rf_mapping

    s = m2_session
    raw = _raw(s["root"])
    (path, ft), *_ = files_for(raw, "RFMapping")
    _, df = build_rf_mapping(
        _WithoutSavedSounds(open_stim(path)),
        ft,
        sync_data(raw),
        session_id=str(raw.session_id),
        session_date=raw.session_id.date,
        nidaq=lambda: _nidaq.nidaq_stream(raw),
    )
    aud = s["aud"]
    err = np.abs(df["stim_start_time"].to_numpy() - aud["stim_start_time"])
    tone = df["is_pure_tone"].to_numpy()
    nyq = _at_nidaq_nyquist(df)
    unmodulated = ~tone & (df["freq"].to_numpy() == 0)
    am = ~tone & (df["freq"].to_numpy() > 0)
    assert unmodulated.sum() >= 1 and am.sum() >= 2
    assert err[tone & ~nyq].max() < TOL, err[tone]
    assert err[nyq].max(initial=0) < NYQUIST_TOL, err[nyq]
    assert err[unmodulated].max() < TOL, err[unmodulated]
    flip = s["flip"][s["start_frame"][aud["trial_index"]]]
    got = df["stim_start_time"].to_numpy()
    assert np.all(np.abs(got[~am] - flip[~am]) > 1e-3)
    np.testing.assert_array_equal(got[am], flip[am])


def test_aud_rf_mapping_clipped_nidaq_gives_flip_time_exactly(m2_session: dict[str, Any]):
    from npc_frames.components.intervals import aud_rf_mapping

    s = m2_session
    df = aud_rf_mapping(_raw(s["clipped"]))
    flip = s["flip"][s["start_frame"][s["aud"]["trial_index"]]]
    np.testing.assert_array_equal(df["stim_start_time"].to_numpy(), flip)
    np.testing.assert_allclose(df["stim_stop_time"].to_numpy(), flip + s["dur"], atol=1e-12)


# --------------------------------------------------------------------------- optotagging
def test_optotagging_rows_from_nidaq_when_marker_line_missing(m2_session: dict[str, Any]):
    from npc_frames.components.intervals import optotagging

    s = m2_session
    ot = s["ot"]
    df = optotagging(_raw(s["root"]))
    np.testing.assert_array_equal(df["trial_index"].to_numpy(), ot["trial_index"])
    assert df.height >= 10
    for col in ("stim_start_time", "start_time", "baseline_stop_time", "response_start_time"):
        err = np.abs(df[col].to_numpy() - ot[col])
        assert err.max() < TOL, (col, err)
    # Offsets: onset + (active_stop - active_start) of the rebuilt command, where
    # _sound_opto.opto_active_window puts active_stop at the *start* of the last positive command
    # sample while the generator's marker falls at its *end* (one 2 kHz sample later): a
    # convention mismatch between the two (reported), hence one sample of slack here.
    err = df["stim_stop_time"].to_numpy() - ot["stim_stop_time"]
    assert np.all(np.abs(err + 1 / 2000) < TOL), err
    np.testing.assert_allclose(df["nominal_duration"].to_numpy(), ot["nominal_duration"])
    assert df["location"].to_list() == list(ot["location"])
    # not the flip times of the onset frames (method 3)
    flip = s["ot_flip"][s["ot_frame"]]
    assert np.all(df["stim_start_time"].to_numpy() - flip > 1e-4)


def test_optotagging_unrecorded_when_line_missing_and_nidaq_clipped(m2_session: dict[str, Any]):
    from npc_frames.components.intervals import optotagging
    from npc_frames.schemas.behavior import OPTOTAGGING

    df = optotagging(_raw(m2_session["clipped"]))
    assert df.height == 0 and df.columns == OPTOTAGGING.names


# ------------------------------------------------------------------ hand-built (fast) rules
class _Stim:
    """Minimal StimFile stand-in (dict of keys)."""

    def __init__(self, a: dict[str, Any], path: str = "OptoTagging_1_20230801_120000.hdf5"):
        self.a = a
        self.path = path

    def has(self, k: str) -> bool:
        return k in self.a

    def get(self, k: str, d: Any = None) -> Any:
        return self.a.get(k, d)

    def array(self, k: str, dtype: Any = None) -> np.ndarray:
        if k not in self.a:
            raise BadFormatError(
                f"stim file lacks {k!r}", path=self.path, field=k, expected=f"key {k!r}"
            )
        return np.asarray(self.a[k], dtype=dtype)

    def strs(self, k: str) -> list[str]:
        return list(self.a[k])


class _Frames:
    def __init__(self, t0: float, n: int) -> None:
        self.flip = t0 + np.arange(n) / 60
        self.display = self.flip + 0.02
        self.input = self.flip


def _ot_attrs() -> dict[str, Any]:
    return {
        "frameRate": 60,
        "optoDev": "laser_488",
        "optoInterval": 60,
        "optoOnRamp": 0.001,
        "optoOffRamp": 0.001,
        "optoSampleRate": 2000,
        "optoOffsetVoltage": 0.0,
        "trialOptoOnsetFrame": np.array([60, 125, 190]),
        "trialOptoDur": np.array([0.01, 0.2, 0.01]),
        "trialOptoVoltage": np.array([1.0, 1.0, 2.0]),
    }


def _opto_daq(t0: float, attrs: dict[str, Any], lag: float, skip: int | None = None) -> Any:
    """Return (recording with the commands `lag` s after each onset flip, truth onsets)."""
    data = np.zeros((30000 * 6, 8), dtype=np.int16)
    start = t0 - 0.5
    flip = t0 + np.arange(301) / 60
    onsets = []
    for i, (f, d, v) in enumerate(  # three trials
        zip(
            attrs["trialOptoOnsetFrame"],
            attrs["trialOptoDur"],
            attrs["trialOptoVoltage"],
            strict=True,
        )
    ):
        w = opto_waveform(2000.0, v, d, on_ramp=0.001, off_ramp=0.001)
        a_start, _ = active_duration(w, 2000.0)
        t_wave = flip[f] + lag
        onsets.append(t_wave + a_start)
        if i == skip:
            continue
        k = np.arange(int((t_wave - start) * 30000) - 10, int((t_wave - start) * 30000) + 20000)
        t_rel = start + k / 30000 - t_wave
        wave = np.interp(t_rel, np.arange(w.size) / 2000.0, w, left=0.0, right=0.0)
        data[k, 5] = np.round(wave / 0.00030517578125).astype(np.int16)
    return _rec(data, start=start), np.array(onsets)


def _sync_for(t0: float) -> Any:
    from helpers.task_files import FakeSync

    return FakeSync({}, total=t0 + 20)


def test_build_optotagging_uses_nidaq_when_line_empty_and_drops_untimed_trials() -> None:
    from npc_frames.components.intervals import build_optotagging

    t0 = 70.0
    attrs = _ot_attrs()
    rec, onsets = _opto_daq(t0, attrs, lag=0.0123, skip=1)
    calls: list[int] = []

    def source() -> Any:
        calls.append(1)
        return rec

    df = build_optotagging(
        _Stim(attrs), _Frames(t0, 301), _sync_for(t0), session_id="x", nidaq=source
    )
    assert calls == [1]
    assert df["trial_index"].to_list() == [0, 2]  # trial 1 has no command on the NI-DAQ
    np.testing.assert_allclose(df["stim_start_time"].to_numpy(), onsets[[0, 2]], atol=TOL)
    # without an NI-DAQ recording the laser is unrecorded (zero rows), as before
    df = build_optotagging(
        _Stim(attrs), _Frames(t0, 301), _sync_for(t0), session_id="x", nidaq=lambda: None
    )
    assert df.height == 0
    assert build_optotagging(
        _Stim(attrs), _Frames(t0, 301), _sync_for(t0), session_id="x"
    ).is_empty()


def test_build_optotagging_does_not_read_nidaq_when_line_times_every_trial() -> None:
    from helpers.task_files import FakeSync
    from npc_frames.components.intervals import build_optotagging

    t0 = 70.0
    attrs = _ot_attrs()
    flip = t0 + np.arange(301) / 60
    on = flip[attrs["trialOptoOnsetFrame"]] + 0.002
    sync = FakeSync({11: (on, on + attrs["trialOptoDur"])}, total=t0 + 20)

    def boom() -> Any:
        raise AssertionError("NI-DAQ read although the marker line times every trial")

    df = build_optotagging(_Stim(attrs), _Frames(t0, 301), sync, session_id="x", nidaq=boom)
    np.testing.assert_allclose(df["stim_start_time"].to_numpy(), on)


def test_typed_errors_unchanged_with_nidaq() -> None:
    from npc_frames.components.intervals import build_optotagging, build_rf_mapping

    t0 = 70.0
    attrs = _ot_attrs()
    rec, _ = _opto_daq(t0, attrs, lag=0.01)
    bad = dict(attrs, optoDev="mystery")
    with pytest.raises(BadFormatError) as e:
        build_optotagging(_Stim(bad), _Frames(t0, 301), _sync_for(t0), session_id="x", nidaq=rec)
    assert e.value.field == "optoDev" and "OptoTagging" in str(e.value.path)
    missing = {k: v for k, v in attrs.items() if k != "trialOptoOnsetFrame"}
    with pytest.raises(BadFormatError) as e:
        build_optotagging(
            _Stim(missing), _Frames(t0, 301), _sync_for(t0), session_id="x", nidaq=rec
        )
    assert e.value.field == "trialOptoOnsetFrame"
    rf = {
        "stimFrames": 15,
        "interStimFrames": 15,
        "soundDur": 0.25,
        "trialToneFreq": np.array([6000.0]),
        "trialAMNoiseFreq": np.array([np.nan]),
    }
    rf_path = "RFMapping_1_20230801_115000.hdf5"
    with pytest.raises(BadFormatError) as e:
        build_rf_mapping(
            _Stim(rf, rf_path),
            _Frames(t0, 301),
            None,
            session_id="x",
            session_date=dt.date(2023, 8, 1),
            nidaq=rec,
        )
    assert e.value.field == "stimStartFrame" and e.value.path == rf_path


def test_rf_sound_from_saved_array_and_regenerated_noise_on_hand_built_recording() -> None:
    """A saved tone (analytic template), a 0 Hz noise without a saved array (envelope of the
    regenerated unmodulated noise) and an un-recorded tone (flip time) on one recording."""
    from npc_frames.components.intervals import build_rf_mapping

    t0 = 2.0
    rate = 30000.0
    start = t0 - 0.5
    flip = t0 + np.arange(201) / 60
    data = np.zeros((int(rate * 5), 8), dtype=np.int16)
    rng = np.random.default_rng(3)
    n_s = int(0.25 * SOUND_RATE)
    env = np.ones(n_s)
    h = int(SOUND_RATE * HANNING)
    win = np.hanning(2 * h + 1)
    env[:h], env[-h:] = win[:h], win[h + 1 :]
    t48 = np.arange(n_s) / SOUND_RATE
    tone = np.sin(2 * np.pi * 7000 * t48) * env * 0.5
    noise = (2 * rng.random(n_s) - 1) * env * 0.5
    truth = {0: flip[0] + 0.0087, 31: flip[31] + 0.0113}
    for frame, t_on in truth.items():
        k = np.arange(int((t_on - 0.05 - start) * rate), int((t_on + 0.3 - start) * rate))
        t_rel = start + k / rate - t_on
        if frame == 0:  # smooth tone
            env_k = np.interp(t_rel, t48, env, left=0.0, right=0.0)
            v = 0.5 * np.sin(2 * np.pi * 7000 * t_rel) * env_k
        else:
            v = np.interp(t_rel, t48, noise, left=0.0, right=0.0)
        data[k, 1] = np.round((v + rng.normal(0, 0.005, k.size)) / 0.00030517578125)
    rec = _rec(data, start=start, rate=rate)
    a = {
        "stimFrames": 15,
        "interStimFrames": 15,
        "frameRate": 60,
        "soundDur": 0.25,
        "soundSampleRate": SOUND_RATE,
        "stimStartFrame": np.array([0, 31, 62, 93]),
        "trialFullFieldContrast": np.array([np.nan, np.nan, np.nan, 1.0]),
        "trialGratingOri": np.full(4, np.nan),
        "trialToneFreq": np.array([7000.0, np.nan, 5000.0, np.nan]),
        "trialAMNoiseFreq": np.array([np.nan, 0.0, np.nan, np.nan]),
        "trialSoundArray": np.array([tone, np.zeros(0), np.zeros(0), np.zeros(0)], dtype=object),
    }
    _, aud = build_rf_mapping(
        _Stim(a, "RFMapping_1_20230801_115000.hdf5"),
        _Frames(t0, 201),
        None,
        session_id="x",
        session_date=dt.date(2023, 8, 1),
        nidaq=rec,
    )
    got = aud["stim_start_time"].to_numpy()
    assert aud["trial_index"].to_list() == [0, 1, 2]
    assert abs(got[0] - truth[0]) < TOL
    assert abs(got[1] - truth[31]) < 5e-4  # envelope of unmodulated noise (no seed, no array)
    assert got[2] == flip[62]  # nothing on the NI-DAQ at trial 2: method 3
    assert aud.filter(pl.col("trial_index") == 2)["stim_stop_time"][0] == pytest.approx(
        flip[62] + 0.25, abs=1e-12
    )


def test_rf_band_noise_from_trial_noise_freq_without_saved_arrays() -> None:
    """Older RFMapping files: band noise given by ``trialNoiseFreq`` edges, no saved samples and
    no seeds -> "noise" regenerated in that band and matched by its Hanning-edged envelope."""
    import scipy.signal

    from npc_frames.components.intervals import build_rf_mapping

    t0, rate = 2.0, 30000.0
    start = t0 - 0.5
    flip = t0 + np.arange(201) / 60
    rng = np.random.default_rng(5)
    n_s = int(0.25 * SOUND_RATE)
    env = np.ones(n_s)
    h = int(SOUND_RATE * HANNING)
    win = np.hanning(2 * h + 1)
    env[:h], env[-h:] = win[:h], win[h + 1 :]
    b, a = scipy.signal.butter(10, [4000, 8000], btype="bandpass", fs=SOUND_RATE)
    noise = scipy.signal.filtfilt(b, a, 2 * rng.random(n_s) - 1) * env
    noise = 0.5 * noise / np.abs(noise).max()
    t_on = flip[31] + 0.0121
    data = np.zeros((int(rate * 5), 8), dtype=np.int16)
    k = np.arange(int((t_on - 0.05 - start) * rate), int((t_on + 0.3 - start) * rate))
    v = np.interp(start + k / rate - t_on, np.arange(n_s) / SOUND_RATE, noise, left=0, right=0)
    data[k, 1] = np.round((v + rng.normal(0, 0.005, k.size)) / 0.00030517578125)
    attrs = {
        "stimFrames": 15,
        "interStimFrames": 15,
        "soundDur": 0.25,
        "stimStartFrame": np.array([0, 31]),
        "trialFullFieldContrast": np.array([1.0, np.nan]),
        "trialSoundFreq": np.array([np.nan, np.nan]),
        "trialNoiseFreq": np.array([[np.nan, np.nan], [4000.0, 8000.0]]),
    }
    _, aud = build_rf_mapping(
        _Stim(attrs, "RFMapping_1_20230801_115000.hdf5"),
        _Frames(t0, 201),
        None,
        session_id="x",
        session_date=dt.date(2023, 8, 1),
        nidaq=_rec(data, start=start, rate=rate),
    )
    assert aud["trial_index"].to_list() == [1] and aud["is_white_noise"][0]
    assert abs(aud["stim_start_time"][0] - t_on) < TOL
