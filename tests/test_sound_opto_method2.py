"""FORMATS §3.6 method 2: sound and opto onsets from the NI-DAQ analog copy recorded by Open Ephys.

Synthetic sessions (dated before 2023-08-31: no sound line) are post-processed: the sync file loses
its opto marker line (bit 11), and the NI-DAQ stream's clipped ``continuous.dat`` is replaced by a
full-length (sparse) recording whose channel 1 holds the speaker waveform at the truth sound onsets
and channel 5 the laser command at the truth opto onsets, sampled on the stream's own clock, plus
noise around each event. The stim file's own per-trial parameters (read with h5py) drive the
waveforms, built with the synthetic generator's recipes (independent of the parser's).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from helpers.nidaq_files import (
    NIDAQ_BIT_VOLTS,
    NOISE_V,
    _analytic_tone,
    _rec,
    _rewrite_sync_without_line,
    _tone_envelope,
    write_nidaq_from_truth,
)
from npc_frames.components import _nidaq
from npc_frames.components import _sound_opto as so
from npc_frames.errors import ParameterError
from npc_frames.synth import make_session
from npc_frames.synth.task_base import opto_waveform, sound_array

TOL = 1e-4  # 0.1 ms


def _session(tmp: Path, *, seed: int, task_version: str, skip_sound: int | None = None):
    """Return (truth, full-NI-DAQ raw root, clipped copy root, params, skipped trial index)."""
    truth = make_session(
        tmp,
        seed=seed,
        minutes=4,
        n_probes=1,
        units_per_probe=2,
        date=dt.date(2023, 8, 1),
        scripts=["DynamicRouting1"],
        opto=True,
        video=False,
        clip_seconds=0.05,
        task_version=task_version,
    )
    root = Path(truth.raw_path)
    sync_path = next((root / "behavior").glob("*.h5"))
    _rewrite_sync_without_line(sync_path, so.OPTO_LINE_488)
    clipped = tmp / "clipped" / root.name
    shutil.copytree(root, clipped)
    p, skipped = write_nidaq_from_truth(truth, skip_sound=skip_sound)
    return truth, root, clipped, p, skipped


def _trials(root: Path):
    from npc_frames.components._trials import trials
    from npc_frames.paths import RawSession

    return trials(RawSession.from_path(str(root)))


@pytest.fixture(scope="module")
def tone_session(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("m2_tone")
    return _session(tmp, seed=11, task_version="stage 5 ori moving timeouts repeats", skip_sound=1)


@pytest.fixture(scope="module")
def noise_session(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("m2_noise")
    return _session(tmp, seed=12, task_version="stage 5 ori AMN moving timeouts repeats")


@pytest.fixture(scope="module")
def zarr_session(tone_session, tmp_path_factory: pytest.TempPathFactory):
    """The tone session as a clipped upload whose full NI-DAQ traces are in ecephys_compressed."""
    import zarr

    truth, root, clipped, p, skipped = tone_session
    dest = tmp_path_factory.mktemp("m2_zarr") / clipped.name
    shutil.copytree(clipped, dest)
    stream = next(s for s in truth.ephys.streams if s.kind == "nidaq")
    node = stream.record_node
    full = np.memmap(root / stream.path / "continuous.dat", dtype="<i2", mode="r").reshape(
        -1, stream.num_channels
    )
    name = f"experiment1_{node}#{stream.folder_name}.zarr"
    group = zarr.open_group(str(dest / "ecephys" / "ecephys_compressed" / name), mode="w")
    group.create_dataset(
        "traces_seg0", data=full, chunks=(300_000, stream.num_channels), dtype="<i2"
    )
    return truth, dest, p, skipped


def _truth_table(truth: Any) -> dict[str, np.ndarray]:
    dr = truth.script("DynamicRouting1")
    t = dr["truth"]["trials"]
    return {
        "sound_onset": np.asarray(t["sound_onset_time"], dtype=float),
        "opto_start": np.asarray(t["opto_start_time"], dtype=float),
        "opto_stop": np.asarray(t["opto_stop_time"], dtype=float),
        "stim_frame": np.asarray(t["stim_start_frame"], dtype=np.int64),
        "flip": np.asarray(dr["flip"], dtype=float),
        "is_aud_only": np.array(
            [("sound" in s) and ("vis" not in s) for s in t["stim_name"]], dtype=bool
        ),
    }


# ------------------------------------------------------------------- session-level rules
@pytest.mark.slow
@pytest.mark.parametrize("which", ["tone_session", "noise_session"])
def test_method2_sound_onset_within_0p1ms_of_truth(which: str, request: pytest.FixtureRequest):
    truth, root, _, p, skipped = request.getfixturevalue(which)
    df = _trials(root)
    tt = _truth_table(truth)
    idx = df["trial_index"].to_numpy()
    aud = tt["is_aud_only"][idx]
    if skipped is not None:
        aud &= idx != skipped
    assert aud.sum() >= 10
    got = df["stim_start_time"].to_numpy()[aud]
    err = np.abs(got - tt["sound_onset"][idx][aud])
    assert err.max() < TOL, err
    # offset = onset + waveform duration (len / 48 kHz)
    wave = so.sound_waveform_duration(p["dur"], p["sound_rate"])[idx][aud]
    np.testing.assert_allclose(df["stim_stop_time"].to_numpy()[aud] - got, wave, atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tone_session", "noise_session"])
def test_method2_opto_onset_within_0p1ms_of_truth_when_marker_line_missing(
    which: str, request: pytest.FixtureRequest
):
    truth, root, _, _, _ = request.getfixturevalue(which)
    df = _trials(root)
    tt = _truth_table(truth)
    idx = df["trial_index"].to_numpy()
    opto = np.isfinite(tt["opto_start"][idx])
    assert opto.sum() >= 5
    np.testing.assert_array_equal(np.isfinite(df["opto_start_time"].to_numpy()), opto)
    err = np.abs(df["opto_start_time"].to_numpy()[opto] - tt["opto_start"][idx][opto])
    assert err.max() < TOL, err
    # offset = waveform start + active_stop (last command sample > 0) == the marker line's fall
    stop_err = np.abs(tt["opto_stop"][idx][opto] - df["opto_stop_time"].to_numpy()[opto])
    assert stop_err.max() < TOL, stop_err


@pytest.mark.slow
def test_method2_all_zero_window_gives_method3_flip_time(tone_session):
    truth, root, _, _, skipped = tone_session
    df = _trials(root)
    tt = _truth_table(truth)
    row = df.filter(df["trial_index"] == skipped)
    assert row.height == 1
    flip = tt["flip"][tt["stim_frame"][skipped]]
    assert row["stim_start_time"][0] == flip
    with h5py.File(next((root / "behavior").glob("DynamicRouting1_*.hdf5")), "r") as f:
        dur = float(np.asarray(f["trialSoundDur"][()])[skipped])
    assert row["stim_stop_time"][0] == pytest.approx(flip + dur, abs=1e-12)


@pytest.mark.slow
def test_clipped_upload_falls_back_to_method3_exactly(tone_session):
    truth, _, clipped, p, _ = tone_session
    df = _trials(clipped)
    tt = _truth_table(truth)
    idx = df["trial_index"].to_numpy()
    aud = tt["is_aud_only"][idx]
    flip_at_stim = tt["flip"][tt["stim_frame"][idx]]
    np.testing.assert_array_equal(df["stim_start_time"].to_numpy()[aud], flip_at_stim[aud])
    np.testing.assert_allclose(
        df["stim_stop_time"].to_numpy()[aud], flip_at_stim[aud] + p["dur"][idx][aud], atol=1e-12
    )
    opto = np.isfinite(tt["opto_start"][idx])
    # DynamicRouting1 stores the opto onset frame relative to the stimulus frame (0 here)
    np.testing.assert_array_equal(df["opto_start_time"].to_numpy()[opto], flip_at_stim[opto])
    np.testing.assert_allclose(
        df["opto_stop_time"].to_numpy()[opto],
        flip_at_stim[opto] + p["opto_dur"][idx][opto],
        atol=1e-12,
    )


@pytest.mark.slow
def test_clipped_upload_reads_full_traces_from_compressed_zarr(zarr_session):
    truth, root, _, skipped = zarr_session
    df = _trials(root)
    tt = _truth_table(truth)
    idx = df["trial_index"].to_numpy()
    aud = tt["is_aud_only"][idx] & (idx != skipped)
    err = np.abs(df["stim_start_time"].to_numpy()[aud] - tt["sound_onset"][idx][aud])
    assert err.max() < TOL, err
    opto = np.isfinite(tt["opto_start"][idx])
    err = np.abs(df["opto_start_time"].to_numpy()[opto] - tt["opto_start"][idx][opto])
    assert err.max() < TOL, err


@pytest.mark.slow
@pytest.mark.parametrize("which", ["tone_session", "noise_session"])
def test_method2_sound_matches_bruteforce_np_correlate(which: str, request: pytest.FixtureRequest):
    """Onsets equal an independent np.correlate('valid') over the window on a few trials; the
    noise template is the task's own TaskUtils.makeSoundArray (independent of our rebuild)."""
    from DynamicRoutingTask.TaskUtils import makeSoundArray

    truth, root, _, p, skipped = request.getfixturevalue(which)
    from npc_frames.paths import RawSession

    rec = _nidaq.nidaq_stream(RawSession.from_path(str(root)))
    assert rec is not None
    tt = _truth_table(truth)
    trials_ = [i for i in np.flatnonzero(tt["is_aud_only"]) if i != skipped][:2]
    trig = tt["flip"][tt["stim_frame"][trials_]]
    got = _nidaq.sound_onsets(
        rec,
        trig,
        [p["type"][i] for i in trials_],
        p["freq"][trials_],
        p["dur"][trials_],
        p["vol"][trials_],
        p["am"][trials_],
        p["seed"][trials_],
        sample_rate=p["sound_rate"],
        hanning_dur=p["hanning"],
    )
    dat = np.fromfile(rec.data.filename, dtype="<i2").reshape(-1, 8)
    for k, i in enumerate(trials_):
        sr = p["sound_rate"]
        am = p["am"][i] if np.isfinite(p["am"][i]) else None
        f = p["freq"][i]
        freq = f[0] if p["type"][i] == "tone" else list(f)
        w = makeSoundArray(
            p["type"][i], sr, p["dur"][i], p["hanning"], p["vol"][i], freq, am, int(p["seed"][i])
        )
        t_new = np.arange(0, w.size / sr, 1 / rec.rate_on_sync)
        wdur = w.size / sr
        lo = int(np.ceil((trig[k] - 0.15 - rec.start_time) * rec.rate_on_sync))
        hi = int(np.floor((trig[k] + wdur + 0.15 - rec.start_time) * rec.rate_on_sync))
        window = dat[lo : hi + 1, 1].astype(float)
        if p["type"][i] == "tone":
            # envelope of the correlation with the analytic tone env·exp(i(2πft − π/2))
            env = _tone_envelope(t_new, wdur, p["hanning"])
            ph = 2 * np.pi * f[0] * t_new
            c = np.hypot(
                np.correlate(window, env * np.sin(ph), "valid"),
                np.correlate(window, -env * np.cos(ph), "valid"),
            )
        else:
            tpl = np.interp(t_new, np.arange(w.size) / sr, w)
            c = np.correlate(window, tpl, "valid")
        expected = rec.start_time + (lo + int(np.argmax(c))) / rec.rate_on_sync
        assert got[k] == pytest.approx(expected, abs=1e-9)
        assert abs(got[k] - tt["sound_onset"][i]) < TOL


