"""Schemas of the ephys components: devices, electrode_groups, electrodes, units.

Times are seconds on the sync clock. Optional columns (CCF coordinates, shank, metric
columns a sorting did not compute) are null when absent, so every session has the same schema.
"""

from __future__ import annotations

import polars as pl

from npc_frames.schemas import Column, Schema, register

__all__ = [
    "DEVICES",
    "ELECTRODES",
    "ELECTRODE_GROUPS",
    "MANIPULATOR_POSITIONS",
    "METRIC_COLUMNS",
    "SPIKE_AMPLITUDES",
    "UNITS",
    "UNIT_WAVEFORMS",
]

F64 = pl.Float64
F32 = pl.Float32
I64 = pl.Int64
STR = pl.String
BOOL = pl.Boolean

SESSION_ID = Column("session_id", STR, "canonical session id, `<subject>_<YYYY-MM-DD>[_<idx>]`")

DEVICES = Schema(
    name="devices",
    description="one row per Neuropixels probe recorded in the session (from settings.xml)",
    key=("session_id", "name"),
    columns=(
        SESSION_ID,
        Column("name", STR, "probe serial number (the NWB device name)"),
        Column("description", STR, "probe model, e.g. `Neuropixels 1.0`"),
        Column("manufacturer", STR, "device manufacturer (`imec`)"),
        Column("electrode_group_name", STR, "electrode group on this probe, `probe<letter>`"),
    ),
)

ELECTRODE_GROUPS = Schema(
    name="electrode_groups",
    description="one electrode group per recorded probe, named `probe<letter>`",
    key=("session_id", "name"),
    columns=(
        SESSION_ID,
        Column(
            "name",
            STR,
            "`probe<letter>`, the letter derived from the probe's slot and port in settings.xml",
        ),
        Column("device_name", STR, "serial number of the probe (devices.name)"),
        Column("description", STR, "probe model, e.g. `Neuropixels 1.0`"),
        Column(
            "location",
            STR,
            "`<implant> <hole>` from probe-insertion records when known, else `unknown`",
        ),
    ),
)

ELECTRODES = Schema(
    name="electrodes",
    description=(
        "one row per recorded channel of each recorded probe (settings.xml order of probes, then "
        "of CHk keys); CCF columns are null unless an annotation CSV was found"
    ),
    key=("session_id", "electrode_index"),
    columns=(
        SESSION_ID,
        Column(
            "electrode_index",
            I64,
            "row index of the electrode in this session's table (units.peak_electrode refers to it)",
        ),
        Column("group_name", STR, "electrode group, `probe<letter>`"),
        Column("channel", I64, "probe channel, 0 = nearest the tip (+384 for surface recordings)"),
        Column("rel_x", F64, "x position on the probe (ELECTRODE_XPOS)", unit="µm"),
        Column("rel_y", F64, "y position on the probe, distance from the tip row", unit="µm"),
        Column("reference", STR, "reference of the channel (`tip`)"),
        Column("imp", F64, "nominal impedance (150 kΩ; not measured)", unit="Ω"),
        Column("location", STR, "brain region from the annotation, else `unannotated`"),
        Column("structure", STR, "region with layer stripped (annotation)", required=False),
        Column("x", F64, "CCF AP, +posterior (annotation)", required=False, unit="µm"),
        Column("y", F64, "CCF DV, +inferior (annotation)", required=False, unit="µm"),
        Column("z", F64, "CCF ML, +right (annotation)", required=False, unit="µm"),
        Column("raw_structure", STR, "region as written by the annotation", required=False),
    ),
)

