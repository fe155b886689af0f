"""NWB export: ``to_nwb()`` assembles a pynwb NWBFile from the frames of one session, ``write_nwb()``
writes it to HDF5 atomically.

Layout (as the reference npc_sessions writes it; docs/nwb.md):

=======================  ====================================================================
component                where in the NWB file
=======================  ====================================================================
sessions                 NWBFile fields (session_start_time, lab, experimenter, keywords, …)
subjects                 ``general/subject`` (age ``P<days>D`` from date of birth)
epochs                   ``intervals/epochs`` (``tags``, ``interval_names`` ragged)
trials                   ``intervals/trials``
performance              ``intervals/performance``
vis/aud_rf_mapping       ``intervals/{vis,aud}_rf_mapping_trials``
optotagging              ``intervals/optotagging_trials``
luminance_test           ``intervals/luminance_test_trials``
invalid_times            ``intervals/invalid_times``
licks, rewards           ``processing/behavior/{licks,rewards}`` as ``EventsTable``
quiescent_violations     ``processing/behavior/quiescent_interval_violations`` (``EventsTable``)
running_speed            ``processing/behavior/running_speed`` ``TimeSeries`` (cm/s)
video_frame_times        ``acquisition/frametimes_<camera>`` (one table per camera)
devices                  ``general/devices``
electrode_groups         ``general/extracellular_ephys/<probeX>``
electrodes               ``general/extracellular_ephys/electrodes``
units                    ``units`` (ragged columns built from whole arrays)
raw (include_raw=True)   ``acquisition/probeX_ap``, ``probeX_lfp`` ``ElectricalSeries``
=======================  ====================================================================

Decisions:

* Events tables use the ``EventsTable`` of the NWB core (pynwb ≥ 4, which adopted the ndx-events
  0.4 type; the same API as ``ndx_events.EventsTable``). Their time column is named ``timestamp``
  (singular, the NWB name); the frames' ``timestamps`` column is renamed on the way in.
* A zero-row component (e.g. ``optotagging`` in a session without opto-tagging) writes no table.
* ``session_start_time`` keeps its sub-second part (the reference drops
  it; docs/quirks.md); a naive datetime is taken as America/Los_Angeles wall clock, as the reference does.
* Null encoding follows :mod:`npc_frames.nwb_tables` (HDF5 has no null).
"""

from __future__ import annotations

import datetime
import logging
import os
import uuid
import warnings
import zoneinfo
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from hdmf.common import DynamicTable
from hdmf.data_utils import AbstractDataChunkIterator, DataIO
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.epoch import TimeIntervals
from pynwb.file import Subject

from npc_frames import storage
from npc_frames.errors import CacheError, NpcFramesError, OutputError, ParameterError, SchemaError
from npc_frames.nwb_anatomy import add_anatomy, add_lfp
from npc_frames.nwb_behavior import NWB_LOCATIONS as VIDEO_BEHAVIOR_LOCATIONS
from npc_frames.nwb_behavior import video_behavior_containers
from npc_frames.nwb_ephys import (
    UnitChannelBlocks,
    add_devices,
    add_electrode_groups,
    add_electrodes,
    add_raw,
    add_units,
)
from npc_frames.nwb_stimulus import add_derived, add_opto_sites, add_stimulus_templates
from npc_frames.nwb_tables import (
    build_table,
    column_description,
    column_unit,
    first_present,
    require_columns,
    table_description,
)

logger = logging.getLogger(__name__)

try:  # pynwb >= 4: EventsTable is core NWB
    from pynwb.event import DurationVectorData, EventsTable, TimestampVectorData
except ImportError:  # pragma: no cover - older pynwb: the ndx-events 0.4 extension, same API
    from ndx_events import DurationVectorData, EventsTable, TimestampVectorData

__all__ = ["NWB_LOCATIONS", "PartialSessionWarning", "to_nwb", "validate_nwb", "write_nwb"]


class PartialSessionWarning(UserWarning):
    """The exported session is incomplete in the cache (some component is ``partial``)."""


#: the reference's institution string
INSTITUTION = "Neural Circuits & Behavior | MindScope program | Allen Institute for Neural Dynamics"
EXPERIMENT_DESCRIPTION = (
    "Dynamic Routing: mice switch between visual and auditory rewarded modalities in blocks "
    "while Neuropixels probes record across the brain"
)
#: session wall-clock time zone of the rigs
SESSION_TZ = zoneinfo.ZoneInfo("America/Los_Angeles")

