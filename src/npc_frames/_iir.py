"""Zero-phase Butterworth filtering in numpy: the running-speed low-pass and the band-pass that
rebuilds a task's noise sounds.

scipy.signal costs ~0.7 s of import CPU in every process that converts a session, for a
3rd-order low-pass of a 60 Hz trace and a 10th-order band-pass of a few noise bursts; this
module computes the same results with numpy only.

* :func:`butter` designs the filter as ``scipy.signal.butter(N, Wn, btype, fs=fs,
  output="zpk")`` does: analog prototype poles, pre-warping, low-pass or band-pass transform,
  bilinear transform. Filters stay in zeros/poles/gain form: the ``(b, a)`` polynomials of a
  10th-order band-pass are too ill-conditioned to compute with.
* :func:`impulse_response` samples the frequency response (a product of one factor per zero
  and pole, each well scaled) at N points and inverse-FFTs it, with N beyond the length after
  which the response is below 1e-18 of its scale, so the aliased tail is negligible.
* :func:`filtfilt` runs the filter forward and backward with the conventions of
  ``scipy.signal.filtfilt(b, a, x)`` (method "pad"): odd extension by ``3 * (poles + 1)``
  samples at each end, and the initial state ``lfilter_zi`` scaled by the first sample of each
  pass. That state is the steady state of the input having been that first sample forever, so
  each pass is exactly ``y[n] = (h * u)[n] + u[0] · Σ_{j>n} h[j]`` — an FFT convolution plus a
  known transient, without a per-sample loop. It equals scipy's result up to rounding (scipy's
  own ``(b, a)`` recursion loses ~1e-10 relative on the band-pass; this one is as accurate as
  ``sosfiltfilt``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from npc_frames.errors import ParameterError

logger = logging.getLogger(__name__)

__all__ = ["Zpk", "butter", "dc_gain", "fast_len", "filtfilt", "impulse_response"]

FloatArray = npt.NDArray[np.float64]
ComplexArray = npt.NDArray[np.complex128]

#: the impulse response is cut where the slowest pole's term has decayed by this factor: far
#: below float64 rounding of the response itself
TRUNCATION = 1e-18


class Zpk(NamedTuple):
    """A digital filter as zeros, poles and gain: ``k · Π(1 − z_j/z) / Π(1 − p_i/z)``."""

    z: ComplexArray
    p: ComplexArray
    k: float


def fast_len(n: int) -> int:
    """Return the smallest 5-smooth integer (2^a 3^b 5^c) >= `n`: a fast FFT length."""
    n = max(int(n), 1)
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # the smallest power of two that brings p35 to >= n
            best = min(best, p35 << max(0, (-(-n // p35) - 1).bit_length()))
            p35 *= 3
        p5 *= 5
    return best


def butter(order: int, cutoff: float | tuple[float, float], fs: float, btype: str = "low") -> Zpk:
    """Return a digital Butterworth filter of `order` (zeros, poles, gain): a low-pass at
    `cutoff` Hz, or (``btype="bandpass"``) a band-pass between ``cutoff[0]`` and ``cutoff[1]``.

    Same design, step by step, as ``scipy.signal.butter(order, cutoff, btype=btype, fs=fs,
    output="zpk")``.
    """
    edges = np.atleast_1d(np.asarray(cutoff, dtype=np.float64))
    n_edges = {"low": 1, "bandpass": 2}.get(btype)
    if (
        n_edges is None
        or edges.size != n_edges
        or not isinstance(order, int)
        or order < 1
        or not np.all((edges > 0) & (edges < fs / 2))
        or np.any(np.diff(edges) <= 0)
    ):
        raise ParameterError(
            f"cannot design a Butterworth {btype} of order {order} at {edges.tolist()} Hz, fs={fs}",
            field="order/cutoff/btype",
            expected='order >= 1; btype "low" (one cutoff) or "bandpass" (two increasing); '
            "0 < cutoff < fs / 2",
        )
    # analog prototype: poles on the left half of the unit circle, no zeros, gain 1
    m = np.arange(-order + 1, order, 2)
    p = -np.exp(1j * np.pi * m / (2 * order))
    z = np.zeros(0, dtype=np.complex128)
    k = 1.0
    # normalize to Nyquist, pre-warp for the bilinear transform at fs = 2
    warped = 2 * 2.0 * np.tan(np.pi * (2 * edges / fs) / 2.0)
    if btype == "low":
        p = warped[0] * p
        k = k * warped[0] ** order
    else:
        bw = warped[1] - warped[0]
        wo = np.sqrt(warped[0] * warped[1])
        p_lp = p * bw / 2
        root = np.sqrt(p_lp**2 - wo**2)
        p = np.concatenate((p_lp + root, p_lp - root))
        z = np.zeros(order, dtype=np.complex128)  # zeros at infinity of the low-pass go to 0
        k = k * bw**order
    # bilinear transform at fs = 2: the remaining zeros at infinity go to -1
    fs2 = 4.0
    k_z = float(k * np.real(np.prod(fs2 - z) / np.prod(fs2 - p)))
    z_z = np.concatenate(((fs2 + z) / (fs2 - z), -np.ones(p.size - z.size)))
    p_z = (fs2 + p) / (fs2 - p)
    return Zpk(z_z.astype(np.complex128), p_z.astype(np.complex128), k_z)


def _check_stable(zpk: Zpk) -> float:
    """Return the largest |pole|; raise ParameterError unless every pole is inside the unit
    circle and there are no more zeros than poles."""
    p = np.asarray(zpk.p)
    radius = float(np.abs(p).max()) if p.size else 0.0
    if p.size == 0 or len(zpk.z) > p.size or not radius < 1:
        raise ParameterError(
            f"a filter with {len(zpk.z)} zeros and {p.size} poles, largest |pole| {radius}",
            field="zpk",
            expected="a stable filter (every |pole| < 1) with no more zeros than poles",
        )
    return radius


def _decay_length(zpk: Zpk, radius: float) -> int:
    """Return the samples after which the impulse response is below :data:`TRUNCATION` of its
    scale: the numerator's reach plus the slowest pole's decay."""
    decay = int(np.ceil(np.log(TRUNCATION) / np.log(radius))) if radius > 0 else 0
    return len(zpk.z) + 1 + decay


def impulse_response(zpk: Zpk, length: int | None = None) -> FloatArray:
    """Return the first `length` samples of the impulse response of a stable filter (default: up
    to where it is below :data:`TRUNCATION` of its scale).

    The frequency response ``k · Π(1 − z_j e^{-iω}) / Π(1 − p_i e^{-iω})`` is sampled at N ≥ that
    decay length and inverse-FFT'd: products of well-scaled factors, exact up to the aliased
    tail (< :data:`TRUNCATION`). Raises ParameterError for a filter with a pole on or outside
    the unit circle, or more zeros than poles.
    """
    radius = _check_stable(zpk)
    decay = _decay_length(zpk, radius)
    want = decay if length is None else int(length)
    n = fast_len(max(decay, want, 2))
    inv = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)  # e^{-iω} at the rfft frequencies
    num = np.prod(1 - np.asarray(zpk.z)[None, :] * inv[:, None], axis=1)
    den = np.prod(1 - np.asarray(zpk.p)[None, :] * inv[:, None], axis=1)
    h = np.fft.irfft(float(zpk.k) * num / den, n)
    out = np.zeros(want)
    m = min(want, n)
    out[:m] = h[:m]  # beyond n (only when more is asked than the decay) the response is ~0
    return out


def dc_gain(zpk: Zpk) -> float:
    """Return the filter's gain at 0 Hz, ``k · Π(1 − z_j) / Π(1 − p_i)``."""
    return float(np.real(zpk.k * np.prod(1 - zpk.z) / np.prod(1 - zpk.p)))


