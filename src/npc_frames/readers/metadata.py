"""Readers of the session metadata files: subject.json, session.json, debug.log, invalid_times.

One format each, no cross-file logic (FORMATS §1.2, §13). Every function takes a path (local or
fsspec URL) or an open binary file object and does I/O, as its name says.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import fsspec

from npc_frames._log import timed
from npc_frames.errors import BadFormatError, MissingFileError

__all__ = [
    "InvalidInterval",
    "SubjectInfo",
    "parse_experimenter",
    "parse_invalid_times",
    "read_experimenter",
    "read_invalid_times",
    "read_json",
    "read_subject",
]

logger = logging.getLogger(__name__)

PathOrFile = str | os.PathLike[str] | IO[bytes]

#: short user names seen in debug.log that are not `first.last` (FORMATS §13)
KNOWN_USERS: Mapping[str, str] = {"samg": "Sam Gale", "corbettb": "Corbett Bennett"}

_USER_RE = re.compile(r"User\(\s*['\"]([^'\"]+)['\"]\s*\)")


def _read_bytes(source: PathOrFile) -> tuple[bytes, str]:
    if hasattr(source, "read"):
        data = source.read()  # type: ignore[union-attr]
        return bytes(data), str(getattr(source, "name", "<file object>"))
    path = os.fspath(source)  # type: ignore[arg-type]
    try:
        with fsspec.open(path, "rb") as f:
            return f.read(), path
    except FileNotFoundError:
        raise MissingFileError("metadata file does not exist", path=path) from None


@timed
def read_json(source: PathOrFile) -> dict[str, Any]:
    """Return the top-level object of a JSON file (BadFormatError if it is not a JSON object)."""
    data, name = _read_bytes(source)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadFormatError(
            f"not valid JSON: {exc}", path=name, expected="a UTF-8 JSON document"
        ) from exc
    if not isinstance(obj, dict):
        raise BadFormatError("JSON top level is not an object", path=name, expected="{...}")
    return obj


# ----------------------------------------------------------------------------------- experimenter
def parse_experimenter(text: str) -> str | None:
    """Return the last experimenter named by `User('first.last')` in debug.log text, title-cased.

    Dotted names become `First Last`; the known short names (`samg`, `corbettb`) map to full names;
    None when the log names no user.
    """
    users = _USER_RE.findall(text)
    if not users:
        return None
    user = users[-1].strip()
    if user.lower() in KNOWN_USERS:
        return KNOWN_USERS[user.lower()]
    if "." in user:
        return " ".join(part.title() for part in user.split(".") if part)
    return user


@timed
def read_experimenter(source: PathOrFile) -> str | None:
    """Return the experimenter named in a debug.log file (None if it names no user)."""
    data, _ = _read_bytes(source)
    return parse_experimenter(data.decode("utf-8", errors="replace"))


# ----------------------------------------------------------------------------------- subject.json
@dataclass(frozen=True)
class SubjectInfo:
    """The fields of an AIND subject.json that the subjects component uses."""

    subject_id: int | None
    sex: str | None
    date_of_birth: datetime.date | None
    genotype: str | None
    strain: str | None


@timed
def read_subject(source: PathOrFile) -> SubjectInfo:
    """Return the subject described by an AIND subject.json (FORMATS §13)."""
    data, name = _read_bytes(source)
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadFormatError(f"not valid JSON: {exc}", path=name, expected="subject.json") from exc
    if not isinstance(obj, dict):
        raise BadFormatError("JSON top level is not an object", path=name, expected="{...}")
    sid = obj.get("subject_id")
    try:
        subject_id = None if sid in (None, "") else int(sid)
    except (TypeError, ValueError):
        raise BadFormatError(
            f"subject_id {sid!r} is not an integer",
            path=name,
            field="subject_id",
            expected="a 6- or 7-digit labtracks id",
        ) from None
    dob_raw = obj.get("date_of_birth")
    dob: datetime.date | None = None
    if dob_raw:
        try:
            dob = datetime.date.fromisoformat(str(dob_raw)[:10])
        except ValueError:
            raise BadFormatError(
                f"date_of_birth {dob_raw!r} is not a date",
                path=name,
                field="date_of_birth",
                expected="YYYY-MM-DD",
            ) from None
    sex = obj.get("sex")
    sex = str(sex)[0].upper() if sex else None
    breeding = obj.get("breeding_info") or {}
    strain = (
        _strain_name(obj.get("background_strain"))
        or obj.get("breeding_group")
        or (breeding.get("breeding_group") if isinstance(breeding, dict) else None)
    )
    genotype = obj.get("genotype")
    return SubjectInfo(
        subject_id=subject_id,
        sex=sex,
        date_of_birth=dob,
        genotype=None if genotype is None else str(genotype),
        strain=None if strain is None else str(strain),
    )


def _strain_name(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("name")
    return None if value in (None, "") else str(value)


# --------------------------------------------------------------------------------- invalid times
@dataclass(frozen=True)
class InvalidInterval:
    """One invalid-times entry; stop_time -1 means "until the end of the recording"."""

    start_time: float
    stop_time: float
    reason: str


def parse_invalid_times(entries: Any, *, source: object | None = None) -> list[InvalidInterval]:
    """Return the intervals of an `invalid_times` list of {start_time, stop_time, reason} maps.

    Accepts the list itself or a mapping holding it under `invalid_times`; raises BadFormatError
    naming `source` and the entry on any malformed field.
    """
    if isinstance(entries, Mapping):
        entries = entries.get("invalid_times", [])
    if entries is None:
        return []
    if not isinstance(entries, Sequence) or isinstance(entries, str | bytes):
        raise BadFormatError(
            "invalid_times is not a list",
            path=source,
            field="invalid_times",
            expected="a list of {start_time, stop_time, reason}",
        )
    out = []
    for i, e in enumerate(entries):
        field = f"invalid_times[{i}]"
        if not isinstance(e, Mapping):
            raise BadFormatError(
                "entry is not a mapping", path=source, field=field, expected="{start_time, ...}"
            )
        try:
            start = float(e["start_time"])
            stop = float(e["stop_time"])
        except KeyError as exc:
            raise BadFormatError(
                f"entry lacks {exc.args[0]}",
                path=source,
                field=f"{field}.{exc.args[0]}",
                expected="start_time and stop_time in seconds",
            ) from None
        except (TypeError, ValueError):
            raise BadFormatError(
                "start_time/stop_time are not numbers",
                path=source,
                field=field,
                expected="seconds (stop_time -1 = end of recording)",
            ) from None
        if stop != -1 and stop < start:
            raise BadFormatError(
                f"stop_time {stop} precedes start_time {start}",
                path=source,
                field=field,
                expected="start_time <= stop_time (or stop_time -1)",
            )
        out.append(InvalidInterval(start, stop, str(e.get("reason") or "")))
    return out


@timed
def read_invalid_times(source: PathOrFile) -> list[InvalidInterval]:
    """Return the intervals listed in an invalid_times .yaml/.yml/.json file."""
    data, name = _read_bytes(source)
    text = data.decode("utf-8", errors="replace")
    try:
        if name.lower().endswith(".json"):
            obj = json.loads(text)
        else:
            import yaml

            obj = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise BadFormatError(
            f"cannot parse invalid-times file: {exc}",
            path=name,
            expected="YAML/JSON with invalid_times: [{start_time, stop_time, reason}]",
        ) from exc
    return parse_invalid_times(obj, source=name)