def test_correlation_onsets_equal_bruteforce_np_correlate():
    rng = np.random.default_rng(0)
    data = rng.integers(-200, 200, (60_000, 8)).astype(np.int16)
    rec = _rec(data)
    templates = [rng.normal(size=3000), rng.normal(size=1500)]
    trig = np.array([10.3, 10.5, 11.0, 11.2])
    dur = np.array([0.1, 0.1, 0.05, 0.05])
    tid = np.array([0, 0, 1, 1])
    got = _nidaq.correlation_onsets(rec, 5, trig, dur, tid, templates)
    for i in range(4):
        lo = int(np.ceil((trig[i] - 0.15 - 10.0) * 30000))
        hi = int(np.floor((trig[i] + dur[i] + 0.15 - 10.0) * 30000))
        c = np.correlate(data[lo : hi + 1, 5].astype(float), templates[tid[i]], "valid")
        assert got[i] == pytest.approx(10.0 + (lo + np.argmax(c)) / 30000, abs=1e-12)


def test_zero_window_and_window_outside_samples_give_nan():
    rng = np.random.default_rng(1)
    data = np.zeros((60_000, 8), dtype=np.int16)
    data[30_000:, 1] = rng.integers(-100, 100, 30_000)
    rec = _rec(data)
    tpl = [np.ones(300)]
    trig = np.array([10.3, 11.5, 9.95, 11.95, np.nan])  # zeros, data, before start, past end, none
    got = _nidaq.correlation_onsets(rec, 1, trig, 0.01, np.zeros(5, np.int64), tpl)
    assert np.isnan(got[[0, 2, 3, 4]]).all()
    assert np.isfinite(got[1])