def _steady_pass(h: FloatArray, tail: FloatArray, u: FloatArray) -> FloatArray:
    """Return `u` filtered by `h` from the steady state of input ``u[0]`` forever before."""
    nfft = fast_len(u.size + h.size - 1)
    y = np.fft.irfft(np.fft.rfft(u, nfft) * np.fft.rfft(h, nfft), nfft)[: u.size]
    m = min(u.size, tail.size)
    y[:m] += u[0] * tail[:m]  # beyond tail's end the remaining response is below rounding
    return np.asarray(y, dtype=np.float64)


def filtfilt(zpk: Zpk, x: npt.ArrayLike) -> FloatArray:
    """Return `x` filtered forward and backward by `zpk` (zero phase).

    Same as ``scipy.signal.filtfilt(b, a, x)`` for 1-d `x` and the filter's ``(b, a)``: odd
    extension by ``3 * (poles + 1)`` samples, ``lfilter_zi`` initial conditions (module doc).
    Raises ParameterError when `x` is not longer than that padding.
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    edge = 3 * (len(zpk.p) + 1)
    if xs.size <= edge:
        raise ParameterError(
            f"a signal of {xs.size} samples is too short to filter forward and backward",
            field="x",
            expected=f"more than {edge} samples",
        )
    radius = _check_stable(zpk)
    # h beyond the extended signal's length never reaches its output: cut there at the latest
    n_ext = xs.size + 2 * edge
    h = impulse_response(zpk, max(1, min(_decay_length(zpk, radius), n_ext)))
    tail = dc_gain(zpk) - np.cumsum(h)  # Σ_{j>n} h[j]: the response still due to u[0] forever
    ext = np.concatenate((2 * xs[0] - xs[edge:0:-1], xs, 2 * xs[-1] - xs[-2 : -(edge + 2) : -1]))
    y = _steady_pass(h, tail, ext)
    y = _steady_pass(h, tail, y[::-1])[::-1]
    return np.asarray(y[edge:-edge], dtype=np.float64)
