"""The `epochs` component: one row per stim file with valid timing.

Tags: `task` (DynamicRouting1) plus `opto_perturbation` (opto trials, not wild type) or
`opto_control` (wild type); `rewards` (any rewardFrames); `spontaneous`, `mapping` (substring of
the script name); `optotagging` or `optotagging_control` (wild type); `invalid_times` (the epoch
overlaps an invalid interval). Files with timing issues are omitted (with sync).
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from npc_frames import parts
from npc_frames._log import timed
from npc_frames.components._task import (
    invalid_intervals,
    open_stim,
    overlaps_invalid,
    script_of,
    sync_data,
    valid_frame_times,
)
from npc_frames.schemas.behavior import EPOCHS

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["INTERVAL_NAMES", "epochs", "is_wild_type"]

#: component (interval-table) names fed by each script
INTERVAL_NAMES: dict[str, list[str]] = {
    "DynamicRouting1": ["trials", "performance"],
    "RFMapping": ["vis_rf_mapping", "aud_rf_mapping"],
    "OptoTagging": ["optotagging"],
    "LuminanceTest": ["luminance_test"],
}


def is_wild_type(raw: RawSession) -> bool | None:
    """Return whether subject.json's genotype contains `wt/wt` (None without subject.json)."""
    path = raw.metadata_paths.get("subject.json")
    if not path:
        return None
    from npc_frames.readers.metadata import read_subject

    with raw.open(path) as f:
        info = read_subject(f)
    return None if info.genotype is None else "wt/wt" in info.genotype.lower()


def _has_opto_trials(path: str) -> bool:
    stim = open_stim(path)
    if not stim.has("trialOptoOnsetFrame"):
        return False
    onset = np.asarray(stim.array("trialOptoOnsetFrame"), dtype=np.float64)
    return bool(np.isfinite(onset).any())


@timed
def epochs(raw: RawSession) -> pl.DataFrame:
    """Return one row per stim file with valid timing, sorted by start."""
    sid = str(raw.session_id)
    if not raw.stim_paths:
        parts.report_absent_component("no stim files")
    ft = valid_frame_times(raw)
    no_sync = sync_data(raw) is None
    invalid = invalid_intervals(raw)
    wild = is_wild_type(raw)
    rows: dict[str, list[object]] = {k: [] for k in EPOCHS.names}
    for path, t in ft.items():
        script = script_of(path)
        stim = open_stim(path)
        display = np.asarray(t.display, dtype=np.float64)
        if no_sync:
            start, stop = 0.0, float(np.sum(stim.frame_intervals))
        else:
            start, stop = float(np.nanmin(display)), float(np.nanmax(display))
        tags: list[str] = []
        lower = script.lower()
        if script == "DynamicRouting1":
            tags.append("task")
            if _has_opto_trials(path):
                tags.append("opto_control" if wild else "opto_perturbation")
        if stim.has("rewardFrames") and np.asarray(stim.array("rewardFrames")).size:
            tags.append("rewards")
        if "spontaneous" in lower:
            tags.append("spontaneous")
        if "mapping" in lower:
            tags.append("mapping")
        if script == "OptoTagging":
            tags.append("optotagging_control" if wild else "optotagging")
        hit = (
            overlaps_invalid(np.array([start]), np.array([stop]), invalid)[0]
            if invalid.height
            else False
        )
        notes = ""
        if hit:
            tags.append("invalid_times")
            reasons = invalid.filter((pl.col("start_time") < stop) & (pl.col("stop_time") > start))[
                "reason"
            ].to_list()
            notes = "includes invalid times: " + "; ".join(reasons)
        rows["session_id"].append(sid)
        rows["start_time"].append(start)
        rows["stop_time"].append(stop)
        rows["script_name"].append(script)
        rows["stim_file"].append(posixpath.basename(path))
        rows["tags"].append(tags)
        rows["interval_names"].append(INTERVAL_NAMES.get(script, []))
        rows["notes"].append(notes)
    df = pl.DataFrame(rows, schema=EPOCHS.polars_schema).sort("start_time")
    return EPOCHS.validate(df, source=raw.root)
