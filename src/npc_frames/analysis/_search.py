"""How many of each unit's sorted spikes lie below each of a set of sorted bounds (numpy).

One ``np.searchsorted`` per unit, vectorized over every window edge of every interval at once:
exact, and never a loop over spikes or intervals. A compiled (numba) kernel was measured against
this on full-scale sessions and not adopted: its per-session search was ~20 % faster, but
importing numba and loading the cached kernel cost ~1.3 s per process, more than it saves for 20
sessions (``benchmarks/bench_analysis.py --kernels``; figures in docs/analysis.md).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


def below_into(
    values: npt.NDArray[np.float64],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    bounds: npt.NDArray[np.float64],
    rows: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
) -> None:
    """Set ``out[rows[i], j]`` to how many of ``values[starts[i]:starts[i] + lengths[i]]`` are
    ``< bounds[j]``.

    Each unit's slice must be sorted ascending; `bounds` sorted ascending and de-duplicated, so
    that numpy's binary search reuses the previous answer as a hint.
    """
    for i in range(starts.size):  # per unit, never per spike or per bound
        a = int(starts[i])
        out[rows[i]] = np.searchsorted(values[a : a + int(lengths[i])], bounds, side="left")
