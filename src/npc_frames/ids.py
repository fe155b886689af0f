"""Session, subject, date, probe and camera identifiers (FORMATS §1.1).

Parsing follows the reference rules so that every folder or file name users already have maps to
the same canonical session id::

    >>> str(parse_session_id("DRPilot_366122_20220425"))
    '366122_2022-04-25'
    >>> str(parse_session_id("ecephys_703882_2024-04-22_12-00-00_1"))
    '703882_2024-04-22_1'
    >>> parse_session_id("366122_2022-04-25_0") == "366122_2022-04-25"
    True
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import Any

from npc_frames.errors import InvalidIdError

logger = logging.getLogger(__name__)

__all__ = [
    "SURFACE_CHANNELS_SUFFIX",
    "AindSessionId",
    "SessionId",
    "index_sessions",
    "is_surface_channels_name",
    "parse_aind_session_id",
    "parse_camera_name",
    "parse_date",
    "parse_datetime",
    "parse_probe_letter",
    "parse_session_id",
    "parse_subject",
    "safe_session_id",
]

# FORMATS §1.1: the regex admits years 2010-2029; a parsed date is then validated to
# 2016 <= year <= this year (the first sessions of the project are from 2016).
_FIRST_VALID_YEAR = 2016
_DATE_RE = re.compile(
    r"(?<!\d)(?P<y>20[12]\d)[-/]?(?P<m>0[1-9]|1[0-2])[-/]?(?P<d>0[1-9]|[12]\d|3[01])(?!\d)"
)
# a time is only searched right after a date plus one non-digit separator, so that 8-digit
# numbers are never mistaken for times
_TIME_AFTER_DATE_RE = re.compile(
    r"^\D(?P<H>[01]\d|2[0-3])[-:.]?(?P<M>[0-5]\d)[-:.]?(?P<S>[0-5]\d)(?:\.\d{1,6})?(?!\d)"
)
_SUBJECT_RE = re.compile(r"(?<!\d)(?P<subject>\d{6,7})(?!\d)")
_IDX_RE = re.compile(r"_(?P<idx>\d+)$")
_AIND_RE = re.compile(
    r"(?P<platform>[A-Za-z][A-Za-z0-9-]*)_(?P<subject>\d{6,7})_"
    r"(?P<date>20\d\d[-/_]\d\d[-/_]\d\d)_(?P<time>\d\d[-/_:]\d\d[-/_:]\d\d)"
)
_PROBE_RE = re.compile(r"[Pp]robe[-_ ]?(?P<letter>[A-F])(?![A-Za-z])")
_BARE_PROBE_RE = re.compile(r"^(?P<letter>[A-F])$")
# camera substrings in file names, checked in this order (case-insensitive)
_CAMERA_SUBSTRINGS = (
    ("eye", "eye"),
    ("face", "face"),
    ("beh", "behavior"),
    ("_box_", "behavior"),
    ("nose", "nose"),
)


def _err(kind: str, text: object, expected: str) -> InvalidIdError:
    return InvalidIdError(f"cannot parse a {kind} from {text!r}", field=kind, expected=expected)


def _find_date(text: str) -> tuple[dt.date, re.Match[str]] | None:
    for match in _DATE_RE.finditer(text):
        try:
            date = dt.date(int(match["y"]), int(match["m"]), int(match["d"]))
        except ValueError:  # e.g. 2023-02-30
            continue
        if _FIRST_VALID_YEAR <= date.year <= dt.date.today().year:
            return date, match
    return None


def _find_date_time(text: str) -> tuple[dt.datetime, int, int] | None:
    """Return (datetime, span start, span end) of the first valid date (+ optional time)."""
    found = _find_date(text)
    if found is None:
        return None
    date, match = found
    start, end = match.span()
    time = dt.time(0, 0, 0)
    tm = _TIME_AFTER_DATE_RE.match(text[end:])
    if tm:
        time = dt.time(int(tm["H"]), int(tm["M"]), int(tm["S"]))
        end += tm.end()
    return dt.datetime.combine(date, time), start, end


def parse_date(text: object) -> dt.date:
    """Return the first valid date (2016..this year) found in `text`.

    Accepts ``YYYY-MM-DD``, ``YYYY/MM/DD`` and ``YYYYMMDD`` anywhere in the string.
    """
    found = _find_date(str(text))
    if found is None:
        raise _err(
            "date",
            text,
            f"YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD with {_FIRST_VALID_YEAR} <= year <= this year",
        )
    return found[0]


def parse_datetime(text: object) -> dt.datetime:
    """Return the first date in `text` combined with the time that directly follows it (else 00:00:00).

    Sub-seconds are discarded, as in the reference's ``YYYY-MM-DD HH:MM:SS`` records.
    """
    found = _find_date_time(str(text))
    if found is None:
        raise _err(
            "datetime", text, "a date, optionally followed by one separator and HH[-:.]MM[-:.]SS"
        )
    return found[0]


def _subject_in(text: str) -> int | None:
    match = _SUBJECT_RE.search(text)
    return None if match is None else int(match["subject"])


def parse_subject(text: object) -> int:
    """Return the 6- or 7-digit subject id in `text` (searched after removing the date and time)."""
    s = str(text)
    found = _find_date_time(s)
    rest = s if found is None else s[: found[1]] + "_" + s[found[2] :]
    subject = _subject_in(rest)
    if subject is None and found is not None:  # see parse_session_id: subject read as a time
        date_only = _find_date(s)
        assert date_only is not None
        subject = _subject_in(s[: date_only[1].start()] + "_" + s[date_only[1].end() :])
    if subject is None:
        raise _err("subject", text, "6 or 7 digits not adjacent to other digits")
    return subject


@dataclass(frozen=True, order=True)
class SessionId:
    """A session: subject, date and index of that subject's sessions on that date.

    ``str()`` gives the canonical form ``<subject>_<YYYY-MM-DD>`` with ``_<idx>`` appended only when
    idx > 0; equality and hashing treat the ``…_0`` form and the bare form alike, and a SessionId
    compares equal to any string that parses to it.
    """

    subject: int
    date: dt.date
    idx: int = 0

    def __post_init__(self) -> None:
        if not (100_000 <= int(self.subject) <= 9_999_999):
            raise InvalidIdError(
                f"subject {self.subject!r} is not a 6- or 7-digit id",
                field="subject",
                expected="an integer with 6 or 7 digits",
            )
        if self.idx < 0:
            raise InvalidIdError(
                f"session index {self.idx!r} is negative", field="idx", expected="an integer >= 0"
            )

    @classmethod
    def parse(cls, text: object) -> SessionId:
        """Return the SessionId parsed from `text` (see :func:`parse_session_id`)."""
        return parse_session_id(text)

    def __str__(self) -> str:
        base = f"{self.subject}_{self.date.isoformat()}"
        return base if self.idx == 0 else f"{base}_{self.idx}"

    def __repr__(self) -> str:
        return f"SessionId({str(self)!r})"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, SessionId):
            return (self.subject, self.date, self.idx) == (other.subject, other.date, other.idx)
        if isinstance(other, str):
            try:
                return self == parse_session_id(other)
            except InvalidIdError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def with_idx(self) -> str:
        """Return the internal form with the index always present (``…_0``)."""
        return f"{self.subject}_{self.date.isoformat()}_{self.idx}"


def parse_session_id(text: object) -> SessionId:
    """Return the SessionId found in `text`: a date, a subject and an optional trailing ``_<idx>``.

    Date, subject and index may appear in any order with any prefix/suffix (FORMATS §1.1); a time
    directly after the date is allowed and discarded.
    """
    if isinstance(text, SessionId):
        return text
    s = str(text)
    aind = _AIND_RE.search(s)
    if aind is not None:
        # an AIND asset name: its time may use '_' separators, which the generic rule would
        # misread as an index (``…_00_00_01`` -> idx 1)
        try:
            asset: AindSessionId | None = parse_aind_session_id(aind.group(0))
        except InvalidIdError:
            asset = None
        if asset is not None:
            rest = s[: aind.start()] + s[aind.end() :]
            idx_match = _IDX_RE.search(rest) if _find_date(rest) is None else None
            idx = int(idx_match["idx"]) if idx_match else 0
            return SessionId(asset.subject, asset.start.date(), idx)
    found = _find_date_time(s)
    if found is None:
        raise _err(
            "session id", text, "<subject>_<YYYY-MM-DD>[_<idx>] (a date and a 6-7 digit subject)"
        )
    _, start, end = found
    rest = s[:start] + "_" + s[end:]
    match = _SUBJECT_RE.search(rest)
    if match is None:
        # a 6-digit subject right after a date looks like HHMMSS (``2016-01-01_100000``): the
        # reference would fail here; we retry with the date alone, which is the only reading
        # that yields a subject
        date_only = _find_date(s)
        assert date_only is not None
        start, end = date_only[1].span()
        rest = s[:start] + "_" + s[end:]
        match = _SUBJECT_RE.search(rest)
    if match is None:
        raise _err("session id", text, "a 6 or 7 digit subject id besides the date")
    rest = rest[: match.start()] + "_" + rest[match.end() :]
    idx_match = _IDX_RE.search(rest)
    idx = int(idx_match["idx"]) if idx_match else 0
    return SessionId(int(match["subject"]), found[0].date(), idx)


def safe_session_id(text: object) -> str:
    """Return the canonical session id string of `text`, guaranteed to be one safe path component.

    Stricter than :func:`parse_session_id`: the input itself must not contain path separators,
    ``..``, NUL or leading ``/`` (so ``../668755_2023-08-31`` is rejected rather than silently
    parsed), because the result becomes a folder name in the cache.
    """
    s = str(text)
    if not s or any(bad in s for bad in ("/", "\\", "..", "\x00")) or s != s.strip():
        raise InvalidIdError(
            f"session id {s!r} is not a single safe path component",
            field="session_id",
            expected="<subject>_<YYYY-MM-DD>[_<idx>] without path separators or '..'",
        )
    canonical = str(parse_session_id(s))
    if not re.fullmatch(r"\d{6,7}_\d{4}-\d{2}-\d{2}(_\d+)?", canonical):  # defensive
        raise InvalidIdError(
            f"session id {s!r} did not normalise to a safe form",
            field="session_id",
            expected="<subject>_<YYYY-MM-DD>[_<idx>]",
        )
    return canonical


@dataclass(frozen=True)
class AindSessionId:
    """An AIND raw-data asset name ``<platform>_<subject>_<YYYY-MM-DD>_<HH-MM-SS>``."""

    platform: str
    subject: int
    start: dt.datetime

    def __str__(self) -> str:
        return f"{self.platform}_{self.subject}_{self.start:%Y-%m-%d_%H-%M-%S}"

    @property
    def session_id(self) -> SessionId:
        """Return the (idx 0) SessionId of this asset."""
        return SessionId(self.subject, self.start.date())


def parse_aind_session_id(text: object) -> AindSessionId:
    """Return the AIND asset id in `text`; separators ``-``, ``/`` or ``_`` are accepted and any
    suffix (e.g. ``_sorted_2023-12-16_06-52-11``) is ignored."""
    s = str(text)
    m = _AIND_RE.search(s)
    if m is None:
        raise _err("AIND session id", text, "<platform>_<subject>_<YYYY-MM-DD>_<HH-MM-SS>")
    d = re.split(r"[-/_]", m["date"])
    t = re.split(r"[-/_:]", m["time"])
    try:
        start = dt.datetime(int(d[0]), int(d[1]), int(d[2]), int(t[0]), int(t[1]), int(t[2]))
    except ValueError:
        raise _err("AIND session id", text, "a valid date and time") from None
    if not (_FIRST_VALID_YEAR <= start.year <= dt.date.today().year):
        raise _err("AIND session id", text, f"a year in {_FIRST_VALID_YEAR}..this year")
    return AindSessionId(m["platform"], int(m["subject"]), start)


def parse_probe_letter(text: object) -> str:
    """Return the probe letter ``"A"``–``"F"`` in `text` (``probeA``, ``Probe_A2``, ``…ProbeA-AP``,
    or a bare capital letter)."""
    s = str(text)
    m = _PROBE_RE.search(s) or _BARE_PROBE_RE.match(s)
    if m is None:
        raise _err(
            "probe letter",
            text,
            "'probe' + optional '-', '_' or ' ' + one letter A-F, or a bare A-F",
        )
    return m["letter"]


def parse_camera_name(text: object) -> str:
    """Return the camera (``eye``, ``face``, ``behavior`` or ``nose``) named by a file name."""
    s = str(text).lower()
    for sub, name in _CAMERA_SUBSTRINGS:
        if sub in s:
            return name
    raise _err("camera name", text, "a name containing 'eye', 'face', 'beh'/'_box_' or 'nose'")


# ----------------------------------------------------------------------- same-day session indices
#: a local surface-channel ("deep insertion") recording lives beside its main recording's folder,
#: named like it plus this suffix
SURFACE_CHANNELS_SUFFIX = "_surface_channels"
# a raw data asset name: platform, subject, date, acquisition time, nothing else (derived assets
# such as ``…_sorted_<date>_<time>`` and ``….truth`` folders never take part in the index)
_RAW_ASSET_RE = re.compile(
    r"^(?P<aind>(?:ecephys|behavior)_\d{6,7}_20\d\d-\d\d-\d\d_\d\d-\d\d-\d\d)"
    r"(?P<surface>" + re.escape(SURFACE_CHANNELS_SUFFIX) + r")?$"
)


def is_surface_channels_name(name: str) -> bool:
    """Return True when folder `name` (or path) is a local surface-channel recording's folder."""
    return name.rstrip("/").endswith(SURFACE_CHANNELS_SUFFIX)


