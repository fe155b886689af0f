"""Read AIBS sync HDF5 files (FORMATS §2.1–§2.2) into rising/falling edge times per line.

A sync file stores only the *changes* of a 32-bit digital word sampled at ~100 kHz: dataset
``data`` has one row ``[sample_index, new_state]`` per change (row 0 = ``[0, initial_state]``) and
dataset ``meta`` holds the ``repr`` of a dict (sample rate, start time, 32 line labels, total
samples). :func:`read_sync` decodes every edge of every line once, with vectorized bit operations,
and returns a :class:`SyncData` that hands out per-line edge times in seconds.

Edge semantics are exactly those of ``npc_sync.SyncDataset`` / AllenSDK (§2.2):

* an edge of line *k* is a row *i ≥ 1* whose bit *k* differs from row *i − 1*; **row 0 never
  yields an edge** (a line that is high at the first sample has no rising edge at t = 0);
* the edge time is that row's counter value (the last sample *before* the change) divided by the
  sample rate.

Decision on the counter-rollover **[quirk]**: npc applies its rollover correction only when
``counter_bits != 32`` — the inverted condition, since it is a 32-bit counter that wraps (after
2**32 samples = 11.9 h at 100 kHz). npc_frames always adds 2**32 after every negative step of the
counter column. For recordings shorter than 11.9 h the counter never steps backwards, so the result
is identical to npc; for longer ones ours is monotonic where npc's would jump back to zero.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Mapping
from typing import IO, Any, TypeAlias

import h5py
import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError
from npc_frames.memo import Memo
from npc_frames.readers._h5 import h5_errors, open_h5
from npc_frames.readers._literal import literal_eval

__all__ = ["N_LINES", "SyncData", "read_sync"]

logger = logging.getLogger(__name__)

#: the sync program samples one 32-bit word per sample: bit k = line k (FORMATS §2.1)
N_LINES = 32
#: a 32-bit counter wraps to 0 after this many samples (11.9 h at 100 kHz)
COUNTER_ROLLOVER = 2**32

PathOrFile: TypeAlias = str | os.PathLike[str] | IO[bytes] | h5py.File


class SyncData:
    """Decoded sync file: metadata plus every edge of every line, times in seconds from sample 0.

    Built by :func:`read_sync`; arrays it returns are read-only views shared between callers.
    """

    __slots__ = (
        "_edge_bits",
        "_edge_rising",
        "_edge_times",
        "_per_line",
        "line_labels",
        "meta",
        "sample_rate",
        "source",
        "start_time",
        "total_samples",
    )

    def __init__(
        self,
        *,
        meta: Mapping[str, Any],
        sample_rate: float,
        start_time: datetime.datetime,
        total_samples: int,
        line_labels: list[str],
        edge_times: npt.NDArray[np.float64],
        edge_bits: npt.NDArray[np.uint8],
        edge_rising: npt.NDArray[np.bool_],
        source: str | None = None,
    ) -> None:
        self.meta = dict(meta)
        self.sample_rate = float(sample_rate)
        self.start_time = start_time
        self.total_samples = int(total_samples)
        self.line_labels = list(line_labels)
        self.source = source
        # edges stay in time order; each line's edges are gathered on first request
        self._edge_times = _readonly(np.asarray(edge_times, dtype=np.float64))
        self._edge_bits = _readonly(np.asarray(edge_bits, dtype=np.uint8))
        self._edge_rising = _readonly(np.asarray(edge_rising, dtype=np.bool_))
        self._per_line: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {}

    def __repr__(self) -> str:
        return (
            f"SyncData(source={self.source!r}, start_time={self.start_time.isoformat()}, "
            f"total_seconds={self.total_seconds:.1f}, n_edges={self._edge_times.size})"
        )

    # ------------------------------------------------------------------------------- metadata
    @property
    def total_seconds(self) -> float:
        """Return the recording duration in seconds (``total_samples / sample_rate``)."""
        return self.total_samples / self.sample_rate

    @property
    def stop_time(self) -> datetime.datetime:
        """Return the wall-clock end of the recording (start + total seconds)."""
        return self.start_time + datetime.timedelta(seconds=self.total_seconds)

    # ---------------------------------------------------------------------------------- lines
    def bit(self, line: str | int) -> int:
        """Return the bit index of `line` (a label from ``line_labels`` or an int 0–31).

        Raises BadFormatError naming the file and the line when the label is not in the file's
        ``line_labels`` (or the integer is outside 0–31).
        """
        if isinstance(line, bool):  # bool is an int subclass; never a line
            raise BadFormatError(
                "sync line must be a label or a bit index, not a bool",
                path=self.source,
                field=str(line),
                expected="a line label or an int 0-31",
            )
        if isinstance(line, int | np.integer):
            if not 0 <= int(line) < N_LINES:
                raise BadFormatError(
                    f"sync line bit {line} out of range",
                    path=self.source,
                    field=f"line {line}",
                    expected=f"a bit index 0-{N_LINES - 1}",
                )
            return int(line)
        if line and line in self.line_labels:
            return self.line_labels.index(line)
        raise BadFormatError(
            f"sync file has no line labelled {line!r}",
            path=self.source,
            field=f"meta['line_labels'] {line!r}",
            expected=f"one of {[label for label in self.line_labels if label]}",
        )

    def has_line(self, line: str | int) -> bool:
        """Return True if `line` (label or bit) exists in this file (it may still have no edges)."""
        if isinstance(line, bool):
            return False
        if isinstance(line, int | np.integer):
            return 0 <= int(line) < N_LINES
        return bool(line) and line in self.line_labels

    def _line(self, line: str | int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        b = self.bit(line)
        if b not in self._per_line:
            idx = np.flatnonzero(self._edge_bits == b)
            self._per_line[b] = (
                _readonly(self._edge_times[idx]),
                _readonly(self._edge_rising[idx]),
            )
        return self._per_line[b]

    def rising(self, line: str | int) -> npt.NDArray[np.float64]:
        """Return the rising-edge times of `line` in seconds (sorted, read-only)."""
        times, rising = self._line(line)
        return _readonly(times[rising])

    def falling(self, line: str | int) -> npt.NDArray[np.float64]:
        """Return the falling-edge times of `line` in seconds (sorted, read-only)."""
        times, rising = self._line(line)
        return _readonly(times[~rising])

    def all_edges(self, line: str | int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Return (times, is_rising) of every edge of `line`, in time order."""
        return self._line(line)

    def edges(self) -> pl.DataFrame:
        """Return every edge of every line: columns line (int), label (str), time (s), rising.

        Rows are in time order; edges of several lines at one sample are ordered by line.
        """
        labels = pl.Series("label", self.line_labels, dtype=pl.String)
        return pl.DataFrame(
            {
                "line": self._edge_bits.astype(np.int64),
                "label": labels.gather(self._edge_bits.astype(np.uint32)),
                "time": self._edge_times,
                "rising": self._edge_rising,
            }
        )


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a = a.view()
    a.flags.writeable = False
    return a


