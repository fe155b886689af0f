"""Subsampled LFP of a probe on the sync clock: ``lfp(session, probe)`` and ``aligned_lfp``.

Two sources (docs/formats.md, "Subsampled LFP"):

* an ``LFP_Subsampled`` derived asset: per probe a zarr folder ``Probe<X>_lfp_subsampled[.zarr]``
  with ``traces_seg0`` (samples × channels) and ``channel_ids`` (``LFP1``, ``LFP5`` … 1-based);
  it is read lazily, chunk by chunk;
* otherwise the raw LFP band, subsampled by the same recipe as the pipeline: a median reference
  over the channels above the brain surface (when the probe is annotated), every 4th channel,
  resampling to half the rate (FFT), and a 0.1 Hz high-pass (Butterworth, order 5, zero phase).
  With ``cache=`` the result is written once as a chunked zarr under that folder and read lazily;
  without, it is kept in memory.

Sample ``k`` is at ``start_time + k / rate`` s on the sync clock, where ``rate`` is the LFP
stream's rate on sync divided by 2. Values are µV.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.errors import BadFormatError, InconsistentDataError, ParameterError

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["LFP", "aligned_lfp", "lfp", "subsample_lfp"]

logger = logging.getLogger(__name__)

#: every this-many-th channel is kept, starting at channel 0
CHANNEL_STEP = 4
#: the rate is divided by this
DECIMATION = 2
#: high-pass corner and order (zero phase)
HIGHPASS_HZ = 0.1
HIGHPASS_ORDER = 5
#: channels above the surface this far (surface = highest in-brain channel + this) are the reference
SURFACE_MARGIN = 10
#: volts per bit of the Neuropixels 1.0 LFP band
NP1_BIT_VOLTS = 0.195e-6
#: samples per zarr chunk written to the cache (10 s at 1250 Hz)
CHUNK_SAMPLES = 12_500


@dataclass(frozen=True)
class LFP:
    """A probe's subsampled LFP: lazy samples × channels, their probe channels, and sync times."""

    probe: str
    #: samples × channels; a zarr array (read per chunk) or an in-memory array
    data: Any
    #: 0-based probe channel of each column
    channels: npt.NDArray[np.int64]
    #: samples per second on the sync clock
    rate: float
    #: sync time of sample 0, s
    start_time: float
    #: µV per unit of ``data``
    uv_per_unit: float
    #: where the samples come from (zarr folder, or the raw ``continuous.dat``)
    source: str

    @property
    def num_samples(self) -> int:
        """Return the number of samples."""
        return int(self.data.shape[0])

    def times(self, start: int = 0, stop: int | None = None) -> npt.NDArray[np.float64]:
        """Return sync times (s) of samples ``start:stop``."""
        stop = self.num_samples if stop is None else stop
        return self.start_time + np.arange(start, stop, dtype=np.float64) / self.rate

    def sample_range(self, start_time: float, stop_time: float) -> tuple[int, int]:
        """Return the sample indices ``[i0, i1)`` of the samples with times in [start, stop)."""
        n = self.num_samples
        k = np.ceil((np.array([start_time, stop_time]) - self.start_time) * self.rate - 1e-9)
        i0, i1 = (int(v) for v in np.clip(k, 0, n))
        return i0, max(i0, i1)

    def sel(
        self, time: slice | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """Return (µV samples × channels, their sync times) of the samples in ``time`` (a slice of
        sync seconds, ``[start, stop)``); only the chunks holding them are read."""
        if time is None:
            i0, i1 = 0, self.num_samples
        else:
            a = -np.inf if time.start is None else float(time.start)
            b = np.inf if time.stop is None else float(time.stop)
            i0, i1 = self.sample_range(a, b)
        block = np.asarray(self.data[i0:i1], dtype=np.float32) * np.float32(self.uv_per_unit)
        return block, self.times(i0, i1)


# ----------------------------------------------------------------------------------- recipe
def reference_channels(
    structures: list[str | None] | None, n_channels: int
) -> npt.NDArray[np.int64]:
    """Return the channels above the brain surface used as the median reference (empty when the
    probe is not annotated): from (highest channel not ``out of brain``) + 10 to the last."""
    if not structures:
        return np.zeros(0, dtype=np.int64)
    inside = [i for i, s in enumerate(structures) if s is not None and s != "out of brain"]
    if not inside:
        return np.zeros(0, dtype=np.int64)
    surface = max(inside) + SURFACE_MARGIN
    return np.arange(min(surface, n_channels), n_channels, dtype=np.int64)


def subsample_lfp(
    traces: npt.NDArray[Any],
    rate: float,
    *,
    reference: npt.NDArray[np.int64] | None = None,
    block_channels: int = 8,
) -> npt.NDArray[np.float32]:
    """Return the subsampled LFP (samples/2 × channels/4, float32, input units) of raw LFP
    `traces` (samples × channels) sampled at `rate`: median reference over `reference` channels
    (if any), every 4th channel, FFT resampling to half the samples, 0.1 Hz zero-phase high-pass.

    Channels are processed in blocks of `block_channels` so memory stays ~ samples × block.
    """
    from scipy import signal

    n, n_ch = traces.shape
    keep = np.arange(0, n_ch, CHANNEL_STEP)
    n_out = n // DECIMATION
    ref = None
    if reference is not None and reference.size:
        ref = np.empty(n, dtype=np.float32)
        step = 1 << 16
        for i in range(0, n, step):  # chunks of time: the median needs all reference channels
            ref[i : i + step] = np.median(
                np.asarray(traces[i : i + step][:, reference], dtype=np.float32), axis=1
            )
    sos = signal.butter(
        HIGHPASS_ORDER, HIGHPASS_HZ, btype="highpass", fs=rate / DECIMATION, output="sos"
    )
    out = np.empty((n_out, keep.size), dtype=np.float32)
    for j in range(0, keep.size, block_channels):
        cols = keep[j : j + block_channels]
        x = np.asarray(traces[:, cols], dtype=np.float64)
        if ref is not None:
            x -= ref[:, None]
        y = signal.resample(x, n_out, axis=0)
        out[:, j : j + cols.size] = signal.sosfiltfilt(sos, y, axis=0)
    return out


# ----------------------------------------------------------------------------------- sources
_ZARR_RE = re.compile(r"^[Pp]robe_?(?P<letter>[A-F])_lfp_subsampled(\.zarr)?$")


def _asset_zarr(raw: RawSession, letter: str) -> str | None:
    asset = raw.assets.get("lfp_subsampled")
    if asset is None:
        return None
    folder = raw.local(asset)
    for name in sorted(os.listdir(folder)):
        m = _ZARR_RE.match(name)
        if m and m["letter"] == letter:
            return os.path.join(folder, name)
    return None


def _channel_ids(ids: Any, path: str) -> npt.NDArray[np.int64]:
    out = []
    for v in np.asarray(ids).ravel():
        text = v.decode() if isinstance(v, bytes) else str(v)
        digits = re.sub(r"\D", "", text)
        if not digits or int(digits) < 1:
            raise BadFormatError(
                f"channel id {text!r} has no 1-based channel number",
                path=path,
                field="channel_ids",
                expected="LFP1 … LFP384",
            )
        out.append(int(digits) - 1)
    return np.sort(np.asarray(out, dtype=np.int64))


def _zarr_lfp(path: str, letter: str, stream_clock: Any, bit_volts: float) -> LFP:
    import zarr

    try:
        group = zarr.open_group(path, mode="r")
        traces = group["traces_seg0"]
        channels = _channel_ids(group["channel_ids"][:], path)
    except (KeyError, ValueError, OSError) as exc:
        raise BadFormatError(
            f"LFP zarr cannot be read: {exc}", path=path, expected="traces_seg0 and channel_ids"
        ) from None
    if traces.ndim != 2 or traces.shape[1] != channels.size:
        raise BadFormatError(
            f"LFP zarr has {traces.shape[1] if traces.ndim == 2 else '?'} channels of traces but "
            f"{channels.size} channel ids",
            path=path,
            field="traces_seg0",
            expected="samples × len(channel_ids)",
        )
    expected = (stream_clock.num_samples + DECIMATION - 1) // DECIMATION
    if channels.size != 384 // CHANNEL_STEP:
        raise BadFormatError(
            f"LFP zarr has {channels.size} channels",
            path=path,
            field="channel_ids",
            expected=f"{384 // CHANNEL_STEP} (every {CHANNEL_STEP}th of 384)",
        )
    if abs(traces.shape[0] - stream_clock.num_samples // DECIMATION) > 1:
        raise InconsistentDataError(
            f"LFP zarr has {traces.shape[0]} samples; the raw LFP stream has "
            f"{stream_clock.num_samples} (expected about {expected})",
            path=path,
            field="traces_seg0",
        )
    return LFP(
        probe=f"probe{letter}",
        data=traces,
        channels=channels,
        rate=stream_clock.rate_on_sync / DECIMATION,
        start_time=stream_clock.start_time,
        uv_per_unit=bit_volts * 1e6,
        source=path,
    )


def _raw_session(session: Any) -> RawSession:
    from npc_frames.paths import RawSession

    if isinstance(session, RawSession):
        return session
    if isinstance(session, str | os.PathLike):
        return RawSession.from_path(session)
    raise ParameterError(
        f"session must be a RawSession or a raw folder, got {type(session).__name__}",
        field="session",
        expected="RawSession or path",
    )


def _structures(raw: RawSession, letter: str, n_channels: int) -> list[str | None] | None:
    from npc_frames.anatomy import ccf_annotations

    ann = ccf_annotations(raw, [letter])
    if letter not in ann.sources:
        return None
    t = ann.table.filter(pl.col("group_name") == f"probe{letter}")
    out: list[str | None] = [None] * n_channels
    for ch, s in zip(t["channel"].to_list(), t["structure"].to_list(), strict=True):
        if 0 <= ch < n_channels:
            out[ch] = s
    return out


def lfp(session: Any, probe: str, *, cache: str | os.PathLike[str] | None = None) -> LFP:
    """Return the subsampled LFP of `probe` (letter or name) on the sync clock, lazily.

    From the session's ``LFP_Subsampled`` asset when it has the probe, else computed from the raw
    LFP band (module docstring); with `cache`, the computed LFP is stored there as zarr (keyed by
    the raw file's content) and read back chunk by chunk.
    """
    from npc_frames.alignment import session_clocks
    from npc_frames.ids import parse_probe_letter
    from npc_frames.readers import openephys as oe

    raw = _raw_session(session)
    letter = parse_probe_letter(probe)
    clocks = session_clocks(raw)
    stream = clocks.probe_stream(letter, "lfp")
    clock = clocks.clock(stream)
    bit_volts = float(stream.bit_volts[0]) * 1e-6 if stream.bit_volts else NP1_BIT_VOLTS
    zpath = _asset_zarr(raw, letter)
    if zpath is not None:
        return _zarr_lfp(zpath, letter, clock, bit_volts)
    data = oe.continuous_memmap(stream)
    reference = reference_channels(_structures(raw, letter, data.shape[1]), data.shape[1])
    channels = np.arange(0, data.shape[1], CHANNEL_STEP, dtype=np.int64)

    def make(values: Any) -> LFP:
        return LFP(
            probe=f"probe{letter}",
            data=values,
            channels=channels,
            rate=clock.rate_on_sync / DECIMATION,
            start_time=clock.start_time,
            uv_per_unit=bit_volts * 1e6,
            source=stream.dat_path,
        )

    if cache is None:
        return make(subsample_lfp(data, stream.sample_rate, reference=reference))
    import zarr

    key = hashlib.sha256(
        f"{stream.dat_path}|{raw.stat_key(stream.dat_path)}|{reference.tolist()}".encode()
    ).hexdigest()[:16]
    target = os.path.join(os.fspath(cache), "lfp", f"{raw.session_id}_{letter}_{key}.zarr")
    if not os.path.isdir(target):
        values = subsample_lfp(data, stream.sample_rate, reference=reference)
        tmp = f"{target}.tmp{os.getpid()}"
        z = zarr.open_array(
            tmp,
            mode="w",
            shape=values.shape,
            dtype=values.dtype,
            chunks=(CHUNK_SAMPLES, values.shape[1]),
        )
        z[:] = values
        try:
            os.replace(tmp, target)
        except OSError:  # another process published it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return make(zarr.open_array(target, mode="r"))


def aligned_lfp(
    session: Any,
    probe: str,
    intervals: Any,
    *,
    event: str,
    start: float,
    stop: float,
    cache: str | os.PathLike[str] | None = None,
) -> npt.NDArray[np.float32]:
    """Return trials × channels × samples of LFP (µV) around each trial's `event` time.

    Sample ``j`` of a trial is the LFP sample nearest ``event + start + j / rate``;
    ``round((stop - start) * rate)`` samples per trial. Trials whose event is null/NaN or whose
    window leaves the recording are NaN. `intervals` is a frame (or LazyFrame) with `event`.
    """
    if not stop > start:
        raise ParameterError(f"stop {stop} <= start {start}", field="stop", expected="start < stop")
    lf = lfp(session, probe, cache=cache) if not isinstance(session, LFP) else session
    df = intervals.collect() if isinstance(intervals, pl.LazyFrame) else intervals
    if event not in df.columns:
        raise ParameterError(
            f"intervals have no column {event!r}", field=event, expected=f"one of {df.columns}"
        )
    ev = df[event].cast(pl.Float64).fill_null(np.nan).to_numpy()
    n = round((stop - start) * lf.rate)
    first = np.round((ev + start - lf.start_time) * lf.rate)
    ok = np.isfinite(first) & (first >= 0) & (first + n <= lf.num_samples)
    out = np.full((ev.size, lf.channels.size, n), np.nan, dtype=np.float32)
    if not ok.any():
        return out
    i0 = first[ok].astype(np.int64)
    rows = np.flatnonzero(ok)
    order = np.argsort(i0, kind="stable")
    i0, rows = i0[order], rows[order]
    scale = np.float32(lf.uv_per_unit)
    if isinstance(lf.data, np.ndarray):
        spans = [(0, i0.size)]
    else:  # runs of trials whose windows fit in a few chunks: each chunk is read once
        limit = 8 * CHUNK_SAMPLES
        cuts = [0]
        for k in range(1, i0.size):  # one step per trial, not per sample
            if i0[k] + n - i0[cuts[-1]] > limit:
                cuts.append(k)
        spans = list(zip(cuts, [*cuts[1:], i0.size], strict=True))
    for a, b in spans:
        lo, hi = int(i0[a]), int(i0[b - 1]) + n
        block = np.asarray(lf.data[lo:hi])  # stored dtype: convert only the gathered samples
        idx = (i0[a:b] - lo)[:, None] + np.arange(n)[None, :]
        out[rows[a:b]] = block[idx].transpose(0, 2, 1).astype(np.float32) * scale
    return out
