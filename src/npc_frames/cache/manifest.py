"""Tracked-sessions manifests: which sessions to convert, with their annotations."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from npc_frames import storage
from npc_frames.cache.catalog import _safe_id
from npc_frames.errors import InvalidIdError


def read_manifest(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Return a tracked-sessions manifest as canonical session id -> entry.

    The file is YAML or JSON; either a mapping ``session id -> entry`` or ``{"sessions": [entry,
    …]}`` whose entries carry ``session_id``. An entry is a raw path string or a mapping with
    ``raw_path`` (or ``path``), ``notes``, ``issues``, ``invalid_times`` (``[{start_time,
    stop_time, reason}]``) and ``assets`` (``{kind: folder}``, see ``RawSession.from_path``).
    Raises BadFormatError naming the file and the offending entry.
    """
    from npc_frames.errors import BadFormatError

    text = storage.read_bytes(storage.strip_protocol(os.fspath(path))).decode()
    try:
        if os.fspath(path).endswith(".json"):
            doc = json.loads(text)
        else:
            import yaml

            doc = yaml.safe_load(text)
    except Exception as exc:
        raise BadFormatError(f"manifest cannot be parsed: {exc}", path=path) from exc
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


def _annotations(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("raw_path", "session_id")}
