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

import numpy as np
import polars as pl

from npc_frames.errors import BadFormatError, MissingFileError

__all__ = ["read_lp_metric", "read_lp_predictions"]

_COORDS = ("x", "y", "likelihood")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise MissingFileError("Lightning Pose CSV not found", path=path) from None
    except UnicodeDecodeError as exc:
        raise BadFormatError(f"not a text CSV: {exc}", path=path) from exc


def _numeric(path: str, text: str, n_header: int, n_cols: int) -> np.ndarray:
    try:
        df = pl.read_csv(
            io.StringIO(text),
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
    # a short row parses as trailing nulls, indistinguishable from empty (NaN) cells: count cells
    lines = pl.Series(text.splitlines()[n_header:], dtype=pl.String)
    cells = lines.filter(lines.str.len_chars() > 0).str.count_matches(",", literal=True) + 1
    if cells.len() and (short := (cells != n_cols).arg_true()).len():
        row = int(short[0])
        raise BadFormatError(
            f"data row {row} has {int(cells[row])} cells, the header {n_cols}",
            path=path,
            field=f"row {row + n_header}",
            expected=f"{n_cols} cells per row",
        )
    values = df.to_numpy()
    if not np.array_equal(values[:, 0], np.arange(values.shape[0])):
        raise BadFormatError(
            "first column is not the frame index 0..N-1", path=path, field="frame index"
        )
    return values


def read_lp_predictions(path: str) -> pl.DataFrame:
    """Return one row per video frame with ``<bodypart>_<coord>`` Float64 columns (file order).

    Raises BadFormatError when the 3 header rows are not scorer/bodyparts/coords with coords x,
    y, likelihood, or a data row is short or non-numeric.
    """
    text = _read_text(path)
    header = list(csv.reader(io.StringIO(text)))[:3]
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
    values = _numeric(path, text, 3, len(header[1]))
    names = [f"{bp}_{c}" for bp, c in zip(bodyparts, coords, strict=True)]
    if len(set(names)) != len(names):
        raise BadFormatError("duplicate body part columns", path=path, field="bodyparts")
    return pl.DataFrame({n: values[:, j + 1] for j, n in enumerate(names)})


def read_lp_metric(path: str) -> pl.DataFrame:
    """Return one row per video frame with one Float64 column per body part (error or temporal
    norm CSV: one header row, unnamed frame-index first column)."""
    text = _read_text(path)
    header = next(csv.reader(io.StringIO(text)), [])
    if len(header) < 2 or header[0] not in ("", "Unnamed: 0"):
        raise BadFormatError(
            "header row does not start with an unnamed frame-index column",
            path=path,
            field="header",
            expected="',<bodypart>,<bodypart>,…'",
        )
    values = _numeric(path, text, 1, len(header))
    return pl.DataFrame({n: values[:, j + 1] for j, n in enumerate(header[1:])})
