"""NWB containers of the probe-placement components: ``acquisition/manipulator_positions`` and the
NewScale stage devices.

Called from :func:`npc_frames.nwb.to_nwb` by :func:`add_anatomy` once devices, electrode groups,
electrodes and units are in the file.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from hdmf.common import DynamicTable
from pynwb import NWBFile
from pynwb.device import Device

from npc_frames.nwb_tables import build_table

__all__ = ["add_anatomy", "add_manipulator_positions"]

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


def add_anatomy(nwb: NWBFile, frames: Mapping[str, pl.DataFrame]) -> None:
    """Add the probe-placement components present in `frames` to `nwb`."""
    if (df := frames.get("manipulator_positions")) is not None and df.height:
        add_manipulator_positions(nwb, df)
