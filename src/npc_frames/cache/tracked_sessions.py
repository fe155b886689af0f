"""The lab's tracked-sessions YAML layout, read as manifest entries (see docs/formats.md).

Layout: top sections ``ephys``, ``behavior_with_sync`` and ``behavior``; under each, a project name
(e.g. ``DynamicRouting``, ``TempletonPilotSession``) -> a list of entries; an entry is a raw path
string or a one-key mapping ``{<raw path>: {day, idx, session_kwargs, notes, issues, ...}}``. The
session id is parsed from the path (``…/DRpilot_626791_20220815`` -> ``626791_2022-08-15``); ``idx``
appends ``_<idx>``.

Each entry becomes a manifest entry ``{raw_path, section, project, day?, session_kwargs, notes?,
issues?}``. The section's implied modalities (``ephys`` -> ephys and sync, ``…sync`` -> sync) are
not applied as overrides: the raw folder decides (docs/quirks.md). Errors name the line of the
offending node (1-based).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import yaml

from npc_frames.errors import BadFormatError, InvalidIdError

logger = logging.getLogger(__name__)

__all__ = ["SECTIONS", "is_tracked_layout", "parse_tracked_sessions", "yaml_error"]

SECTIONS = ("ephys", "behavior_with_sync", "behavior")
#: top-level keys allowed beside the sections
EXTRA_TOP_KEYS = ("training_records",)
ENTRY_KEYS = frozenset(
    {"day", "idx", "session_kwargs", "notes", "issues", "ephys_day", "invalid_times", "path"}
)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def yaml_error(exc: yaml.YAMLError, path: str | os.PathLike[str]) -> BadFormatError:
    """Return the BadFormatError for a YAML syntax error, naming its line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}" if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return BadFormatError(
        f"manifest is not valid YAML: {problem}",
        path=path,
        field=where,
        expected="a YAML mapping",
    )


def is_tracked_layout(doc: Any) -> bool:
    """Return True when a parsed document uses the tracked-sessions section layout."""
    return isinstance(doc, Mapping) and any(k in SECTIONS for k in doc)


def _py(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_tracked_sessions(
    root: yaml.Node, path: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Return session id -> manifest entry from the composed YAML node of a tracked-sessions file.

    Raises BadFormatError naming the line of an unknown section, a malformed project or entry, a
    path without a session id, or a duplicate session (with the line of its first entry).
    """
    from npc_frames.ids import parse_session_id

    if not isinstance(root, yaml.MappingNode):
        raise BadFormatError(
            "tracked-sessions file is not a mapping",
            path=path,
            field=f"line {_line(root)}",
            expected=f"top sections {', '.join(SECTIONS)}",
        )
    out: dict[str, dict[str, Any]] = {}
    first_line: dict[str, int] = {}
    for key_node, section_node in root.value:
        section = str(key_node.value)
        if section in EXTRA_TOP_KEYS:
            continue
        if section not in SECTIONS:
            raise BadFormatError(
                f"unknown section {section!r} in tracked-sessions file",
                path=path,
                field=f"line {_line(key_node)}",
                expected=f"one of {', '.join(SECTIONS)}",
            )
        if _is_null(section_node):
            continue
        if not isinstance(section_node, yaml.MappingNode):
            raise BadFormatError(
                f"section {section!r} is not a mapping of project -> entries",
                path=path,
                field=f"line {_line(section_node)}",
                expected="<project>: [<raw path> | {<raw path>: {day, idx, session_kwargs}}]",
            )
        for project_node, entries_node in section_node.value:
            project = str(project_node.value)
            if _is_null(entries_node):
                continue
            if not isinstance(entries_node, yaml.SequenceNode):
                raise BadFormatError(
                    f"project {project!r} of section {section!r} is not a list of entries",
                    path=path,
                    field=f"line {_line(entries_node)}",
                    expected="a YAML list of raw paths or {<raw path>: {...}} mappings",
                )
            for entry_node in entries_node.value:
                line = _line(entry_node)
                raw_path, fields = _entry(entry_node, path, line)
                try:
                    sid = parse_session_id(os.path.basename(raw_path.rstrip("/\\")) or raw_path)
                except InvalidIdError as exc:
                    raise BadFormatError(
                        f"entry path {raw_path!r} has no session id: {exc.message}",
                        path=path,
                        field=f"line {line}",
                        expected="a folder name with <subject>_<YYYYMMDD> (e.g. DRpilot_626791_20220815)",
                    ) from None
                idx = fields.get("idx")
                if idx is not None:
                    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                        raise BadFormatError(
                            f"entry idx {idx!r} is not a non-negative integer",
                            path=path,
                            field=f"line {line}",
                            expected="idx: 0, 1, ...",
                        )
                    sid = type(sid)(sid.subject, sid.date, idx)
                key = str(sid)
                if key in out:
                    raise BadFormatError(
                        f"session {key} is listed twice (first at line {first_line[key]})",
                        path=path,
                        field=f"line {line}",
                        expected="one entry per session (use idx for a second session that day)",
                    )
                first_line[key] = line
                out[key] = _manifest_entry(section, project, raw_path, fields, path, line)
    return out


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _entry(node: yaml.Node, path: str | os.PathLike[str], line: int) -> tuple[str, dict[str, Any]]:
    if isinstance(node, yaml.ScalarNode) and not _is_null(node):
        return str(node.value), {}
    if isinstance(node, yaml.MappingNode) and len(node.value) == 1:
        key_node, value_node = node.value[0]
        fields = {} if _is_null(value_node) else _py(value_node)
        if isinstance(key_node, yaml.ScalarNode) and isinstance(fields, Mapping):
            unknown = sorted(set(map(str, fields)) - ENTRY_KEYS)
            if unknown:
                raise BadFormatError(
                    f"entry has unknown key(s) {', '.join(unknown)}",
                    path=path,
                    field=f"line {_line(value_node)}",
                    expected=f"keys among {', '.join(sorted(ENTRY_KEYS))}",
                )
            kwargs = fields.get("session_kwargs")
            if kwargs is not None and not isinstance(kwargs, Mapping):
                raise BadFormatError(
                    "session_kwargs is not a mapping",
                    path=path,
                    field=f"line {_line(value_node)}",
                    expected="session_kwargs: {name: value}",
                )
            return str(key_node.value), dict(fields)
    raise BadFormatError(
        "tracked-sessions entry is neither a path nor a one-key mapping",
        path=path,
        field=f"line {line}",
        expected="<raw path> or {<raw path>: {day, idx, session_kwargs, notes, issues}}",
    )


def _manifest_entry(
    section: str,
    project: str,
    raw_path: str,
    fields: Mapping[str, Any],
    path: str | os.PathLike[str],
    line: int,
) -> dict[str, Any]:
    kwargs = dict(fields.get("session_kwargs") or {})
    entry: dict[str, Any] = {
        "raw_path": raw_path,
        "section": section,
        "project": project,
        "session_kwargs": kwargs,
    }
    day = fields.get("day")
    if day is not None:
        if not isinstance(day, int) or isinstance(day, bool) or day < 1:
            raise BadFormatError(
                f"entry day {day!r} is not a positive integer",
                path=path,
                field=f"line {line}",
                expected="day: 1, 2, ...",
            )
        entry["day"] = day
    for k in ("notes", "issues", "invalid_times", "ephys_day"):
        if fields.get(k) is not None:
            entry[k] = fields[k]
    return entry