#: interval components -> NWB name in /intervals (TitleCase stim class -> snake + _trials)
INTERVAL_TABLES: dict[str, str] = {
    "trials": "trials",
    "performance": "performance",
    "vis_rf_mapping": "vis_rf_mapping_trials",
    "aud_rf_mapping": "aud_rf_mapping_trials",
    "optotagging": "optotagging_trials",
    "luminance_test": "luminance_test_trials",
    "epochs": "epochs",
    "invalid_times": "invalid_times",
}
INTERVAL_DEFAULT_DESCRIPTIONS: dict[str, str] = {
    "trials": "visual-auditory task-switching behavior trials",
    "performance": "behavioral performance for each context block in the task",
    "vis_rf_mapping": "visual receptive-field mapping trials (gratings and full-field flashes)",
    "aud_rf_mapping": "auditory receptive-field mapping trials (tones and AM noise)",
    "optotagging": "optotagging trials",
    "luminance_test": "luminance test trials",
    "epochs": "one epoch per stimulus file with valid timing",
    "invalid_times": "time intervals to be removed from analysis",
}
#: event components -> NWB name in processing/behavior
EVENT_TABLES: dict[str, str] = {
    "licks": "licks",
    "rewards": "rewards",
    "quiescent_violations": "quiescent_interval_violations",
}
EVENT_DEFAULT_DESCRIPTIONS: dict[str, str] = {
    "licks": "times at which the subject interacted with a water spout",
    "rewards": "times at which the subject received a water reward",
    "quiescent_violations": (
        "times at which the subject made contact with the lick spout during a quiescent interval,"
        " triggering a restart of the trial"
    ),
}
#: MVR camera label -> NWB camera name ; NWB names map to themselves
CAMERA_NAMES: dict[str, str] = {
    "behavior": "side_camera",
    "eye": "eye_camera",
    "face": "front_camera",
    "nose": "zoomed_side_camera",
    **{v: v for v in ("side_camera", "eye_camera", "front_camera", "zoomed_side_camera")},
}
#: where each component lands (for docs, the CLI and the round-trip tests)
NWB_LOCATIONS: dict[str, str] = {
    "sessions": "/ (file metadata)",
    "subjects": "/general/subject",
    **{k: f"/intervals/{v}" for k, v in INTERVAL_TABLES.items()},
    **{k: f"/processing/behavior/{v}" for k, v in EVENT_TABLES.items()},
    "running_speed": "/processing/behavior/running_speed",
    "video_frame_times": "/acquisition/frametimes_<camera>",
    "devices": "/general/devices",
    "electrode_groups": "/general/extracellular_ephys",
    "electrodes": "/general/extracellular_ephys/electrodes",
    "units": "/units",
    "spike_amplitudes": "/units (column spike_amplitudes)",
    "unit_waveforms": "/units (columns channels, waveform_mean)",
    **VIDEO_BEHAVIOR_LOCATIONS,
}
NWBFILE_FIELDS = (
    "session_description",
    "identifier",
    "experimenter",
    "experiment_description",
    "institution",
    "keywords",
    "notes",
    "pharmacology",
    "protocol",
    "related_publications",
    "slices",
    "source_script",
    "source_script_file_name",
    "data_collection",
    "surgery",
    "virus",
    "stimulus_notes",
    "lab",
)
LIST_FIELDS = ("experimenter", "keywords", "related_publications")
#: sessions-frame columns that are file metadata but not NWBFile arguments
SESSION_SKIP = ("session_id", "session_start_time", "timestamps_reference_time")
SUBJECT_FIELDS = (
    "age",
    "age__reference",
    "description",
    "genotype",
    "sex",
    "species",
    "subject_id",
    "weight",
    "strain",
    "date_of_birth",
)


