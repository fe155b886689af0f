"""Where one session's spikes come from: any units frame, or a cache's units files.

Both sources give the same :class:`Spikes`: "segments" of float64 values (a flat array, or
byte ranges of an open file) with, per unit, the start and length of its sorted spike times, so
the counting code does not know which it got.

- Any frame (eager, or a LazyFrame that computes ``spike_times``): one session is collected at a
  time through Polars and its Arrow chunks are viewed without copying (``npc_frames.lists``).
- A LazyFrame that is a plain scan of a local cache (``nf.scan_units(cache)``, possibly filtered
  and projected): unit rows are selected through Polars without touching ``spike_times``; the
  byte range of each unit's values in the packed column is found from the Parquet page headers
  (``_pages.read_packed``) and, when the unit is searched, read from the page cache into one
  reused aligned buffer: no decode, no per-session allocation of the spikes.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import polars as pl

from npc_frames.analysis._pages import _Unsupported, read_packed
from npc_frames.analysis._search import below_into, read_values
from npc_frames.lists import flat_list_chunks

logger = logging.getLogger(__name__)

UNIT_KEY = "unit_id"


@dataclass(frozen=True)
class Segment:
    """Units whose spikes lie in one flat array: ``values[starts[i]:starts[i] + lengths[i]]`` are
    the sorted spike times of unit ``rows[i]`` (its row in :attr:`Spikes.unit_ids`).

    Or, with `file` set instead of `values`: ``lengths[i]`` little-endian float64 at byte
    ``starts[i]`` of that open file (read with ``os.preadv`` when searched)."""

    values: npt.NDArray[np.float64] | None
    starts: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int64]
    file: BinaryIO | None = None


@dataclass(frozen=True)
class Spikes:
    """The spikes of one session's selected units."""

    unit_ids: pl.Series  # (U,) str, in the order of the units frame
    segments: list[Segment]
    obs: npt.NDArray[np.float64] | None  # (units, k, 2) observation intervals, NaN-padded

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    def close(self) -> None:
        """Close the files the segments read from (the unit ids and lengths stay usable)."""
        for s in self.segments:
            if s.file is not None:
                s.file.close()

    def lengths(self) -> npt.NDArray[np.int64]:
        """Return the spike count of every unit."""
        out = np.zeros(self.n_units, dtype=np.int64)
        for s in self.segments:
            out[s.rows] = s.lengths
        return out

    def below(self, bounds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Return a (units, bounds) matrix: number of each unit's spikes < each bound.

        NaN bounds count every spike (callers null those windows).
        """
        unique, inverse = self.below_unique(bounds)
        return unique[:, inverse]

    def below_unique(
        self, bounds: npt.NDArray[np.float64], dtype: type[np.signedinteger[Any]] = np.int64
    ) -> tuple[npt.NDArray[np.signedinteger[Any]], npt.NDArray[np.int64]]:
        """Return (a (units, distinct bounds) matrix of spikes below each distinct bound, the
        column of each of `bounds` in it): the matrix without repeating shared edges.

        `dtype` is that of the matrix (int32 when no unit has 2**31 spikes or more)."""
        unique, inverse = np.unique(bounds, return_inverse=True)
        if np.iinfo(dtype).max < int(self.lengths().max(initial=0)):
            dtype = np.int64
        out = np.zeros((self.n_units, unique.size), dtype=dtype)
        for s in self.segments:
            fd = s.file.fileno() if s.file is not None else None
            below_into(s.values, s.starts, s.lengths, unique, s.rows, out, fd=fd)
        return out, inverse.ravel()

    def flat(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Return all spikes as one array in unit order (a copy) and per-unit offsets."""
        lengths = self.lengths()
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out = np.empty(int(offsets[-1]), dtype=np.float64)
        for s in self.segments:
            for start, n, row in zip(s.starts, s.lengths, s.rows, strict=True):  # per unit
                dest = out[offsets[row] : offsets[row] + n]
                if s.file is not None:
                    read_values(s.file.fileno(), int(start), dest)
                else:
                    assert s.values is not None
                    dest[...] = s.values[start : start + n]
        return out, offsets


def obs_intervals(df: pl.DataFrame) -> npt.NDArray[np.float64] | None:
    """Return a (units, k, 2) array of observation intervals (NaN-padded to the largest k), or
    None without an ``obs_intervals`` column."""
    if "obs_intervals" not in df.columns:
        return None
    obs = df["obs_intervals"]
    n = obs.list.len().fill_null(0).to_numpy().astype(np.int64)
    k = int(n.max()) if n.size else 0
    out = np.full((df.height, k, 2), np.nan)
    if k:
        flat = obs.explode().drop_nulls()  # one [start, stop] per interval, unit by unit
        unit = np.repeat(np.arange(df.height), n)
        rank = np.arange(unit.size) - np.repeat(np.cumsum(n) - n, n)
        out[unit, rank, 0] = flat.list.get(0, null_on_oob=True).cast(pl.Float64).to_numpy()
        out[unit, rank, 1] = flat.list.get(1, null_on_oob=True).cast(pl.Float64).to_numpy()
    return out


# ------------------------------------------------------------------------------ any frame
def load_frame_spikes(units: pl.LazyFrame, session_id: str, with_obs: bool) -> Spikes:
    """Return one session's spikes, collected through Polars (one session in memory at a time)."""
    cols = [UNIT_KEY, "spike_times"] + (["obs_intervals"] if with_obs else [])
    df = units.filter(pl.col("session_id") == session_id).select(cols).collect()
    spike_times = df["spike_times"].cast(pl.List(pl.Float64))
    if spike_times.null_count():  # a null list is a unit without spikes
        spike_times = spike_times.to_frame("s").select(
            pl.col("s").fill_null(pl.lit([], dtype=pl.List(pl.Float64)))
        )["s"]
    segments, row = [], 0
    # per-chunk zero-copy views (a scan returns one chunk per row group: no rechunk)
    for values, offsets in flat_list_chunks(spike_times):
        v = values[offsets[0] : offsets[-1]]
        o = offsets - offsets[0]
        n = o.size - 1
        # binary search needs spikes sorted within each unit (the units component guarantees
        # it for the cache; a user's frame is checked): one comparison pass, a per-unit sort
        # only if some unit is out of order
        descending = v[1:] < v[:-1]
        if descending.any():
            ends = o[1:-1] - 1  # pairs that straddle two units do not count
            descending[ends[(ends >= 0) & (ends < descending.size)]] = False
            if descending.any():
                unit_of = np.repeat(np.arange(n), np.diff(o))
                v = v[np.lexsort((v, unit_of))]
        segments.append(Segment(v, o[:-1], np.diff(o), np.arange(row, row + n, dtype=np.int64)))
        row += n
    return Spikes(df[UNIT_KEY], segments, obs_intervals(df) if with_obs else None)


# ------------------------------------------------------------------------- local cache files
_ALLOWED = ("simple π", "SELECT", "FROM", "FILTER", "PROJECT", "SELECTION:", "ESTIMATED")
_UDF_LIST = re.compile(r'^\[(col\("\w+"\)\.python_udf\(\)(, )?)+\]$')
_UNITS_FILE = re.compile(r"^(?P<root>/.*)/units/session_id=[^/]+/data\.parquet$")


def cache_root_of(units: pl.LazyFrame, *, strict: bool = True) -> str | None:
    """Return the local cache root that `units` is a plain scan of, or None.

    With `strict`, only plans made of the cache scan (``nf.scan_units``), its unpacking of the
    packed columns, filters and projections qualify — a plan that computes, renames or joins
    anything that reaches ``session_id``, ``unit_id`` or ``spike_times`` does not, and is read the
    ordinary way. Without `strict`, any plan that scans a cache's units files names its root.
    """
    try:
        plan = units.select("session_id", UNIT_KEY, "spike_times").explain()
    except Exception:  # a plan Polars cannot explain is not a plain scan
        return None
    lines = [ln.strip() for ln in plan.splitlines() if ln.strip()]
    root = None
    n_with = n_scan = 0
    for i, line in enumerate(lines):
        if line.startswith("Parquet SCAN ["):
            n_scan += 1
            first = line[len("Parquet SCAN [") :].split(",")[0].rstrip("]").strip()
            m = _UNITS_FILE.match(first)
            if m is None:
                return None
            root = m["root"]
        elif line.startswith("WITH_COLUMNS:"):
            n_with += 1
            if i + 1 >= len(lines) or not _UDF_LIST.match(lines[i + 1]):
                return None
        elif _UDF_LIST.match(line) or line.startswith(_ALLOWED):
            continue
        elif strict:
            return None
    if strict and (n_scan != 1 or n_with > 1):
        return None
    return root


def _units_file(root: str, session_id: str) -> str:
    from npc_frames.cache import data_path

    return data_path(root, "units", session_id)


def load_cache_spikes(
    root: str, session_id: str, selected: pl.DataFrame, with_obs: bool
) -> Spikes | None:
    """Return the spikes of the `selected` units (``unit_id`` [+ ``obs_intervals``] rows of one
    session) read from the memory-mapped units file of `root`, or None if the file is not laid
    out as a packed column (the caller then reads it through Polars)."""
    import pyarrow.parquet as pq

    path = _units_file(root, session_id)
    try:
        with open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        file = pq.ParquetFile(path)
        packed = read_packed(path, "spike_times", buffer, file.metadata)
        # a plain scan keeps the file's row order and a filter only drops rows, so a selection
        # with as many rows as the file is the file: no need to read and match its ids
        everything = selected.height == file.metadata.num_rows
        file_ids = [] if everything else file.read(columns=[UNIT_KEY])[UNIT_KEY].to_pylist()
    except (_Unsupported, OSError, ValueError, KeyError) as exc:
        logger.debug("%s: reading spike_times through Polars (%s)", path, exc)
        return None
    if everything:
        row_in_file = np.arange(selected.height, dtype=np.int64)
    else:
        position = {u: k for k, u in enumerate(file_ids)}
        wanted = selected[UNIT_KEY].to_list()
        if len(position) != len(file_ids) or any(u not in position for u in wanted):
            return None  # duplicate or unknown ids: not a plain selection of this file's rows
        row_in_file = np.fromiter((position[u] for u in wanted), dtype=np.int64, count=len(wanted))
    start, nbytes = packed.start[row_in_file], packed.nbytes[row_in_file]
    if np.any(nbytes % 8) or sys.byteorder != "little":
        return None
    # each unit's values are read (os.preadv) into an aligned buffer when searched: one copy
    # from the page cache and no page of the file mapped into this process (no page faults, no
    # resident file pages). Mapping them instead costs more: the values of most units are not
    # 8-byte aligned in the pages (a 4-byte length prefix precedes each), so numpy's search
    # copies them anyway, into fresh allocations
    del packed
    buffer.close()  # only the page headers and length prefixes were needed
    has = np.flatnonzero(nbytes > 0)
    segment = Segment(None, start[has], nbytes[has] // 8, has, file=open(path, "rb"))  # noqa: SIM115
    return Spikes(selected[UNIT_KEY], [segment], obs_intervals(selected) if with_obs else None)


def cache_file_exists(root: str, session_id: str) -> bool:
    """Return True if `root` holds a units file for `session_id`."""
    try:
        return os.path.isfile(_units_file(root, session_id))
    except Exception:
        return False
