"""NI-DAQ recordings with known tone and opto waveforms, and a sync file with one line removed, for
the fallback (NI-DAQ) timing tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from npc_frames.components import _nidaq

NIDAQ_BIT_VOLTS = 0.00030517578125  # V per bit of the synthetic NI-DAQ (±10 V over int16)


NOISE_V = 0.005  # ~5 mV rms, as the generator's clipped NI-DAQ noise


# --------------------------------------------------------------------------- fixtures
def _rewrite_sync_without_line(sync_path: Path, bit: int) -> None:
    """Drop every event of `bit` from a sync file (rows that only toggled that bit vanish)."""
    with h5py.File(sync_path, "r+") as f:
        data = np.asarray(f["data"][()])
        state = data[:, -1] & ~np.uint32(1 << bit)
        keep = np.concatenate([[True], state[1:] != state[:-1]])
        new = data[keep].copy()
        new[:, -1] = state[keep]
        attrs = dict(f["data"].attrs)
        del f["data"]
        ds = f.create_dataset("data", data=new)
        for k, v in attrs.items():
            ds.attrs[k] = v


def _tone_events(p: dict[str, Any], i: int) -> np.ndarray:
    """Return (freq, vol, dur of the 48 kHz array, hanning) of a tone trial, drawn analytically."""
    n = np.arange(0, p["dur"][i], 1 / p["sound_rate"]).size
    return np.array([p["freq"][i][0], p["vol"][i], n / p["sound_rate"], p["hanning"]])


def _tone_envelope(t: np.ndarray, dur: float, hanning: float) -> np.ndarray:
    """Return the task's Hanning-edged tone envelope (48 kHz points, linear between) at t."""
    h = int(48000 * hanning)
    n = round(dur * 48000)
    env = np.ones(n)
    win = np.hanning(2 * h + 1)
    env[:h] = win[:h]
    env[-h:] = win[h + 1 :]
    return np.interp(t, np.arange(n) / 48000, env, left=0.0, right=0.0)


def _analytic_tone(t: np.ndarray, freq: float, vol: float, dur: float, hanning: float):
    """Return vol·sin(2π f t)·Hanning-edged envelope at times t (s from onset), 0 outside."""
    return vol * np.sin(2 * np.pi * freq * t) * _tone_envelope(t, dur, hanning)


def _write_nidaq(root: Path, stream: Any, events: list[tuple[int, float, np.ndarray, float]]):
    """Replace the NI-DAQ continuous.dat (+ sample_numbers.npy) of every record node by a sparse
    full-length recording: each event (channel, sync time of waveform sample 0, waveform, rate)
    is drawn on its channel with noise in a ±0.4 s margin; everything else stays exactly 0."""
    rate, start = float(stream.rate_on_sync), float(stream.start_time_on_sync)
    n, n_ch = int(stream.num_samples), int(stream.num_channels)
    rng = np.random.default_rng(7)
    for dat in root.glob(
        f"ecephys/ecephys_clipped/Record Node */experiment1/recording1/continuous/{stream.folder_name}/continuous.dat"
    ):
        first = int(np.load(dat.parent / "sample_numbers.npy", mmap_mode="r")[0])
        dat.unlink()
        with open(dat, "wb") as fh:
            fh.truncate(n * n_ch * 2)
        mm = np.memmap(dat, dtype="<i2", mode="r+", shape=(n, n_ch))
        for ch, t0, wave, wrate in events:  # tens of events per test session
            span = wave[2] if wrate < 0 else wave.size / wrate
            k0 = int(np.floor((t0 - 0.4 - start) * rate))
            k1 = int(np.ceil((t0 + span + 0.4 - start) * rate))
            k = np.arange(k0, k1)
            t_rel = start + k / rate - t0
            if wrate < 0:  # analytic tone (see _tone_events)
                v = _analytic_tone(t_rel, *wave)
            else:
                v = np.interp(t_rel, np.arange(wave.size) / wrate, wave, left=0.0, right=0.0)
            v = v + rng.normal(0.0, NOISE_V, k.size)
            mm[k, ch] = np.clip(np.round(v / NIDAQ_BIT_VOLTS), -32768, 32767).astype(np.int16)
        mm.flush()
        del mm
        np.save(dat.parent / "sample_numbers.npy", np.arange(first, first + n, dtype=np.int64))