# ------------------------------------------------------------------------------------ inputs
def _frames_from_cache(
    session_id: str, cache: str | os.PathLike[str] | None, wanted: set[str] | None
) -> dict[str, pl.DataFrame]:
    """Return the component frames of `session_id` from the cache (CacheError if unusable)."""
    from npc_frames import cache as cache_mod

    failed = _failed_components(session_id, cache)
    if wanted is not None:
        failed = {k: v for k, v in failed.items() if k in wanted}
    if failed:
        raise CacheError(
            f"session {session_id}: components failed in the cache: "
            + "; ".join(f"{k}: {v}" for k, v in failed.items()),
            path=cache,
            field=", ".join(failed),
            expected="every component converted successfully (re-run convert, or pass the "
            "frames you have as a mapping)",
        )
    frames = cache_mod.read_session(session_id, cache)
    if not frames:
        raise CacheError(
            f"session {session_id} is not in the cache",
            path=cache,
            field="session_id",
            expected="a session converted with npc_frames.cache.convert",
        )
    return dict(frames)


#: catalog statuses of a component that is complete (or legitimately has no rows)
COMPLETE_STATUSES = ("ok", "success", "empty", "absent")
#: catalog statuses of a component that could not be computed at all
FAILED_STATUSES = ("failed", "error")


def _catalog_rows(session_id: str, cache: str | os.PathLike[str] | None) -> pl.DataFrame:
    """Return the catalog rows of `session_id` (component, status, error; empty if none)."""
    from npc_frames import cache as cache_mod

    empty = pl.DataFrame(schema={"component": pl.String, "status": pl.String, "error": pl.String})
    try:
        catalog = cache_mod.read_catalog(cache)
    except (CacheError, FileNotFoundError):
        return empty
    if not {"session_id", "component", "status"} <= set(catalog.columns):
        return empty
    if "part" in catalog.columns:  # part rows (probes, damaged inputs) detail a component row
        catalog = catalog.filter(pl.col("part").is_null())
    return catalog.filter(pl.col("session_id").cast(pl.String) == _canonical(session_id)).select(
        pl.col("component").cast(pl.String),
        pl.col("status").cast(pl.String).str.to_lowercase(),
        (pl.col("error") if "error" in catalog.columns else pl.lit(None))
        .cast(pl.String)
        .alias("error"),
    )


def _failed_components(session_id: str, cache: str | os.PathLike[str] | None) -> dict[str, str]:
    """Return component -> error of catalog rows of `session_id` that failed outright."""
    rows = _catalog_rows(session_id, cache).filter(pl.col("status").is_in(FAILED_STATUSES))
    return {
        str(c): str(e if e is not None else st)
        for c, st, e in rows.select("component", "status", "error").iter_rows()
    }


def _incomplete_note(session_id: str, cache: str | os.PathLike[str] | None) -> str | None:
    """Return a sentence naming the components of `session_id` the cache holds incompletely.

    Every status that is neither complete (ok, empty, absent) nor a failure (which stops the
    export earlier) counts: ``partial``, and any status a newer cache may introduce.
    """
    rows = _catalog_rows(session_id, cache).filter(
        ~pl.col("status").is_in([*COMPLETE_STATUSES, *FAILED_STATUSES])
    )
    if rows.is_empty():
        return None
    parts = [
        f"{c} ({st}{': ' + e if e else ''})"
        for c, st, e in rows.sort("component").select("component", "status", "error").iter_rows()
    ]
    return f"incomplete session: the cache holds these components only in part: {'; '.join(parts)}"


def _canonical(session_id: str) -> str:
    from npc_frames.ids import SessionId

    return str(SessionId.parse(session_id))


def _frames(
    session: str | Mapping[str, pl.DataFrame],
    cache: str | os.PathLike[str] | None,
    components: Iterable[str] | None,
) -> dict[str, pl.DataFrame]:
    wanted = None if components is None else {*components, "sessions"}
    if wanted is not None and "units" in wanted:
        # columns of the NWB units table
        wanted.update(("spike_amplitudes", "unit_waveforms"))
    if type(session).__name__ == "SessionId":  # npc_frames.ids.SessionId
        session = str(session)
    if isinstance(session, Mapping):
        frames = dict(session)
    elif isinstance(session, str):
        frames = _frames_from_cache(session, cache, wanted)
    else:
        raise ParameterError(
            f"to_nwb: session must be a session id or a mapping of frames, not {type(session)}",
            field="session",
            expected="str or Mapping[str, pl.DataFrame]",
        )
    for name, df in frames.items():
        if isinstance(df, pl.LazyFrame):
            frames[name] = df.collect()
        elif not isinstance(df, pl.DataFrame):
            raise ParameterError(
                f"component {name!r} is a {type(df).__name__}, not a polars DataFrame",
                field=name,
                expected="pl.DataFrame",
            )
    if wanted is not None:
        frames = {k: v for k, v in frames.items() if k in wanted}
    if "sessions" not in frames or frames["sessions"].height != 1:
        raise SchemaError(
            "NWB needs the 'sessions' component with exactly one row",
            field="sessions",
            expected="a one-row sessions frame with session_start_time",
        )
    return frames


