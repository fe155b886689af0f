"""Tracked-sessions manifests: which sessions to convert, with their annotations."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from npc_frames import storage
from npc_frames.cache.catalog import _safe_id
from npc_frames.cache.tracked_sessions import (
    is_tracked_layout,
    parse_tracked_sessions,
    yaml_error,
)
from npc_frames.errors import InvalidIdError

logger = logging.getLogger(__name__)


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Return a tracked-sessions manifest as canonical session id -> entry.

    The file is YAML or JSON; either a mapping ``session id -> entry`` or ``{"sessions": [entry,
    …]}`` whose entries carry ``session_id``. An entry is a raw path string or a mapping with
    ``raw_path`` (or ``path``), ``notes``, ``issues``, ``invalid_times`` (``[{start_time,
    stop_time, reason}]``), ``assets`` (``{kind: folder}``, see ``RawSession.from_path``),
    ``day``, ``project`` and ``session_kwargs`` (flag overrides such as ``is_production:
    false``). The lab's tracked-sessions layout (sections ``ephys``, ``behavior_with_sync``,
    ``behavior``; see :mod:`npc_frames.cache.tracked_sessions`) is read too. A top-level
    ``training_records: <file>`` (relative to the manifest) is attached to every entry. Raises
    BadFormatError naming the file and the offending entry or line.
    """
    from npc_frames.errors import BadFormatError

    text = storage.read_bytes(storage.strip_protocol(os.fspath(path))).decode()
    node = None
    try:
        if os.fspath(path).endswith(".json"):
            doc = json.loads(text)
        else:
            node, doc = _load_yaml(text, path)
    except BadFormatError:
        raise
    except Exception as exc:
        raise BadFormatError(f"manifest cannot be parsed: {exc}", path=path) from exc
    if is_tracked_layout(doc):
        if node is None:
            raise BadFormatError(
                "the tracked-sessions section layout is read from YAML only",
                path=path,
                expected="a .yaml/.yml file",
            )
        return _with_training_records(parse_tracked_sessions(node, path), doc, path)
    if isinstance(doc, Mapping) and "training_records" in doc:
        records = doc
        doc = {k: v for k, v in doc.items() if k != "training_records"}
        return _with_training_records(_read_own_layout(doc, path), records, path)
    return _read_own_layout(doc, path)


def _read_own_layout(doc: Any, path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    from npc_frames.errors import BadFormatError

    if isinstance(doc, Mapping) and "sessions" in doc:
        doc = doc["sessions"]
    if isinstance(doc, list):
        items = []
        for i, entry in enumerate(doc):
            if not isinstance(entry, Mapping) or "session_id" not in entry:
                raise BadFormatError(
                    f"manifest entry {i} has no session_id",
                    path=path,
                    field=f"sessions[{i}]",
                    expected="a mapping with session_id and raw_path",
                )
            items.append((entry["session_id"], entry))
    elif isinstance(doc, Mapping):
        items = list(doc.items())
    else:
        raise BadFormatError(
            "manifest is neither a mapping nor a list",
            path=path,
            expected="session id -> {raw_path, notes, issues, invalid_times}",
        )
    out: dict[str, dict[str, Any]] = {}
    for key, entry in items:
        try:
            sid = _safe_id(str(key))
        except InvalidIdError as exc:
            raise BadFormatError(
                f"manifest key {key!r} is not a session id: {exc.message}",
                path=path,
                field=str(key),
                expected="<subject>_<YYYY-MM-DD>[_<idx>]",
            ) from None
        if isinstance(entry, str):
            entry = {"raw_path": entry}
        if entry is None:
            entry = {}
        if not isinstance(entry, Mapping):
            raise BadFormatError(
                f"manifest entry for {sid} is not a mapping",
                path=path,
                field=str(key),
                expected="{raw_path, notes, issues, invalid_times}",
            )
        entry = dict(entry)
        if "path" in entry and "raw_path" not in entry:
            entry["raw_path"] = entry.pop("path")
        out[sid] = entry
    return out


#: session_kwargs the library reads as entry-level annotations (the lab's tracked-sessions
#: layout puts them under session_kwargs)
HOISTED_KWARGS = ("probe_letters_to_skip", "probe_letters_to_use")


def _annotations(entry: Mapping[str, Any]) -> dict[str, Any]:
    # "tracked": the session has a manifest entry, so manifest-only flags take their defaults
    out = {k: v for k, v in entry.items() if k not in ("raw_path", "session_id")}
    out.setdefault("tracked", True)
    kwargs = out.get("session_kwargs")
    if isinstance(kwargs, Mapping):
        for k in HOISTED_KWARGS:
            if k in kwargs:
                out.setdefault(k, kwargs[k])
    return out


# ------------------------------------------------------------------ tracked sessions, training
def _load_yaml(text: str, path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """Return (composed node, Python document) of YAML `text`; errors name the line."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path) from None
    return node, doc


def _with_training_records(
    entries: dict[str, dict[str, Any]], doc: Any, path: str | os.PathLike[str]
) -> dict[str, dict[str, Any]]:
    """Attach the manifest's top-level ``training_records`` file to every entry lacking one."""
    records = doc.get("training_records") if isinstance(doc, Mapping) else None
    if not records:
        return entries
    records = str(records)
    base = os.path.dirname(storage.strip_protocol(os.fspath(path)))
    if not os.path.isabs(records) and "://" not in records:
        records = os.path.join(base, records)
    for entry in entries.values():
        entry.setdefault("training_records", records)
    return entries
