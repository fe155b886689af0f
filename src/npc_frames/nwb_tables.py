"""Polars frames -> hdmf columns and NWB tables, built from whole arrays (no per-row ``add_row``).

Helpers of :mod:`npc_frames.nwb`. Every conversion is vectorized: a list column becomes one flat
``VectorData`` plus a ``VectorIndex`` of cumulative lengths taken straight from its Arrow offsets, so
a units table with tens of millions of spike times is assembled in well under a second.

How Polars values land in HDF5 (HDF5 has no null; these rules are what a round trip must undo):

* float columns: null -> NaN (NaN stays NaN);
* integer and boolean columns *with nulls* become float64 with NaN (without nulls their dtype is
  kept);
* string / categorical / enum columns: null -> ``""``;
* date / datetime columns: ISO-8601 strings; duration columns: float seconds;
* ``list[x]`` -> ragged column (``VectorData`` + ``VectorIndex``); a null list is written as an
  empty list;
* ``list[list[x]]`` whose inner lists all have the same length k -> ragged column of k-wide rows
  (e.g. ``obs_intervals``); otherwise doubly ragged (two ``VectorIndex`` levels);
* ``array[x, k]`` -> a 2-D column;
* the ``session_id`` column is not written per row: it is the file's ``session_id``;
* every column the component's schema declares is written, so the files of all sessions have the
  same columns: a declared column absent from the frame is added as nulls of its declared dtype,
  and a column that is entirely null follows the rules above (floats, integers and booleans: all
  NaN as float64; strings: all ``""``; lists: every row an empty list, i.e. a zero-length data
  column with an all-zero index). docs/nwb.md states the same rules for users.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from hdmf.common import DynamicTable, ElementIdentifiers, VectorData, VectorIndex

from npc_frames.errors import SchemaError
from npc_frames.schemas import SCHEMAS, Column

logger = logging.getLogger(__name__)

__all__ = [
    "column_description",
    "frame_columns",
    "require_columns",
    "series_to_numpy",
    "table_description",
    "with_schema_columns",
]


#: NWB table component -> the components whose columns are written into the same table (the
#: NWB units table holds the per-spike amplitudes and the average templates)
MERGED_COMPONENTS: dict[str, tuple[str, ...]] = {
    "units": ("spike_amplitudes", "unit_waveforms"),
}


def _schema_column(component: str, column: str) -> Column | None:
    """Return the schema Column `column` of `component` (or of a component merged into its
    NWB table), else None."""
    for name in (component, *MERGED_COMPONENTS.get(component, ())):
        schema = SCHEMAS.get(name)
        if schema is not None:
            for c in schema.columns:
                if c.name == column:
                    return c
    return None


def column_description(component: str, column: str) -> str:
    """Return the description of `column` of `component` from the schema, else the column name."""
    c = _schema_column(component, column)
    return c.description if c is not None and c.description else column


def column_unit(component: str, column: str) -> str | None:
    """Return the unit declared for `column` of `component` in the schema, if any."""
    c = _schema_column(component, column)
    return c.unit if c is not None else None


def table_description(component: str, default: str) -> str:
    """Return the table-level description of `component` from the schema, else `default`."""
    schema = SCHEMAS.get(component)
    if schema is not None and schema.description:
        return schema.description
    return default


def require_columns(
    df: pl.DataFrame,
    component: str,
    needed: Iterable[str | tuple[str, ...]] = (),
) -> None:
    """Raise SchemaError naming every required column `df` lacks (None when complete).

    Required = the schema's required columns (when the schema is declared) plus `needed`, the
    columns NWB assembly itself cannot do without; a tuple in `needed` means "any one of these".
    """
    present = set(df.columns)
    missing: list[str] = []
    schema = SCHEMAS.get(component)
    if schema is not None:
        missing += [c.name for c in schema.columns if c.required and c.name not in present]
    for item in needed:
        options = (item,) if isinstance(item, str) else item
        if not any(o in present for o in options):
            label = " or ".join(options)
            if label not in missing:
                missing.append(label)
    if missing:
        raise SchemaError(
            f"component {component!r} frame lacks columns needed for NWB: {missing}",
            path=_session_of(df),
            field=", ".join(missing),
            expected=f"columns {sorted(set(schema.names if schema else []) | _flat(needed))}",
        )


def _flat(needed: Iterable[str | tuple[str, ...]]) -> set[str]:
    out: set[str] = set()
    for item in needed:
        out |= {item} if isinstance(item, str) else set(item)
    return out


def _session_of(df: pl.DataFrame) -> str | None:
    if "session_id" in df.columns and df.height:
        return f"session {df['session_id'][0]}"
    return None


def first_present(df: pl.DataFrame, names: Sequence[str]) -> str | None:
    """Return the first of `names` that is a column of `df`, else None."""
    for n in names:
        if n in df.columns:
            return n
    return None


# ------------------------------------------------------------------------------------- values
def series_to_numpy(s: pl.Series) -> np.ndarray:
    """Return a numpy array of a non-list Series, with nulls encoded per the module rules."""
    dt = s.dtype
    if dt == pl.Null:
        return np.full(len(s), np.nan)
    if dt.is_float():
        if s.null_count():
            s = s.fill_null(float("nan"))
        return s.to_numpy()
    if dt.is_integer() or dt == pl.Boolean:
        if s.null_count():
            return s.cast(pl.Float64).fill_null(float("nan")).to_numpy()
        return s.to_numpy()
    if dt in (pl.String, pl.Categorical) or isinstance(dt, pl.Enum | pl.Categorical):
        return s.cast(pl.String).fill_null("").to_numpy().astype(object)
    if isinstance(dt, pl.Datetime) or dt == pl.Date:
        return s.dt.to_string().fill_null("").to_numpy().astype(object)
    if isinstance(dt, pl.Duration):
        return (s.dt.total_microseconds().cast(pl.Float64) / 1e6).fill_null(np.nan).to_numpy()
    if isinstance(dt, pl.Array):
        width = dt.size
        flat = series_to_numpy(s.fill_null(pl.Series([[None] * width], dtype=dt)).explode())
        return flat.reshape(len(s), width)
    if dt == pl.Decimal or isinstance(dt, pl.Decimal):
        return s.cast(pl.Float64).fill_null(float("nan")).to_numpy()
    raise SchemaError(
        f"column {s.name!r} has dtype {dt} that cannot be written to NWB",
        field=s.name,
        expected="numeric, boolean, string, temporal, list or array dtype",
    )


def _list_parts(s: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """Return (flattened values, cumulative end offsets) of a list Series (null list = empty)."""
    lengths = s.list.len().fill_null(0).to_numpy()
    ends = np.cumsum(lengths, dtype=np.int64)
    arr = s.rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    flat = arr.flatten()  # drops null lists, honours slicing
    values = pl.Series(s.name, flat, dtype=s.dtype.inner)  # type: ignore[attr-defined]
    return values, _index_dtype(ends)


def _index_dtype(ends: np.ndarray) -> np.ndarray:
    top = int(ends[-1]) if len(ends) else 0
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return ends.astype(dt)
    return ends.astype(np.uint64)


def ragged_columns(
    name: str,
    description: str,
    s: pl.Series,
    *,
    data_class: type[VectorData] = VectorData,
) -> list[VectorData]:
    """Return [data, index(, index_index)] columns of a list Series, built from whole arrays."""
    values, ends = _list_parts(s)
    if isinstance(values.dtype, pl.List):
        inner_len = values.list.len()
        if values.null_count() == 0 and len(values) and inner_len.n_unique() == 1:
            # fixed-width inner lists (e.g. obs_intervals [start, stop]) -> 2-D rows
            width = int(inner_len[0])
            flat, _ = _list_parts(values)
            data = series_to_numpy(flat).reshape(len(values), width)
            vd = data_class(name=name, description=description, data=data)
            return [vd, VectorIndex(name=f"{name}_index", data=ends, target=vd)]
        inner_values, inner_ends = _list_parts(values)
        vd = data_class(name=name, description=description, data=series_to_numpy(inner_values))
        inner = VectorIndex(name=f"{name}_index", data=inner_ends, target=vd)
        outer = VectorIndex(name=f"{name}_index_index", data=ends, target=inner)
        return [vd, inner, outer]
    vd = data_class(name=name, description=description, data=series_to_numpy(values))
    return [vd, VectorIndex(name=f"{name}_index", data=ends, target=vd)]


def with_schema_columns(df: pl.DataFrame, component: str) -> pl.DataFrame:
    """Return `df` with every column its schema declares (absent ones as typed nulls).

    A column typed ``Null`` (all-null, dtype unknown) is cast to its declared dtype, so that it is
    encoded like the same column of any other session. Undeclared columns are kept as they are.
    """
    schema = SCHEMAS.get(component)
    if schema is None:
        return df
    exprs = []
    for c in schema.columns:
        if c.name not in df.columns:
            exprs.append(pl.lit(None, dtype=c.dtype).alias(c.name))
        elif df.schema[c.name] == pl.Null:
            exprs.append(pl.col(c.name).cast(c.dtype))
    return df.with_columns(exprs) if exprs else df


def frame_columns(
    df: pl.DataFrame,
    component: str,
    *,
    skip: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    classes: Mapping[str, type[VectorData]] | None = None,
) -> list[VectorData]:
    """Return hdmf columns (with their indexes) for every column of `df` except `session_id`.

    `rename` maps a frame column to its NWB column name, `classes` an NWB column name to a
    VectorData subclass (e.g. ``TimestampVectorData``). Descriptions come from the schema.
    """
    rename = rename or {}
    classes = classes or {}
    skipped = {"session_id", *skip}
    cols: list[VectorData] = []
    for name in df.columns:
        if name in skipped:
            continue
        s = df[name]
        nwb_name = rename.get(name, name)
        cls = classes.get(nwb_name, VectorData)
        desc = column_description(component, name)
        if isinstance(s.dtype, pl.List):
            cols += ragged_columns(nwb_name, desc, s, data_class=cls)
        else:
            cols.append(cls(name=nwb_name, description=desc, data=series_to_numpy(s)))
    return cols


def is_void(s: pl.Series) -> bool:
    """Return True if `s` holds nothing to write: all null, or lists without any element."""
    if len(s) == 0:
        return False
    if s.null_count() == len(s):
        return True
    if isinstance(s.dtype, pl.List):
        return int(s.list.len().fill_null(0).sum()) == 0
    return False


def ids(n: int) -> ElementIdentifiers:
    """Return row ids 0…n−1."""
    return ElementIdentifiers(name="id", data=np.arange(n, dtype=np.int64))


def build_table(
    cls: type[DynamicTable],
    df: pl.DataFrame,
    component: str,
    *,
    name: str | None,
    description: str,
    extra_columns: Sequence[VectorData] = (),
    skip: Iterable[str] = (),
    rename: Mapping[str, str] | None = None,
    classes: Mapping[str, type[VectorData]] | None = None,
    **kwargs: Any,
) -> DynamicTable:
    """Return a DynamicTable (or subclass `cls`) holding every column of `df` and its schema."""
    df = with_schema_columns(df, component)
    columns = [
        *frame_columns(df, component, skip=skip, rename=rename, classes=classes),
        *extra_columns,
    ]
    if name is not None:
        kwargs["name"] = name
    if description is not None:
        kwargs["description"] = description
    return cls(columns=columns, id=ids(df.height), **kwargs)
