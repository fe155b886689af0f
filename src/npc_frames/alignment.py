"""Barcode alignment of Open Ephys streams to the sync clock (FORMATS §10).

A barcode generator sends the same TTL to sync bit 0 (``barcode_ephys``) and to every Open Ephys
stream. Decoding the barcodes on both clocks and matching their values gives, per stream, the
time on sync of continuous sample 0 and the stream's sampling rate measured on the sync clock.

Decisions
---------
* Decoding follows the reference rule exactly (first falling edge = cursor, 32 bits LSB-first,
  bit = 1 when the next rising edge comes before the next falling edge), vectorized over barcodes
  and bits.
* Matching pairs each stream barcode with a sync barcode of the same value. A value that occurs
  the same number of times on both lines is paired occurrence by occurrence; any other duplicate
  is resolved by the offset (sync − stream time) of the unambiguous pairs (the occurrence within
  1 s of the consensus offset wins). Pairs whose offset departs from the median by > 1 s (a
  barcode interval is ~30 s, drift over a session is tens of ms) are discarded as false matches.
* The clock is the least-squares line through *all* matched pairs rather than the reference's
  two-point line through the first and last: identical when two barcodes match, and less
  sensitive to the ±half-sample quantisation of any one edge otherwise.
* Fewer than two matched pairs raise :class:`AlignmentError` naming the stream.
* A NaN/inf fitted rate falls back to the nominal rate (as the reference does).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from npc_frames import storage
from npc_frames._log import timed
from npc_frames.errors import AbsentModalityError, AlignmentError, MissingFileError, NpcFramesError
from npc_frames.memo import Memo
from npc_frames.readers import openephys as oe
from npc_frames.readers.sync import SyncData, read_sync

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "BARCODE_BIT_WIDTH",
    "BARCODE_DURATION_CEILING",
    "INTER_BARCODE_INTERVAL",
    "SessionClocks",
    "StreamClock",
    "align_stream",
    "continuous",
    "decode_barcodes",
    "fit_clock",
    "local_record_nodes",
    "match_barcodes",
    "session_clocks",
    "ttl_edge_times",
]

logger = logging.getLogger(__name__)

#: width of one barcode bit, s (Arduino sync-barcode firmware; reference ``bar_duration``)
BARCODE_BIT_WIDTH = 0.015
#: minimum gap before a barcode start, s (barcodes come every ~30 s)
INTER_BARCODE_INTERVAL = 29.0
#: a barcode lasts less than this, s; edges this close to the end of a line are dropped
BARCODE_DURATION_CEILING = 2.0
#: bits per barcode, LSB first
N_BITS = 32
#: the sync line that carries the barcodes (``barcode_ephys``)
SYNC_BARCODE_LINE = 0
#: pairs whose clock offset departs from the median by more than this are false matches, s
MATCH_OFFSET_TOLERANCE = 1.0

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------------------- decoding
def decode_barcodes(
    rising: npt.ArrayLike,
    falling: npt.ArrayLike,
    *,
    total_duration: float | None = None,
    line_start: float = 0.0,
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """Return (start times, values) of the barcodes on one line from its edge times (s).

    `total_duration` (sync: total seconds; ephys: last TTL time) drops edges in the last 2 s so
    that a truncated code is not decoded. `line_start` is the time at which the line starts
    being recorded: the first rising edge is a barcode start only if it is > 2 s after it.
    """
    on = np.sort(np.asarray(rising, dtype=np.float64))
    off = np.sort(np.asarray(falling, dtype=np.float64))
    if off.size and on.size and off[0] < on[0]:
        off = off[1:]
    if on.size and off.size and on[-1] > off[-1]:
        on = on[:-1]
    if total_duration is not None:
        ceiling = total_duration - BARCODE_DURATION_CEILING
        on = on[on < ceiling]
        off = off[off < ceiling]
    if on.size == 0 or off.size == 0:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    gaps = np.diff(on)
    starts = on[1:][gaps > INTER_BARCODE_INTERVAL]
    if on[0] - line_start > BARCODE_DURATION_CEILING:
        starts = np.concatenate([on[:1], starts])
    if starts.size == 0:
        return starts, np.zeros(0, np.int64)
    window_end = starts + BARCODE_DURATION_CEILING
    # cursor = first falling edge strictly after each start (and inside its window)
    i_off = np.searchsorted(off, starts, side="right")
    has_off = i_off < off.size
    first_off = np.where(has_off, off[np.minimum(i_off, off.size - 1)], np.inf)
    ok = has_off & (first_off < window_end)
    starts, window_end, first_off = starts[ok], window_end[ok], first_off[ok]
    # (n_barcodes, n_bits) cursor positions
    cursors = first_off[:, None] + BARCODE_BIT_WIDTH * np.arange(N_BITS)[None, :]

    def next_edge(edges: FloatArray) -> FloatArray:
        j = np.searchsorted(edges, cursors, side="right")
        t = edges[np.minimum(j, edges.size - 1)]
        valid = (j < edges.size) & (t < window_end[:, None])
        return np.where(valid, t, np.inf)

    bits = next_edge(on) < next_edge(off)
    values = (bits.astype(np.int64) << np.arange(N_BITS, dtype=np.int64)[None, :]).sum(axis=1)
    return starts, values


def ttl_edge_times(
    sample_numbers: npt.ArrayLike, states: npt.ArrayLike, *, first_sample: int, sample_rate: float
) -> tuple[FloatArray, FloatArray]:
    """Return (rising, falling) edge times (s since the stream's first continuous sample) of TTL
    events: positive states are rising, negative falling, regardless of line (FORMATS §10)."""
    s = np.asarray(sample_numbers, dtype=np.int64)
    st = np.asarray(states)
    t = (s - first_sample) / float(sample_rate)
    return t[st > 0], t[st < 0]


# ------------------------------------------------------------------------------- matching
def match_barcodes(
    stream_times: FloatArray,
    stream_values: npt.NDArray[np.int64],
    sync_times: FloatArray,
    sync_values: npt.NDArray[np.int64],
    *,
    name: str = "stream",
    path: object | None = None,
) -> FloatArray:
    """Return matched (stream time, sync time) pairs, shape (k, 2), sorted by stream time.

    Raises AlignmentError naming `name` when fewer than two barcodes match.
    """
    st = np.asarray(stream_times, np.float64)
    sv = np.asarray(stream_values, np.int64)
    mt = np.asarray(sync_times, np.float64)
    mv = np.asarray(sync_values, np.int64)
    pairs: list[FloatArray] = []
    ambiguous: list[tuple[float, FloatArray]] = []
    common = np.intersect1d(sv, mv)
    for v in common:  # loop over distinct barcode values (tens per session), not over samples
        ps = st[sv == v]
        ms = mt[mv == v]
        if ps.size == ms.size:
            pairs.append(np.column_stack([ps, ms]))
        else:
            ambiguous.extend((float(p), ms) for p in ps)
    matched = np.concatenate(pairs) if pairs else np.zeros((0, 2))
    if ambiguous and matched.shape[0]:
        offset = float(np.median(matched[:, 1] - matched[:, 0]))
        extra = []
        for p, ms in ambiguous:
            d = np.abs(ms - p - offset)
            if d.min() < MATCH_OFFSET_TOLERANCE and np.sum(d < MATCH_OFFSET_TOLERANCE) == 1:
                extra.append((p, float(ms[np.argmin(d)])))
        if extra:
            matched = np.concatenate([matched, np.array(extra)])
    if matched.shape[0]:
        d = matched[:, 1] - matched[:, 0]
        matched = matched[np.abs(d - np.median(d)) < MATCH_OFFSET_TOLERANCE]
        matched = matched[np.argsort(matched[:, 0])]
    if matched.shape[0] < 2:
        raise AlignmentError(
            f"stream {name}: only {matched.shape[0]} barcode(s) match the sync barcodes "
            f"({st.size} decoded on the stream, {mt.size} on sync)",
            path=path,
            field=name,
            expected="at least two barcodes with the same value on the stream and on sync bit 0",
        )
    return matched


def fit_clock(pairs: FloatArray, nominal_rate: float) -> tuple[float, float, float]:
    """Return (rate on sync, start time on sync, max residual s) of the line through `pairs`.

    `pairs` holds (stream time = samples / nominal rate, sync time) rows. Sample k of the stream
    is at ``start + k / rate``.
    """
    p = pairs[:, 0]
    m = pairs[:, 1]
    pc = p - p.mean()
    denom = float(np.dot(pc, pc))
    if pairs.shape[0] < 2 or denom == 0.0:
        return float(nominal_rate), float(np.mean(m - p)), float("nan")
    slope = float(np.dot(pc, m - m.mean()) / denom)  # sync seconds per stream second
    intercept = float(m.mean() - slope * p.mean())
    residual = float(np.max(np.abs(m - (intercept + slope * p))))
    rate = nominal_rate / slope
    if not np.isfinite(rate) or rate <= 0:
        return float(nominal_rate), float(np.mean(m - p)), residual
    return float(rate), intercept, residual


@dataclass(frozen=True)
class StreamClock:
    """A stream's clock on sync: sample k is at ``start_time + k / rate_on_sync`` seconds."""

    name: str
    nominal_rate: float
    rate_on_sync: float
    start_time: float
    num_samples: int
    #: number of barcodes used for the fit
    n_barcodes: int = 0
    #: largest |fitted − observed| sync time over the matched barcodes, s
    max_residual: float = float("nan")

    @property
    def stop_time(self) -> float:
        """Return the sync time just after the last sample."""
        return self.start_time + self.num_samples / self.rate_on_sync

    def times(self, samples: npt.ArrayLike) -> FloatArray:
        """Return sync times (s) of sample indices counted from the first continuous sample."""
        return np.asarray(samples, dtype=np.float64) / self.rate_on_sync + self.start_time


def align_stream(
    stream_rising: FloatArray,
    stream_falling: FloatArray,
    sync_barcodes: tuple[FloatArray, npt.NDArray[np.int64]],
    *,
    name: str,
    nominal_rate: float,
    num_samples: int,
    path: object | None = None,
) -> StreamClock:
    """Return the StreamClock of one stream from its TTL edge times (s since its first sample)
    and the decoded sync barcodes (times, values)."""
    last = None
    if stream_rising.size or stream_falling.size:
        last = float(max(np.max(stream_rising, initial=0.0), np.max(stream_falling, initial=0.0)))
    times, values = decode_barcodes(stream_rising, stream_falling, total_duration=last)
    pairs = match_barcodes(times, values, *sync_barcodes, name=name, path=path)
    rate, start, residual = fit_clock(pairs, nominal_rate)
    return StreamClock(
        name=name,
        nominal_rate=float(nominal_rate),
        rate_on_sync=rate,
        start_time=start,
        num_samples=int(num_samples),
        n_barcodes=int(pairs.shape[0]),
        max_residual=residual,
    )


# ------------------------------------------------------------------------- session level
@dataclass(frozen=True)
class SessionClocks:
    """Every Open Ephys stream of a session and its clock on sync (or why it has none)."""

    streams: Mapping[str, oe.ContinuousStream]
    clocks: Mapping[str, StreamClock]
    failures: Mapping[str, NpcFramesError]
    sync_total_seconds: float
    settings: oe.SettingsXml | None = None
    settings_error: NpcFramesError | None = None

    def probe_stream(self, letter: str, band: Literal["ap", "lfp"] = "ap") -> oe.ContinuousStream:
        """Return the `band` stream of probe `letter` (MissingFileError if not recorded)."""
        for s in self.streams.values():
            if s.kind == band and s.probe_letter == letter:
                return s
        broken = "; ".join(
            str(e)
            for k, e in self.failures.items()
            if os.path.basename(k).startswith("Record Node")
        )
        raise MissingFileError(
            f"no {band.upper()} stream for probe {letter}"
            + (f" (unreadable record nodes: {broken})" if broken else ""),
            field=f"Probe{letter}-{band.upper()}",
            expected=f"one of {sorted(self.streams)}",
        )

    def clock(self, stream: oe.ContinuousStream) -> StreamClock:
        """Return the clock of `stream`, re-raising its alignment failure if it has none."""
        if stream.folder_name in self.clocks:
            return self.clocks[stream.folder_name]
        raise self.failures[stream.folder_name]


#: clocks of the sessions a process visits (a converting process visits many sessions)
_MEMO: Memo[SessionClocks] = Memo("session clocks", maxsize=32)


def local_record_nodes(raw: RawSession) -> tuple[str, ...]:
    """Return local folders of the session's Open Ephys record nodes (copies for remote ones).

    Raises AbsentModalityError (a MissingFileError) when the session has none.
    """
    if not raw.record_node_paths:
        raise AbsentModalityError(
            "session has no Open Ephys record nodes",
            path=raw.root,
            expected="ecephys/ecephys_clipped/Record Node NNN/",
        )
    return tuple(raw.local(p) for p in raw.record_node_paths)


def _clock_inputs(node: str) -> list[str]:
    """Return the local files of a record node that stream clocks are read from (sorted)."""
    import glob

    base = glob.escape(node)
    patterns = ("*/*/structure.oebin", "*/*/sync_messages.txt", "*/*/events/*/TTL/*.npy")
    return sorted(p for pat in patterns for p in glob.glob(os.path.join(base, pat)))


@timed
def session_clocks(raw: RawSession, *, sync: SyncData | None = None) -> SessionClocks:
    """Return every stream of the session's record nodes aligned to sync (memoized, for the last
    32 sessions, by the paths and content keys of the sync file and of each record node's
    settings.xml; pass `sync` to bypass the memo).

    Streams that cannot be aligned are listed in ``failures`` with their AlignmentError (or
    missing-file error) instead of raising, so that the other probes still convert. A session
    without a sync file raises MissingFileError.
    """
    nodes = local_record_nodes(raw)
    if sync is not None:
        return _session_clocks(nodes, sync)
    sync_path = raw.sync_path
    if sync_path is None:
        raise MissingFileError(
            "session has no sync file: Open Ephys streams cannot be put on the sync clock",
            path=raw.root,
            expected="behavior/<YYYYMMDDTHHMMSS>.h5",
        )
    key = (
        tuple((n, storage.stat_key(os.path.join(n, "settings.xml"))) for n in nodes),
        # every other file the clocks are read from: a repaired file must not hit a stale entry
        tuple((p, storage.stat_key(p)) for n in nodes for p in _clock_inputs(n)),
        (sync_path, raw.stat_key(sync_path)),
    )
    return _MEMO.get(key, lambda: _session_clocks(nodes, read_sync(raw.local(sync_path))))


def _session_clocks(nodes: tuple[str, ...], sync: SyncData) -> SessionClocks:
    total = float(sync.total_seconds)
    sync_barcodes = decode_barcodes(
        sync.rising(SYNC_BARCODE_LINE), sync.falling(SYNC_BARCODE_LINE), total_duration=total
    )
    clocks: dict[str, StreamClock] = {}
    failures: dict[str, NpcFramesError] = {}
    recordings = []
    for node in nodes:  # one or two record nodes; a broken one must not hide the others
        try:
            recordings.append(oe.read_recording(node))
        except NpcFramesError as exc:
            failures[node] = exc
    streams = oe.merge_streams(recordings)
    for folder, s in streams.items():  # a handful of streams per session
        try:
            samples, states = oe.read_ttl(s)
            rising, falling = ttl_edge_times(
                samples, states, first_sample=s.first_sample, sample_rate=s.sample_rate
            )
            # clipped uploads without their zarr do not record the full length: the last TTL
            # event is the latest evidence that the stream was still recording
            last_ttl = int(samples.max(initial=s.first_sample) - s.first_sample) + 1
            n = s.num_samples_compressed or max(s.num_samples, last_ttl)
            clocks[folder] = align_stream(
                rising,
                falling,
                sync_barcodes,
                name=folder,
                nominal_rate=s.sample_rate,
                num_samples=n,
                path=s.events_path,
            )
        except NpcFramesError as exc:
            failures[folder] = exc
    settings: oe.SettingsXml | None = None
    settings_error: NpcFramesError | None = None
    try:
        settings = oe.read_settings_xml(nodes[0])
    except NpcFramesError as exc:
        settings_error = exc
    return SessionClocks(
        streams=streams,
        clocks=clocks,
        failures=failures,
        sync_total_seconds=total,
        settings=settings,
        settings_error=settings_error,
    )


@timed
def continuous(
    raw: RawSession, probe: str, band: Literal["ap", "lfp"] = "ap"
) -> tuple[np.memmap[Any, np.dtype[np.int16]], FloatArray]:
    """Return (int16 memmap (samples, channels), sample times on sync in s) of a probe's band.

    `probe` is a letter or any probe name (``"A"``, ``"probeA"``). Multiply samples by the
    stream's ``bit_volts`` for µV. The times array holds one float64 per sample (1.3 GB for
    90 minutes of AP): slice the memmap and compute ``clock.times(k)`` for long recordings.
    """
    from npc_frames.ids import parse_probe_letter

    letter = parse_probe_letter(probe)
    clocks = session_clocks(raw)
    stream = clocks.probe_stream(letter, band)
    clock = clocks.clock(stream)
    data = oe.continuous_memmap(stream)
    return data, clock.times(np.arange(data.shape[0]))
