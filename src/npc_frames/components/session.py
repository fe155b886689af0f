"""The `sessions` and `subjects` components: one row each per session (FORMATS §13).

Decision on the sub-second **[quirk]** of `session_start_time` (FORMATS §0): the reference drops the
sub-second part of the sync start in the NWB wall clock; we keep it, so that
`session_start_time + t` is the true wall time of an event at session time t. (NWB export may
truncate if it must match the reference.)

Flags that need the task (`is_engaged`, `is_good_behavior`, `is_opto`, ...) are null when the
trials cannot be computed: a broken task file does not prevent this component.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

import polars as pl

from npc_frames._log import timed
from npc_frames.components._task import (
    open_stim,
    script_of,
    stim_scalar,
    sync_data,
    task_file,
    valid_frame_times,
)
from npc_frames.errors import BadFormatError, NpcFramesError
from npc_frames.schemas.behavior import SESSIONS, SUBJECTS

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["sessions", "subjects"]

logger = logging.getLogger(__name__)

INSTITUTION = "Neural Circuits & Behavior | MindScope program | Allen Institute for Neural Dynamics"
DEFAULT_TASK_SCRIPT = (
    "https://github.com/AllenInstitute/DynamicRoutingTask/blob/main/DynamicRouting1.py"
)
TIME_ZONE = "America/Los_Angeles"
SPECIES = "Mus musculus"


def _experimenter(raw: RawSession) -> str | None:
    path = raw.metadata_paths.get("debug.log")
    if not path:
        return None
    from npc_frames.readers.metadata import read_experimenter

    with raw.open(path) as f:
        return read_experimenter(f)


def _ephys_start_time(raw: RawSession) -> datetime.datetime:
    """Return the Open Ephys acquisition start (sync_messages.txt software time, rig local time).

    The start of a recording with neither sync nor stim files, e.g. a surface-channel recording.
    """
    import zoneinfo

    from npc_frames.readers.openephys import main_recording, read_sync_messages

    node = raw.record_node_paths[0]
    local = getattr(raw, "local_tree", None)
    folder = local(node) if callable(local) else node
    msgs = read_sync_messages(main_recording(folder))
    if msgs.software_time_ms is None:
        raise BadFormatError(
            "sync_messages.txt has no software start time",
            path=msgs.path,
            field="Software Time",
            expected="'Software Time (milliseconds since midnight Jan 1st 1970 UTC): <ms>'",
        )
    when = datetime.datetime.fromtimestamp(
        msgs.software_time_ms / 1000, tz=zoneinfo.ZoneInfo(TIME_ZONE)
    )
    return when.replace(tzinfo=None)


def _start_time(raw: RawSession) -> datetime.datetime:
    sync = sync_data(raw)
    if sync is not None:
        return sync.start_time
    if not raw.stim_paths and raw.is_ephys:
        return _ephys_start_time(raw)
    try:
        path, _ = task_file(raw)
    except NpcFramesError:
        paths = sorted(valid_frame_times(raw))
        if not paths:
            raise
        path = paths[0]
    return open_stim(path).start_time


def _task_info(raw: RawSession) -> dict[str, Any]:
    """Return task-derived fields; null values when the task is missing or broken."""
    info: dict[str, Any] = {
        "rig": None,
        "task_version": None,
        "source_script": None,
        "is_task": False,
        "is_opto": None,
        "is_engaged": None,
        "is_good_behavior": None,
        "is_first_block_aud": None,
        "is_late_autorewards": None,
    }
    try:
        path, _ = task_file(raw)
        stim = open_stim(path)
    except NpcFramesError:
        for p in sorted(valid_frame_times(raw)):  # rig name from any stim file
            info["rig"] = stim_scalar(open_stim(p), "rigName", default="") or None
            break
        return info
    info["is_task"] = True
    info["rig"] = stim_scalar(stim, "rigName", default="") or None
    version = stim_scalar(stim, "taskVersion", default="")
    info["task_version"] = version if isinstance(version, str) and version else None
    script = stim_scalar(stim, "githubTaskScript", default="")
    info["source_script"] = (
        script.replace("Task//", "Task/")
        if isinstance(script, str) and script
        else DEFAULT_TASK_SCRIPT
    )
    onset = stim_scalar(stim, "autoRewardOnsetFrame", default=-1)
    info["is_late_autorewards"] = int(onset) == 60 if onset != -1 else None
    try:
        from npc_frames.components._performance import performance_from_trials, session_flags
        from npc_frames.components._trials import trials

        tr = trials(raw)
        rewarded = stim.strs("blockStimRewarded")
        first_aud = bool(rewarded) and any(k in rewarded[0] for k in ("aud", "sound"))
        perf = performance_from_trials(tr, first_block_aud=first_aud)
        templeton = "templeton" in (info["task_version"] or "").lower()
        info.update(session_flags(perf, templeton=templeton))
        info["is_opto"] = bool(tr["is_opto"].any())
        info["is_first_block_aud"] = first_aud
    except NpcFramesError:
        pass
    return info


def _keywords(raw: RawSession, flags: dict[str, Any]) -> list[str]:
    kw: list[str] = []
    if raw.annotations.get("issues"):
        kw.append("issues")
    if flags["is_task"]:
        kw += ["task", "dynamic_routing"]
    for name in ("sync", "video", "ephys"):
        if flags[f"is_{name}"]:
            kw.append(name)
    if flags["is_sorted"]:
        kw.append("units")
    if flags["is_training"]:
        kw.append("training")
    version = (flags.get("task_version") or "").lower()
    if "templeton" in version:
        kw.append("templeton")
    if flags.get("is_first_block_aud") is not None:
        kw.append("first_block_aud" if flags["is_first_block_aud"] else "first_block_vis")
    if flags.get("is_late_autorewards") is not None:
        kw.append("late_autorewards" if flags["is_late_autorewards"] else "early_autorewards")
    if flags.get("is_good_behavior") is not None:
        kw.append("good_behavior" if flags["is_good_behavior"] else "bad_behavior")
    if flags.get("is_opto"):
        kw.append("opto_perturbation")
    scripts = {script_of(p).lower() for p in valid_frame_times(raw)}
    if any("spontaneous" in s for s in scripts):
        kw.append("spontaneous")
    if any("mapping" in s for s in scripts):
        kw.append("mapping")
    if "optotagging" in scripts:
        kw.append("optotagging")
    if (
        flags["is_ephys"]
        and flags["is_task"]
        and not flags.get("is_opto")
        and "templeton" not in version
    ):
        kw.append("brainwide_survey")
    return list(dict.fromkeys(kw))


def _description(flags: dict[str, Any]) -> str:
    kind = "ephys" if flags["is_ephys"] else ("training" if flags["is_training"] else "behavior")
    parts = [f"{kind} session"]
    if flags["is_task"]:
        parts.append("with the visual-auditory task-switching behavior task")
    extras = [
        name
        for name, on in (
            ("optogenetic perturbation", flags.get("is_opto")),
            ("behavior videos", flags["is_video"]),
            ("sync", flags["is_sync"]),
        )
        if on
    ]
    if extras:
        parts.append("including " + ", ".join(extras))
    return " ".join(parts)


@timed
def sessions(raw: RawSession) -> pl.DataFrame:
    """Return the one-row sessions frame: identity, start time, rig, experimenter and flags."""
    sid = raw.session_id
    start = _start_time(raw)
    flags: dict[str, Any] = {
        "is_ephys": bool(raw.is_ephys),
        "is_sync": bool(raw.is_sync),
        "is_video": bool(raw.is_video),
        "is_sorted": bool(raw.is_sorted),
    }
    flags.update(_task_info(raw))
    flags["is_training"] = bool(flags["is_task"] and not flags["is_ephys"])
    issues = raw.annotations.get("issues")
    if isinstance(issues, str):
        issues = [issues]
    notes = raw.annotations.get("notes")
    row: dict[str, Any] = {
        "session_id": [str(sid)],
        "subject_id": [int(sid.subject)],
        "date": [sid.date],
        "session_idx": [int(sid.idx)],
        "session_start_time": pl.Series([start.replace(tzinfo=None)]).dt.replace_time_zone(
            TIME_ZONE
        ),
        "rig": [flags["rig"]],
        "experimenter": [_experimenter(raw)],
        "institution": [INSTITUTION],
        "task_version": [flags["task_version"]],
        "source_script": [flags["source_script"]],
        "session_description": [_description(flags)],
        "keywords": [_keywords(raw, flags)],
        "notes": [None if notes is None else str(notes)],
        "issues": pl.Series(
            [None if issues is None else [str(i) for i in issues]], dtype=pl.List(pl.String)
        ),
    }
    for c in SESSIONS.names:
        if c.startswith("is_"):
            row[c] = pl.Series([flags.get(c)], dtype=pl.Boolean)
    return SESSIONS.validate(pl.DataFrame(row), source=raw.root)


def _age(start: datetime.date, dob: datetime.date | None) -> str | None:
    return None if dob is None else f"P{(start - dob).days}D"


@timed
def subjects(raw: RawSession) -> pl.DataFrame:
    """Return the one-row subjects frame (subject.json when present, else the id alone)."""
    sid = raw.session_id
    info = None
    path = raw.metadata_paths.get("subject.json")
    if path:
        from npc_frames.readers.metadata import read_subject

        with raw.open(path) as f:
            info = read_subject(f)
    try:
        start_date = _start_time(raw).date()
    except NpcFramesError:
        start_date = sid.date
    dob = info.date_of_birth if info else None
    genotype = info.genotype if info else None
    row = {
        "session_id": [str(sid)],
        "subject_id": [int(info.subject_id) if info and info.subject_id else int(sid.subject)],
        "species": [SPECIES],
        "sex": [info.sex if info else None],
        "date_of_birth": pl.Series([dob], dtype=pl.Date),
        "age": [_age(start_date, dob)],
        "genotype": [genotype],
        "strain": [info.strain if info else None],
        "is_wild_type": pl.Series(
            [None if genotype is None else "wt/wt" in genotype.lower()], dtype=pl.Boolean
        ),
    }
    return SUBJECTS.validate(pl.DataFrame(row), source=path or raw.root)
