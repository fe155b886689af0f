"""Sound and opto onsets from the NI-DAQ analog copy recorded by Open Ephys ("method 2").

docs/formats.md ("Sound and opto onset timing") states when method 2 applies and the facts used
here. The PXI-6133 NI-DAQ card records the speaker signal on channel 1 and the laser command on
channel 5 (columns of the ``(samples, channels)`` array, i.e. ``AI1`` / ``AI5``). Its stream is put
on the sync clock by barcodes (:mod:`npc_frames.alignment`). Per trial, the window
``[trigger − 0.15 s, trigger + duration + 0.15 s]`` of the channel is cross-correlated ('valid'
mode, FFT-based, batched over the trials that share a template) with the expected waveform,
linearly resampled to the stream's rate on sync; the lag is the window time at the maximum.
:func:`sound_onsets` returns the sound onset (= trigger + lag); :func:`opto_starts` the time at which
the command waveform starts (trigger + lag), to which the caller adds the active window.

Decisions
---------
* **Tones (deviation: envelope of the correlation).** A tone is regenerated exactly (sine at
  ``trialSoundFreq[i][0]`` with Hanning edges or AM envelope), evaluated directly at the NI-DAQ
  sample times (only its smooth envelope is linearly resampled). The raw correlation of a pure
  tone has near-equal maxima one carrier period apart (they differ only through the tapered
  edges), and which one wins depends on the sub-sample phase of the onset: on a stream whose rate
  on sync is 29 999.9 Hz its argmax lands up to ~0.5 ms (several 10 kHz periods) from the onset.
  We therefore take the maximum of the correlation's *envelope*, ``|Σ x(t + j)·conj(a(t))|``
  with ``a`` the analytic tone (two real FFT correlations), which peaks within one NI-DAQ sample
  of the onset. Saved ``trialSoundArray`` values are not read (the task leaves them empty in
  every file we know, and each would be 24 000 floats per trial).
* **Noise (deviation from a pure envelope method).** A noise burst's samples come from the task's
  RNG, seeded per trial with ``trialSoundSeed``; we rebuild it with the task's recipe (uniform noise
  from ``RandomState(seed)``, 10th-order Butterworth band-pass, zero-phase ``filtfilt``) and
  correlate raw waveforms — this recovers the onset to a fraction of a NI-DAQ sample. Because the
  rebuilt samples only match when the task's RNG and filter behave exactly as assumed, the onset is
  cross-checked against the correlation of amplitude envelopes (``|hilbert(window)|`` against the
  deterministic AM / Hanning envelope): if the two disagree by more than
  :data:`ENVELOPE_AGREEMENT` s (regeneration failed) the envelope lag is used, and noise trials
  without a seed use the envelope lag only. Envelope lags are less precise (~0.1-0.2 ms for 12 Hz
  AM noise, whose envelope has no sharp edge) — hence the raw correlation first.
* The opto window's duration is the whole rebuilt command (delay + ramps + duration), which
  contains the nominal ``trialOptoDur``.
* Samples come from ``continuous.dat`` when it holds the whole recording, else from the stream's
  ``ecephys_compressed/<experiment>_<Record Node>#<stream>.zarr`` (``traces_seg0``, read window
  by window) when it exists and opens with the installed codecs, else from the clipped file. zarr
  itself is a core dependency: a broken install raises rather than silently disabling method 2.
* A window that is all zeros, or that is not entirely inside the recorded samples (clipped uploads
  keep only a fraction of a second of ``continuous.dat``), or is shorter than its template, gives
  NaN, so that the caller falls back to method 3 for that trial.
* An NI-DAQ stream that is absent, unreadable or has no clock on sync makes :func:`nidaq_stream`
  return None (method 2 is then unavailable for the whole session) rather than raise: the trials
  table must not be lost because the analog copy is. Components read the stream through
  :class:`NidaqOnDemand`, only when some trial needs method 2.
* RFMapping sounds: :func:`saved_sound_onsets` uses the saved ``trialSoundArray`` waveforms as
  templates where present (noise: the saved samples; tones: their amplitude envelope times the
  carrier evaluated at the NI-DAQ sample times, maximising the envelope of the correlation, for the
  same reason as regenerated tones).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from npc_frames._iir import butter, fast_len, filtfilt
from npc_frames.components._sound_opto import opto_waveform, sound_waveform_duration
from npc_frames.errors import NpcFramesError, ParameterError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession
    from npc_frames.readers.openephys import ContinuousStream

__all__ = [
    "ENVELOPE_AGREEMENT",
    "OPTO_CHANNEL",
    "SOUND_CHANNEL",
    "WINDOW_PAD",
    "NidaqOnDemand",
    "NidaqRecording",
    "NidaqSource",
    "correlation_onsets",
    "nidaq_stream",
    "opto_starts",
    "resample_linear",
    "saved_sound_onsets",
    "sound_onsets",
    "sound_waveform",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: NI-DAQ channels (0-based columns of continuous.dat): speaker copy and laser command
SOUND_CHANNEL = 1
OPTO_CHANNEL = 5
#: padding of the correlation window on each side of [trigger, trigger + duration], s
WINDOW_PAD = 0.15
#: raw-noise and envelope lags further apart than this mean the noise could not be rebuilt, s
ENVELOPE_AGREEMENT = 0.002
#: samples per batch of windows read and transformed together: ~40 float64-equivalents per
#: sample live at once (window, spectra, correlations, analytic signal) -> ~40 MB per batch
_BATCH_SAMPLES = 1_000_000


@dataclass(frozen=True)
class NidaqRecording:
    """The NI-DAQ stream of a session: int16 samples (samples, channels) and its clock on sync."""

    folder_name: str
    #: int16 samples (n, channels): continuous.dat memmap, or the compressed zarr's traces_seg0
    #: when continuous.dat is clipped
    data: Any
    #: sync time of sample 0, s
    start_time: float
    #: samples per second of sync time
    rate_on_sync: float

    @property
    def num_samples(self) -> int:
        """Return the number of samples on disk (a fraction of a second in clipped uploads)."""
        return int(self.data.shape[0])

    def times(self, samples: npt.ArrayLike) -> FloatArray:
        """Return sync times (s) of sample indices."""
        return np.asarray(samples, dtype=np.float64) / self.rate_on_sync + self.start_time


def nidaq_stream(raw: RawSession) -> NidaqRecording | None:
    """Return the session's NI-DAQ recording on the sync clock, or None if it has none.

    None also when the stream cannot be aligned to sync or its ``continuous.dat`` is unreadable
    (method 2 is then unavailable); reads the Open Ephys folder once per session (memoized by
    :func:`npc_frames.alignment.session_clocks`).
    """
    from npc_frames.alignment import session_clocks

    try:
        clocks = session_clocks(raw)
    except (NpcFramesError, OSError):
        return None
    for name, stream in sorted(clocks.streams.items()):  # a handful of streams
        if stream.kind != "nidaq" or name not in clocks.clocks:
            continue
        clock = clocks.clocks[name]
        dat = _memmap_or_none(stream)
        data: Any = dat
        if dat is None or dat.shape[0] < clock.num_samples:
            # clipped upload: the full traces are in ecephys_compressed (docs/formats.md)
            full = _compressed_traces(stream) if stream.num_samples_compressed else None
            data = full if full is not None else dat
        if data is None or data.shape[1] <= max(SOUND_CHANNEL, OPTO_CHANNEL):
            continue
        return NidaqRecording(
            folder_name=name,
            data=data,
            start_time=float(clock.start_time),
            rate_on_sync=float(clock.rate_on_sync),
        )
    return None


#: the NI-DAQ recording, a function returning it (or None), or None (method 2 unavailable)
NidaqSource = NidaqRecording | Callable[[], NidaqRecording | None] | None


class NidaqOnDemand:
    """The NI-DAQ recording of a session, read on first use (most sessions never need method 2)."""

    def __init__(self, source: NidaqSource) -> None:
        self._source = source
        self._done = not callable(source)
        self._rec: NidaqRecording | None = None if callable(source) else source

    @property
    def source_is_none(self) -> bool:
        """Return True when no recording was given at all (method 2 cannot apply)."""
        return self._source is None

    def get(self) -> NidaqRecording | None:
        """Return the recording (None if the session has none), reading it on the first call."""
        if not self._done:
            assert callable(self._source)
            self._rec = self._source()
            self._done = True
        return self._rec


def _memmap_or_none(stream: ContinuousStream) -> np.memmap[Any, np.dtype[np.int16]] | None:
    from npc_frames.readers.openephys import continuous_memmap

    try:
        return continuous_memmap(stream)
    except NpcFramesError:
        return None


def _compressed_traces(stream: ContinuousStream) -> Any:
    """Return the stream's ``traces_seg0`` zarr array from ``ecephys_compressed`` (lazy), or None
    when there is none or it cannot be opened (missing codec, other layout)."""
    import os

    node_dir = os.path.dirname(os.path.abspath(stream.record_node))
    experiment = os.path.basename(os.path.dirname(stream.recording_path))
    name = f"{experiment}_{os.path.basename(stream.record_node)}#{stream.folder_name}.zarr"
    path = os.path.join(os.path.dirname(node_dir), "ecephys_compressed", name)
    if not os.path.isdir(path):
        return None
    import zarr  # a core dependency: outside the try, so that a broken install is loud

    try:
        arr = zarr.open(path, mode="r")["traces_seg0"]
    except (KeyError, ValueError, OSError, zarr.errors.MetadataError):
        # no traces_seg0, an unknown codec, another layout or corrupt metadata: no full traces
        return None
    if len(arr.shape) != 2 or arr.shape[1] != stream.num_channels:
        return None
    return arr


def _read_windows(data: Any, starts: IntArray, length: int, channel: int) -> FloatArray:
    """Return (len(starts), length) float samples of `channel` from each start (memmap or zarr)."""
    if isinstance(data, np.ndarray):
        idx = starts[:, None] + np.arange(length, dtype=np.int64)[None, :]
        return np.asarray(data[idx, channel], dtype=np.float64)
    out = np.empty((starts.size, length), dtype=np.float64)
    for r, a in enumerate(starts.tolist()):  # one chunked read per trial window (zarr)
        out[r] = np.asarray(data[a : a + length, channel], dtype=np.float64)
    return out


# ----------------------------------------------------------------------------- correlation
def resample_linear(wave: FloatArray, rate: float, new_rate: float) -> FloatArray:
    """Return `wave` (sampled at `rate`) linearly interpolated at ``k / new_rate`` over its span."""
    w = np.asarray(wave, dtype=np.float64)
    t = np.arange(0.0, w.size / rate, 1.0 / new_rate)
    return np.interp(t, np.arange(w.size) / rate, w)


def _hilbert(x: FloatArray, axis: int = -1) -> npt.NDArray[np.complex128]:
    """Return the analytic signal of real `x` along `axis` (as ``scipy.signal.hilbert``)."""
    n = x.shape[axis]
    h = np.zeros(n)
    if n % 2 == 0:
        h[0] = h[n // 2] = 1.0
        h[1 : n // 2] = 2.0
    else:
        h[0] = 1.0
        h[1 : (n + 1) // 2] = 2.0
    shape = [1] * x.ndim
    shape[axis] = n
    return np.asarray(np.fft.ifft(np.fft.fft(x, axis=axis) * h.reshape(shape), axis=axis))


def _valid_xcorr(x: FloatArray, template: FloatArray) -> FloatArray:
    """Return the 'valid' cross-correlation of each row of `x` with `template` (FFT-based).

    ``out[i, j] = sum_m x[i, j + m] * template[m]`` for ``j = 0 … L − M`` (== np.correlate(x[i],
    template, 'valid')); for a complex (analytic) template, the magnitude of that sum with
    ``conj(template)``.
    """
    length = x.shape[1]
    m = template.size
    nfft = fast_len(length)  # any nfft >= length: the kept lags never wrap around
    xf = np.fft.rfft(x, nfft, axis=1)

    def corr(t: FloatArray) -> FloatArray:
        tf = np.conj(np.fft.rfft(t, nfft))
        return np.asarray(np.fft.irfft(xf * tf[None, :], nfft, axis=1)[:, : length - m + 1])

    if np.iscomplexobj(template):
        # |sum x(t + j) conj(T(t))|: the envelope of the correlation with an analytic template
        return np.hypot(corr(template.real), corr(template.imag))
    return corr(np.asarray(template, dtype=np.float64))


def correlation_onsets(
    rec: NidaqRecording,
    channel: int,
    trigger: npt.ArrayLike,
    duration: npt.ArrayLike,
    template_of_trial: npt.ArrayLike,
    templates: Sequence[npt.NDArray[Any]],
    *,
    envelope: Sequence[bool] | None = None,
) -> FloatArray:
    """Return per trial the sync time at which its template best matches `channel` (NaN if none).

    Window = samples with sync time in ``[trigger − WINDOW_PAD, trigger + duration + WINDOW_PAD]``;
    `templates[template_of_trial[i]]` (sampled at ``rec.rate_on_sync``; −1 = no template) is
    correlated ('valid') with the window — or with its amplitude envelope ``|hilbert(x − mean)|``
    where ``envelope[k]``; a complex (analytic) template gives the envelope of the correlation —
    and the time of the window sample at the maximum is returned. NaN for
    trials without trigger/template, windows not entirely inside the recorded samples, windows
    shorter than their template and all-zero windows. Trials sharing a template are correlated
    together in batches.
    """
    trig = np.asarray(trigger, dtype=np.float64).ravel()
    n_ch = int(rec.data.shape[1])
    if not 0 <= channel < n_ch:
        raise ParameterError(
            f"channel {channel} is not a channel of the NI-DAQ stream {rec.folder_name}",
            path=getattr(rec.data, "filename", None) or rec.folder_name,
            field="channel",
            expected=f"0 <= channel < {n_ch}",
        )
    try:
        dur = np.broadcast_to(np.asarray(duration, dtype=np.float64), trig.shape)
        tid = np.broadcast_to(np.asarray(template_of_trial, dtype=np.int64), trig.shape)
    except ValueError as exc:
        raise ParameterError(
            f"per-trial inputs disagree in length: {exc}",
            path=rec.folder_name,
            field="duration/template_of_trial",
            expected=f"{trig.size} values (one per trigger) or a scalar",
        ) from exc
    env = [False] * len(templates) if envelope is None else list(envelope)
    out = np.full(trig.shape, np.nan)
    ok = np.isfinite(trig) & np.isfinite(dur) & (tid >= 0)
    if not ok.any() or rec.num_samples == 0:
        return out
    rate = rec.rate_on_sync
    safe_trig = np.where(ok, trig, 0.0)
    safe_dur = np.where(ok, dur, 0.0)
    w0 = np.ceil((safe_trig - WINDOW_PAD - rec.start_time) * rate).astype(np.int64)
    w1 = np.floor((safe_trig + safe_dur + WINDOW_PAD - rec.start_time) * rate).astype(np.int64)
    length = w1 - w0 + 1
    m = np.array([t.size for t in templates], dtype=np.int64)[np.where(ok, tid, 0)]
    ok &= (w0 >= 0) & (w1 < rec.num_samples) & (length >= m) & (m > 0)
    data = rec.data
    # group trials by (template, window length): a few groups (one per trial for rebuilt noise)
    keys = np.stack([tid, length], axis=1)[ok]
    sel_all = np.flatnonzero(ok)
    if sel_all.size == 0:
        return out
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g, (k, n_len) in enumerate(uniq):  # loop over groups of trials, not samples
        members = sel_all[inverse == g]
        template = np.asarray(templates[int(k)])
        per_batch = max(1, _BATCH_SAMPLES // int(n_len))
        for b in range(0, members.size, per_batch):
            rows = members[b : b + per_batch]
            win = _read_windows(data, w0[rows], int(n_len), channel)
            empty = ~np.any(win != 0, axis=1)
            if env[int(k)]:
                win = np.abs(_hilbert(win - win.mean(axis=1, keepdims=True), axis=1))
            c = _valid_xcorr(win, template)
            j = np.argmax(c, axis=1)
            out[rows] = np.where(empty, np.nan, rec.times(w0[rows] + j))
    return out


# ------------------------------------------------------------------------------------ sound
def _envelope(dur: float, sample_rate: float, hanning_dur: float, am: float) -> FloatArray:
    """Return the deterministic amplitude envelope of a task sound (AM, else Hanning edges)."""
    t = np.arange(0.0, dur, 1.0 / sample_rate)
    if np.isfinite(am) and am > 0:
        return (np.sin(1.5 * np.pi + 2 * np.pi * am * t) + 1) / 2
    e = np.ones(t.size)
    k = int(sample_rate * hanning_dur)
    if k > 0 and 2 * k <= t.size:
        window = np.hanning(2 * k + 1)
        e[:k] *= window[:k]
        e[-k:] *= window[k + 1 :]
    return e


def _tone_template(
    dur: float, freq: float, am: float, sample_rate: float, hanning_dur: float, rate: float
) -> npt.NDArray[np.complex128]:
    """Return the analytic tone of one condition sampled at the NI-DAQ `rate` (complex).

    The sine is evaluated at the NI-DAQ sample times of the task's sound span (len / rate of its
    48 kHz array) and multiplied by the linearly resampled envelope; linear resampling of the
    48 kHz sine itself would add interpolation products that beat with the carrier.
    """
    env = resample_linear(_envelope(dur, sample_rate, hanning_dur, am), sample_rate, rate)
    t = np.arange(env.size) / rate
    return np.asarray(env * np.exp(1j * (2 * np.pi * freq * t - np.pi / 2)), dtype=np.complex128)


def sound_waveform(
    sound_type: str,
    *,
    sample_rate: float,
    dur: float,
    hanning_dur: float,
    volume: float,
    freq: Sequence[float],
    am: float = np.nan,
    seed: int | None = None,
) -> FloatArray | None:
    """Return the task's sound array for one trial (docs/formats.md), None if it cannot be rebuilt.

    Tones: sine at ``freq[0]``; noise / AM noise: ``2·RandomState(seed).random(n) − 1`` band-passed
    by a 10th-order Butterworth between ``freq[0]`` and ``freq[1]`` (zero-phase); then the AM
    envelope (AM > 0) or Hanning edges, normalised to max |x| = 1 and scaled by `volume`.
    """
    if not (np.isfinite(dur) and dur > 0):
        return None
    t = np.arange(0.0, dur, 1.0 / sample_rate)
    if sound_type == "tone":
        if not np.isfinite(freq[0]):
            return None
        x = np.sin(2 * np.pi * freq[0] * t)
    elif sound_type in ("noise", "AM noise"):
        band = [float(f) for f in freq[:2]]
        if seed is None or len(band) < 2 or not np.all(np.isfinite(band)):
            return None
        if not 0 < band[0] < band[1] < sample_rate / 2:
            return None
        x = 2 * np.random.RandomState(int(seed) % 2**32).random_sample(t.size) - 1
        zpk = butter(10, (band[0], band[1]), sample_rate, btype="bandpass")
        if x.size <= 3 * (len(zpk.p) + 1):
            return None  # too short to filter forward and backward
        x = filtfilt(zpk, x)  # = scipy.signal.filtfilt of butter's (b, a), in numpy
    else:
        return None
    x = x * _envelope(dur, sample_rate, hanning_dur, am)
    peak = np.abs(x).max() if x.size else 0.0
    if not np.isfinite(peak) or peak == 0:
        return None
    return np.asarray(x / peak * (volume if np.isfinite(volume) else 1.0), dtype=np.float64)


def sound_onsets(
    rec: NidaqRecording,
    trigger: npt.ArrayLike,
    sound_type: Sequence[str],
    freq: npt.ArrayLike,
    dur: npt.ArrayLike,
    volume: npt.ArrayLike,
    am: npt.ArrayLike,
    seed: npt.ArrayLike | None,
    *,
    sample_rate: float,
    hanning_dur: float,
) -> FloatArray:
    """Return per trial the sound onset (sync s) found on NI-DAQ channel 1, NaN where unavailable.

    `freq` is (n, 2) (``trialSoundFreq``; second column NaN for tones), `seed` the
    ``trialSoundSeed`` values (None if the file has none). Tones use the envelope of the
    correlation with the analytic tone; noise correlates the rebuilt noise, checked against the
    envelope correlation (module docstring).
    """
    trig = np.asarray(trigger, dtype=np.float64).ravel()
    n = trig.size
    f = np.asarray(freq, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, 2))
    if f.shape[1] < 2:
        f = np.concatenate([f, np.full((n, 2 - f.shape[1]), np.nan)], axis=1)
    d = np.asarray(dur, dtype=np.float64).ravel()
    vol = np.asarray(volume, dtype=np.float64).ravel()
    amv = np.asarray(am, dtype=np.float64).ravel()
    seeds = None if seed is None else np.asarray(seed, dtype=np.float64).ravel()
    if seeds is not None and seeds.size != n:
        seeds = None
    types = np.array([str(s) for s in sound_type], dtype=object)
    has = np.isfinite(trig) & np.isfinite(d) & (d > 0)

    # deterministic waveforms (tones) and envelopes: one template per unique parameter set
    templates: list[npt.NDArray[Any]] = []
    is_env: list[bool] = []
    raw_tid = np.full(n, -1, dtype=np.int64)
    env_tid = np.full(n, -1, dtype=np.int64)
    tone = has & (types == "tone")
    noise = has & np.isin(types, ["noise", "AM noise"])
    params = np.stack([d, f[:, 0], np.nan_to_num(amv, nan=-1.0)], axis=1)  # volume: scale only
    for mask, target, make_env in ((tone, raw_tid, False), (noise, env_tid, True)):
        if not mask.any():
            continue
        uniq, inv = np.unique(params[mask], axis=0, return_inverse=True)
        ids = np.full(len(uniq), -1, dtype=np.int64)
        for u, (du, f0, a) in enumerate(uniq):  # a handful of sound conditions
            a_val = a if a > 0 else np.nan
            if make_env:
                e = _envelope(du, sample_rate, hanning_dur, a_val)
                tpl: npt.NDArray[Any] = resample_linear(e, sample_rate, rec.rate_on_sync)
            else:
                if not (np.isfinite(f0) and f0 > 0):
                    continue
                tpl = _tone_template(du, f0, a_val, sample_rate, hanning_dur, rec.rate_on_sync)
            if tpl.size == 0:
                continue
            ids[u] = len(templates)
            templates.append(tpl)
            is_env.append(make_env)
        target[mask] = ids[inv.ravel()]
    # rebuilt noise: one template per trial
    if seeds is not None:
        for i in np.flatnonzero(noise & np.isfinite(seeds)):  # per noise trial: its own samples
            w = sound_waveform(
                str(types[i]),
                sample_rate=sample_rate,
                dur=float(d[i]),
                hanning_dur=hanning_dur,
                volume=float(vol[i]),
                freq=tuple(f[i]),
                am=float(amv[i]),
                seed=int(seeds[i]),
            )
            if w is not None:
                raw_tid[i] = len(templates)
                templates.append(resample_linear(w, sample_rate, rec.rate_on_sync))
                is_env.append(False)
    wave_dur = np.where(has, sound_waveform_duration(d, sample_rate), np.nan)
    onset = correlation_onsets(
        rec, SOUND_CHANNEL, trig, wave_dur, raw_tid, templates, envelope=is_env
    )
    if noise.any():
        env_onset = correlation_onsets(
            rec, SOUND_CHANNEL, trig, wave_dur, env_tid, templates, envelope=is_env
        )
        disagree = ~(np.abs(onset - env_onset) <= ENVELOPE_AGREEMENT)
        use_env = noise & disagree & np.isfinite(env_onset)
        onset = np.where(use_env, env_onset, onset)
        onset = np.where(noise & ~np.isfinite(env_onset), np.nan, onset)
    return onset


def saved_sound_onsets(
    rec: NidaqRecording,
    trigger: FloatArray,
    saved: list[FloatArray | None],
    tone_freq: FloatArray,
    rate: float,
) -> FloatArray:
    """Return onsets of the trials with a finite `trigger`, templates from their saved arrays.

    Identical saved arrays share one template. Noise: the saved samples, linearly resampled to
    the NI-DAQ rate on sync. Tones: the analytic tone ``env(t)·exp(2πi·f·t)`` with `env` the
    saved array's amplitude envelope (``|hilbert|``, linearly resampled) and the carrier at
    ``trialToneFreq`` evaluated directly at the NI-DAQ sample times; the envelope of the
    correlation is maximised. Resampling the saved 48 kHz tone itself (linearly, or band-limited)
    distorts a 4–16 kHz carrier sampled at 30 kHz (errors up to ~0.2 ms in our tests), while the
    NI-DAQ samples the speaker's smooth signal (aliasing included) exactly as the direct carrier.
    """
    n = trigger.size
    is_tone = np.isfinite(tone_freq) & (tone_freq > 0)
    tid = np.full(n, -1, dtype=np.int64)
    wave_dur = np.full(n, np.nan)
    templates: list[npt.NDArray[Any]] = []
    index: dict[tuple[float, bytes], int] = {}
    for i in np.flatnonzero(np.isfinite(trigger)):  # per sound trial (hundreds): dedupe templates
        a = saved[i]
        assert a is not None
        key = (float(tone_freq[i]) if is_tone[i] else np.nan, a.tobytes())
        if key not in index:
            if is_tone[i]:
                env = np.abs(_hilbert(a))
                env = resample_linear(env / env.max(), rate, rec.rate_on_sync)
                t = np.arange(env.size) / rec.rate_on_sync
                tpl: npt.NDArray[Any] = env * np.exp(1j * 2 * np.pi * tone_freq[i] * t)
            else:
                tpl = resample_linear(a, rate, rec.rate_on_sync)
            index[key] = len(templates)
            templates.append(tpl)
        tid[i] = index[key]
        wave_dur[i] = a.size / rate
    return correlation_onsets(rec, SOUND_CHANNEL, trigger, wave_dur, tid, templates)


# ------------------------------------------------------------------------------------- opto
def opto_starts(
    rec: NidaqRecording,
    trigger: npt.ArrayLike,
    voltage: npt.ArrayLike,
    dur: npt.ArrayLike,
    delay: npt.ArrayLike,
    on_ramp: npt.ArrayLike,
    off_ramp: npt.ArrayLike,
    sin_freq: npt.ArrayLike,
    offset_voltage: float,
    *,
    sample_rate: float,
) -> FloatArray:
    """Return per trial the sync time at which the laser command waveform starts on channel 5.

    The waveform is rebuilt per unique parameter set as TaskUtils.getOptoPulseWaveform does
    (:func:`~npc_frames.components._sound_opto.opto_waveform`, including the prepended delay);
    onset/offset are this time + active_start / active_stop. NaN where there is no opto or no
    usable recording.
    """
    trig = np.asarray(trigger, dtype=np.float64).ravel()
    params = np.stack(
        [
            np.asarray(p, dtype=np.float64).ravel()
            for p in (voltage, dur, delay, on_ramp, off_ramp, sin_freq)
        ],
        axis=1,
    )
    n = trig.size
    has = (
        np.isfinite(trig)
        & np.isfinite(params[:, 0])
        & (params[:, 0] != 0)
        & np.isfinite(params[:, 1])
        & (params[:, 1] > 0)
    )
    tid = np.full(n, -1, dtype=np.int64)
    wave_dur = np.full(n, np.nan)
    templates: list[FloatArray] = []
    if has.any():
        filled = np.where(np.isfinite(params), params, 0.0)
        uniq, inv = np.unique(filled[has], axis=0, return_inverse=True)
        durs = np.empty(len(uniq))
        for u, (amp, d, dl, onr, offr, fr) in enumerate(uniq):  # a handful of opto conditions
            w = opto_waveform(sample_rate, amp, d, dl, fr, onr, offr, offset_voltage)
            durs[u] = w.size / sample_rate
            templates.append(resample_linear(w, sample_rate, rec.rate_on_sync))
        tid[has] = inv.ravel()
        wave_dur[has] = durs[inv.ravel()]
    return correlation_onsets(rec, OPTO_CHANNEL, trig, wave_dur, tid, templates)