def test_tone_recovered_on_a_drifting_clock():
    # a 10 kHz tone with Hanning edges drawn on a clock whose rate differs from nominal
    sr, rate, start = 48000.0, 29999.9, 3.0
    w = _nidaq.sound_waveform(
        "tone", sample_rate=sr, dur=0.5, hanning_dur=0.005, volume=0.3, freq=(10000.0,)
    )
    assert w is not None
    onset = 5.123456
    k = np.arange(int(8 * rate))
    v = _analytic_tone(start + k / rate - onset, 10000.0, 0.3, w.size / sr, 0.005)
    v += np.random.default_rng(2).normal(0, NOISE_V, k.size)
    data = np.zeros((k.size, 8), np.int16)
    data[:, 1] = np.round(v / NIDAQ_BIT_VOLTS)
    rec = _rec(data, start, rate)
    got = _nidaq.sound_onsets(
        rec,
        [onset - 0.02],
        ["tone"],
        [[10000.0, np.nan]],
        [0.5],
        [0.3],
        [np.nan],
        None,
        sample_rate=sr,
        hanning_dur=0.005,
    )
    assert abs(got[0] - onset) < TOL


def test_noise_without_seed_uses_envelope_and_bad_rebuild_falls_back_to_envelope():
    sr, rate, start = 48000.0, 30000.0, 0.0
    w = sound_array(
        "AM noise",
        sample_rate=sr,
        dur=0.5,
        hanning_dur=0.005,
        vol=0.3,
        freq=(2000.0, 20000.0),
        am=70.0,
        seed=5,
    )
    onset = 1.01
    k = np.arange(int(3 * rate))
    v = np.interp(k / rate - onset, np.arange(w.size) / sr, w, left=0, right=0)
    v += np.random.default_rng(3).normal(0, NOISE_V, k.size)
    data = np.zeros((k.size, 8), np.int16)
    data[:, 1] = np.round(v / NIDAQ_BIT_VOLTS)
    rec = _rec(data, start, rate)
    args = (
        rec,
        [1.0, 1.0, 1.0],
        ["AM noise"] * 3,
        [[2000.0, 20000.0]] * 3,
        [0.5] * 3,
        [0.3] * 3,
        [70.0] * 3,
    )
    exact = _nidaq.sound_onsets(*args, [5, 999, 5], sample_rate=sr, hanning_dur=0.005)
    no_seed = _nidaq.sound_onsets(*args, None, sample_rate=sr, hanning_dur=0.005)
    assert abs(exact[0] - onset) < TOL  # rebuilt noise: sub-sample precision
    assert abs(exact[1] - onset) < 1e-3  # wrong seed: envelope lag (coarser) is used instead
    assert np.all(np.abs(no_seed - onset) < 1e-3)
    assert exact[1] == no_seed[1]


