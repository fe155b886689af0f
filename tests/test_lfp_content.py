"""LFP content against the generator's truth (npc_frames.synth.lfp): each channel's oscillation
(frequency, amplitude, phase) recovered from LFP computed from the raw band and from the
generator-written ``LFP_Subsampled`` asset, the common-mode hum removed by the median reference,
stimulus-evoked potentials at their latency and amplitude, and the asset read as written."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from npc_frames.paths import RawSession

# tolerances: the raw clip is 2 s of LFP with ~15 µV noise; the asset spans the whole session
RAW_FREQ_HZ, RAW_AMP_REL, RAW_PHASE_RAD = 0.15, 0.15, 0.2
ASSET_FREQ_HZ, ASSET_AMP_REL, ASSET_PHASE_RAD = 0.01, 0.02, 0.05
#: the 60 Hz common mode (30 µV in the raw band) left on out-of-brain channels after referencing
RESIDUAL_HUM_UV = 6.0
#: evoked potential: latency within one sample; amplitude within this fraction
EVOKED_AMP_REL = 0.1


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return nf.make_session(
        tmp_path_factory.mktemp("lfp_content"),
        seed=7,
        minutes=1.0,
        n_probes=2,
        units_per_probe=2,
        video=False,
        lfp_subsampled=True,
    )


def _raw(session: Any, *, asset: bool) -> RawSession:
    if asset:
        return RawSession.from_path(session.raw_path)
    empty = Path(session.raw_path).parent / "no_lfp_asset"
    empty.mkdir(exist_ok=True)
    return RawSession.from_path(session.raw_path, assets={"lfp_subsampled": str(empty)})


def _fit(x: np.ndarray, t: np.ndarray, f: float) -> tuple[float, float]:
    """Least-squares amplitude and phase of A·sin(2π f t + φ) (+ offset) in `x`."""
    w = 2 * np.pi * f * t
    basis = np.column_stack([np.sin(w), np.cos(w), np.ones_like(t)])
    c, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(c[0], c[1])), float(np.arctan2(c[1], c[0]))


def _peak_hz(x: np.ndarray, rate: float) -> np.ndarray:
    """Frequency of each column's spectral peak in 1–40 Hz (Hann window, 32× zero padding)."""
    x = (x - x.mean(axis=0)) * np.hanning(x.shape[0])[:, None]
    n = 32 * x.shape[0]
    spectrum = np.abs(np.fft.rfft(x, n, axis=0))
    freq = np.fft.rfftfreq(n, 1 / rate)
    band = (freq > 1) & (freq < 40)
    return freq[band][np.argmax(spectrum[band], axis=0)]


def _check_oscillations(
    lf: Any, model: Any, x: np.ndarray, t: np.ndarray, tol: tuple[float, float, float]
) -> int:
    freq = np.asarray(model["frequency_hz"])[lf.channels]
    amp = np.asarray(model["amplitude_uv"])[lf.channels]
    phase = np.asarray(model["phase_rad"])[lf.channels]
    on = np.flatnonzero(amp > 0)
    np.testing.assert_allclose(_peak_hz(x[:, on], lf.rate), freq[on], atol=tol[0])
    for j in on:  # 96 channels at most
        a, p = _fit(x[:, j], t, freq[j])
        assert abs(a / amp[j] - 1) < tol[1], (lf.probe, int(lf.channels[j]), a, amp[j])
        assert abs(np.angle(np.exp(1j * (p - phase[j])))) < tol[2], (lf.probe, int(lf.channels[j]))
    return int(on.size)


@pytest.mark.parametrize("letter", ["A", "B"])
def test_oscillation_per_depth_from_raw(session: Any, letter: str) -> None:
    model = session.lfp[letter]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lf = nf.lfp(_raw(session, asset=False), letter)
    assert lf.source.endswith("continuous.dat")
    x, t = lf.sel()
    k = round(0.3 * lf.rate)  # the recipe's own edge transients
    x, t = x[k:-k], t[k:-k]
    n = _check_oscillations(lf, model, x, t, (RAW_FREQ_HZ, RAW_AMP_REL, RAW_PHASE_RAD))
    structures = {model["structure"][c] for c in lf.channels}
    assert n > 50 and len(structures - {"out of brain"}) >= 2  # several structures per probe
    # the hum on every raw channel is gone from the channels above the brain after referencing
    off = [j for j, c in enumerate(lf.channels) if model["structure"][c] == "out of brain"]
    assert off
    assert max(_fit(x[:, j], t, model["common_hz"])[0] for j in off) < RESIDUAL_HUM_UV
    assert model["common_uv"] == 30.0


