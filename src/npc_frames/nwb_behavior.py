"""NWB containers of the video-derived behavior components (``processing/behavior``).

* ``eye_tracking``, ``dlc_eye_camera``, ``lp_side_camera``, ``lp_front_camera``,
  ``lp_zoomed_side_camera``: DynamicTables with one row per video frame, every schema column (described) and ``timestamps`` (the frame times;
  ``frame_index`` is the row id).
* ``facemap_<camera>``: a TimeSeries per camera, data = frames × components (float32, only the
  components present), unit ``pixels``, timestamps = frame times.
* With the ``ndx-pose`` extension installed (extra ``pose``), the DeepLabCut and Lightning Pose
  keypoints are also written as ndx-pose ``PoseEstimation`` containers named ``<table>_pose``
  (one ``PoseEstimationSeries`` per body part: x, y in px and the likelihood as confidence;
  timestamps stored once and linked), with a node-only ``Skeleton`` in ``Skeletons``, so that
  pose-aware NWB tools read them. ndx-pose 0.4 passes pynwb validation with our pynwb.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl
from hdmf.common import DynamicTable
from pynwb import TimeSeries

from npc_frames.nwb_tables import build_table, table_description
from npc_frames.schemas.video_behavior import FACEMAP_SCHEMAS, LP_SCHEMAS

logger = logging.getLogger(__name__)

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


_SOFTWARE = {"dlc_eye_camera": "DeepLabCut", "lp_side_camera": "Lightning Pose",
             "lp_front_camera": "Lightning Pose",
             "lp_zoomed_side_camera": "Lightning Pose"}  # fmt: skip


def _pose(name: str, df: pl.DataFrame) -> list[Any]:
    """Return [PoseEstimation, Skeleton] of a keypoint table (ndx-pose)."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton

    df = df.sort("frame_index")
    parts = [c.removesuffix("_likelihood") for c in df.columns if c.endswith("_likelihood")]
    times = df["timestamp"].cast(pl.Float64).to_numpy()
    series: list[Any] = []
    for bp in parts:
        series.append(
            PoseEstimationSeries(
                name=bp,
                description=f"{bp} position in the video frame",
                data=df.select(f"{bp}_x", f"{bp}_y").to_numpy(),
                unit="pixels",
                reference_frame="(0, 0) is the top-left corner of the video frame",
                timestamps=series[0] if series else times,
                confidence=df[f"{bp}_likelihood"].to_numpy(),
                confidence_definition="network likelihood (softmax), 0-1",
            )
        )
    skeleton = Skeleton(name=name, nodes=parts, edges=np.zeros((0, 2), dtype=np.uint8))
    pose = PoseEstimation(
        name=f"{name}_pose",
        pose_estimation_series=series,
        description=f"{table_description(name, name)} (keypoints of the {name} table)",
        source_software=_SOFTWARE[name],
        skeleton=skeleton,
    )
    return [pose, skeleton]


def _has_ndx_pose() -> bool:
    try:
        import ndx_pose  # noqa: F401
    except ImportError:
        return False
    return True


def video_behavior_containers(frames: Mapping[str, pl.DataFrame]) -> list[Any]:
    """Return the NWB containers of every non-empty video-derived component in `frames`
    (PoseEstimation and a Skeletons container too when ndx-pose is installed)."""
    out: list[Any] = []
    skeletons: list[Any] = []
    for name in TABLES:
        if (df := frames.get(name)) is not None and df.height:
            out.append(_table(name, df))
            if name in _SOFTWARE and _has_ndx_pose():
                pose, skeleton = _pose(name, df)
                out.append(pose)
                skeletons.append(skeleton)
    if skeletons:
        from ndx_pose import Skeletons

        out.append(Skeletons(skeletons=skeletons))
    for name in TIMESERIES:
        if (df := frames.get(name)) is not None and df.height:
            out.append(_facemap(name, df))
    return out
