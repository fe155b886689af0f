"""How one component frame becomes the bytes of its ``data.parquet`` (codec, encodings, row groups).

Every component is written with zstd and per-column statistics. ``units`` gets a layout of its own,
chosen with ``benchmarks/bench_spike_query.py`` (figures in ``docs/cache.md``) for the query users
run most: "units passing QC in one structure, with their spike times":

- rows are sorted by ``structure`` then ``unit_id`` and a row group never spans two structures,
  so the min/max statistics of ``structure`` let Polars and DuckDB skip every other structure's
  spike times without decoding them, and those of ``unit_id`` narrow a one-unit read to a few
  row groups;
- row groups are small (at most :data:`UNITS_ROW_GROUP_UNITS` units and about
  :data:`UNITS_ROW_GROUP_SPIKES` spikes), so one unit's spike times can be fetched (a ranged GET on
  S3) without the rest of the session's;
- ``spike_times`` (and, in the ``spike_amplitudes`` component, ``spike_amplitudes``) are
  *packed*: each unit's values are stored as one
  uncompressed Parquet BYTE_ARRAY holding its little-endian float64s — a flat float array whose
  offsets are the byte-array lengths. Parquet list columns must decode a repetition level per
  spike (Polars managed ~0.25 GB/s, zstd or not); a byte array decodes at memory speed, and
  :func:`unpack` turns it back into ``list[f64]`` without copying the values. Scans, SQL views
  and ``read_session`` unpack, so the public column stays ``spike_times: list[f64]``, bit-exact.
  File metadata ``npc_frames.packed`` records which columns are packed and their element dtype.

Every field carries its schema description (and unit, when it has one) in its Arrow field metadata
(keys :data:`DESCRIPTION_KEY`, :data:`UNIT_KEY`), and the file metadata carries the component's
description (:data:`COMPONENT_DESCRIPTION_KEY`), so a file read by any Parquet tool documents its
columns.

The public column stays ``spike_times: list[f64]``; only the physical layout differs.

Per-spike amplitudes are a component of their own (``spike_amplitudes``), laid out like
``units`` (same sort order, same row-group bounds when every probe has them): in one file with
the spike times they sat between the spike-time chunks of consecutive row groups, so a query of
one structure's spike times over S3 needed one ranged GET per row group instead of one or two
per file (figures in ``docs/cache.md``). The average templates (``channels``,
``waveform_mean``) are the ``unit_waveforms`` component for the same reason, sorted and split
by structure like ``units``.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from npc_frames.schemas import Schema

__all__ = [
    "LAYOUTS",
    "UNITS_ROW_GROUP_SPIKES",
    "UNITS_ROW_GROUP_UNITS",
    "Layout",
    "pack",
    "packed_columns",
    "to_parquet_bytes",
    "unpack",
]

logger = logging.getLogger(__name__)

#: file metadata key: JSON {column: element dtype name} of the packed list columns
PACKED_KEY = "npc_frames.packed"
#: Arrow field metadata keys: the column's schema description and unit
DESCRIPTION_KEY = "description"
UNIT_KEY = "unit"
#: file metadata key: the component's schema description
COMPONENT_DESCRIPTION_KEY = "npc_frames.description"
#: element dtypes a list column may be packed from (little-endian fixed-width numbers)
PACKABLE: dict[str, tuple[pl.DataType, pa.DataType]] = {
    "float64": (pl.Float64(), pa.float64()),
    "float32": (pl.Float32(), pa.float32()),
    "int64": (pl.Int64(), pa.int64()),
    "int32": (pl.Int32(), pa.int32()),
}

#: at most this many units per row group of ``units`` (bounds the bytes read for one unit)
UNITS_ROW_GROUP_UNITS = 32
#: a row group of ``units`` is closed once it holds this many spikes (~2 MB of float64)
UNITS_ROW_GROUP_SPIKES = 262_144
#: row group size of every other component (they are small: one row group per file)
DEFAULT_ROW_GROUP_ROWS = 1_000_000


@dataclass(frozen=True)
class Layout:
    """Physical Parquet layout of one component's files."""

    #: codec of every column not listed in ``column_compression``
    compression: str = "zstd"
    compression_level: int | None = 3
    #: per-column codec overrides (top-level column names)
    column_compression: Mapping[str, str] = field(default_factory=dict)
    #: float (or list of float) columns written with BYTE_STREAM_SPLIT encoding
    byte_stream_split: tuple[str, ...] = ()
    #: rows are stably sorted by these columns (when present) before writing
    cluster_by: tuple[str, ...] = ()
    #: a new row group starts whenever one of these columns changes value
    split_on: tuple[str, ...] = ()
    #: list column whose element count bounds the row group size (with ``max_list_elements``)
    list_budget_column: str | None = None
    max_list_elements: int = UNITS_ROW_GROUP_SPIKES
    max_rows: int = DEFAULT_ROW_GROUP_ROWS
    #: list-of-number columns stored packed as one byte array per row (see module docstring)
    packed: tuple[str, ...] = ()


