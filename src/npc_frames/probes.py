"""Which probes of a session are used, where they were inserted, and why others are skipped.

A probe is *used* when it was recorded (an AP stream and a settings.xml entry) and not skipped.
Skipped probes are absent from devices, electrode groups, electrodes and units; each has a reason,
``skip_reasons(raw)`` (for the cache catalog: ``skipped: <why>``).

Rules (docs/formats.md, "Probe insertions and selection"; docs/quirks.md)
------------------------------------------------------------------------
* ``probe_letters_to_use`` in the manifest entry (letters such as ``"ABC"`` or a list), when
  given, names the used probes; recorded probes not in it are skipped ("not in
  probe_letters_to_use").
* ``probe_letters_to_skip`` in the manifest entry skips those probes ("probe_letters_to_skip in
  the manifest").
* When the session has sorting output, recorded probes absent from it are skipped ("not in the
  sorting output").
* When the raw upload's ``probe_insertions.json`` lists a probe without a hole and no CCF
  annotation exists for it, it is skipped ("not inserted"); an annotation overrides the record
  (with a warning), as annotations come from the histology of the probe track.
* Unannotated probes are **not** skipped: their units are kept with null anatomy.

Surface-channel recordings (``RawSession.is_surface_channel``) also skip (docs/quirks.md):

* probes whose settings.xml channels are all in bank 0 — still on the tip bank, so no surface
  channels were recorded ("still on the tip bank");
* probes skipped in the main session (:func:`main_session`: the folder without the
  ``_surface_channels`` suffix, else the day's recording just before), with the main session's
  reason;
* letters in the manifest's ``surface_recording_probe_letters_to_skip`` (the reference removes
  them from the skip set instead, the opposite of the key's name; we follow the name).
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from npc_frames.errors import BadFormatError, NpcFramesError, ParameterError

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "SURFACE_SKIP_KEY",
    "ProbeInsertions",
    "ProbeSelection",
    "main_session",
    "parse_probe_letters",
    "probe_insertions",
    "probe_selection",
    "read_probe_insertions",
    "report_skipped",
    "skip_reasons",
]

logger = logging.getLogger(__name__)

PROBE_LETTERS = "ABCDEF"
INSERTIONS_NAME = "probe_insertions.json"
#: manifest key naming probes to skip in a surface-channel recording only
SURFACE_SKIP_KEY = "surface_recording_probe_letters_to_skip"

_PROBE_NAME_RE = re.compile(r"^(?:[Pp]robe[-_ ]?)?(?P<letter>[A-F])$")


def parse_probe_letters(value: Any, *, field_name: str = "probe letters") -> tuple[str, ...]:
    """Return the sorted probe letters of ``"DE"``, ``"probeD, probeE"`` or ``["D", "probeE"]``."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = re.findall(r"(?:[Pp]robe[-_ ]?)?[A-Za-z]", value.replace(",", " ").replace(" ", ""))
    elif isinstance(value, list | tuple | set | frozenset):
        parts = [str(v).strip() for v in value]
    else:
        raise ParameterError(
            f"{field_name} must be letters, got {value!r}", field=field_name, expected="e.g. 'DE'"
        )
    letters = set()
    for p in parts:
        m = _PROBE_NAME_RE.match(p)
        if m is None:
            raise ParameterError(
                f"{field_name}: {p!r} is not a probe letter", field=field_name, expected="A–F"
            )
        letters.add(m["letter"])
    return tuple(sorted(letters))


@dataclass(frozen=True)
class ProbeInsertions:
    """A probe-insertion record: implant name, hole per probe letter (None = not inserted)."""

    path: str
    implant: str | None
    holes: Mapping[str, str | None]
    notes: Mapping[str, str | None] = field(default_factory=dict)

    def location(self, letter: str) -> str:
        """Return ``"<implant> <hole>"`` for a probe, or ``unknown`` when either is missing."""
        hole = self.holes.get(letter)
        return f"{self.implant} {hole}" if self.implant and hole else "unknown"