# ------------------------------------------------------------------------------------ decoding
def _lowest_bit(words: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Return each word with only its lowest set bit kept (``w & -w``)."""
    low = ~words
    low += np.uint32(1)
    low &= words
    return low


def _bit_index(single: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    """Return the index of the one set bit of each word (popcount of ``w - 1``)."""
    return np.bitwise_count(single - np.uint32(1)).astype(np.uint8, copy=False)


def decode_edges(
    counter: npt.NDArray[np.integer[Any]], state: npt.NDArray[np.integer[Any]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Return (sample, bit, rising) of every edge encoded by sync event rows (vectorized).

    `counter` and `state` are the first and last columns of ``data``. Row 0 only sets the
    initial state; row i ≥ 1 yields one edge per bit that differs from row i − 1. The counter is
    corrected for 32-bit rollover (2**32 added after every negative step).
    """
    counter = np.asarray(counter)
    word = np.ascontiguousarray(state).astype(np.uint32, copy=False)
    changed = word[1:] ^ word[:-1]
    rows = np.flatnonzero(changed)
    remaining = changed[rows]
    new_word = word[1:][rows]
    del changed  # keep the peak low on 90-minute files
    # every changed row yields its lowest changed bit (one vectorized pass over all rows); the
    # few rows where several lines changed at once (a percent or less) yield their other bits
    # in further passes over those rows only, inserted right after their row's first edge so
    # that edges stay in (row, bit) order
    low = _lowest_bit(remaining)
    bits = _bit_index(low)
    rising = (new_word & low) != 0
    remaining ^= low
    del low
    edge_rows = rows + 1  # changed[j] is the change at row j + 1
    multi = np.flatnonzero(remaining)
    if multi.size:
        at: list[npt.NDArray[np.intp]] = []
        extra_bits: list[npt.NDArray[np.uint8]] = []
        extra_rising: list[npt.NDArray[np.bool_]] = []
        rest, word_m = remaining[multi], new_word[multi]
        while multi.size:
            low = _lowest_bit(rest)
            at.append(multi + 1)  # after the row's earlier edges, before the next row's
            extra_bits.append(_bit_index(low))
            extra_rising.append((word_m & low) != 0)
            rest ^= low
            keep = rest != 0
            multi, rest, word_m = multi[keep], rest[keep], word_m[keep]
        where = np.concatenate(at)
        order = np.argsort(where, kind="stable")  # equal positions keep pass (= bit) order
        where = where[order]
        edge_rows = np.insert(edge_rows, where, edge_rows[where - 1])
        bits = np.insert(bits, where, np.concatenate(extra_bits)[order])
        rising = np.insert(rising, where, np.concatenate(extra_rising)[order])
    samples = counter[edge_rows].astype(np.int64)
    wrapped = counter[1:] < counter[:-1]
    if wrapped.any():  # 32-bit counter rolled over: add 2**32 per wrap before each edge row
        n_wraps = np.concatenate([[0], np.cumsum(wrapped)])
        samples += n_wraps[edge_rows].astype(np.int64) * COUNTER_ROLLOVER
    return samples, bits, rising


def _parse_meta(raw: Any, source: str | None) -> dict[str, Any]:
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.size == 1 else raw.tobytes()
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        meta = literal_eval(text)  # ast.literal_eval, thread-safe (readers/_literal.py)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise BadFormatError(
            f"sync meta is not a Python literal dict: {exc}",
            path=source,
            field="meta",
            expected="the repr of a dict (parsed with ast.literal_eval)",
        ) from None
    if not isinstance(meta, dict):
        raise BadFormatError(
            f"sync meta is a {type(meta).__name__}, not a dict",
            path=source,
            field="meta",
            expected="the repr of a dict",
        )
    return meta