def test_asset_oscillations_and_agreement_with_raw(session: Any) -> None:
    truth = session.assets["lfp_subsampled"]
    assert sorted(truth["probes"]) == ["A", "B"]
    raw = _raw(session, asset=True)
    for letter in "AB":
        lf = nf.lfp(raw, letter)
        assert lf.source == truth["probes"][letter]["zarr"]
        x, t = lf.sel(time=slice(lf.start_time + 10, lf.start_time + 70))
        _check_oscillations(
            lf,
            session.lfp[letter],
            x,
            t,
            (ASSET_FREQ_HZ, ASSET_AMP_REL, ASSET_PHASE_RAD),
        )


def test_asset_reads_as_written(session: Any) -> None:
    import zarr

    raw = _raw(session, asset=True)
    for letter, probe in session.assets["lfp_subsampled"]["probes"].items():
        lf = nf.lfp(raw, letter)
        group = zarr.open_group(probe["zarr"], mode="r")
        stored = group["traces_seg0"][:]
        np.testing.assert_array_equal(lf.channels, probe["channels"])
        assert lf.num_samples == probe["num_samples"] == stored.shape[0]
        # the clock is estimated from barcodes: rate to 1e-5, times to 0.1 ms
        assert lf.rate == pytest.approx(probe["rate"], rel=1e-5)
        assert lf.start_time == pytest.approx(probe["start_time"], abs=1e-4)
        got, times = lf.sel(time=slice(lf.start_time + 5.0, lf.start_time + 9.0))
        i0 = round(5.0 * lf.rate)
        np.testing.assert_array_equal(
            got, stored[i0 : i0 + got.shape[0]].astype(np.float32) * np.float32(lf.uv_per_unit)
        )
        np.testing.assert_allclose(
            times, probe["start_time"] + (i0 + np.arange(len(times))) / probe["rate"], atol=1e-4
        )


def test_evoked_potentials_at_known_latency_and_amplitude(session: Any) -> None:
    raw = _raw(session, asset=True)
    model = session.lfp["B"]
    onsets = np.asarray(model["onsets"])
    assert onsets.size >= 20
    lf = nf.lfp(raw, "B")
    start, stop = -0.1, 0.2
    out = nf.aligned_lfp(lf, "B", pl.DataFrame({"t": onsets}), event="t", start=start, stop=stop)
    lag = start + np.arange(out.shape[2]) / lf.rate
    structure = np.asarray(model["structure"], dtype=object)[lf.channels]
    checked = 0
    for name in ("VISp", "LP"):
        cols = np.flatnonzero(structure == name)
        latency = np.asarray(model["evoked_latency_s"])[lf.channels][cols]
        amplitude = np.asarray(model["evoked_amplitude_uv"])[lf.channels][cols]
        assert cols.size > 5 and np.ptp(latency) == 0 and np.ptp(amplitude) == 0
        # mean over trials and over the structure's channels (their oscillation phases differ)
        wave = np.nanmean(out[:, cols, :], axis=(0, 1))
        baseline = wave[lag < 0].mean()
        trough = int(np.argmin(wave))
        assert abs(lag[trough] - latency[0]) <= 1 / lf.rate, (name, lag[trough])
        assert abs((baseline - wave[trough]) / amplitude[0] - 1) < EVOKED_AMP_REL, name
        checked += 1
    # channels of structures without an evoked potential stay flat on average
    flat = np.flatnonzero(~np.isin(structure, ["VISp", "LP"]))
    if flat.size:
        w = np.nanmean(out[:, flat, :], axis=(0, 1))
        assert np.ptp(w) < 0.2 * min(float(np.max(model["evoked_amplitude_uv"])), 90.0)
    assert checked == 2