# ---------------------------------------------------------------------------------- metadata
def _start_time(value: Any) -> datetime.datetime:
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        value = datetime.datetime.combine(value, datetime.time())
    if not isinstance(value, datetime.datetime):
        raise SchemaError(
            f"session_start_time {value!r} is not a datetime",
            field="session_start_time",
            expected="datetime",
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=SESSION_TZ)
    return value  # type: ignore[no-any-return]


def _session_kwargs(df: pl.DataFrame) -> dict[str, Any]:
    """Return NWBFile keyword arguments from the one-row sessions frame."""
    require_columns(df, "sessions", ["session_start_time"])
    row = df.row(0, named=True)
    start = _start_time(row["session_start_time"])
    session_id = str(row.get("session_id") or "")
    kwargs: dict[str, Any] = {
        "session_start_time": start,
        "session_id": session_id,
        "identifier": str(uuid.uuid4()),
        "session_description": f"session {session_id}",
        "institution": INSTITUTION,
    }
    if row.get("timestamps_reference_time") is not None:
        kwargs["timestamps_reference_time"] = _start_time(row["timestamps_reference_time"])
    for key, value in row.items():
        if key in SESSION_SKIP or value is None:
            continue
        if key in NWBFILE_FIELDS:
            if key in LIST_FIELDS:
                items = [value] if isinstance(value, str) else [str(v) for v in value]
                items = [v for v in items if v]
                if items:
                    kwargs[key] = np.array(items, dtype=object) if key == "keywords" else items
            elif str(value) != "":
                kwargs[key] = str(value)
    if "source_script" in kwargs:
        kwargs["source_script_file_name"] = kwargs["source_script"].rstrip("/").rsplit("/", 1)[-1]
    if "experimenter" in kwargs:
        kwargs["experimenter"] = [_dandi_name(n) for n in kwargs["experimenter"]]
    kwargs.setdefault("experiment_description", EXPERIMENT_DESCRIPTION)
    if row.get("rig") and "lab" not in kwargs:
        kwargs["lab"] = str(row["rig"])  # the reference's lab = rig name
    if row.get("task_version") and "stimulus_notes" not in kwargs:
        kwargs["stimulus_notes"] = str(row["task_version"])
    return kwargs


def _dandi_name(name: str) -> str:
    """Return 'Last, First' for a 'First Last' name (DANDI form); other forms unchanged."""
    parts = name.split()
    if "," in name or len(parts) < 2:
        return name
    return f"{parts[-1]}, {' '.join(parts[:-1])}"


def _subject(df: pl.DataFrame, start: datetime.datetime) -> Subject:
    require_columns(df, "subjects", ["subject_id"])
    row = df.row(0, named=True)
    kwargs: dict[str, Any] = {"species": "Mus musculus"}
    for key in SUBJECT_FIELDS:
        value = row.get(key)
        if value is None or value == "":
            continue
        kwargs[key] = value
    kwargs["subject_id"] = str(kwargs["subject_id"])
    dob = kwargs.get("date_of_birth")
    if dob is not None:
        if isinstance(dob, str):
            dob = datetime.datetime.fromisoformat(dob)
        if not isinstance(dob, datetime.datetime):
            dob = datetime.datetime.combine(dob, datetime.time())
        if dob.tzinfo is None:
            dob = dob.replace(tzinfo=SESSION_TZ)
        kwargs["date_of_birth"] = dob
        kwargs.setdefault("age", f"P{(start - dob).days}D")
        kwargs.setdefault("age__reference", "birth")
    if "sex" in kwargs:
        sex = str(kwargs["sex"]).strip()[:1].upper()
        kwargs["sex"] = sex if sex in ("M", "F", "O") else "U"
    else:
        kwargs["sex"] = "U"
    for key in ("genotype", "strain", "description", "species", "age", "age__reference"):
        if key in kwargs:
            kwargs[key] = str(kwargs[key])
    kwargs.setdefault("description", f"mouse {kwargs['subject_id']}")
    if "weight" in kwargs and not isinstance(kwargs["weight"], str):
        kwargs["weight"] = f"{kwargs['weight']} g"
    return Subject(**kwargs)