def test_opto_start_recovered_with_ramps_and_delay():
    rate_o, rate, start = 2000.0, 30000.0, 0.0
    w = opto_waveform(rate_o, 0.8, 0.5, delay=0.05, on_ramp=0.02, off_ramp=0.1)
    t0 = 1.2345
    k = np.arange(int(3 * rate))
    v = np.interp(k / rate - t0, np.arange(w.size) / rate_o, w, left=0, right=0)
    v += np.random.default_rng(4).normal(0, NOISE_V, k.size)
    data = np.zeros((k.size, 8), np.int16)
    data[:, 5] = np.round(v / NIDAQ_BIT_VOLTS)
    got = _nidaq.opto_starts(
        _rec(data, start, rate),
        [1.2],
        [0.8],
        [0.5],
        [0.05],
        [0.02],
        [0.1],
        [0.0],
        0.0,
        sample_rate=rate_o,
    )
    assert abs(got[0] - t0) < TOL


def test_channel_outside_the_stream_raises_parameter_error():
    rec = _rec(np.zeros((100, 8), np.int16))
    with pytest.raises(ParameterError) as exc:
        _nidaq.correlation_onsets(rec, 9, [10.0], [0.01], [0], [np.ones(3)])
    assert exc.value.field == "channel"
    assert "PXI-6133" in str(exc.value)


def test_per_trial_order_is_line_then_nidaq_then_flip():
    trigger = np.array([1.0, 2.0, 3.0, np.nan])
    rising = np.array([1.01, 10.0])  # only trial 0 has a pulse within MAX_ONSET_LATENCY
    nidaq = np.array([1.02, 2.03, np.nan, 4.0])
    nominal = np.full(4, 0.5)
    wave = np.full(4, 0.5 + 1 / 48000)
    onset, offset, from_line = so.sound_times(trigger, nominal, wave, rising, nidaq_onset=nidaq)
    np.testing.assert_array_equal(onset[:3], [1.01, 2.03, 3.0])
    np.testing.assert_allclose(offset[:3], [1.01 + wave[0], 2.03 + wave[1], 3.5])
    assert np.isnan(onset[3]) and np.isnan(offset[3])
    np.testing.assert_array_equal(from_line, [True, False, False, False])
    a_start, a_stop = np.full(4, 0.0), np.full(4, 1.0995)
    o_on, o_off, o_line = so.opto_times(
        trigger, a_start, a_stop, np.full(4, 1.0), None, None, nidaq_start=nidaq
    )
    np.testing.assert_array_equal(o_on[:3], [1.02, 2.03, 3.0])
    np.testing.assert_allclose(o_off[:3], [1.02 + 1.0995, 2.03 + 1.0995, 4.0])
    assert not o_line.any()