#: quality- and template-metric columns copied from the sorting output (the names the AIND
#: SpikeInterface pipeline writes, plus those of newer SpikeInterface versions); a metric the
#: sorting lacks is null.
METRIC_COLUMNS: tuple[str, ...] = (
    # quality metrics
    "amplitude_cutoff",
    "amplitude_cv_median",
    "amplitude_cv_range",
    "amplitude_median",
    "drift_ptp",
    "drift_std",
    "drift_mad",
    "firing_range",
    "firing_rate",
    "isi_violations_ratio",
    "isi_violations_count",
    "presence_ratio",
    "rp_contamination",
    "rp_violations",
    "sliding_rp_violation",
    "snr",
    "sync_spike_2",
    "sync_spike_4",
    "sync_spike_8",
    "d_prime",
    "isolation_distance",
    "l_ratio",
    "silhouette",
    "nn_hit_rate",
    "nn_miss_rate",
    "noise_cutoff",
    "noise_ratio",
    "sd_ratio",
    # template metrics
    "exp_decay",
    "half_width",
    "num_negative_peaks",
    "num_positive_peaks",
    "peak_to_valley",
    "peak_trough_ratio",
    "recovery_slope",
    "repolarization_slope",
    "spread",
    "velocity_above",
    "velocity_below",
    "main_peak_to_trough_ratio",
    "main_to_next_extremum_duration",
    "peak_half_width",
    "peak_to_trough_duration",
    "trough_half_width",
    "trough_width",
    "peak_after_to_trough_ratio",
    "peak_after_width",
    "peak_before_to_peak_after_ratio",
    "peak_before_to_trough_ratio",
    "peak_before_width",
    "waveform_baseline_flatness",
)

#: units of the metrics that have one, as SpikeInterface computes them (the others are counts,
#: ratios or scores)
METRIC_UNITS: dict[str, str] = {
    "amplitude_median": "µV",
    "drift_ptp": "µm",
    "drift_std": "µm",
    "drift_mad": "µm",
    "firing_range": "Hz",
    "firing_rate": "Hz",
    "half_width": "s",
    "peak_to_valley": "s",
    "recovery_slope": "µV/s",
    "repolarization_slope": "µV/s",
    "spread": "µm",
    "velocity_above": "µm/ms",
    "velocity_below": "µm/ms",
}

UNITS = Schema(
    name="units",
    description=(
        "spike-sorted units from Kilosort 2.5, one row per unit of each sorted probe (per-spike "
        "amplitudes: the spike_amplitudes component; average templates: unit_waveforms)"
    ),
    key=("session_id", "unit_id"),
    columns=(
        SESSION_ID,
        Column("unit_id", STR, "`<session_id>_<probe letter>[-<shank>]-<cluster_id>`"),
        Column("cluster_id", I64, "Kilosort cluster id (original_cluster_id)"),
        Column("electrode_group_name", STR, "`probe<letter>` of the unit's probe"),
        Column("device_name", STR, "serial number of the unit's probe"),
        Column("shank", I64, "shank of a multi-shank probe (`_group<k>`)", required=False),
        Column(
            "peak_channel",
            I64,
            "probe channel (0 = tip) with the largest peak-to-peak average template",
        ),
        Column(
            "peak_electrode", I64, "electrodes.electrode_index of the peak channel in this group"
        ),
        Column(
            "amplitude", F64, "peak-to-peak of the average template on the peak channel", unit="µV"
        ),
        Column(
            "spike_times",
            pl.List(F64),
            "spike times on the sync clock, sorted: sample / rate_on_sync + start_time",
            unit="s",
        ),
        Column(
            "obs_intervals",
            pl.List(pl.List(F64)),
            "[[start, stop]] on sync: the probe's first sample to min(last sample, sync end)",
            unit="s",
        ),
        Column(
            "default_qc",
            BOOL,
            "npc QC: isi_violations_ratio ≤ 0.5 AND amplitude_cutoff ≤ 0.1 "
            "AND presence_ratio ≥ 0.7 AND decoder_label != 'noise' AND activity_drift < 0.1; the "
            "drift term is applied only when activity_drift is known (a trials frame was given) "
            "and a missing decoder label counts as not noise; a missing metric fails the unit",
        ),
        Column("is_qc_pass", BOOL, "copy of default_qc"),
        Column(
            "activity_drift",
            F64,
            "max over (rewarded modality, stim) groups of the Anderson–Darling k-sample statistic "
            "of per-trial spike counts in [stim − 1.5 s, stim + 2 s) across blocks, /100, clipped "
            "to [0, 1]; null when no trials frame was given",
            required=False,
        ),
        Column("is_not_drift", BOOL, "activity_drift < 0.1 (null when unknown)", required=False),
        Column("decoder_label", STR, "unit classifier label: noise, mua or sua", required=False),
        Column("decoder_probability", F64, "unit classifier probability", required=False),
        Column("ccf_ap", F64, "CCF AP of the peak channel (annotation)", required=False, unit="µm"),
        Column("ccf_dv", F64, "CCF DV of the peak channel (annotation)", required=False, unit="µm"),
        Column("ccf_ml", F64, "CCF ML of the peak channel (annotation)", required=False, unit="µm"),
        Column("structure", STR, "brain structure of the peak channel", required=False),
        Column("location", STR, "brain region of the peak channel", required=False),
        Column("num_spikes", I64, "number of spikes (equals len(spike_times))"),
        *(
            Column(
                name,
                F64,
                f"sorting metric `{name}` (SpikeInterface)",
                required=False,
                unit=METRIC_UNITS.get(name),
            )
            for name in METRIC_COLUMNS
        ),
    ),
)

