"""The `sessions` and `subjects` components: one row each per session.

Decision on the sub-second **[quirk]** of `session_start_time`: the reference drops the
sub-second part of the sync start in the NWB wall clock; we keep it, so that
`session_start_time + t` is the true wall time of an event at session time t. (NWB export may
truncate if it must match the reference.)

Flags that need the task (`is_engaged`, `is_good_behavior`, `is_opto`, ...) are null when the
trials cannot be computed: a broken task file does not prevent this component. The flag rules are in
:mod:`npc_frames.components._classify`; inputs are the raw folder, the manifest entry
(``raw.annotations``: ``session_kwargs``, ``project``, ``day``, ``notes``, ``issues``,
``training_records``) and the training records. Experiment days are not stored here: they depend on
the subject's other sessions and are computed at query time (:mod:`npc_frames.views`).
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from npc_frames._log import timed
from npc_frames.components._classify import Facts, classify, description, keywords, session_type
from npc_frames.components._task import (
    open_stim,
    stim_scalar,
    sync_data,
    task_file,
    valid_frame_times,
)
from npc_frames.errors import BadFormatError, NpcFramesError
from npc_frames.schemas.behavior import SESSIONS, SUBJECTS

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = ["session_facts", "session_kwargs", "sessions", "subjects"]

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


def _genotype(raw: RawSession, training: pl.DataFrame | None) -> str | None:
    path = raw.metadata_paths.get("subject.json")
    if path:
        from npc_frames.readers.metadata import read_subject

        try:
            with raw.open(path) as f:
                genotype = read_subject(f).genotype
        except NpcFramesError as exc:
            # a broken subject.json fails the subjects component, not the session's other flags:
            # the genotype is then unknown (or taken from the training records)
            logger.warning("genotype unknown: %s", exc)
            genotype = None
        if genotype:
            return genotype
    if training is not None:
        from npc_frames.training_records import subject_genotype

        return subject_genotype(training, int(raw.session_id.subject))
    return None


def _training_table(raw: RawSession) -> pl.DataFrame | None:
    """Return the training records named by the manifest entry (None when none are given)."""
    source = raw.annotations.get("training_records")
    if source is None:
        return None
    from npc_frames.training_records import read_training_records

    return read_training_records(str(source))


def _task_facts(raw: RawSession, facts: Facts) -> None:
    """Fill the task-derived facts; they stay unknown when the task is missing or broken."""
    try:
        path, ft = task_file(raw)
        stim = open_stim(path)
    except NpcFramesError:
        for p in sorted(valid_frame_times(raw)):  # rig name from any stim file
            facts.rig = stim_scalar(open_stim(p), "rigName", default="") or None
            break
        return
    facts.is_task = True
    facts.rig = stim_scalar(stim, "rigName", default="") or None
    version = stim_scalar(stim, "taskVersion", default="")
    facts.task_version = version if isinstance(version, str) and version else None
    facts.display_source = str(ft.display_source)
    onset = stim_scalar(stim, "autoRewardOnsetFrame", default=-1)
    facts.auto_reward_onset_frame = None if onset == -1 else int(onset)
    if stim.has("trialOptoOnsetFrame"):
        opto = np.asarray(stim.array("trialOptoOnsetFrame"), dtype=np.float64)
        facts.has_opto_trials = bool(np.isfinite(opto).any())
    else:
        facts.has_opto_trials = False
    rewarded = stim.strs("blockStimRewarded") if stim.has("blockStimRewarded") else []
    facts.first_block_rewarded = rewarded[0] if rewarded else None
    try:
        from npc_frames.components._performance import performance_from_trials, session_flags
        from npc_frames.components._trials import trials

        first_aud = bool(rewarded) and any(k in rewarded[0] for k in ("aud", "sound"))
        perf = performance_from_trials(trials(raw), first_block_aud=first_aud)
        templeton = "templeton" in (facts.task_version or "").lower()
        flags = session_flags(perf, templeton=templeton)
        facts.engaged, facts.good_behavior = flags["is_engaged"], flags["is_good_behavior"]
    except NpcFramesError:
        pass


def _epoch_tags(raw: RawSession) -> list[str]:
    from npc_frames.components._epochs import epochs

    try:
        tags = epochs(raw)["tags"].to_list()
    except NpcFramesError:
        return []
    return list(dict.fromkeys(t for row in tags for t in (row or [])))


def session_kwargs(raw: RawSession) -> dict[str, Any]:
    """Return the manifest's flag overrides: ``session_kwargs`` plus entry-level ``is_*``/``rig``."""
    out = {k: v for k, v in raw.annotations.items() if k.startswith("is_") or k == "rig"}
    kwargs = raw.annotations.get("session_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise BadFormatError(
            "manifest session_kwargs is not a mapping",
            path=raw.root,
            field="session_kwargs",
            expected="session_kwargs: {is_production: false, ...}",
        )
    out.update(kwargs)
    return out