def _sample_rate(meta: Mapping[str, Any], source: str | None) -> float:
    daq = meta.get("ni_daq")
    if not isinstance(daq, Mapping):
        raise BadFormatError(
            "sync meta lacks the ni_daq dict",
            path=source,
            field="meta['ni_daq']",
            expected="a dict with 'sample_freq' or 'counter_output_freq'",
        )
    for key in ("sample_freq", "counter_output_freq"):  # npc's order of preference
        if key in daq:
            try:
                rate = float(daq[key])
            except (TypeError, ValueError):
                rate = float("nan")
            if not np.isfinite(rate) or rate <= 0:
                raise BadFormatError(
                    f"sync sample rate {daq[key]!r} is not a positive number",
                    path=source,
                    field=f"meta['ni_daq']['{key}']",
                    expected="a positive frequency in Hz (100000.0 on NP rigs)",
                )
            return rate
    raise BadFormatError(
        "sync meta has no sample rate",
        path=source,
        field="meta['ni_daq']['counter_output_freq']",
        expected="'sample_freq' or 'counter_output_freq' in meta['ni_daq']",
    )


def _start_time(meta: Mapping[str, Any], source: str | None) -> datetime.datetime:
    value = meta.get("start_time")
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise BadFormatError(
            f"sync start_time {value!r} is not an ISO datetime",
            path=source,
            field="meta['start_time']",
            expected="'YYYY-MM-DD HH:MM:SS.ffffff'",
        ) from None


