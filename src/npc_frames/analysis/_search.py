"""How many of each unit's sorted spikes lie below each of a set of sorted bounds (numpy).

One ``np.searchsorted`` per unit, vectorized over every window edge of every interval at once:
exact, and never a loop over spikes or intervals. A compiled (numba) kernel was measured against
this on full-scale sessions and not adopted: its per-session search was no faster, and
importing numba and loading the cached kernel cost seconds per process, more than the whole
search of 20 sessions (``benchmarks/bench_analysis.py --kernels``; figures in docs/analysis.md).

Spikes read from a cache's mapped pages are mostly not 8-byte aligned (a unit's values follow a
4-byte length prefix), and ``np.searchsorted`` copies an unaligned array into a fresh allocation
before searching it: for large units that is a new anonymous mapping each time, whose pages the
kernel must fault in and zero. :func:`below_into` copies such units into one aligned scratch
buffer per thread instead, reused from unit to unit and session to session.
"""

from __future__ import annotations

import logging
import os
import threading

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

_local = threading.local()
#: scratch buffers larger than this (float64 values) are not kept between calls
_KEEP_VALUES = 16 * 2**20


def _scratch(n: int) -> npt.NDArray[np.float64]:
    """Return this thread's aligned scratch buffer with room for at least `n` values."""
    buf: npt.NDArray[np.float64] | None = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, 1 << 16), dtype=np.float64)
        if buf.size <= _KEEP_VALUES:
            _local.buf = buf
    return buf


def read_values(fd: int, offset: int, dest: npt.NDArray[np.float64]) -> None:
    """Fill `dest` (native little-endian float64) with the bytes at `offset` of file `fd`."""
    want = dest.nbytes
    got = os.preadv(fd, [dest.data.cast("B")], offset) if want else 0
    if got != want:
        raise OSError(f"read {got} of {want} bytes at offset {offset}")


def below_into(
    values: npt.NDArray[np.float64] | None,
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    fd: int | None = None,
) -> None:
    """Set ``out[rows[i], j]`` to how many of ``values[starts[i]:starts[i] + lengths[i]]`` are
    ``< bounds[j]``.

    Each unit's slice must be sorted ascending; `bounds` sorted ascending and de-duplicated, so
    that numpy's binary search reuses the previous answer as a hint. With `fd` instead of
    `values`, unit i's values are ``lengths[i]`` float64 at byte ``starts[i]`` of that file.
    """
    if values is None:
        assert fd is not None
        buf = _scratch(int(lengths.max(initial=0)))
        for a, n, r in zip(starts.tolist(), lengths.tolist(), rows.tolist(), strict=True):
            view = buf[:n]  # per unit, never per spike or per bound
            read_values(fd, a, view)
            out[r] = np.searchsorted(view, bounds, side="left")
        return
    aligned = values.flags.aligned
    if not aligned and lengths.size:
        buf = _scratch(int(lengths.max()))
    for a, n, r in zip(starts.tolist(), lengths.tolist(), rows.tolist(), strict=True):  # per unit
        if aligned:
            out[r] = np.searchsorted(values[a : a + n], bounds, side="left")
        else:
            view = buf[:n]
            view[...] = values[a : a + n]
            out[r] = np.searchsorted(view, bounds, side="left")