#: component name -> layout; components not listed use ``Layout()``
LAYOUTS: dict[str, Layout] = {
    "units": Layout(
        column_compression={"spike_times": "none"},
        packed=("spike_times",),
        cluster_by=("structure", "unit_id"),
        split_on=("structure",),
        list_budget_column="spike_times",
        max_list_elements=UNITS_ROW_GROUP_SPIKES,
        max_rows=UNITS_ROW_GROUP_UNITS,
    ),
    # the same rows, order and row groups as units (one amplitude per spike, so the same
    # element budget gives the same bounds): a unit's amplitudes are one ranged read, and a
    # structure's are skipped by the statistics of ``structure`` as in units
    "spike_amplitudes": Layout(
        column_compression={"spike_amplitudes": "none"},
        packed=("spike_amplitudes",),
        cluster_by=("structure", "unit_id"),
        split_on=("structure",),
        list_budget_column="spike_amplitudes",
        max_list_elements=UNITS_ROW_GROUP_SPIKES,
        max_rows=UNITS_ROW_GROUP_UNITS,
    ),
    # the same rows, order and row groups (by units) as units: a structure's templates are
    # skipped by the statistics of ``structure``, and one unit's are a small ranged read
    "unit_waveforms": Layout(
        cluster_by=("structure", "unit_id"),
        split_on=("structure",),
        max_rows=UNITS_ROW_GROUP_UNITS,
    ),
}


def _element_name(dtype: pl.DataType) -> str | None:
    if not isinstance(dtype, pl.List):
        return None
    inner = dtype.inner
    for name, (pl_type, _) in PACKABLE.items():
        if inner == pl_type:
            return name
    return None


def packed_columns(layout: Layout, schema: Mapping[str, pl.DataType]) -> dict[str, str]:
    """Return {column: element dtype name} of the columns `layout` packs, for a frame `schema`."""
    out = {}
    for name in layout.packed:
        if name in schema:
            element = _element_name(schema[name])
            if element is not None:
                out[name] = element
    return out


def _offsets(arr: pa.Array) -> np.ndarray:
    """Return the int64 offsets of a large list/binary array, honouring its slice offset."""
    buf = arr.buffers()[1]
    return np.frombuffer(buf, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]


def pack(series: pl.Series, element: str) -> pa.Array:
    """Return a list-of-number Series as a large_binary array of its little-endian values.

    Zero-copy for the values: the list's value buffer becomes the binary data buffer and the
    list offsets (× item size) become the binary offsets. Null lists stay null.
    """
    _, pa_type = PACKABLE[element]
    arr = series.to_arrow().cast(pa.large_list(pa_type))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    offsets = _offsets(arr)
    values = arr.values
    width = pa_type.byte_width
    start = (int(offsets[0]) + values.offset) * width
    data = values.buffers()[1].slice(start, (int(offsets[-1]) - int(offsets[0])) * width)
    byte_offsets = pa.py_buffer(((offsets - offsets[0]) * width).astype(np.int64))
    validity = arr.buffers()[0] if arr.null_count else None
    if validity is not None and arr.offset:
        validity = pa.array(arr.is_valid()).buffers()[1]
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(arr), [validity, byte_offsets, data], null_count=arr.null_count
    )