# ------------------------------------------------------------------------------------ tables
def _intervals(name: str, df: pl.DataFrame) -> TimeIntervals:
    require_columns(df, name, ["start_time", "stop_time"])
    # TimeIntervals' own first: start_time, stop_time (NWB required order is by name, any order ok)
    return build_table(
        TimeIntervals,
        df,
        name,
        name=INTERVAL_TABLES[name],
        description=table_description(name, INTERVAL_DEFAULT_DESCRIPTIONS[name]),
    )


def _events(name: str, df: pl.DataFrame) -> EventsTable:
    require_columns(df, name, [("timestamps", "timestamp")])
    return build_table(
        EventsTable,
        df,
        name,
        name=EVENT_TABLES[name],
        description=table_description(name, EVENT_DEFAULT_DESCRIPTIONS[name]),
        rename={"timestamps": "timestamp"},
        classes={"timestamp": TimestampVectorData, "duration": DurationVectorData},
    )


def _running_speed(df: pl.DataFrame) -> TimeSeries:
    require_columns(df, "running_speed", ["timestamps", ("running_speed", "speed", "data")])
    value = first_present(df, ("running_speed", "speed", "data"))
    assert value is not None
    timestamps = df["timestamps"].cast(pl.Float64).to_numpy()
    timing: dict[str, Any] = {"timestamps": timestamps}
    if _is_regular(timestamps):
        # NWB best practice: a constant-rate series stores starting_time + rate (the stim
        # clock without sync is exactly regular); timestamps are recovered to < 1 ns
        timing = {
            "starting_time": float(timestamps[0]),
            "rate": (len(timestamps) - 1) / float(timestamps[-1] - timestamps[0]),
        }
    return TimeSeries(
        name="running_speed",
        description=table_description(
            "running_speed",
            "linear forward running speed on a rotating disk, low-pass filtered at 4 Hz",
        ),
        data=df[value].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
        unit=column_unit("running_speed", value) or "cm/s",
        comments=column_description("running_speed", value),
        **timing,
    )


def _is_regular(t: np.ndarray) -> bool:
    """Return True if `t` has one constant step at 1 ns precision (nwbinspector's test)."""
    if len(t) < 3 or not np.all(np.isfinite(t)):
        return False
    steps = np.round(np.diff(t), 9)
    return bool(steps[0] > 0 and np.all(steps == steps[0]))


def _video_frame_times(df: pl.DataFrame) -> list[DynamicTable]:
    require_columns(
        df, "video_frame_times", [("camera", "camera_name"), ("timestamp", "timestamps")]
    )
    cam = first_present(df, ("camera", "camera_name"))
    assert cam is not None
    out: list[DynamicTable] = []
    for (label,), part in df.group_by(cam, maintain_order=True):
        nwb_cam = CAMERA_NAMES.get(str(label).lower(), str(label))
        out.append(
            build_table(
                DynamicTable,
                part,
                "video_frame_times",
                name=f"frametimes_{nwb_cam}",
                description=table_description(
                    "video_frame_times",
                    "start time of each video frame on the sync clock (NaN: metadata frame)",
                )
                + f" ({label} camera)",
                skip=[cam],
            )
        )
    return out


