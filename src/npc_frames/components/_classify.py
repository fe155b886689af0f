"""Session classification: the ``is_*`` flags, ``session_type``, keywords and description.

Pure functions of a :class:`Facts` record (what the raw session, its manifest entry and the
training records say), so each rule is testable on its own. The rules and the decision taken on
each of the reference's quirks are in docs/formats.md ("Session classification") and
docs/quirks.md. The general rule: a flag whose input is absent is ``None`` (null), never guessed;
a manifest ``session_kwargs`` value always wins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "FLAG_NAMES",
    "Facts",
    "classify",
    "description",
    "keywords",
    "session_type",
]

#: every flag `classify` returns, in schema order
FLAG_NAMES = (
    "is_ephys",
    "is_sync",
    "is_video",
    "is_task",
    "is_sorted",
    "is_lfp",
    "is_surface_channels",
    "is_annotated",
    "is_wild_type",
    "is_opto",
    "is_opto_control",
    "is_production",
    "is_injection_perturbation",
    "is_injection_control",
    "is_templeton",
    "is_context_naive",
    "is_naive",
    "is_training",
    "is_hab",
    "is_photodiode",
    "is_first_block_aud",
    "is_first_block_vis",
    "is_late_autorewards",
    "is_engaged",
    "is_good_behavior",
    "is_bad_behavior",
    "is_stage_5_passed",
)


@dataclass
class Facts:
    """What is known about one session before classification (None = unknown)."""

    is_ephys: bool = False
    is_sync: bool = False
    is_video: bool = False
    is_task: bool = False
    is_sorted: bool = False
    is_surface_channels: bool = False
    is_annotated: bool = False
    rig: str | None = None
    task_version: str | None = None
    genotype: str | None = None
    has_opto_trials: bool | None = None
    first_block_rewarded: str | None = None
    auto_reward_onset_frame: int | None = None
    display_source: str | None = None  # "photodiode" / "flip" for the task's frame times
    engaged: bool | None = None
    good_behavior: bool | None = None
    #: the session has a manifest entry (manifest-only flags then take their defaults)
    tracked: bool = False
    project: str | None = None
    session_kwargs: Mapping[str, Any] = field(default_factory=dict)
    issues: Sequence[str] | None = None
    #: training records were given (a table), and what they say of this session/subject
    has_training_records: bool = False
    subject_in_training_records: bool | None = None
    behavior_day: int | None = None
    stage_5_passed: bool | None = None
    #: epoch tags of the session's stim files (rewards, spontaneous, mapping, optotagging, ...)
    epoch_tags: Sequence[str] = ()


def _and(*xs: bool | None) -> bool | None:
    """Three-valued AND: False if any is False, else None if any is None, else True."""
    if any(x is False for x in xs):
        return False
    if any(x is None for x in xs):
        return None
    return True


def _or(*xs: bool | None) -> bool | None:
    """Three-valued OR: True if any is True, else None if any is None, else False."""
    if any(x is True for x in xs):
        return True
    if any(x is None for x in xs):
        return None
    return False


def _not(x: bool | None) -> bool | None:
    return None if x is None else not x


def classify(f: Facts) -> dict[str, bool | None]:
    """Return every flag of `FLAG_NAMES` for the session described by `f`."""
    kw = f.session_kwargs
    out: dict[str, bool | None] = {}

    def put(name: str, value: bool | None) -> bool | None:
        v = kw.get(name, value)
        out[name] = None if v is None else bool(v)
        return out[name]

    ephys = put("is_ephys", f.is_ephys)
    sync = put("is_sync", f.is_sync)
    put("is_video", f.is_video)
    task = put("is_task", f.is_task)
    put("is_sorted", f.is_sorted and bool(ephys))
    put("is_lfp", ephys)
    put("is_surface_channels", f.is_surface_channels)
    put("is_annotated", f.is_annotated)
    wild = put("is_wild_type", None if f.genotype is None else "wt/wt" in f.genotype.lower())
    opto_trials = _and(task, f.has_opto_trials)
    opto = put("is_opto", _and(opto_trials, _not(wild)))
    opto_control = put("is_opto_control", _and(opto_trials, wild))
    put("is_production", True if f.tracked else None)
    put("is_injection_perturbation", False if f.tracked else None)
    put("is_injection_control", False if f.tracked else None)

    templeton: bool | None = None
    project = (f.project or "").lower()
    if "templeton" in project:
        templeton = True
    elif "dynamicrouting" in project:
        templeton = False
    elif f.has_training_records and f.subject_in_training_records is not None:
        templeton = not f.subject_in_training_records
    elif f.task_version is not None:
        templeton = "templeton" in f.task_version.lower()
    templeton = put("is_templeton", templeton)
    put("is_context_naive", templeton)

    if templeton:
        naive: bool | None = False
    elif not f.has_training_records or templeton is None:
        naive = None
    else:
        naive = f.behavior_day is None or f.behavior_day == 1
    put("is_naive", naive)

    rig = f.rig.upper() if f.rig else None
    if task is False:
        training: bool | None = False
        hab: bool | None = False
    elif ephys:
        training = hab = False
    elif rig is None or task is None:
        training = hab = None
    else:
        training = "NP" not in rig and "OG" not in rig
        hab = _and("NP" in rig, _not(_or(opto, opto_control)))
    put("is_training", training)
    put("is_hab", hab)

    put(
        "is_photodiode",
        None
        if not (sync and task) or f.display_source is None
        else f.display_source == "photodiode",
    )
    first = (f.first_block_rewarded or "").lower() if task else None
    put("is_first_block_aud", None if not first else ("sound" in first or "aud" in first))
    put("is_first_block_vis", None if not first else "vis" in first)
    put(
        "is_late_autorewards",
        None if not task or f.auto_reward_onset_frame is None else f.auto_reward_onset_frame == 60,
    )
    engaged = put("is_engaged", f.engaged if task else None)
    good = put("is_good_behavior", f.good_behavior if task else None)
    put("is_bad_behavior", _and(engaged, _not(good)))
    if templeton:
        stage5: bool | None = False
    elif not f.has_training_records:
        stage5 = None
    else:
        stage5 = f.stage_5_passed
    put("is_stage_5_passed", stage5)
    return out


#: (session type, flag) in order of precedence; the first flag that is True names the type
TYPE_ORDER = (
    ("templeton", "is_templeton"),
    ("context naive", "is_context_naive"),
    ("muscimol perturbation", "is_injection_perturbation"),
    ("muscimol control", "is_injection_control"),
    ("opto perturbation", "is_opto"),
    ("opto control", "is_opto_control"),
    ("habituation", "is_hab"),
    ("training", "is_training"),
)


def session_type(flags: Mapping[str, bool | None]) -> str | None:
    """Return the session type: the first of `TYPE_ORDER` whose flag is True, else
    ``brainwide survey`` for ephys sessions; None when a flag before the match is unknown or a
    non-ephys session matches no type."""
    if flags.get("is_surface_channels"):
        return "deep-insertion surface channels recording"
    for name, flag in TYPE_ORDER:
        v = flags.get(flag)
        if v is None:
            return None
        if v:
            return name
    return "brainwide survey" if flags.get("is_ephys") else None


def keywords(f: Facts, flags: Mapping[str, bool | None], kind: str | None) -> list[str]:
    """Return the session's keywords in the documented order (``day_<n>`` is added at query time
    by the ``session_days`` view, since it depends on the subject's other sessions)."""
    kw: list[str] = []

    def add(word: str, on: bool | None = True) -> None:
        if on and word not in kw:
            kw.append(word)

    add("issues", bool(f.issues))
    for name in ("task", "sync", "video", "ephys"):
        add(name, flags[f"is_{name}"])
    add("deep_insertions", flags["is_ephys"] and flags["is_surface_channels"])
    add("units", flags["is_sorted"])
    add("ccf", flags["is_annotated"])
    add("training", flags["is_training"])
    add("hab", flags["is_hab"])
    add("dynamic_routing", flags["is_templeton"] is False)
    if flags["is_production"] is not None:
        add("prod" if flags["is_production"] else "dev")
    add("context_naive", flags["is_context_naive"])
    add("stage_5_passed", flags["is_stage_5_passed"])
    if flags["is_task"]:
        if flags["is_first_block_aud"] is not None:
            add("first_block_aud" if flags["is_first_block_aud"] else "first_block_vis")
        if flags["is_late_autorewards"] is not None:
            add("late_autorewards" if flags["is_late_autorewards"] else "early_autorewards")
        add("good_behavior", flags["is_good_behavior"])
        add("bad_behavior", flags["is_bad_behavior"])
    add("no_photodiode", flags["is_sync"] and flags["is_task"] and flags["is_photodiode"] is False)
    wild = flags["is_wild_type"]
    for tag in f.epoch_tags:
        if tag in ("opto_perturbation", "opto_control"):
            continue  # from the flags below, which know when the genotype is unknown
        if tag in ("optotagging", "optotagging_control"):
            if wild is None:
                continue
            tag = "optotagging_control" if wild else "optotagging"
        add(tag)
    add("opto_perturbation", flags["is_opto"])
    add("opto_control", flags["is_opto_control"])
    if kind is not None:
        add(kind.replace(" ", "_"))
    return kw