def _from_h5(f: h5py.File, source: str | None) -> SyncData:
    for name in ("data", "meta"):
        if name not in f:
            raise BadFormatError(
                f"sync file lacks the {name!r} dataset",
                path=source,
                field=name,
                expected="datasets 'data' (n x 2 uint32 events) and 'meta' (repr of a dict)",
            )
    try:
        meta = _parse_meta(f["meta"][()], source)
        data = f["data"][()]
    except (OSError, KeyError, RuntimeError) as exc:
        raise BadFormatError(
            f"sync file datasets cannot be read: {exc}",
            path=source,
            field="data",
            expected="a readable HDF5 dataset",
        ) from None
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 2:
        raise BadFormatError(
            f"sync data has shape {data.shape}",
            path=source,
            field="data",
            expected="a 2-D array (n_events + 1, 2): [sample, state] rows",
        )
    rate = _sample_rate(meta, source)
    labels = [str(x) for x in meta.get("line_labels", [])]
    labels = (labels + [""] * N_LINES)[:N_LINES]
    samples, bits, rising = decode_edges(data[:, 0], data[:, -1])
    total = meta.get("total_samples")
    if not isinstance(total, int | float) or total <= 0:
        # older files may lack it: the last event is the best lower bound on the duration
        total = int(samples[-1]) + 1 if samples.size else int(data[-1, 0]) + 1
    return SyncData(
        meta=meta,
        sample_rate=rate,
        start_time=_start_time(meta, source),
        total_samples=int(total),
        line_labels=labels,
        edge_times=samples / rate,
        edge_bits=bits,
        edge_rising=rising,
        source=source,
    )


#: decoded sync files (a few: one per session being converted; each holds every edge)
_MEMO: Memo[SyncData] = Memo("sync files", maxsize=4)


_MISSING = "an existing sync .h5 file"
_EXPECTED = "an HDF5 file with datasets 'data' and 'meta'"


def _read_path(path: str) -> SyncData:
    with h5_errors(path, what="sync file", missing=_MISSING, expected=_EXPECTED):
        f, handle = open_h5(path, what="sync file", missing=_MISSING, expected=_EXPECTED)
        try:
            return _from_h5(f, path)
        finally:
            f.close()
            if handle is not None:
                handle.close()


@timed
def read_sync(path_or_file: PathOrFile, *, source: str | None = None) -> SyncData:
    """Return the decoded sync file (metadata and all edges) at `path_or_file`.

    Parameters
    ----------
    path_or_file:
        A local path, an fsspec URL (``s3://…``), an open binary file object or an open
        ``h5py.File``.
    source:
        Name quoted in errors and kept as ``SyncData.source`` (defaults to the path).

    Local paths are memoized by path and content key (:meth:`npc_frames.memo.Memo.read`):
    calling again on an unchanged file returns the same object. Raises MissingFileError for a
    missing file and BadFormatError (naming the file and the dataset/key) for a truncated file,
    missing ``data``/``meta`` or unusable meta.
    """
    if isinstance(path_or_file, h5py.File):
        return _from_h5(path_or_file, source or path_or_file.filename)
    if isinstance(path_or_file, str | os.PathLike):
        return _MEMO.read(os.fspath(path_or_file), _read_path)
    name = source or getattr(path_or_file, "path", None) or getattr(path_or_file, "name", None)
    with (
        h5_errors(name, what="sync file", missing=_MISSING, expected=_EXPECTED),
        h5py.File(path_or_file, "r") as f,
    ):
        return _from_h5(f, None if name is None else str(name))