# ---------------------------------------------------------------------------------- assembly
def to_nwb(
    session: str | Mapping[str, pl.DataFrame],
    *,
    cache: str | os.PathLike[str] | None = None,
    include_raw: bool = False,
    components: Iterable[str] | None = None,
    raw: Any = None,
    stimulus: bool = False,
    derived: bool = False,
) -> NWBFile:
    """Return a pynwb NWBFile assembled from the component frames of one session.

    Parameters
    ----------
    session:
        A session id (frames are read with ``npc_frames.cache.read_session``) or a mapping of
        component name -> ``pl.DataFrame`` (any subset; ``sessions`` is required).
    cache:
        The cache root (default ``$NPC_FRAMES_CACHE``, else ``./npc_frames_cache``).
    include_raw:
        Also add the raw AP and LFP bands of every probe as ``ElectricalSeries`` streamed from
        the memory maps, and each probe's subsampled LFP in ``processing/ecephys/LFP`` (needs
        `raw`, or a ``raw_path``/``root`` column in the sessions frame).
    components:
        Only these components (default: all present). ``sessions`` is always used.
    raw:
        A ``RawSession`` or raw session path, for `include_raw` and `stimulus`.
    stimulus:
        Also add the stimulus objects (:mod:`npc_frames.nwb_stimulus`): grating and sound
        templates in ``/stimulus/templates`` (rebuilt from the raw session's stim files),
        an ``OptogeneticStimulusSite`` per light source and target of the opto trials, and each
        site's laser command (``/stimulus/presentation``) where the NI-DAQ recorded it. Needs the
        raw session, as `include_raw` does.
    derived:
        Compute the session's ``unit_responses``, ``vis_rf_maps``, ``aud_rf_maps`` and
        ``opto_tagging`` in the cache if missing or stale (needs a session id). Whether or not
        this is set, those present in the cache (or in the mapping of frames) are written to
        ``/analysis``.

    Raises
    ------
    CacheError
        The session is absent from the cache, or some of its components failed there.
    SchemaError
        A frame lacks a column NWB needs (the message names component and columns).
    InconsistentDataError
        Frames disagree (a unit on an unknown probe, a peak channel without electrode).

    Examples
    --------
    >>> nwb = nf.to_nwb("603074_2023-08-31", cache="cache/")
    >>> nwb.session_id, len(nwb.trials), len(nwb.units)
    ('603074_2023-08-31', 18, 8)
    """
    frames = _frames(session, cache, components)
    if not isinstance(session, Mapping):
        frames = {**_derived_frames(str(session), cache, derived, components), **frames}
    kwargs = _session_kwargs(frames["sessions"])
    if not isinstance(session, Mapping) and (note := _incomplete_note(str(session), cache)):
        kwargs["notes"] = f"{kwargs['notes']}\n{note}" if kwargs.get("notes") else note
        warnings.warn(f"session {session}: {note}", PartialSessionWarning, stacklevel=2)
    if "subjects" in frames and frames["subjects"].height:
        kwargs["subject"] = _subject(frames["subjects"], kwargs["session_start_time"])
    nwb = NWBFile(**kwargs)
    # every column of the one-row metadata frames, verbatim (flags like is_sync have no NWB field)
    for name in ("sessions", "subjects"):
        if (df := frames.get(name)) is not None and df.height:
            nwb.add_analysis(
                build_table(
                    DynamicTable,
                    df,
                    name,
                    name=name,
                    description=table_description(name, name),
                    # already the file's session_start_time; a string *_time column would trip
                    # time-column checks of NWB tools
                    skip=("session_start_time",),
                )
            )

    for name in INTERVAL_TABLES:
        df = frames.get(name)
        if df is None or df.height == 0:
            continue
        table = _intervals(name, df)
        if name == "trials":
            nwb.trials = table
        elif name == "epochs":
            nwb.epochs = table
        elif name == "invalid_times":
            nwb.invalid_times = table
        else:
            nwb.add_time_intervals(table)

    behavior: list[Any] = []
    for name in EVENT_TABLES:
        df = frames.get(name)
        if df is not None and df.height:
            behavior.append(_events(name, df))
    if (df := frames.get("running_speed")) is not None and df.height:
        behavior.append(_running_speed(df))
    behavior += video_behavior_containers(frames)  # eye tracking, pose, facemap
    if behavior:
        module = nwb.create_processing_module(
            name="behavior", description="processed behavioral data"
        )
        for item in behavior:
            module.add(item)
    if (df := frames.get("video_frame_times")) is not None and df.height:
        for table in _video_frame_times(df):
            nwb.add_acquisition(table)

    devices = {}
    if (df := frames.get("devices")) is not None and df.height:
        devices = add_devices(nwb, df)
    groups = {}
    if (df := frames.get("electrode_groups")) is not None and df.height:
        groups = add_electrode_groups(nwb, df, devices)
    electrodes_df = frames.get("electrodes")
    if electrodes_df is not None and electrodes_df.height:
        add_electrodes(nwb, electrodes_df, groups)
    else:
        electrodes_df = None
    if (df := frames.get("units")) is not None and df.height:
        add_units(
            nwb,
            df,
            groups,
            electrodes_df,
            frames.get("spike_amplitudes"),
            frames.get("unit_waveforms"),
        )
    add_anatomy(nwb, frames)  # manipulator positions (npc_frames.nwb_anatomy)

    if include_raw:
        if electrodes_df is None:
            raise SchemaError(
                "include_raw needs the electrodes component",
                field="electrodes",
                expected="an electrodes frame",
            )
        if raw is None and isinstance(session, str):
            raw = _raw_path_from_catalog(session, cache)
        raw = _raw_session(raw, frames["sessions"])
        add_raw(nwb, raw, electrodes_df)
        add_lfp(nwb, raw, electrodes_df)  # processing/ecephys/LFP (npc_frames.nwb_anatomy)
    add_derived(nwb, frames)  # /analysis/unit_responses, RF maps (npc_frames.nwb_stimulus)
    if stimulus:
        if raw is None and isinstance(session, str):
            raw = _raw_path_from_catalog(session, cache)
        raw = _raw_session(raw, frames["sessions"])
        add_stimulus_templates(nwb, raw)
        add_opto_sites(nwb, frames, raw)
    return nwb


