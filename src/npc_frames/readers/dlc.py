"""DeepLabCut pose output ``.h5``: x, y and likelihood of every body part per video frame.

DeepLabCut writes a pandas HDFStore (``table`` layout, key ``df_with_missing``) whose columns are a
3-level MultiIndex (scorer, bodyparts, coords) with coords ``x``, ``y`` (px, origin top-left of
the frame) and ``likelihood`` (0–1); rows = video frames 0..N-1. Read with h5py; the column names
are decoded from PyTables attributes without constructing any object.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError
from npc_frames.readers.pandas_hdf import read_hdf_frame

logger = logging.getLogger(__name__)

__all__ = ["DLC_KEY", "read_dlc"]

#: key DeepLabCut writes its predictions under
DLC_KEY = "df_with_missing"
_COORDS = ("x", "y", "likelihood")


@timed
def read_dlc(path: str) -> tuple[pl.DataFrame, str]:
    """Return (one row per video frame with ``<bodypart>_<coord>`` Float64 columns, scorer).

    Columns keep the file's order of body parts, each as ``_x``, ``_y``, ``_likelihood``.
    Raises BadFormatError when the columns are not (scorer, bodypart, coord) triples with coords
    x, y, likelihood, or the rows are not frames 0..N-1.
    """
    frame = read_hdf_frame(path, None)
    names = list(frame.columns)
    if not names or not all(isinstance(n, tuple) and len(n) == 3 for n in names):
        raise BadFormatError(
            "columns are not a (scorer, bodyparts, coords) MultiIndex",
            path=path,
            field="columns",
            expected="DeepLabCut's 3-level column MultiIndex",
        )
    scorers = {n[0] for n in names}
    bad = sorted({n[2] for n in names} - set(_COORDS))
    if len(scorers) != 1 or bad:
        raise BadFormatError(
            f"scorers {sorted(scorers)}, unexpected coords {bad}",
            path=path,
            field="columns",
            expected="one scorer and coords x, y, likelihood",
        )
    if not np.array_equal(frame.index, np.arange(frame.n_rows)):
        raise BadFormatError("row index is not the frame index 0..N-1", path=path, field="index")
    bodyparts = list(dict.fromkeys(n[1] for n in names))
    scorer = next(iter(scorers))
    out: dict[str, np.ndarray] = {}
    for bp in bodyparts:
        for coord in _COORDS:
            key = (scorer, bp, coord)
            if key not in frame.columns:
                raise BadFormatError(f"body part {bp!r} lacks coord {coord!r}", path=path, field=bp)
            out[f"{bp}_{coord}"] = frame.columns[key].astype(np.float64, copy=False)
    return pl.DataFrame(out), scorer
