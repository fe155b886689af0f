"""Zero-copy views of Polars ``list[f64]`` columns as flat numpy arrays with offsets.

Spike times live in list columns; numerical work wants one flat array plus per-row offsets. Reading
the Arrow buffers directly avoids a copy per row and avoids ``pyarrow.Array.to_numpy()``, which
imports pandas (seconds of import time).
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

logger = logging.getLogger(__name__)

__all__ = ["flat_list", "flat_list_chunks", "list_from_flat"]

_LARGE_F64 = pa.large_list(pa.float64())


def _chunk_views(arr: pa.Array) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    if arr.type != _LARGE_F64:
        arr = arr.cast(_LARGE_F64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
        arr.offset : arr.offset + len(arr) + 1
    ]
    child = arr.values
    values = np.frombuffer(child.buffers()[1], dtype=np.float64)[
        child.offset : child.offset + len(child)
    ]
    return values, offsets


def flat_list_chunks(
    series: pl.Series,
) -> list[tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]:
    """Return (values, offsets) views of each chunk of a ``list[f64]`` series, without copying.

    ``values[offsets[i]:offsets[i + 1]]`` is row i of the chunk; a null row is an empty slice.
    """
    out = []
    for chunk in series.get_chunks():
        arr = chunk.to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        out.append(_chunk_views(arr))
    return out


def flat_list(series: pl.Series) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Return (values, offsets) of a whole ``list[f64]`` series, offsets starting at 0.

    Copies only when the series has several chunks; null rows become empty slices.
    """
    series = series.cast(pl.List(pl.Float64))
    if series.null_count():
        series = series.to_frame("s").select(
            pl.col("s").fill_null(pl.lit([], dtype=pl.List(pl.Float64)))
        )["s"]
    chunks = flat_list_chunks(series.rechunk() if series.n_chunks() > 1 else series)
    if not chunks:
        return np.empty(0), np.zeros(1, dtype=np.int64)
    values, offsets = chunks[0]
    return values[offsets[0] : offsets[-1]], offsets - offsets[0]


def list_from_flat(
    values: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64], name: str = ""
) -> pl.Series:
    """Return a ``list[f64]`` series whose row i is ``values[offsets[i]:offsets[i + 1]]``."""
    arr = pa.LargeListArray.from_arrays(
        pa.array(offsets, pa.int64()), pa.array(values, pa.float64())
    )
    return pl.Series(name, pl.from_arrow(arr)).cast(pl.List(pl.Float64))