def _derived_frames(
    session_id: str,
    cache: str | os.PathLike[str] | None,
    compute: bool,
    components: Iterable[str] | None,
) -> dict[str, pl.DataFrame]:
    """Return the derived components of `session_id` in the cache (computed first if `compute`)."""
    from npc_frames.nwb_stimulus import DERIVED_TABLES, derived_frames

    names = set(DERIVED_TABLES)
    if not compute:  # only what the catalog lists (no scan, no import of the analysis modules)
        names &= set(_catalog_rows(session_id, cache)["component"].to_list())
        if components is not None:
            names &= set(components)
    if not names:
        return {}
    got = derived_frames(session_id, cache, compute=compute, names=names)
    if components is not None:
        got = {k: v for k, v in got.items() if k in set(components) or compute}
    return got


def _raw_path_from_catalog(session_id: str, cache: str | os.PathLike[str] | None) -> str | None:
    """Return the raw path the cache catalog recorded for `session_id`, if any."""
    from npc_frames.cache import read_catalog

    catalog = read_catalog(cache)
    if "raw_path" not in catalog.columns:
        return None
    from npc_frames.nwb_stimulus import DERIVED_TABLES

    paths = (
        catalog.filter(
            pl.col("session_id").cast(pl.String) == _canonical(session_id),
            # derived components record the cache root, not a raw session
            ~pl.col("component").cast(pl.String).is_in(DERIVED_TABLES),
        )
        .get_column("raw_path")
        .drop_nulls()
        .unique()
        .to_list()
    )
    return str(paths[0]) if paths else None


def _raw_session(raw: Any, sessions: pl.DataFrame) -> Any:
    if raw is None:
        col = first_present(sessions, ("raw_path", "root", "raw_root"))
        if col is not None:
            raw = sessions[col][0]
    if raw is None:
        raise ParameterError(
            "include_raw needs the raw session: pass raw=RawSession or a path",
            field="raw",
            expected="RawSession, a raw session folder, or a raw_path column in sessions",
        )
    if isinstance(raw, str | os.PathLike):
        from npc_frames.paths import RawSession

        raw = RawSession.from_path(str(raw))
    return raw


# -------------------------------------------------------------------------------------- write
Compression = Literal["gzip", "lzf"] | None
#: datasets smaller than this are left uncompressed (the HDF5 chunk index would cost more)
COMPRESS_MIN_ELEMENTS = 4096


