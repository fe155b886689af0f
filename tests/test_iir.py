"""npc_frames._iir (the numpy zero-phase Butterworth filters) against scipy.signal, their
reference: the running-speed low-pass and the noise-sound band-pass."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.signal

from npc_frames import _iir
from npc_frames.components._nidaq import sound_waveform
from npc_frames.components.behavior import filter_running_speed
from npc_frames.errors import ParameterError


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(
    ("order", "cutoff", "fs", "btype"),
    [
        (3, 4.0, 60.0, "low"),
        (1, 4.0, 60.0, "low"),
        (6, 1.0, 60.0, "low"),
        (10, (2000.0, 20000.0), 48000.0, "bandpass"),
        (10, (4000.0, 16000.0), 48000.0, "bandpass"),
        (4, (5.0, 12.0), 60.0, "bandpass"),
    ],
)
def test_design_equals_scipy(
    order: int, cutoff: float | tuple[float, float], fs: float, btype: str
) -> None:
    zpk = _iir.butter(order, cutoff, fs, btype)
    z, p, k = scipy.signal.butter(order, cutoff, btype=btype, fs=fs, output="zpk")
    np.testing.assert_allclose(np.sort_complex(zpk.z), np.sort_complex(z), rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.sort_complex(zpk.p), np.sort_complex(p), rtol=0, atol=1e-13)
    assert zpk.k == pytest.approx(k, rel=1e-13)
    # the impulse response against the (stable) second-order-section recursion
    sos = scipy.signal.zpk2sos(z, p, k)
    h = _iir.impulse_response(zpk)
    delta = np.zeros(h.size)
    delta[0] = 1.0
    assert _rel(h, scipy.signal.sosfilt(sos, delta)) < 1e-12
    # the gain at 0 Hz is the sum of the whole response (1 for a low-pass, 0 for a band-pass)
    assert _iir.dc_gain(zpk) == pytest.approx(h.sum(), rel=1e-12, abs=1e-12 * np.abs(h).max())
    assert _iir.dc_gain(zpk) == pytest.approx(1.0 if btype == "low" else 0.0, abs=1e-12)


def test_lowpass_filtfilt_equals_scipy_at_every_short_length() -> None:
    b, a = scipy.signal.butter(3, 4, fs=60)
    zpk = _iir.butter(3, 4.0, 60.0)
    rng = np.random.default_rng(0)
    padlen = 3 * max(len(a), len(b))
    for n in [*range(padlen + 1, 400), 4095, 4096, 4097, 100_003]:
        x = rng.normal(rng.normal(0, 20), 10, n)
        assert _rel(_iir.filtfilt(zpk, x), scipy.signal.filtfilt(b, a, x)) < 1e-12, n
    with pytest.raises(ParameterError, match="too short"):
        _iir.filtfilt(zpk, np.ones(padlen))


def test_running_speed_filter_equals_scipy_on_a_2h_running_trace() -> None:
    # 2 h at 60 Hz: bouts of running (0-40 cm/s) and rest, encoder quantization, a NaN first read
    rng = np.random.default_rng(7)
    n = 2 * 3600 * 60
    bouts = np.repeat(rng.random(n // 600 + 1) < 0.5, 600)[:n]
    speed = np.where(bouts, 25 + 10 * np.sin(np.arange(n) / 90), 0.0) + rng.normal(0, 2, n)
    speed = np.round(speed / 0.2154) * 0.2154
    speed[0] = np.nan
    b, a = scipy.signal.butter(3, 4, btype="low", fs=60)
    ref = scipy.signal.filtfilt(b, a, np.nan_to_num(speed))
    assert _rel(filter_running_speed(speed), ref) < 1e-12
    short = speed[1:14]  # just over the padding
    assert _rel(filter_running_speed(short), scipy.signal.filtfilt(b, a, short)) < 1e-12
    np.testing.assert_array_equal(filter_running_speed(speed[1:13]), speed[1:13])


@pytest.mark.parametrize("band", [(2000.0, 20000.0), (4000.0, 16000.0), (10000.0, 15000.0)])
def test_noise_bandpass_equals_scipy(band: tuple[float, float]) -> None:
    fs = 48000.0
    x = 2 * np.random.RandomState(3).random_sample(24000) - 1
    got = _iir.filtfilt(_iir.butter(10, band, fs, "bandpass"), x)
    # the second-order-section form, same padding and initial conditions: equal to rounding
    sos = scipy.signal.butter(10, band, btype="bandpass", fs=fs, output="sos")
    assert _rel(got, scipy.signal.sosfiltfilt(sos, x, padlen=63)) < 1e-12
    # the task's own (b, a) recursion, which loses ~1e-10 to the polynomials' conditioning
    b, a = scipy.signal.butter(10, band, btype="bandpass", fs=fs)
    assert _rel(got, scipy.signal.filtfilt(b, a, x)) < 1e-8


def test_sound_waveform_noise_equals_the_scipy_recipe() -> None:
    kw = {"sample_rate": 48000.0, "dur": 0.5, "hanning_dur": 0.005, "volume": 0.08}
    for am, seed in ((12.0, 91), (np.nan, 4)):
        got = sound_waveform("AM noise", freq=(2000.0, 20000.0), am=am, seed=seed, **kw)
        assert got is not None
        t = np.arange(0.0, 0.5, 1 / 48000.0)
        x = 2 * np.random.RandomState(seed).random_sample(t.size) - 1
        b, a = scipy.signal.butter(10, [2000.0, 20000.0], btype="bandpass", fs=48000.0)
        ref = scipy.signal.filtfilt(b, a, x)
        env = (
            (np.sin(1.5 * np.pi + 2 * np.pi * am * t) + 1) / 2
            if np.isfinite(am)
            else np.ones(t.size)
        )
        if not np.isfinite(am):
            w = np.hanning(2 * 240 + 1)
            env[:240] *= w[:240]
            env[-240:] *= w[241:]
        ref = ref * env
        ref = ref / np.abs(ref).max() * 0.08
        assert _rel(got, ref) < 1e-8


def test_fast_len_equals_scipy_next_fast_len() -> None:
    for n in [*range(1, 3000), 123_457, 1_000_001]:
        assert _iir.fast_len(n) == scipy.fft.next_fast_len(n, real=True), n


def test_bad_designs_and_unstable_filters_raise() -> None:
    with pytest.raises(ParameterError, match="cutoff"):
        _iir.butter(3, 31.0, 60.0)
    with pytest.raises(ParameterError, match="cutoff"):
        _iir.butter(3, (20.0, 10.0), 60.0, "bandpass")
    unstable = _iir.Zpk(np.zeros(0, complex), np.array([1.01 + 0j]), 1.0)
    with pytest.raises(ParameterError, match="stable"):
        _iir.impulse_response(unstable)


def test_poles_at_zero_and_repeated_poles_are_exact() -> None:
    # a first-order low-pass at fs / 4 has its pole at ~0; a repeated pole has no simple
    # partial fractions: the frequency-sampled response handles both
    x = np.random.default_rng(5).normal(0, 1, 500)
    b, a = scipy.signal.butter(1, 15.0, fs=60.0)
    assert (
        _rel(_iir.filtfilt(_iir.butter(1, 15.0, 60.0), x), scipy.signal.filtfilt(b, a, x)) < 1e-12
    )
    repeated = _iir.Zpk(np.array([-1.0 + 0j]), np.array([0.5 + 0j, 0.5 + 0j]), 0.25)
    rb, ra = scipy.signal.zpk2tf(repeated.z, repeated.p, repeated.k)
    h = _iir.impulse_response(repeated)
    delta = np.zeros(h.size)
    delta[0] = 1.0
    assert _rel(h, scipy.signal.lfilter(rb, ra, delta)) < 1e-12
