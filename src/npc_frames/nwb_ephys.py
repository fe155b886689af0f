"""Ephys part of NWB assembly: devices, electrode groups, electrodes, units, raw AP/LFP.

Helpers of :mod:`npc_frames.nwb`. Everything is built from whole
arrays: the units table gets one flat ``spike_times`` array plus its index, never ``add_unit``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import polars as pl
from hdmf.backends.hdf5 import H5DataIO
from hdmf.common import DynamicTableRegion, VectorData, VectorIndex
from hdmf.data_utils import GenericDataChunkIterator
from pynwb import NWBFile
from pynwb.device import Device
from pynwb.ecephys import ElectricalSeries, ElectrodeGroup, ElectrodesTable
from pynwb.misc import Units

from npc_frames.errors import InconsistentDataError, SchemaError
from npc_frames.nwb_tables import (
    build_table,
    column_description,
    first_present,
    ragged_columns,
    require_columns,
    series_to_numpy,
    table_description,
    with_schema_columns,
)
from npc_frames.schemas import SCHEMAS

logger = logging.getLogger(__name__)

__all__ = [
    "MemmapChunkIterator",
    "UnitChannelBlocks",
    "add_devices",
    "add_electrode_groups",
    "add_electrodes",
    "add_raw",
    "add_units",
    "peak_electrode_rows",
]

DEVICE_NAME = ("name", "device_name", "serial_number")
GROUP_NAME = ("name", "electrode_group_name", "group_name")
GROUP_DEVICE = ("device_name", "device", "serial_number")
ELECTRODE_GROUP = ("group_name", "electrode_group_name")
UNIT_GROUP = ("electrode_group_name", "group_name")
#: NWB units metadata, as the reference writes it
UNITS_DESCRIPTION = "spike-sorted units from Kilosort 2.5"
WAVEFORM_RATE = 30000.0
WAVEFORM_UNIT = "microvolts"
#: spike times are sample indices of the 30 kHz AP stream put on the sync clock
SPIKE_TIME_RESOLUTION = 1 / 30000.0
#: electrode locations that are placeholders, not Allen CCF terms (the reference: "unannotated"
#: unless annotated; IBL "out of brain")
LOCATION_PLACEHOLDERS = ("", "unannotated", "unknown", "out of brain", "none", "nan")
#: the Allen CCF ontology's root term ("brain, region unspecified")
CCF_ROOT = "root"
#: Neuropixels 1.0 AP and LFP: 0.195 µV per bit; NWB stores volts
NP1_VOLTS_PER_BIT = 0.195e-6


def add_devices(nwb: NWBFile, df: pl.DataFrame) -> dict[str, Device]:
    """Return the Devices added to `nwb`, one per row of the devices frame, keyed by name."""
    require_columns(df, "devices", [DEVICE_NAME])
    name_col = first_present(df, DEVICE_NAME)
    assert name_col is not None
    out: dict[str, Device] = {}
    # one row per probe: a handful of rows, so a loop over rows is fine here
    for row in df.iter_rows(named=True):
        name = str(row[name_col])
        kwargs: dict[str, Any] = {"name": name}
        for key in ("description", "manufacturer", "serial_number"):
            if row.get(key) is not None and key != name_col:
                kwargs[key] = str(row[key])
        kwargs.setdefault("description", "Neuropixels probe")
        kwargs.setdefault("serial_number", name if name_col != "serial_number" else None)
        if kwargs["serial_number"] is None:
            kwargs["serial_number"] = str(row[name_col])
        device = Device(**kwargs)
        nwb.add_device(device)
        out[name] = device
    return out


def add_electrode_groups(
    nwb: NWBFile, df: pl.DataFrame, devices: Mapping[str, Device]
) -> dict[str, ElectrodeGroup]:
    """Return the ElectrodeGroups added to `nwb` (one per probe), keyed by group name."""
    require_columns(df, "electrode_groups", [GROUP_NAME, GROUP_DEVICE])
    name_col = first_present(df, GROUP_NAME)
    dev_col = first_present(df, GROUP_DEVICE)
    assert name_col is not None and dev_col is not None
    out: dict[str, ElectrodeGroup] = {}
    for row in df.iter_rows(named=True):
        dev_name = str(row[dev_col])
        if dev_name not in devices:
            raise InconsistentDataError(
                f"electrode group {row[name_col]!r} refers to device {dev_name!r} absent from devices",
                field=dev_col,
                expected=f"one of {sorted(devices)}",
            )
        group = ElectrodeGroup(
            name=str(row[name_col]),
            description=str(row.get("description") or "Neuropixels probe"),
            location=str(row.get("location") or "unknown"),
            device=devices[dev_name],
        )
        nwb.add_electrode_group(group)
        out[group.name] = group
    return out


def _group_objects(
    names: pl.Series, groups: Mapping[str, ElectrodeGroup], component: str
) -> list[ElectrodeGroup]:
    unknown = sorted(set(names.unique().to_list()) - set(groups))
    if unknown:
        raise InconsistentDataError(
            f"{component} rows refer to electrode groups {unknown} absent from electrode_groups",
            field=names.name,
            expected=f"one of {sorted(groups)}",
        )
    # vectorized lookup: map each distinct name once, index the object array
    keys = sorted(groups)
    table = np.empty(len(keys), dtype=object)
    table[:] = [groups[k] for k in keys]
    codes = np.searchsorted(np.array(keys, dtype=object), names.to_numpy())
    return list(table[codes])


def add_electrodes(
    nwb: NWBFile, df: pl.DataFrame, groups: Mapping[str, ElectrodeGroup]
) -> ElectrodesTable:
    """Return the electrodes table added to `nwb`: every frame column plus `group` references.

    ``location`` is required by NWB; when the frame has none it is ``"unannotated"``, as in
    the reference. CCF coordinates and any other columns are written as they are.
    """
    require_columns(df, "electrodes", [ELECTRODE_GROUP])
    gcol = first_present(df, ELECTRODE_GROUP)
    assert gcol is not None
    if gcol != "group_name":
        df = df.rename({gcol: "group_name"})
    if "location" not in df.columns:
        df = df.with_columns(pl.lit("unannotated").alias("location"))
    df = _ccf_locations(df)
    group = VectorData(
        name="group",
        description="the electrode group (probe) of this channel",
        data=_group_objects(df["group_name"], groups, "electrodes"),
    )
    table = build_table(
        ElectrodesTable,
        df,
        "electrodes",
        name=None,
        description=None,  # type: ignore[arg-type]  # ElectrodesTable fixes its own
        extra_columns=[group],
    )
    nwb.electrodes = table
    return table  # type: ignore[return-value]


def _ccf_locations(df: pl.DataFrame) -> pl.DataFrame:
    """Return `df` with NWB-valid ``location`` terms, keeping placeholders in ``location_label``.

    NWB best practice (nwbinspector ``check_electrodes_location_allen_ccf``) wants Allen CCF
    terms in ``electrodes.location``; the reference writes "unannotated" for channels without
    CCF annotation. Decision: such placeholder rows get the CCF root term ``root`` ("brain,
    region unspecified") in ``location`` and the component's own value is kept verbatim in an
    extra column ``location_label`` (always written, so every file has the same columns), so
    nothing is lost.
    """
    loc = pl.col("location").cast(pl.String)
    placeholder = loc.is_null() | loc.str.strip_chars().str.to_lowercase().is_in(
        LOCATION_PLACEHOLDERS
    )
    return df.with_columns(
        pl.when(placeholder).then(pl.lit(CCF_ROOT)).otherwise(loc).alias("location"),
        loc.fill_null("").alias("location_label"),
    )


def peak_electrode_rows(units: pl.DataFrame, electrodes: pl.DataFrame) -> np.ndarray | None:
    """Return, per unit, the electrodes-table row of its peak channel (None if not derivable).

    Uses ``units.peak_electrode`` -> ``electrodes.electrode_index`` when both exist, else the
    pair (electrode group, ``peak_channel``) -> (``group_name``, ``channel``).
    """
    rows_of = pl.int_range(pl.len(), dtype=pl.Int64).alias("_row")
    if "peak_electrode" in units.columns and "electrode_index" in electrodes.columns:
        keys = ["_e"]
        lookup = electrodes.select(pl.col("electrode_index").cast(pl.Int64).alias("_e"), rows_of)
        left = units.select(pl.col("peak_electrode").cast(pl.Int64).alias("_e"))
        shown = ["peak_electrode"]
    else:
        ucol = first_present(units, UNIT_GROUP)
        ecol = first_present(electrodes, ELECTRODE_GROUP)
        if ucol is None or ecol is None or "peak_channel" not in units.columns:
            return None
        if "channel" not in electrodes.columns:
            return None
        keys = ["_g", "_c"]
        lookup = electrodes.select(
            pl.col(ecol).cast(pl.String).alias("_g"),
            pl.col("channel").cast(pl.Int64).alias("_c"),
            rows_of,
        )
        left = units.select(
            pl.col(ucol).cast(pl.String).alias("_g"),
            pl.col("peak_channel").cast(pl.Int64).alias("_c"),
        )
        shown = [ucol, "peak_channel"]
    rows = left.join(lookup, on=keys, how="left", maintain_order="left").get_column("_row")
    if rows.null_count():
        bad = units.filter(rows.is_null().to_numpy())[shown].head(5).rows()
        raise InconsistentDataError(
            f"{rows.null_count()} units have a peak electrode absent from the electrodes table, "
            f"e.g. {shown} = {bad}",
            field=shown[0],
            expected="every unit's peak electrode to be a row of electrodes",
        )
    return rows.to_numpy()


def _waveform_column(
    name: str, df: pl.DataFrame, n_channels: int | None
) -> tuple[VectorData | None, str]:
    """Return (units × samples × channels column or None, how it was laid out).

    The frame holds each unit's average template on its own ``channels`` (channels × samples).
    With a ``channels`` column and the probe's channel count, the template is placed into a
    dense, zero-filled (units × samples × probe channels) array indexed by probe channel, as the
    reference writes it; ``channels`` says which of them are real. Without
    ``channels``, equal shapes are stacked as they are. Otherwise None.

    When no unit has a template the column is still written, with zero samples (units × 0 ×
    probe channels), so that every file has the same units columns.
    """
    s = df[name]
    if len(s) == 0 or int(s.list.len().fill_null(0).sum()) == 0:
        width = n_channels or 0
        return VectorData(
            name=name,
            description=f"{column_description('units', name)} (no templates: zero samples)",
            data=np.zeros((len(s), 0, width), dtype=np.float32),
        ), "absent"
    n_ch = s.list.len().fill_null(0).to_numpy()
    samples, _ = _list_parts_lengths(s)
    if samples is None:
        return None, "ragged"
    n_samp = samples
    desc = column_description("units", name)
    if "channels" in df.columns and n_channels is not None:
        chans = df["channels"]
        if not np.array_equal(chans.list.len().fill_null(0).to_numpy(), n_ch):
            raise InconsistentDataError(
                f"units.{name} has a different number of rows per unit than units.channels",
                field=name,
                expected="one template row per entry of channels",
            )
        ch_flat = chans.explode().drop_nulls().cast(pl.Int64).to_numpy()
        width = max(n_channels, int(ch_flat.max()) + 1 if ch_flat.size else 0)
        values = series_to_numpy(s.explode().drop_nulls().explode()).reshape(-1, n_samp)
        return VectorData(
            name=name,
            description=f"{desc} (units × samples × probe channels, zero outside `channels`)",
            data=UnitChannelBlocks(values, ch_flat, n_ch, width),
        ), "dense"
    if np.unique(n_ch).size != 1:
        return None, "ragged"
    flat = series_to_numpy(s.explode().explode())
    arr = flat.reshape(len(s), int(n_ch[0]), n_samp).transpose(0, 2, 1)
    return VectorData(
        name=name,
        description=f"{desc} (units × samples × the unit's channels)",
        data=np.ascontiguousarray(arr),
    ), "stacked"


def _list_parts_lengths(s: pl.Series) -> tuple[int | None, None]:
    """Return (the common inner length of a list[list] Series, None) or (None, None)."""
    inner = s.explode().drop_nulls()
    lengths = inner.list.len().unique()
    if len(lengths) != 1:
        return None, None
    return int(lengths[0]), None


def _by_unit(
    df: pl.DataFrame,
    frame: pl.DataFrame,
    dtypes: Mapping[str, pl.DataType | type[pl.DataType]],
    component: str,
) -> pl.DataFrame:
    """Return the `dtypes` columns of the per-unit component `frame` matched to `df`'s rows by
    unit_id (null for a unit without a row), in `df`'s order.

    Raises InconsistentDataError when `frame` lacks a column or holds several rows of one unit.
    """
    absent = [c for c in dtypes if c not in frame.columns]
    if absent:
        raise InconsistentDataError(
            f"{component} has no column {absent[0]}",
            field=f"{component}.{absent[0]}",
            expected=f"the {component} schema's columns",
        )
    joined = df.select("unit_id").join(
        frame.select("unit_id", *(pl.col(c).cast(t) for c, t in dtypes.items())),
        on="unit_id",
        how="left",
        maintain_order="left",
    )
    if joined.height != df.height:
        raise InconsistentDataError(
            f"{component} has several rows for one unit_id",
            field=f"{component}.unit_id",
            expected="one row per unit, as in units",
        )
    return joined.drop("unit_id")


def _spike_amplitudes(df: pl.DataFrame, amplitudes: pl.DataFrame | None) -> pl.Series:
    """Return the per-spike amplitudes of each unit of `df` (an empty list for a unit without):
    the frame's own column when it has one, else the ``spike_amplitudes`` rows matched by
    unit_id."""
    dtype = pl.List(pl.Float64)
    if "spike_amplitudes" in df.columns:
        return df["spike_amplitudes"].cast(dtype)
    if amplitudes is None or amplitudes.is_empty() or "unit_id" not in df.columns:
        return pl.Series("spike_amplitudes", [None] * df.height, dtype=dtype)
    return _by_unit(df, amplitudes, {"spike_amplitudes": dtype}, "spike_amplitudes")[
        "spike_amplitudes"
    ]


#: the columns of the NWB units table that come from the ``unit_waveforms`` component
WAVEFORM_COLUMNS = ("channels", "waveform_mean")


def _with_waveforms(df: pl.DataFrame, waveforms: pl.DataFrame | None) -> pl.DataFrame:
    """Return `df` with ``channels`` and ``waveform_mean``: its own columns when it has them,
    else the ``unit_waveforms`` rows matched by unit_id (null for a unit without), placed where
    they stood among the units columns before they became a component of their own."""
    if all(c in df.columns for c in WAVEFORM_COLUMNS):
        return df
    schema = SCHEMAS["unit_waveforms"]
    dtypes = {c.name: c.dtype for c in schema.columns if c.name in WAVEFORM_COLUMNS}
    missing = [c for c in WAVEFORM_COLUMNS if c not in df.columns]
    if waveforms is None or waveforms.is_empty() or "unit_id" not in df.columns:
        added = df.with_columns(pl.lit(None, dtype=dtypes[c]).alias(c) for c in missing)
    else:
        wanted = {c: dtypes[c] for c in missing}
        added = df.hstack(_by_unit(df, waveforms, wanted, "unit_waveforms").get_columns())
    # the units table keeps its column order: the templates after the classifier columns
    cols = list(df.columns)
    at = next(
        (
            i
            for i, c in enumerate(cols)
            if c in ("ccf_ap", "ccf_dv", "ccf_ml", "structure", "location", "num_spikes")
        ),
        len(cols),
    )
    order = [*cols[:at], *missing, *cols[at:]]
    return added.select(order)


def add_units(
    nwb: NWBFile,
    df: pl.DataFrame,
    groups: Mapping[str, ElectrodeGroup],
    electrodes_df: pl.DataFrame | None,
    amplitudes: pl.DataFrame | None = None,
    waveforms: pl.DataFrame | None = None,
) -> Units:
    """Return the units table added to `nwb`, assembled from whole arrays.

    ``spike_amplitudes`` (the per-spike amplitudes) is the frame's own column, else taken from
    the ``spike_amplitudes`` component frame `amplitudes` by unit_id; a unit without amplitudes
    gets an empty list, and the column is always written (every file has the same columns).
    ``spike_times``, ``spike_amplitudes`` and other list columns become flat ``VectorData`` plus
    ``VectorIndex``; ``obs_intervals`` (``list[list[f64]]`` of [start, stop]) becomes a ragged
    column of 2-wide rows; ``electrode_group`` references the group named in
    ``electrode_group_name``; ``electrodes`` links each unit to the electrodes row of its peak
    channel (``peak_electrode``). ``channels`` and ``waveform_mean`` are the frame's own columns,
    else taken from the ``unit_waveforms`` component frame `waveforms` by unit_id (null for a
    unit without a template; both columns are always written). ``waveform_mean``/``waveform_sd``
    (``list[list[f32]]`` channels × samples of the unit's ``channels``) become the standard dense
    column, zero-filled outside the unit's channels (see :func:`_waveform_column`); shapes that
    cannot be made dense are kept as doubly-ragged custom columns ``<name>_ragged``.
    """
    require_columns(df, "units", ["spike_times"])
    df = _with_waveforms(with_schema_columns(df, "units"), waveforms)
    extra: list[VectorData] = ragged_columns(
        "spike_amplitudes",
        column_description("spike_amplitudes", "spike_amplitudes"),
        _spike_amplitudes(df, amplitudes),
    )
    skip: list[str] = ["spike_amplitudes"]
    gcol = first_present(df, UNIT_GROUP)
    if gcol is not None and groups:
        extra.append(
            VectorData(
                name="electrode_group",
                description="the electrode group (probe) each unit was recorded on",
                data=_group_objects(df[gcol].cast(pl.String), groups, "units"),
            )
        )
    if electrodes_df is not None and nwb.electrodes is not None:
        rows = peak_electrode_rows(df, electrodes_df)
        if rows is not None:
            region = DynamicTableRegion(
                name="electrodes",
                description="the electrodes row of each unit's peak channel",
                data=rows,
                table=nwb.electrodes,
            )
            extra += [
                region,
                VectorIndex(
                    name="electrodes_index",
                    data=np.arange(1, df.height + 1, dtype=np.uint32),
                    target=region,
                ),
            ]
    rename: dict[str, str] = {}
    n_channels = None
    if electrodes_df is not None:
        ecol = first_present(electrodes_df, ELECTRODE_GROUP)
        if ecol is not None:
            n_channels = int(electrodes_df.group_by(ecol).len()["len"].max())  # type: ignore[arg-type]
    for wname in ("waveform_mean", "waveform_sd"):
        if wname in df.columns:
            col, layout = _waveform_column(wname, df, n_channels)
            if col is not None:
                extra.append(col)
                skip.append(wname)
            elif layout == "ragged":
                rename[wname] = f"{wname}_ragged"
    units = build_table(
        Units,
        df,
        "units",
        name="units",
        description=table_description("units", UNITS_DESCRIPTION),
        extra_columns=extra,
        skip=skip,
        rename=rename,
        waveform_rate=WAVEFORM_RATE,
        resolution=SPIKE_TIME_RESOLUTION,
        waveform_unit=WAVEFORM_UNIT,
    )
    nwb.units = units  # type: ignore[assignment]
    return units  # type: ignore[return-value]


class UnitChannelBlocks(H5DataIO):  # type: ignore[misc]
    """Write a dense (units × samples × probe channels) template array one chunk at a time.

    Each unit's average template covers a few of the probe's channels ("channels with data");
    the dataset is chunked (1 × samples × 32 channels) and only the chunks that a unit's channels
    touch are written, so the zero-filled layout of the reference costs what the real templates
    cost (a full-scale session: ~10 MB instead of 225 MB of zeros). Readers see the ordinary
    dense array (unwritten chunks read as the fill value 0).

    hdmf creates the empty dataset (``data=None`` with shape, dtype and chunks) and hands it back
    through the :attr:`dataset` setter while the file is open; the chunks are written there, so
    any HDF5 writer of the NWBFile (ours or a plain ``NWBHDF5IO``) fills them. All chunk blocks
    are assembled with one vectorized scatter; without compression each is stored with one
    ``write_direct_chunk`` call (no per-chunk selection or hdmf iterator bookkeeping: this was
    most of the units-table write time), with compression through h5py's filters.
    """

    def __init__(
        self, values: np.ndarray, channels: np.ndarray, rows_per_unit: np.ndarray, width: int
    ) -> None:
        self._values = values  # (sum of rows_per_unit, samples): channel rows of every unit
        self._channels = np.asarray(channels, dtype=np.int64)
        self._rows_per_unit = np.asarray(rows_per_unit, dtype=np.int64)
        n_units, samples = len(rows_per_unit), values.shape[1]
        self._chunk = (1, samples, max(1, min(32, width)))
        super().__init__(
            data=None,
            shape=(n_units, samples, width),
            dtype=values.dtype,
            chunks=self._chunk,
            fillvalue=0,
        )

    def set_compression(self, settings: Mapping[str, Any]) -> None:
        """Apply H5DataIO compression settings (before the file is written)."""
        self.io_settings.update({k: v for k, v in settings.items() if k != "chunks"})

    def blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (unit, first channel, block) of every chunk that holds template data.

        Blocks are (n chunks, samples, chunk width) arrays, zero outside the unit's channels.
        """
        width = self._chunk[2]
        unit_of_row = np.repeat(np.arange(len(self._rows_per_unit)), self._rows_per_unit)
        col = self._channels // width
        n_cols = int(col.max()) + 1 if col.size else 1
        pair, row_pair = np.unique(unit_of_row * n_cols + col, return_inverse=True)
        out = np.zeros((len(pair), self._values.shape[1], width), dtype=self._values.dtype)
        out[row_pair, :, self._channels % width] = self._values
        return pair // n_cols, (pair % n_cols) * width, out

    @property
    def dataset(self) -> Any:
        """Return the h5py dataset written (None before the file is written)."""
        return super().dataset

    @dataset.setter
    def dataset(self, dset: Any) -> None:
        H5DataIO.dataset.fset(self, dset)  # type: ignore[attr-defined]
        if dset is None or not len(self._values):
            return
        units, first, blocks = self.blocks()
        width = self._chunk[2]
        if dset.compression is None and not dset.shuffle and not dset.fletcher32:
            # the chunk bytes are the block's bytes: C order of (1, samples, width)
            write = dset.id.write_direct_chunk
            for u, c, block in zip(units.tolist(), first.tolist(), blocks, strict=True):
                write((u, 0, c), block.tobytes())
            return
        n_ch = dset.shape[2]
        for u, c, block in zip(units.tolist(), first.tolist(), blocks, strict=True):
            stop = min(c + width, n_ch)
            dset[u, :, c:stop] = block[:, : stop - c]


# ------------------------------------------------------------------------------------------ raw
class MemmapChunkIterator(GenericDataChunkIterator):  # type: ignore[misc]
    """Return (samples × channels) chunks of a memory-mapped continuous recording, never all of it."""

    def __init__(self, data: np.ndarray, **kwargs: Any) -> None:
        self._data = data
        kwargs.setdefault("buffer_gb", 0.25)
        super().__init__(**kwargs)

    def _get_data(self, selection: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self._data[selection])

    def _get_maxshape(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self._data.shape)

    def _get_dtype(self) -> np.dtype:
        return np.dtype(self._data.dtype)


def _stream(raw: Any, probe: str, band: str) -> tuple[np.ndarray, float, float, float]:
    """Return (int16 memmap (samples, channels), start time on sync, rate on sync, volts/bit)."""
    from npc_frames import alignment
    from npc_frames.readers import openephys as oe

    letter = probe.removeprefix("probe")
    kind: Literal["ap", "lfp"] = "lfp" if band == "lfp" else "ap"
    clocks = alignment.session_clocks(raw)
    stream = clocks.probe_stream(letter, kind)
    clock = clocks.clock(stream)
    bits = np.asarray(getattr(stream, "bit_volts", ()) or (np.nan,), dtype=float)
    volts = float(bits[0]) * 1e-6 if np.isfinite(bits[0]) else NP1_VOLTS_PER_BIT
    return oe.continuous_memmap(stream), float(clock.start_time), float(clock.rate_on_sync), volts


def add_raw(
    nwb: NWBFile,
    raw: Any,
    electrodes_df: pl.DataFrame,
    *,
    bands: tuple[str, ...] = ("ap", "lfp"),
) -> list[ElectricalSeries]:
    """Return the AP/LFP ElectricalSeries added to ``nwb.acquisition`` (streamed, never loaded).

    Samples come from the Open Ephys memory map through a chunk iterator; each probe's series
    references that probe's rows of the electrodes table. The sync-clock timestamps of a stream
    are a linear fit (sample k at ``start_time + k / rate_on_sync``), so they are
    stored exactly as ``starting_time`` + ``rate`` instead of one float64 per sample (1.3 GB per
    90-minute AP stream). ``conversion`` = the stream's ``bit_volts`` in volts (0.195 µV).
    """
    if nwb.electrodes is None:
        raise SchemaError(
            "raw data needs an electrodes table", field="electrodes", expected="electrodes frame"
        )
    gcol = first_present(electrodes_df, ELECTRODE_GROUP)
    if gcol is None:
        raise SchemaError(
            "electrodes frame lacks a group column",
            field="group_name",
            expected="group_name or electrode_group_name",
        )
    out: list[ElectricalSeries] = []
    group_names = electrodes_df[gcol].cast(pl.String)
    for group in _unique_in_order(group_names):
        rows = np.flatnonzero((group_names == group).to_numpy())
        region = nwb.create_electrode_table_region(
            region=rows.tolist(), description=f"channels of {group}"
        )
        for band in bands:
            data, start, rate, volts = _stream(raw, group, band)
            if data.shape[1] != len(rows):
                raise InconsistentDataError(
                    f"{group} {band}: {data.shape[1]} recorded channels but {len(rows)} electrodes",
                    field="electrodes",
                    expected="one electrodes row per recorded channel",
                )
            series = ElectricalSeries(
                name=f"{group}_{band}",
                description=f"raw {band.upper()} band of {group}, int16 counts on the sync clock",
                data=MemmapChunkIterator(data),
                electrodes=region,
                starting_time=start,
                rate=rate,
                conversion=volts,
            )
            nwb.add_acquisition(series)
            out.append(series)
    return out


def _unique_in_order(s: pl.Series) -> Iterator[str]:
    yield from s.unique(maintain_order=True).to_list()