def _apply_compression(nwb: NWBFile, compression: str) -> None:
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.container import Data

    # byte shuffle before compressing: on spike-time-like float64 it makes gzip ~2x faster and
    # the file ~15 % smaller, and lets lzf compress at all (92 % -> 60 % of the raw size);
    # gzip level 1 compresses within 2 % of level 4 in less time
    io_kwargs: dict[str, Any] = {"compression": compression, "chunks": True, "shuffle": True}
    if compression == "gzip":
        io_kwargs["compression_opts"] = 1
    for obj in nwb.objects.values():
        if isinstance(obj, Data):
            data = obj.data
            if isinstance(data, UnitChannelBlocks):
                data.set_compression(io_kwargs)
            elif _compressible(data):
                obj.set_data_io(H5DataIO, io_kwargs)
            elif isinstance(data, AbstractDataChunkIterator):
                # keep the iterator's own chunking (e.g. one unit's template per chunk)
                chunks = data.recommended_chunk_shape() or True
                obj.set_data_io(H5DataIO, {**io_kwargs, "chunks": chunks})
        elif isinstance(obj, TimeSeries):
            data = obj.data
            if isinstance(data, AbstractDataChunkIterator) or _compressible(data):
                obj.set_data_io("data", H5DataIO, io_kwargs)
            if _compressible(obj.fields.get("timestamps")):
                obj.set_data_io("timestamps", H5DataIO, io_kwargs)


def _compressible(data: Any) -> bool:
    return (
        isinstance(data, np.ndarray)
        and data.dtype != object
        and data.size >= COMPRESS_MIN_ELEMENTS
        and not isinstance(data, DataIO)
    )


def write_nwb(
    nwb_or_session: NWBFile | str | Mapping[str, pl.DataFrame],
    path: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    compression: Compression = None,
    include_raw: bool = False,
    raw: Any = None,
    stimulus: bool = False,
    derived: bool = False,
) -> Path:
    """Return the path of the NWB (HDF5) file written from an NWBFile, session id or frames.

    The file is written to a temporary file in the destination folder and renamed into place, so
    a failure never leaves a half-written file at `path`. `compression` ("gzip" or "lzf") applies
    to every numeric dataset of at least :data:`COMPRESS_MIN_ELEMENTS` elements. `include_raw`,
    `raw`, `stimulus` and `derived` are passed to :func:`to_nwb` when a session is given.

    Examples
    --------
    >>> nwb = nf.to_nwb("603074_2023-08-31", cache="cache/")
    >>> path = nf.write_nwb(nwb, "nwb/603074_2023-08-31.nwb")
    >>> import pynwb
    >>> with pynwb.NWBHDF5IO(path, "r") as io:
    ...     len(io.read().trials)
    18
    """
    if compression not in (None, "gzip", "lzf"):
        raise ParameterError(
            f"unknown compression {compression!r}",
            field="compression",
            expected="None, 'gzip' or 'lzf'",
        )
    if isinstance(nwb_or_session, NWBFile):
        nwb = nwb_or_session
    else:
        nwb = to_nwb(
            nwb_or_session,
            cache=cache,
            include_raw=include_raw,
            raw=raw,
            stimulus=stimulus,
            derived=derived,
        )
    if compression:
        _apply_compression(nwb, compression)
    dest = Path(path)
    if storage.is_remote(os.fspath(path)):
        raise ParameterError(
            f"write_nwb writes local files, not {os.fspath(path)!r}",
            field="path",
            expected="a local file path (upload the written file afterwards)",
        )
    try:
        # the storage layer's atomic writer: a hidden temporary file in the destination folder,
        # created with the process umask like any new file, renamed into place on success. No
        # fsync: an export is re-run after a power loss, and fsync of a GB file costs seconds.
        with (
            warnings.catch_warnings(),
            storage.atomic_local_path(dest, fsync=False) as tmp,
        ):
            # the temporary name ends in .tmp (the storage layer's mark), not .nwb
            warnings.filterwarnings("ignore", message=r"The file path provided.*\.nwb")
            with NWBHDF5IO(tmp, mode="w") as io:
                io.write(nwb)
    except OSError as exc:
        if isinstance(exc, NpcFramesError):
            raise
        raise OutputError(
            f"cannot write the NWB file: {exc.strerror or exc}",
            path=dest,
            field="path",
            expected="a writable folder (it is created if missing)",
        ) from exc
    return dest


def validate_nwb(path: str | os.PathLike[str]) -> list[str]:
    """Return the pynwb schema-validation errors of an NWB file (empty when valid)."""
    from pynwb import validate

    return [str(e) for e in validate(path=str(path))]
