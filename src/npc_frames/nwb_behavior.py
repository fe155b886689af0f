"""NWB containers of the video-derived behavior components (``processing/behavior``).

* ``eye_tracking``, ``dlc_eye_camera``, ``lp_side_camera``, ``lp_front_camera``: DynamicTables with
  one row per video frame, every schema column (described) and ``timestamps`` (the frame times;
  ``frame_index`` is the row id).
* ``facemap_<camera>``: a TimeSeries per camera, data = frames × components (float32, only the
  components present), unit ``pixels``, timestamps = frame times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from hdmf.common import DynamicTable
from pynwb import TimeSeries

from npc_frames.nwb_tables import build_table, table_description
from npc_frames.schemas.video_behavior import FACEMAP_SCHEMAS, LP_SCHEMAS

__all__ = ["NWB_LOCATIONS", "TABLES", "TIMESERIES", "video_behavior_containers"]

TABLES = ("eye_tracking", "dlc_eye_camera", *(s.name for s in LP_SCHEMAS.values()))
TIMESERIES = tuple(s.name for s in FACEMAP_SCHEMAS.values())
NWB_LOCATIONS = {name: f"/processing/behavior/{name}" for name in (*TABLES, *TIMESERIES)}


def _table(name: str, df: pl.DataFrame) -> DynamicTable:
    df = df.sort("frame_index")
    return build_table(
        DynamicTable,
        df,
        name,
        name=name,
        description=table_description(name, name),
        skip=("frame_index",),
        rename={"timestamp": "timestamps"},
    )


def _facemap(name: str, df: pl.DataFrame) -> TimeSeries:
    df = df.sort("frame_index")
    present = [
        c for c in df.columns if c.startswith("motion_svd_") and df[c].null_count() < df.height
    ]
    data = df.select(present).to_numpy().astype(np.float32)
    return TimeSeries(
        name=name,
        description=f"{table_description(name, name)}; {len(present)} components",
        data=data,
        unit="pixels",
        timestamps=df["timestamp"].cast(pl.Float64).to_numpy(),
    )


def video_behavior_containers(frames: Mapping[str, pl.DataFrame]) -> list[Any]:
    """Return the NWB containers of every non-empty video-derived component in `frames`."""
    out: list[Any] = []
    for name in TABLES:
        if (df := frames.get(name)) is not None and df.height:
            out.append(_table(name, df))
    for name in TIMESERIES:
        if (df := frames.get(name)) is not None and df.height:
            out.append(_facemap(name, df))
    return out
