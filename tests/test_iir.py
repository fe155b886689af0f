"""npc_frames._iir (the numpy running-speed filter) against scipy.signal, its reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from npc_frames import _iir
from npc_frames.components.behavior import filter_running_speed
from npc_frames.errors import ParameterError


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize(
    ("order", "cutoff", "fs"), [(3, 4.0, 60.0), (1, 4.0, 60.0), (2, 10.0, 60.0), (6, 1.0, 60.0)]
)
def test_design_and_initial_state_equal_scipy(order: int, cutoff: float, fs: float) -> None:
    b, a = _iir.butter_lowpass(order, cutoff, fs)
    ref_b, ref_a = scipy.signal.butter(order, cutoff, btype="low", fs=fs)
    np.testing.assert_allclose(b, ref_b, rtol=1e-13, atol=0)
    np.testing.assert_allclose(a, ref_a, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        _iir.lfilter_zi(b, a), scipy.signal.lfilter_zi(ref_b, ref_a), rtol=1e-12, atol=1e-15
    )


def test_lfilter_equals_scipy_across_block_boundaries() -> None:
    b, a = scipy.signal.butter(3, 4, fs=60)
    rng = np.random.default_rng(3)
    zi = rng.normal(0, 5, 3)
    for n in (1, 2, _iir.BLOCK - 1, _iir.BLOCK, _iir.BLOCK + 1, 5 * _iir.BLOCK + 7, 10_000):
        x = rng.normal(0, 1, n)
        ref, _ = scipy.signal.lfilter(b, a, x, zi=zi)
        assert _rel(_iir.lfilter(b, a, x, zi), ref) < 1e-12, n


def test_filtfilt_equals_scipy_on_random_inputs_of_every_short_length() -> None:
    b, a = scipy.signal.butter(3, 4, fs=60)
    rng = np.random.default_rng(0)
    padlen = 3 * max(len(a), len(b))
    for n in [*range(padlen + 1, 300), 4095, 4096, 4097, 100_003]:
        x = rng.normal(rng.normal(0, 20), 10, n)
        assert _rel(_iir.filtfilt(b, a, x), scipy.signal.filtfilt(b, a, x)) < 1e-12, n
    with pytest.raises(ParameterError, match="too short"):
        _iir.filtfilt(b, a, np.ones(padlen))


def test_running_speed_filter_equals_scipy_on_a_running_trace() -> None:
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


def test_bad_design_raises() -> None:
    with pytest.raises(ParameterError, match="cutoff"):
        _iir.butter_lowpass(3, 31.0, 60.0)