def read_probe_insertions(path: str) -> ProbeInsertions:
    """Return the probe-insertion record of a rig workflow's ``…probe_insertions.json``."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadFormatError(f"probe insertions cannot be parsed: {exc}", path=path) from None
    body = doc.get("probe_insertions") if isinstance(doc, Mapping) else None
    if not isinstance(body, Mapping):
        raise BadFormatError(
            "probe insertions lack the probe_insertions mapping",
            path=path,
            field="probe_insertions",
            expected="{probe_insertions: {probeA: {letter, hole, notes}, …, implant}}",
        )
    holes: dict[str, str | None] = {}
    notes: dict[str, str | None] = {}
    for key, entry in body.items():
        m = _PROBE_NAME_RE.match(str(key))
        if m is None or not isinstance(entry, Mapping):
            continue  # implant, day, saved time … are not probes
        hole = entry.get("hole")
        holes[m["letter"]] = (str(hole).strip() or None) if hole is not None else None
        note = entry.get("notes")
        notes[m["letter"]] = None if note in (None, "") else str(note)
    implant = body.get("implant", doc.get("implant"))
    return ProbeInsertions(
        path=path,
        implant=None if implant in (None, "") else str(implant),
        holes=holes,
        notes=notes,
    )


def _insertion_path(raw: RawSession) -> str | None:
    given = raw.annotations.get("probe_insertions")
    if given:
        return raw.local(os.fspath(given))
    found = raw.folder_files(lambda name: name.endswith(INSERTIONS_NAME))
    return raw.local(found[-1]) if found else None


def probe_insertions(raw: RawSession) -> ProbeInsertions | None:
    """Return the session's probe-insertion record (manifest ``probe_insertions`` path, else the
    raw upload's ``…probe_insertions.json``), or None when there is none."""
    path = _insertion_path(raw)
    return None if path is None else read_probe_insertions(path)


@dataclass(frozen=True)
class ProbeSelection:
    """Recorded probes, the ones used, and why each of the others is skipped."""

    recorded: tuple[str, ...]
    used: tuple[str, ...]
    #: letter -> why the probe is left out (recorded probes only)
    skipped: Mapping[str, str]
    insertions: ProbeInsertions | None = None
    errors: Mapping[str, NpcFramesError] = field(default_factory=dict)


def _sorted_letters(raw: RawSession) -> set[str] | None:
    if raw.sorting_path is None:
        return None
    from npc_frames.readers.sorting import find_sortings, sorting_key

    try:
        entries = find_sortings(raw.local(raw.sorting_path))
    except NpcFramesError:
        return None
    return {k[0] for e in entries if (k := sorting_key(e)) is not None}


def main_session(raw: RawSession) -> RawSession | None:
    """Return the main session of a surface-channel recording (with the same manifest entry), or
    None when `raw` is not one or its main recording is not found beside it.

    The main recording is the folder without the ``_surface_channels`` suffix, else the raw
    asset beside it whose session id is ``raw.main_session_id``.
    """
    from npc_frames.ids import SURFACE_CHANNELS_SUFFIX, is_surface_channels_name
    from npc_frames.paths import RawSession

    if not raw.is_surface_channel:
        return None
    root = raw.root.rstrip("/")
    want = raw.main_session_id
    candidates: list[str] = []
    if is_surface_channels_name(root):
        candidates.append(root[: -len(SURFACE_CHANNELS_SUFFIX)])
    elif want is not None:
        parent = root.rsplit("/", 1)[0] if "/" in root else "."
        tag = f"_{want.subject}_{want.date:%Y-%m-%d}_"
        try:
            names = sorted(str(p).rstrip("/") for p in raw.fs.ls(parent, detail=False))
        except OSError:
            names = []
        candidates += [p for p in names if tag in p.rsplit("/", 1)[-1] and p != root]
    keep = {k: v for k, v in raw.annotations.items() if k != SURFACE_SKIP_KEY}
    for path in candidates:
        if not raw.fs.isdir(path):
            continue
        try:
            main = RawSession.from_path(path, annotations=keep)
        except NpcFramesError:
            continue
        if want is None or str(main.session_id) == str(want):
            return main
    return None


