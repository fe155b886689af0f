"""Subsampled LFP of a probe on the sync clock: ``lfp(session, probe)`` and ``aligned_lfp``.

Two sources (docs/formats.md, "Subsampled LFP"):

* an ``LFP_Subsampled`` derived asset: per probe a zarr folder ``Probe<X>_lfp_subsampled[.zarr]``
  with ``traces_seg0`` (samples × channels) and ``channel_ids`` (``LFP1``, ``LFP5`` … 1-based);
  it is read lazily, chunk by chunk;
* otherwise the raw LFP band, subsampled by the same recipe as the pipeline: a median reference
  over the channels above the brain surface (when the probe is annotated), every 4th channel,
  resampling to half the rate (FFT), and a 0.1 Hz high-pass (Butterworth, order 5, zero phase).
  With ``cache=`` the result is written once as a chunked zarr under that folder and read lazily;
  without, it is computed on demand: a read of samples ``[i0, i1)`` reads only the raw samples
  ``[2·i0 − pad, 2·i1 + pad)`` (``pad`` = :data:`PAD_SECONDS` of raw LFP, clipped to the
  recording) and keeps the middle, which equals the whole-recording computation to within
  :data:`WINDOW_TOLERANCE_BITS` (the recipe's filters are not local: their influence decays over
  the padding). A window whose padding reaches one end of the recording also reads ``pad`` raw
  samples at the other end: the FFT resampling treats the recording as periodic, so those are the
  whole computation's neighbours of that end. A read that covers the recording is exactly the
  whole-recording computation.

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

__all__ = ["LFP", "RawSubsampled", "aligned_lfp", "lfp", "subsample_lfp"]

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
#: samples per zarr chunk written to the cache: 1 s at 1250 Hz, as SpikeInterface writes the
#: pipeline's asset (its default chunk duration)
CHUNK_SAMPLES = 1_250
#: raw LFP read on each side of a window computed from raw, s (the 0.1 Hz high-pass settles in it)
PAD_SECONDS = 30.0
#: largest difference between a window computed from raw and the whole-recording computation, in
#: raw LFP units (measured on 1/f-like LFP with 30 s padding: < 0.2)
WINDOW_TOLERANCE_BITS = 0.5


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
    wrap: tuple[Any, Any] | None = None,
) -> npt.NDArray[np.float32]:
    """Return the subsampled LFP (samples/2 × channels/4, float32, input units) of raw LFP
    `traces` (samples × channels) sampled at `rate`: median reference over `reference` channels
    (if any), every 4th channel, FFT resampling to half the samples, 0.1 Hz zero-phase high-pass.

    Channels are processed in blocks of `block_channels` so memory stays ~ samples × block.
    `wrap` = (samples before, samples after) `traces` (even counts) that the FFT resampling
    sees as neighbours and that are dropped before the high-pass: a part of a recording computed
    with the recording's other end as its wrap-around neighbour resamples like the whole.
    """
    from scipy import signal

    n_out = traces.shape[0] // DECIMATION
    skip = 0
    if wrap is not None:
        skip = int(wrap[0].shape[0]) // DECIMATION
        traces = np.concatenate([np.asarray(wrap[0]), np.asarray(traces), np.asarray(wrap[1])])
    n, n_ch = traces.shape
    keep = np.arange(0, n_ch, CHANNEL_STEP)
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
        y = signal.resample(x, n // DECIMATION, axis=0)[skip : skip + n_out]
        out[:, j : j + cols.size] = signal.sosfiltfilt(sos, y, axis=0)
    return out


class RawSubsampled:
    """The subsampled LFP of a raw LFP band, computed on demand per read (a lazy array).

    ``self[i0:i1]`` (or ``self[i0:i1, columns]``) is float32 samples × channels/4 in raw units,
    computed by :func:`subsample_lfp` from the raw samples ``[2·i0 − pad, 2·i1 + pad)`` only
    (clipped to the recording; ``pad`` = `pad_seconds` of raw LFP) and trimmed to the window.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(
        self,
        traces: Any,
        rate: float,
        *,
        reference: npt.NDArray[np.int64] | None = None,
        pad_seconds: float = PAD_SECONDS,
    ) -> None:
        self.traces = traces
        self.rate = float(rate)
        self.reference = reference
        n, n_ch = (int(v) for v in traces.shape)
        self.shape = (n // DECIMATION, len(range(0, n_ch, CHANNEL_STEP)))
        #: raw samples read on each side of a window (even, so windows start on output samples)
        self.pad = DECIMATION * round(pad_seconds * self.rate / DECIMATION)

    @property
    def merge_gap(self) -> int:
        """Return the gap (output samples) below which two windows are cheaper read as one."""
        return self.pad

    def __len__(self) -> int:
        return self.shape[0]

    def raw_range(self, i0: int, i1: int) -> tuple[int, int]:
        """Return the raw sample range ``[s, e)`` read to compute output samples ``[i0, i1)``."""
        n = int(self.traces.shape[0])
        s = max(0, DECIMATION * i0 - self.pad)
        e = min(n, DECIMATION * i1 + self.pad)
        return s, (n if e >= n - 1 else e)

    def __getitem__(self, key: Any) -> npt.NDArray[np.float32]:
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        if isinstance(rows, int | np.integer):
            i = int(rows) + (self.shape[0] if rows < 0 else 0)
            row: npt.NDArray[np.float32] = self[i : i + 1, cols][0]
            return row
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise ParameterError(
                f"subsampled LFP computed from raw is read by contiguous slices, got {rows!r}",
                field="key",
                expected="a slice with step 1",
            )
        i0, i1, _ = rows.indices(self.shape[0])
        i1 = max(i0, i1)
        if i0 == i1:
            return np.zeros((0, self.shape[1]), dtype=np.float32)[:, cols]
        s, e = self.raw_range(i0, i1)
        n = int(self.traces.shape[0])
        wrap = None
        if (s == 0) != (e == n):  # one end of the recording: its FFT neighbour is the other end
            edge = min(self.pad, n - (e - s)) // DECIMATION * DECIMATION
            none = np.zeros((0, int(self.traces.shape[1])), dtype=self.traces.dtype)
            wrap = (self.traces[n - edge : n], none) if s == 0 else (none, self.traces[:edge])
        block = subsample_lfp(self.traces[s:e], self.rate, reference=self.reference, wrap=wrap)
        first = s // DECIMATION
        return block[i0 - first : i1 - first][:, cols]

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


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


#: a recording whose length is known only from its last TTL event may run on this much longer
LAST_TTL_SLACK_S = 60.0


def _zarr_lfp(
    path: str, letter: str, stream_clock: Any, bit_volts: float, *, exact: bool = True
) -> LFP:
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
    # exact: the recording's length is known (compressed copy, or a whole continuous.dat);
    # otherwise it recorded at least until its last TTL event, and at most a minute longer
    n = int(traces.shape[0])
    low = stream_clock.num_samples // DECIMATION
    high = low + (0 if exact else round(LAST_TTL_SLACK_S * stream_clock.rate_on_sync / DECIMATION))
    if not low - 1 <= n <= high + 1:
        raise InconsistentDataError(
            f"LFP zarr has {n} samples; the raw LFP stream has "
            + (f"{stream_clock.num_samples}" if exact else f"at least {stream_clock.num_samples}")
            + f" (expected about {expected}"
            + ("" if exact else f" to {high}")
            + ")",
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


def _compressor() -> Any:
    """Return the compressor SpikeInterface writes LFP zarr with (Blosc zstd 5, bit shuffle)."""
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE)


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
        exact = stream.num_samples_compressed is not None or stream.num_samples >= clock.num_samples
        return _zarr_lfp(zpath, letter, clock, bit_volts, exact=exact)
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
        return make(RawSubsampled(data, stream.sample_rate, reference=reference))
    import zarr

    key = hashlib.sha256(
        f"{stream.dat_path}|{raw.stat_key(stream.dat_path)}|{reference.tolist()}".encode()
    ).hexdigest()[:16]
    target = os.path.join(os.fspath(cache), "lfp", f"{raw.session_id}_{letter}_{key}.zarr")
    if not os.path.isdir(target):
        tmp = f"{target}.tmp{os.getpid()}"
        values = subsample_lfp(data, stream.sample_rate, reference=reference)
        z = zarr.open_array(
            tmp,
            mode="w",
            shape=values.shape,
            dtype=values.dtype,
            chunks=(CHUNK_SAMPLES, values.shape[1]),
            compressor=_compressor(),
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
    shape = (ev.size, lf.channels.size, n)
    out = np.empty(shape, dtype=np.float32) if ok.all() else np.full(shape, np.nan, np.float32)
    if not ok.any():
        return out
    rows = np.flatnonzero(ok)
    buf, pos = _read_windows(lf.data, first[ok].astype(np.int64), n)
    # one gather: trials × samples × channels in the stored dtype, scaled into trials × channels
    gathered = buf[pos[:, None] + np.arange(n)[None, :]].transpose(0, 2, 1)
    scale = np.float32(lf.uv_per_unit)
    if rows.size == ev.size:
        np.multiply(gathered, scale, out=out, casting="unsafe")
    else:
        out[rows] = gathered * scale
    return out


def _read_windows(
    data: Any, starts: npt.NDArray[np.int64], n: int
) -> tuple[Any, npt.NDArray[np.int64]]:
    """Return (a samples × channels buffer, each window's first row in it) holding the windows
    ``[start, start + n)`` of `data`, reading every stored chunk they overlap exactly once.

    Windows are grouped into runs of overlapping or adjacent chunks (zarr) or windows closer
    than the source's ``merge_gap`` (computed from raw); each run is one contiguous read.
    """
    if isinstance(data, np.ndarray):
        return data, starts
    chunks = getattr(data, "chunks", None)
    unit = int(chunks[0]) if chunks else 1
    gap = 0 if chunks else int(getattr(data, "merge_gap", 0))
    total = int(data.shape[0])
    order = np.argsort(starts, kind="stable")
    lo = starts[order] // unit
    hi = np.maximum.accumulate((starts[order] + n - 1) // unit)
    new_run = np.ones(lo.size, dtype=bool)
    new_run[1:] = lo[1:] > hi[:-1] + 1 + gap // unit
    run = np.cumsum(new_run) - 1
    last = np.ones(lo.size, dtype=bool)
    last[:-1] = new_run[1:]
    s0 = lo[new_run] * unit
    s1 = np.minimum((hi[last] + 1) * unit, total)
    sizes = s1 - s0
    offsets = np.cumsum(sizes) - sizes
    buf = np.empty((int(sizes.sum()), int(data.shape[1])), dtype=data.dtype)
    direct = hasattr(data, "get_basic_selection")
    for a, b, o in zip(s0.tolist(), s1.tolist(), offsets.tolist(), strict=True):  # one per run
        if direct:  # zarr decodes straight into the buffer
            data.get_basic_selection(slice(a, b), out=buf[o : o + b - a])
        else:
            buf[o : o + b - a] = data[a:b]
    pos = np.empty_like(starts)
    pos[order] = offsets[run] + (starts[order] - s0[run])
    return buf, pos
