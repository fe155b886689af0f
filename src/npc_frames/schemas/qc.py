"""Schemas of the ``qc`` and ``qc_timing`` components: sync-based QC checks and their details."""

from __future__ import annotations

import polars as pl

from npc_frames.schemas import Column, Schema, register

__all__ = ["QC", "QC_TIMING"]

F64 = pl.Float64
STR = pl.String

QC = Schema(
    name="qc",
    description=(
        "one row per sync-based QC check of the session (stim-display frame timing, photodiode "
        "lag, sound and opto latency): value, threshold, verdict; a check whose modality the "
        "session lacks (no photodiode, no sound line, no NI-DAQ recording) has no row"
    ),
    key=("name",),
    columns=(
        Column("session_id", STR, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`"),
        Column("name", STR, "name of the check, e.g. vsync_dropped_fraction, photodiode_lag"),
        Column("value", F64, "measured value (see unit)", nullable=True),
        Column("threshold", STR, "the pass rule applied to value, e.g. '<= 0.002'"),
        Column("passed", pl.Boolean, "value satisfies the threshold", nullable=True),
        Column("unit", STR, "unit of value (s, fraction, count)", nullable=True),
        Column("description", STR, "what the check measures and what a failure means"),
    ),
)

QC_TIMING = Schema(
    name="qc_timing",
    description=(
        "distribution of one timing measure per stim block (vsync intervals, photodiode lag) or "
        "per task file (sound and opto latencies against the flip and between the sync line and "
        "the NI-DAQ copy): quantiles and a histogram, for the QC report's timing panels"
    ),
    key=("measure", "block_index", "script_name"),
    columns=(
        Column("session_id", STR, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`"),
        Column(
            "measure",
            STR,
            "vsync_interval (flip to flip), photodiode_lag (diode edge - flip), "
            "sound_latency_line / sound_latency_nidaq (onset - flip of the stimulus frame), "
            "sound_line_minus_nidaq, opto_latency_line / opto_latency_nidaq (laser onset - flip "
            "of the onset frame - commanded delay), opto_line_minus_nidaq",
        ),
        Column("script_name", STR, "stim script of the block (e.g. DynamicRouting1)"),
        Column("block_index", pl.Int64, "0-based vsync block of the sync file", nullable=True),
        Column("unit", STR, "unit of the values (s)"),
        Column("n", pl.Int64, "number of values (intervals, frames or trials)"),
        Column(
            "n_outliers",
            pl.Int64,
            "values beyond outlier_threshold (dropped/long frames for vsync_interval)",
        ),
        Column("outlier_threshold", F64, "values above this count as outliers", unit="s"),
        Column("median", F64, "median value", unit="s"),
        Column("p05", F64, "5th percentile", unit="s"),
        Column("p95", F64, "95th percentile", unit="s"),
        Column("min", F64, "smallest value", unit="s"),
        Column("max", F64, "largest value", unit="s"),
        Column(
            "hist_edges",
            pl.List(F64),
            "histogram bin edges (values outside are counted in the first/last bin)",
            unit="s",
        ),
        Column("hist_counts", pl.List(pl.Int64), "values per histogram bin"),
    ),
)

register([QC, QC_TIMING])