def description(flags: Mapping[str, bool | None], behavior_day: int | None = None) -> str:
    """Return the one-sentence session description built from the flags.

    The experiment day is not part of it (it depends on the subject's other sessions; the
    ``session_days`` view gives it); the training-record day (``behavior_day``) is, when known.
    """
    bday = f" (behavior day {behavior_day})" if behavior_day is not None else ""
    with_: list[str] = []
    if not flags["is_task"] and not flags["is_ephys"]:
        text = "session"
    elif not flags["is_ephys"]:
        text = "training session"
        with_.append(f"behavioral task data{bday}")
    else:
        text = "ecephys session"
        if not flags["is_sorted"]:
            text += " without sorted units"
        elif not flags["is_annotated"]:
            text += " without CCF-annotated units"
        if flags["is_task"]:
            with_.append(f"behavioral task data{bday}")
        else:
            text += ("," if text.endswith("units") else "") + " without behavioral task data"
    if flags["is_opto"]:
        with_.append("optogenetic inactivation during task")
    if flags["is_video"]:
        with_.append("video recording of behavior")
    if with_:
        joined = with_[0] if len(with_) == 1 else ", ".join(with_[:-1]) + " and " + with_[-1]
        text += (", with " if " without " in text else " with ") + joined
    if not flags["is_sync"]:
        text += ", without precise timing information"
    return text
