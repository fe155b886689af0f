"""``ellipses_processed.h5`` of a DeepLabCut eye-tracking asset: ellipses fitted per video frame.

A pandas HDFStore (``fixed`` layout) with keys ``cr`` (corneal reflection), ``eye`` (inner eyelid
perimeter) and ``pupil``; rows = video frames 0..N-1. Per key ``<f>``: ``center_x``,
``center_y``, ``width``, ``height`` (semi-axes, px), ``phi`` (rad, counter-clockwise from the
image x axis), ``<f>_average_confidence``, ``<f>_area`` (π·max(width, height)², px²) and
``<f>_is_bad_frame`` (no accepted fit). Read with h5py: nothing is unpickled.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError
from npc_frames.readers.pandas_hdf import read_hdf_frame

logger = logging.getLogger(__name__)

__all__ = ["ELLIPSE_FEATURES", "ellipse_columns", "read_ellipses"]

#: HDFStore keys, in the order their columns are concatenated
ELLIPSE_FEATURES = ("cr", "eye", "pupil")
_GEOMETRY = ("center_x", "center_y", "width", "height", "phi")
_DERIVED = ("average_confidence", "area", "is_bad_frame")


def ellipse_columns() -> list[str]:
    """Return the 24 output column names: ``<feature>_<field>`` for cr, eye, pupil."""
    return [f"{f}_{c}" for f in ELLIPSE_FEATURES for c in (*_GEOMETRY, *_DERIVED)]


@timed
def read_ellipses(path: str) -> pl.DataFrame:
    """Return one row per video frame with the 24 ``<feature>_<field>`` ellipse columns.

    Raises BadFormatError when a key or column is missing, the keys differ in length, or the
    row index is not 0..N-1.
    """
    out: dict[str, np.ndarray] = {}
    n: int | None = None
    for feature in ELLIPSE_FEATURES:
        frame = read_hdf_frame(path, feature)
        if n is None:
            n = frame.n_rows
        if frame.n_rows != n:
            raise BadFormatError(
                f"key {feature!r} has {frame.n_rows} rows, key 'cr' {n}",
                path=path,
                field=feature,
                expected="one row per video frame in every key",
            )
        if not np.array_equal(frame.index, np.arange(frame.n_rows)):
            raise BadFormatError(
                "row index is not the frame index 0..N-1", path=path, field=feature
            )
        for col in (*_GEOMETRY, *(f"{feature}_{d}" for d in _DERIVED)):
            if col not in frame.columns:
                raise BadFormatError(
                    f"key {feature!r} lacks column {col!r}",
                    path=path,
                    field=f"{feature}/{col}",
                    expected=f"columns {list(_GEOMETRY)} + {feature}_<{'|'.join(_DERIVED)}>",
                )
            name = col if col.startswith(f"{feature}_") else f"{feature}_{col}"
            values = frame.columns[col]
            # historical fits stored complex values; their real part is the value
            out[name] = np.real(values) if np.iscomplexobj(values) else values
    return pl.DataFrame({c: out[c] for c in ellipse_columns()})