# -------------------------------------------------------------------- pure-function rules
def _rec(data: np.ndarray, start: float = 10.0, rate: float = 30000.0) -> _nidaq.NidaqRecording:
    return _nidaq.NidaqRecording("NI-DAQmx-105.PXI-6133", data, start, rate)


def stim_params(stim_path: Path, n: int) -> dict[str, Any]:
    """Return the first `n` trials' sound and opto parameters as the DynamicRouting1 file stores
    them (what the speaker and laser copies on the NI-DAQ are drawn from)."""
    with h5py.File(stim_path, "r") as f:

        def arr(key: str) -> np.ndarray:
            return np.asarray(f[key][()])

        types = [t.decode() if isinstance(t, bytes) else str(t) for t in arr("trialSoundType")]
        return {
            "type": types[:n],
            "freq": arr("trialSoundFreq")[:n].astype(float),
            "dur": arr("trialSoundDur")[:n].astype(float),
            "vol": arr("trialSoundVolume")[:n].astype(float),
            "am": arr("trialSoundAM")[:n].astype(float),
            "seed": arr("trialSoundSeed")[:n],
            "hanning": float(np.asarray(f["soundHanningDur"][()])),
            "sound_rate": float(np.asarray(f["soundSampleRate"][()])),
            "opto_v": arr("trialOptoVoltage")[:n].reshape(n, -1)[:, 0].astype(float),
            "opto_dur": arr("trialOptoDur")[:n].reshape(n, -1)[:, 0].astype(float),
            "opto_off_ramp": arr("trialOptoOffRamp")[:n].reshape(n, -1)[:, 0].astype(float),
            "opto_rate": float(np.asarray(f["optoSampleRate"][()])),
        }


def write_nidaq_from_truth(
    truth: Any, *, skip_sound: int | None = None
) -> tuple[dict[str, Any], int | None]:
    """Give a synthetic session a full-length NI-DAQ recording: the speaker waveform at every truth
    sound onset (channel 1) and the laser command at every truth opto onset (channel 5) of its
    DynamicRouting1 trials, built from the stim file's own per-trial parameters.

    `skip_sound` leaves out the sound of that position among the sound trials (an all-zero
    window). Returns (the stim parameters, the skipped trial index or None).
    """
    from npc_frames.synth.task_base import active_duration, opto_waveform, sound_array

    root = Path(truth.raw_path)
    dr = truth.script("DynamicRouting1")["truth"]["trials"]
    n = len(dr["stim_name"])
    p = stim_params(next((root / "behavior").glob("DynamicRouting1_*.hdf5")), n)
    sound_on = np.asarray(dr["sound_onset_time"], dtype=float)
    opto_on = np.asarray(dr["opto_start_time"], dtype=float)
    events: list[tuple[int, float, np.ndarray, float]] = []
    sound_trials = np.flatnonzero(np.isfinite(sound_on))
    skipped = int(sound_trials[skip_sound]) if skip_sound is not None else None
    for i in sound_trials:
        if i == skipped:
            continue
        if p["type"][i] == "tone":
            # a speaker copy is a smooth tone (not a linear interpolation of 48 kHz samples):
            # drawn as sin(2π f t) × the task's envelope, with the task's sample count
            events.append((_nidaq.SOUND_CHANNEL, float(sound_on[i]), _tone_events(p, i), -1.0))
            continue
        w = sound_array(
            p["type"][i],
            sample_rate=p["sound_rate"],
            dur=p["dur"][i],
            hanning_dur=p["hanning"],
            vol=p["vol"][i],
            freq=tuple(x for x in p["freq"][i] if np.isfinite(x)),
            am=p["am"][i],
            seed=int(p["seed"][i]),
        )
        events.append((_nidaq.SOUND_CHANNEL, float(sound_on[i]), np.asarray(w), p["sound_rate"]))
    for i in np.flatnonzero(np.isfinite(opto_on)):
        w = opto_waveform(
            p["opto_rate"], p["opto_v"][i], p["opto_dur"][i], off_ramp=p["opto_off_ramp"][i]
        )
        a_start, _ = active_duration(w, p["opto_rate"])
        events.append((_nidaq.OPTO_CHANNEL, float(opto_on[i]) - a_start, w, p["opto_rate"]))
    stream = next(s for s in truth.ephys.streams if s.kind == "nidaq")
    _write_nidaq(root, stream, events)
    return p, skipped
