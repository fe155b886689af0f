"""Lightning Pose CSV outputs: keypoint predictions, PCA error and temporal norm per video frame.

* ``*_predictions.csv``: DeepLabCut-style, 3 header rows (``scorer``, ``bodyparts``, ``coords``,
  the first cell of each naming the row); first column = frame index; per body part ``x``, ``y``
  (px, origin top-left) and ``likelihood``.
* ``*_error.csv`` (PCA single-view reconstruction error, px) and ``*_temporal_norm.csv``
  (distance between consecutive predictions, px; first frame NaN): 1 header row, an unnamed
  first column holding the frame index, one column per body part.
"""

from __future__ import annotations

import csv
import io
import logging

import numpy as np
import polars as pl

from npc_frames._log import timed
from npc_frames.errors import BadFormatError, MissingFileError

logger = logging.getLogger(__name__)

__all__ = ["read_lp_metric", "read_lp_predictions"]

_COORDS = ("x", "y", "likelihood")


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise MissingFileError("Lightning Pose CSV not found", path=path) from None


def _header(path: str, data: bytes, n: int) -> list[list[str]]:
    """Return the first `n` rows of the CSV, parsed (the rest is left to the numeric reader)."""
    try:
        end = -1
        for _ in range(n):  # the first n lines only: the data rows are not copied
            end = data.find(b"\n", end + 1)
            if end < 0:
                end = len(data)
                break
        head = data[: max(end, 0)].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadFormatError(f"not a text CSV: {exc}", path=path) from exc
    return list(csv.reader(io.StringIO(head)))


def _body_start(data: bytes, n_header: int) -> int:
    """Return the offset of the first byte after the `n_header` header lines."""
    end = -1
    for _ in range(n_header):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return len(data)
    return end + 1


def _short_row(path: str, data: bytes, n_header: int, n_cols: int) -> None:
    """Raise BadFormatError naming the first data row with fewer than `n_cols` cells (if any)."""
    lines = pl.read_csv(
        io.BytesIO(data),
        has_header=False,
        skip_rows=n_header,
        separator="\x1f",
        quote_char=None,
        schema={"line": pl.String},
    )["line"]
    cells = lines.drop_nulls().str.count_matches(",", literal=True) + 1
    if cells.len() and (short := (cells != n_cols).arg_true()).len():
        row = int(short[0])
        raise BadFormatError(
            f"data row {row} has {int(cells[row])} cells, the header {n_cols}",
            path=path,
            field=f"row {row + n_header}",
            expected=f"{n_cols} cells per row",
        )


def _numeric(path: str, data: bytes, n_header: int, names: list[str]) -> pl.DataFrame:
    """Return the data rows as Float64 columns `names` after checking that every row has
    1 + len(names) cells and that the first (dropped) column is the frame index 0..N-1."""
    n_cols = len(names) + 1
    try:
        df = pl.read_csv(
            data,
            has_header=False,
            skip_rows=n_header,
            schema={f"c{j}": pl.Float64 for j in range(n_cols)},
        )
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError, ValueError) as exc:
        raise BadFormatError(
            f"data rows are not {n_cols} numeric cells: {exc}",
            path=path,
            expected=f"{n_cols} numeric cells per row",
        ) from exc
    # a row with too many cells fails the parse above, but a short row parses as trailing
    # nulls, indistinguishable from empty (NaN) cells. As no row has more than n_cols cells,
    # every row has exactly n_cols iff the data hold n_rows * (n_cols - 1) separators: one
    # count over the bytes; the rows are only examined one by one to name a short one.
    if data.count(b",", _body_start(data, n_header)) != df.height * (n_cols - 1):
        _short_row(path, data, n_header, n_cols)
    if not np.array_equal(df["c0"].to_numpy(), np.arange(df.height)):
        raise BadFormatError(
            "first column is not the frame index 0..N-1", path=path, field="frame index"
        )
    return df.drop("c0").rename({f"c{j + 1}": n for j, n in enumerate(names)})


@timed
def read_lp_predictions(path: str) -> pl.DataFrame:
    """Return one row per video frame with ``<bodypart>_<coord>`` Float64 columns (file order).

    Raises BadFormatError when the 3 header rows are not scorer/bodyparts/coords with coords x,
    y, likelihood, or a data row is short or non-numeric.
    """
    data = _read_bytes(path)
    header = _header(path, data, 3)
    if len(header) < 3 or [h[0] if h else "" for h in header] != ["scorer", "bodyparts", "coords"]:
        raise BadFormatError(
            "header rows are not scorer / bodyparts / coords",
            path=path,
            field="header",
            expected="3 header rows as DeepLabCut writes them",
        )
    bodyparts, coords = header[1][1:], header[2][1:]
    if len(bodyparts) != len(coords) or set(coords) - set(_COORDS):
        raise BadFormatError(
            f"coords {sorted(set(coords))}", path=path, field="coords", expected="x, y, likelihood"
        )
    names = [f"{bp}_{c}" for bp, c in zip(bodyparts, coords, strict=True)]
    if len(set(names)) != len(names):
        raise BadFormatError("duplicate body part columns", path=path, field="bodyparts")
    return _numeric(path, data, 3, names)


@timed
def read_lp_metric(path: str) -> pl.DataFrame:
    """Return one row per video frame with one Float64 column per body part (error or temporal
    norm CSV: one header row, unnamed frame-index first column)."""
    data = _read_bytes(path)
    header = next(iter(_header(path, data, 1)), [])
    if len(header) < 2 or header[0] not in ("", "Unnamed: 0"):
        raise BadFormatError(
            "header row does not start with an unnamed frame-index column",
            path=path,
            field="header",
            expected="',<bodypart>,<bodypart>,…'",
        )
    return _numeric(path, data, 1, header[1:])
