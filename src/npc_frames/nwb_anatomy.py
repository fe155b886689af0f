"""NWB containers of the probe-placement components — ``acquisition/manipulator_positions`` and the
NewScale stage devices — and the per-probe subsampled LFP (``processing/ecephys/LFP``).

Called from :func:`npc_frames.nwb.to_nwb` by :func:`add_anatomy` once devices, electrode groups,
electrodes and units are in the file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from hdmf.common import DynamicTable
from pynwb import NWBFile
from pynwb.device import Device
from pynwb.ecephys import ElectricalSeries

from npc_frames.nwb_tables import build_table

logger = logging.getLogger(__name__)

__all__ = [
    "add_anatomy",
    "add_lfp",
    "add_manipulator_positions",
    "add_spike_histograms",
    "spike_histograms",
]

NEWSCALE = "NewScale"


def add_manipulator_positions(nwb: NWBFile, df: pl.DataFrame) -> DynamicTable:
    """Return the ``manipulator_positions`` table added to `nwb`'s acquisition, with one NewScale
    device per row whose probe has an electrode group in the file."""
    table = build_table(
        DynamicTable,
        df,
        "manipulator_positions",
        name="manipulator_positions",
        description=(
            "Nominal NewScale stage coordinates of each probe at the start of the recording "
            "(its last movement before recording; x/y horizontal, z vertical with +z inferior "
            "and 0 fully retracted)"
        ),
        skip=("session_id",),
    )
    nwb.add_acquisition(table)
    for row in df.iter_rows(named=True):
        if row["electrode_group_name"] in nwb.electrode_groups and row["device_name"] not in (
            nwb.devices
        ):
            nwb.add_device(
                Device(
                    name=str(row["device_name"]),
                    description=f"NewScale stage of {row['electrode_group_name']}",
                    manufacturer=NEWSCALE,
                )
            )
    return table


#: spike times handled per step of the spike histograms (8 MB of float64, reused)
HISTOGRAM_BLOCK = 1 << 20


def spike_histograms(units: pl.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """Return per electrode group (sorted) the pooled spike counts in 1 s bins, the bin centres
    (s), and whether only ``default_qc`` units were pooled (else all units, when none passes).

    Bins start at the floor of the first spike time and cover the last spike. The spike times are
    read in place from the Arrow buffer of ``spike_times``, in blocks of at most
    :data:`HISTOGRAM_BLOCK` spikes of whole units copied into one reused buffer: no copy of all
    spikes of a probe is made (on 60 M spikes that copy and its fresh pages cost more than the
    counting).
    """
    out: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    if units.is_empty():
        return out
    qc = units["default_qc"].fill_null(False).to_numpy() if "default_qc" in units.columns else None
    names = units["electrode_group_name"].cast(pl.String)
    times = units["spike_times"].cast(pl.List(pl.Float64)).rechunk()
    arr = _one_chunk(times)
    if arr.values.null_count:  # null spike times are not counted
        times = times.list.drop_nulls()
        arr = _one_chunk(times)
    offsets = np.asarray(arr.offsets.to_numpy(), dtype=np.int64)  # into arr.values, a null
    values = np.asarray(arr.values.to_numpy(zero_copy_only=False))  # list has no element
    starts, lengths = offsets[:-1], np.where(times.is_null().to_numpy(), 0, np.diff(offsets))
    lowest, highest = times.list.min().to_numpy(), times.list.max().to_numpy()
    buffer = np.empty(HISTOGRAM_BLOCK, dtype=np.float64)
    for group in sorted(names.unique().drop_nulls().to_list()):
        mine = (names == group).to_numpy()
        good = (mine & qc) if qc is not None else mine
        only_good = bool(good.any())
        chosen = np.flatnonzero((good if only_good else mine) & (lengths > 0))
        if chosen.size == 0:
            continue
        first = np.floor(lowest[chosen].min())
        counts = np.zeros(int(np.floor(highest[chosen].max()) - first) + 1, dtype=np.int64)
        for block in _unit_blocks(lengths[chosen], HISTOGRAM_BLOCK):
            rows = chosen[block]
            parts = [values[a : a + n] for a, n in zip(starts[rows], lengths[rows], strict=True)]
            size = int(lengths[rows].sum())
            t = (
                np.concatenate(parts, out=buffer[:size])
                if size <= buffer.size
                else np.concatenate(parts)
            )
            # whole seconds since the first bin, exact (integers < 2**53): one bincount pass
            # instead of np.histogram's sort of every spike time
            np.floor(t, out=t)
            t -= first
            counts += np.bincount(t.astype(np.int64), minlength=counts.size)
        out[group] = (counts.astype(np.float64), first + 0.5 + np.arange(counts.size), only_good)
    return out


def _one_chunk(s: pl.Series) -> pa.Array:
    arr = s.to_arrow()
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _unit_blocks(lengths: np.ndarray, block: int) -> list[slice]:
    """Return consecutive slices of units whose spikes add up to at most `block` (one unit with
    more spikes is a block of its own)."""
    ends = np.cumsum(lengths)
    out: list[slice] = []
    i = 0
    while i < len(lengths):
        before = int(ends[i] - lengths[i])
        j = max(i + 1, int(np.searchsorted(ends, before + block, side="right")))
        out.append(slice(i, j))
        i = j
    return out


def add_spike_histograms(nwb: NWBFile, units: pl.DataFrame) -> None:
    """Add ``analysis/all_spike_histograms``: one TimeSeries per probe of its pooled spike rate."""
    from pynwb import TimeSeries
    from pynwb.behavior import BehavioralEvents

    hists = spike_histograms(units)
    if not hists:
        return
    container = BehavioralEvents(name="all_spike_histograms")
    for group, (counts, centres, only_good) in hists.items():
        container.add_timeseries(
            TimeSeries(
                name=group,
                data=counts,
                starting_time=float(centres[0]),  # bin centres, 1 s apart
                rate=1.0,
                unit="spikes/s",
                resolution=1.0,
                description=(
                    f"spikes of all {'good (default_qc) ' if only_good else ''}units of {group} "
                    "pooled in 1 s bins; times are bin centres"
                ),
            )
        )
    nwb.add_analysis(container)


def add_anatomy(nwb: NWBFile, frames: Mapping[str, pl.DataFrame]) -> None:
    """Add the probe-placement components present in `frames` to `nwb`, and the per-probe spike
    histograms of the units."""
    if (df := frames.get("manipulator_positions")) is not None and df.height:
        add_manipulator_positions(nwb, df)
    if (df := frames.get("units")) is not None and df.height and "spike_times" in df.columns:
        add_spike_histograms(nwb, df)


def add_lfp(
    nwb: NWBFile,
    raw: Any,
    electrodes_df: pl.DataFrame,
    *,
    cache: str | os.PathLike[str] | None = None,
) -> list[ElectricalSeries]:
    """Return the per-probe subsampled LFP series added to ``processing/ecephys/LFP``.

    Each series is named by its electrode group and references that probe's own rows of the
    electrodes table (one per LFP channel). Samples are streamed chunk by chunk. A probe whose LFP
    cannot be read is reported by a warning naming the error; the other probes are written.
    """
    from pynwb.ecephys import LFP

    from npc_frames.errors import InconsistentDataError, NpcFramesError
    from npc_frames.nwb_ephys import MemmapChunkIterator
    from npc_frames.subsampled_lfp import lfp

    groups = electrodes_df["group_name"].cast(pl.String)
    channels = electrodes_df["channel"].to_numpy()
    out: list[ElectricalSeries] = []
    container = LFP(name="LFP")
    for group in groups.unique(maintain_order=True).to_list():
        rows = np.flatnonzero((groups == group).to_numpy())
        try:
            lf = lfp(raw, group, cache=cache)
            base = 384 if channels[rows].min() >= 384 else 0  # surface-channel recordings
            by_channel = dict(zip((channels[rows] - base).tolist(), rows.tolist(), strict=True))
            missing = [int(c) for c in lf.channels if int(c) not in by_channel]
            if missing:
                raise InconsistentDataError(
                    f"{group}: LFP channels {missing[:5]} have no electrodes row",
                    path=lf.source,
                    field="channels",
                )
        except NpcFramesError as exc:
            warnings.warn(f"LFP of {group} not written: {exc}", stacklevel=2)
            continue
        region = nwb.create_electrode_table_region(
            region=[by_channel[int(c)] for c in lf.channels],
            description=f"LFP channels of {group}",
        )
        series = ElectricalSeries(
            name=group,
            description=(
                f"subsampled LFP of {group}: every 4th channel ({lf.channels.size}), "
                f"{lf.rate:.4f} Hz on the sync clock, median-referenced to channels above the "
                "brain when annotated, high-passed at 0.1 Hz"
            ),
            data=MemmapChunkIterator(lf.data),
            electrodes=region,
            starting_time=lf.start_time,
            rate=lf.rate,
            conversion=lf.uv_per_unit * 1e-6,
            filtering="0.1 Hz high-pass (Butterworth order 5, zero phase) after FFT resampling",
        )
        container.add_electrical_series(series)
        out.append(series)
    if out:
        module = nwb.processing.get("ecephys") or nwb.create_processing_module(
            name="ecephys", description="processed extracellular electrophysiology"
        )
        module.add(container)
    return out