#: the leading columns of a per-unit component kept apart from ``units`` (``spike_amplitudes``,
#: ``unit_waveforms``): its rows are those units, ordered and grouped by structure as there
PER_UNIT_KEY: tuple[Column, ...] = (
    SESSION_ID,
    Column("unit_id", STR, "units.unit_id of the unit"),
    Column("electrode_group_name", STR, "`probe<letter>` of the unit's probe"),
    Column(
        "structure",
        STR,
        "brain structure of the unit's peak channel (units.structure; rows are ordered and "
        "grouped by it as in units)",
        required=False,
    ),
)

SPIKE_AMPLITUDES = Schema(
    name="spike_amplitudes",
    description=(
        "per-spike amplitudes of the spike-sorted units, one row per unit of each sorted probe "
        "whose sorting has them (the units of a probe without them are absent); stored apart "
        "from units so that a query of spike times never reads them"
    ),
    key=("session_id", "unit_id"),
    columns=(
        *PER_UNIT_KEY,
        Column(
            "spike_amplitudes",
            pl.List(F64),
            "per-spike amplitude in units.spike_times order (µV for SpikeInterface output; "
            "Kilosort template scaling factor for phy folders)",
        ),
    ),
)

UNIT_WAVEFORMS = Schema(
    name="unit_waveforms",
    description=(
        "average template of the spike-sorted units on their own channels, one row per unit of "
        "each sorted probe whose sorting has templates (the units of a probe without them are "
        "absent); stored apart from units so that a query of spike times never reads them"
    ),
    key=("session_id", "unit_id"),
    columns=(
        *PER_UNIT_KEY,
        Column(
            "channels",
            pl.List(I64),
            "probe channels where the unit's average template is not all zero (waveform_mean rows)",
        ),
        Column(
            "waveform_mean",
            pl.List(pl.List(F32)),
            "average template on `channels` (channels × samples)",
            unit="µV",
        ),
    ),
)

MANIPULATOR_POSITIONS = Schema(
    name="manipulator_positions",
    description=(
        "nominal NewScale stage position of each probe at the start of the recording (its last "
        "movement before settings.xml DATE); empty when the session has no stage log"
    ),
    key=("session_id", "device_name"),
    columns=(
        SESSION_ID,
        Column("electrode_group_name", STR, "`probe<letter>`, or the serial when it is not known"),
        Column("device_name", STR, "NewScale stage serial, e.g. `SN40906`"),
        Column("x", F64, "stage x (horizontal; direction differs between rigs)", unit="um"),
        Column("y", F64, "stage y (horizontal; direction differs between rigs)", unit="um"),
        Column("z", F64, "stage z (vertical, +inferior; 0 = fully retracted)", unit="um"),
        Column(
            "last_movement_time",
            F64,
            "time of the stage's last movement relative to the recording start (negative; the "
            "probes settle for at least 15 minutes before recording)",
            unit="s",
        ),
    ),
)

register(
    [
        DEVICES,
        ELECTRODE_GROUPS,
        ELECTRODES,
        UNITS,
        SPIKE_AMPLITUDES,
        UNIT_WAVEFORMS,
        MANIPULATOR_POSITIONS,
    ]
)