def session_facts(raw: RawSession) -> Facts:
    """Return what the raw session, its manifest entry and the training records say of it."""
    from npc_frames.anatomy import annotation_files

    sid = raw.session_id
    training = _training_table(raw)
    issues = raw.annotations.get("issues")
    facts = Facts(
        is_ephys=bool(raw.is_ephys),
        is_sync=bool(raw.is_sync),
        is_video=bool(raw.is_video),
        is_sorted=bool(raw.is_sorted),
        is_surface_channels=bool(raw.is_surface_channel),
        is_annotated=bool(annotation_files(raw)),
        tracked=bool(raw.annotations.get("tracked")),
        project=None if raw.annotations.get("project") is None else str(raw.annotations["project"]),
        session_kwargs=session_kwargs(raw),
        issues=[issues] if isinstance(issues, str) else issues,
        has_training_records=training is not None,
    )
    _task_facts(raw, facts)
    facts.genotype = _genotype(raw, training)
    if training is not None:
        from npc_frames.training_records import behavior_day, stage_5_passed, subject_rows

        rows = subject_rows(training, int(sid.subject))
        facts.subject_in_training_records = rows.height > 0
        facts.behavior_day = behavior_day(rows, sid.date)
        facts.stage_5_passed = stage_5_passed(rows, sid.date)
    facts.epoch_tags = _epoch_tags(raw)
    return facts


def _source_script(raw: RawSession) -> str | None:
    try:
        path, _ = task_file(raw)
    except NpcFramesError:
        return None
    script = stim_scalar(open_stim(path), "githubTaskScript", default="")
    return (
        script.replace("Task//", "Task/")
        if isinstance(script, str) and script
        else DEFAULT_TASK_SCRIPT
    )


def _manifest_day(raw: RawSession) -> int | None:
    day = raw.annotations.get("day")
    if day is None:
        return None
    if isinstance(day, bool) or not isinstance(day, int) or day < 1:
        raise BadFormatError(
            f"manifest day {day!r} is not a positive integer",
            path=raw.root,
            field="day",
            expected="day: 1, 2, ...",
        )
    return day


@timed
def sessions(raw: RawSession) -> pl.DataFrame:
    """Return the one-row sessions frame: identity, start time, rig, experimenter, flags, type,
    keywords and description."""
    sid = raw.session_id
    start = _start_time(raw)
    facts = session_facts(raw)
    flags = classify(facts)
    kind = session_type(flags)
    rig = facts.session_kwargs.get("rig", facts.rig)
    notes = raw.annotations.get("notes")
    row: dict[str, Any] = {
        "session_id": [str(sid)],
        "subject_id": [int(sid.subject)],
        "date": [sid.date],
        "session_idx": [int(sid.idx)],
        "session_start_time": pl.Series([start.replace(tzinfo=None)]).dt.replace_time_zone(
            TIME_ZONE
        ),
        "rig": [None if rig is None else str(rig)],
        "experimenter": [_experimenter(raw)],
        "institution": [INSTITUTION],
        "task_version": [facts.task_version],
        "source_script": [_source_script(raw)],
        "session_type": [kind],
        "session_description": [description(flags, facts.behavior_day)],
        "keywords": [keywords(facts, flags, kind)],
        "project": [facts.project],
        "manifest_day": pl.Series([_manifest_day(raw)], dtype=pl.Int64),
        "behavior_day": pl.Series([facts.behavior_day], dtype=pl.Int64),
        "notes": [None if notes is None else str(notes)],
        "issues": pl.Series(
            [None if facts.issues is None else [str(i) for i in facts.issues]],
            dtype=pl.List(pl.String),
        ),
        "session_kwargs": [_kwargs_json(facts.session_kwargs)],
    }
    for c in SESSIONS.names:
        if c.startswith("is_"):
            row[c] = pl.Series([flags.get(c)], dtype=pl.Boolean)
    return SESSIONS.validate(pl.DataFrame(row).select(SESSIONS.names), source=raw.root)


def _kwargs_json(kwargs: Mapping[str, Any]) -> str | None:
    """Return the manifest overrides as a JSON object with sorted keys (None when empty)."""
    if not kwargs:
        return None
    return json.dumps(dict(kwargs), sort_keys=True, default=str)


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