def _basename(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1]


def index_sessions(names: Any) -> dict[str, SessionId]:
    """Return {name: SessionId with its same-day index} for the raw asset names among `names`.

    The index rule: the raw assets of one subject on one date (``ecephys_`` and ``behavior_``
    names with an acquisition time) are ordered by acquisition time, and a session's index is the
    rank of its time among the distinct times (0 = the first recording of the day, printed
    without suffix; 1 = the second, ``…_1``). Assets sharing an acquisition time are one session.
    A local surface-channel folder (``<main name>_surface_channels``) ranks directly after its
    main recording, whose time it carries; its main recording counts even when not listed, so
    a surface-channel recording is never index 0.

    Indices are stable as later recordings are added (the way a day's sessions are acquired);
    a recording inserted *before* existing ones shifts each later one by exactly one.

    `names` are folder names, paths or URLs (the last path component is used); names that are
    not raw asset names (derived assets, ``*.truth`` folders, anything else) are left out.
    """
    parsed: dict[str, tuple[AindSessionId, bool]] = {}
    for name in names:
        m = _RAW_ASSET_RE.match(_basename(str(name)))
        if m is None:
            continue
        try:
            aind = parse_aind_session_id(m["aind"])
        except InvalidIdError:
            continue
        parsed[str(name)] = (aind, m["surface"] is not None)
    keys: dict[tuple[int, dt.date], set[tuple[dt.datetime, bool]]] = {}
    for aind, surface in parsed.values():
        day = keys.setdefault((aind.subject, aind.start.date()), set())
        day.add((aind.start, surface))
        if surface:  # the main recording exists even if it was not listed
            day.add((aind.start, False))
    ranks = {day: {key: i for i, key in enumerate(sorted(ks))} for day, ks in keys.items()}
    return {
        name: SessionId(
            aind.subject,
            aind.start.date(),
            ranks[(aind.subject, aind.start.date())][(aind.start, surface)],
        )
        for name, (aind, surface) in parsed.items()
    }