def unpack(series: pl.Series, element: str = "float64") -> pl.Series:
    """Return a packed byte-array Series as the list-of-number Series it was packed from."""
    pl_type, pa_type = PACKABLE[element]
    arr = series.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.type != pa.large_binary():
        arr = arr.cast(pa.large_binary())
    offsets = _offsets(arr)
    width = pa_type.byte_width
    n_values = (int(offsets[-1]) - int(offsets[0])) // width
    data = arr.buffers()[2]
    if data is None:
        data = pa.py_buffer(b"")
    values = pa.Array.from_buffers(pa_type, n_values, [None, data], offset=int(offsets[0]) // width)
    list_offsets = pa.array((offsets - offsets[0]) // width, type=pa.int64())
    mask = arr.is_null() if arr.null_count else None
    out = pa.LargeListArray.from_arrays(list_offsets, values, mask=mask)
    return pl.Series(series.name, out, dtype=pl.List(pl_type))


def unpack_expr(name: str, element: str) -> pl.Expr:
    """Return an expression turning packed column `name` back into its list column."""
    pl_type, _ = PACKABLE[element]
    return pl.col(name).map_batches(
        lambda s: unpack(s, element), return_dtype=pl.List(pl_type), is_elementwise=True
    )


def row_group_bounds(df: pl.DataFrame, layout: Layout) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` row ranges of the row groups `layout` gives frame `df`."""
    n = df.height
    if n == 0:
        return [(0, 0)]
    # forced breaks where a split_on column changes value
    breaks = np.zeros(n, dtype=bool)
    for name in layout.split_on:
        if name in df.columns:
            col = df[name]
            # a value differing from the previous row's, or a null next to a value; consecutive
            # nulls (a session without anatomy) are one segment, not one row group per row
            null = col.is_null()
            changed = (col != col.shift(1)).fill_null(False) | (null != null.shift(1)).fill_null(
                False
            )
            breaks |= changed.to_numpy()
    breaks[0] = True
    if layout.list_budget_column and layout.list_budget_column in df.columns:
        sizes = df[layout.list_budget_column].list.len().fill_null(0).to_numpy().astype(np.int64)
    else:
        sizes = np.zeros(n, dtype=np.int64)
    # greedy packing within each forced segment; segments are few (one per structure), rows are
    # units (thousands), so this loop is over units, never over spikes
    bounds: list[tuple[int, int]] = []
    seg_starts = [*np.flatnonzero(breaks).tolist(), n]
    for a, b in itertools.pairwise(seg_starts):
        start, count, elements = a, 0, 0
        for i in range(a, b):
            if count and (
                count >= layout.max_rows or elements + sizes[i] > layout.max_list_elements
            ):
                bounds.append((start, i))
                start, count, elements = i, 0, 0
            count += 1
            elements += int(sizes[i])
        bounds.append((start, b))
    return bounds


def _write_options(
    layout: Layout, schema: pa.Schema, packed: Mapping[str, str]
) -> dict[str, object]:
    names = list(schema.names)
    compression: str | dict[str, str]
    if layout.column_compression:
        compression = {n: layout.column_compression.get(n, layout.compression) for n in names}
    else:
        compression = layout.compression
    bss = [n for n in layout.byte_stream_split if n in names]
    # encodings apply to Parquet leaf columns: a list column's values are "<name>.list.element"
    bss_leaves = [
        f"{n}.list.element"
        if pa.types.is_list(schema.field(n).type) or pa.types.is_large_list(schema.field(n).type)
        else n
        for n in bss
    ]
    return {
        "compression": compression,
        # a level cannot be set when some columns are uncompressed (Arrow applies it to all)
        "compression_level": (
            layout.compression_level
            if layout.compression == "zstd" and not layout.column_compression
            else None
        ),
        "use_byte_stream_split": bss_leaves or False,
        "use_dictionary": [n for n in names if n not in bss and n not in packed],
        # min/max of a packed column would copy whole units' spike trains into the footer
        "write_statistics": [n for n in names if n not in packed],
    }


def _field_metadata(table: pa.Table, schema: Schema) -> pa.Table:
    """Return `table` with each declared column's description and unit in its field metadata."""
    declared = {c.name: c for c in schema.columns}
    fields = []
    for f in table.schema:
        col = declared.get(f.name)
        if col is not None:
            meta = dict(f.metadata or {})
            meta[DESCRIPTION_KEY.encode()] = col.description.encode()
            if col.unit:
                meta[UNIT_KEY.encode()] = col.unit.encode()
            f = f.with_metadata(meta)
        fields.append(f)
    return pa.Table.from_arrays(
        table.columns, schema=pa.schema(fields, metadata=table.schema.metadata)
    )


def to_parquet_bytes(
    df: pl.DataFrame,
    *,
    component: str,
    metadata: Mapping[str, str] | None = None,
    schema: Schema | None = None,
) -> bytes:
    """Return the Parquet bytes of frame `df` laid out for `component` (see :data:`LAYOUTS`).

    `schema` (default: the registered schema of `component`, if any) supplies the descriptions
    and units written into the field metadata.
    """
    if schema is None:
        from npc_frames import schemas

        schema = schemas.SCHEMAS.get(component)
    layout = LAYOUTS.get(component, Layout())
    cluster = [c for c in layout.cluster_by if c in df.columns]
    if cluster and df.height:
        df = df.sort(cluster, nulls_last=True, maintain_order=True)
    table = df.to_arrow()
    packed = packed_columns(layout, df.schema)
    for name, element in packed.items():
        i = table.column_names.index(name)
        table = table.set_column(i, name, pack(df[name], element))
    meta = dict(metadata or {})
    if schema is not None:
        table = _field_metadata(table, schema)
        meta[COMPONENT_DESCRIPTION_KEY] = schema.description
    if packed:
        meta[PACKED_KEY] = json.dumps(packed, sort_keys=True)
    if meta:
        existing = dict(table.schema.metadata or {})
        existing.update({k.encode(): v.encode() for k, v in meta.items()})
        table = table.replace_schema_metadata(existing)
    opts = _write_options(layout, table.schema, packed)
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, table.schema, **opts) as writer:  # type: ignore[arg-type]
        for a, b in row_group_bounds(df, layout):
            writer.write_table(table.slice(a, b - a), row_group_size=max(b - a, 1))
    return buf.getvalue()