def _surface_skips(raw: RawSession, recorded: tuple[str, ...]) -> dict[str, str]:
    """Return letter -> why, for the probes a surface-channel recording skips (module docstring)."""
    from npc_frames.components.ephys import probe_setup

    out: dict[str, str] = {}
    for letter in parse_probe_letters(
        raw.annotations.get(SURFACE_SKIP_KEY), field_name=SURFACE_SKIP_KEY
    ):
        if letter in recorded:
            out[letter] = f"{SURFACE_SKIP_KEY} (manifest)"
    for p in probe_setup(raw).probes:
        if p.letter in recorded and p.is_tip_channel_bank:
            out.setdefault(p.letter, "still on the tip bank (every channel in bank 0)")
    main = main_session(raw)
    if main is None:
        logger.info("main session of surface recording %s not found", raw.root)
        return out
    for letter, why in probe_selection(main).skipped.items():
        if letter in recorded:
            out.setdefault(letter, f"skipped in the main session {main.session_id}: {why}")
    return out


def _selection(raw: RawSession) -> ProbeSelection:
    from npc_frames.anatomy import ccf_annotations
    from npc_frames.components.ephys import probe_setup

    recorded = tuple(probe_setup(raw).recorded_letters)
    skipped: dict[str, str] = {}
    errors: dict[str, NpcFramesError] = {}
    ann = raw.annotations
    if ann.get("probe_letters_to_use") is not None:
        use = set(
            parse_probe_letters(ann["probe_letters_to_use"], field_name="probe_letters_to_use")
        )
        for letter in recorded:
            if letter not in use:
                skipped[letter] = "not in probe_letters_to_use (manifest)"
    for letter in parse_probe_letters(
        ann.get("probe_letters_to_skip"), field_name="probe_letters_to_skip"
    ):
        if letter in recorded:
            skipped.setdefault(letter, "probe_letters_to_skip (manifest)")
    if raw.is_surface_channel:
        for letter, why in _surface_skips(raw, recorded).items():
            skipped.setdefault(letter, why)
    sorted_letters = _sorted_letters(raw)
    if sorted_letters is not None:
        for letter in recorded:
            if letter not in sorted_letters:
                skipped.setdefault(letter, "not in the sorting output")
    insertions = None
    try:
        insertions = probe_insertions(raw)
    except NpcFramesError as exc:
        errors[exc.path or "probe_insertions"] = exc
        warnings.warn(f"probe insertions of {raw.session_id} not used: {exc}", stacklevel=3)
    if insertions is not None:
        annotated = set(ccf_annotations(raw, recorded).sources)
        for letter in recorded:
            if letter in insertions.holes and insertions.holes[letter] is None:
                if letter in annotated:
                    warnings.warn(
                        f"probe {letter} of {raw.session_id} is annotated but "
                        f"{insertions.path} records no hole: the annotation wins",
                        stacklevel=3,
                    )
                else:
                    skipped.setdefault(letter, f"not inserted (no hole in {insertions.path})")
    used = tuple(letter for letter in recorded if letter not in skipped)
    return ProbeSelection(
        recorded=recorded, used=used, skipped=skipped, insertions=insertions, errors=errors
    )


def probe_selection(raw: RawSession) -> ProbeSelection:
    """Return which recorded probes are used and why the others are skipped (rules above)."""
    return _selection(raw)


def report_skipped(raw: RawSession) -> None:
    """Return None after reporting every skipped probe as an ``absent`` part (``skipped: <why>``),
    so the catalog names each probe a component leaves out and why."""
    from npc_frames import parts

    for letter, why in sorted(probe_selection(raw).skipped.items()):
        parts.report_absent(f"probe{letter}", f"skipped: {why}", probe=letter)


def skip_reasons(raw: RawSession) -> dict[str, str]:
    """Return ``probe<X>`` -> why that recorded probe is skipped (empty when all are used)."""
    return {f"probe{k}": v for k, v in sorted(probe_selection(raw).skipped.items())}
