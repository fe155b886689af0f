"""The ``Examples`` sections of the public entry points run as doctests against the shared
synthetic workspace (tests/helpers/docs_workspace.py: ``raw/`` + ``cache/``, the current folder
while they run), and each shows at least one printed result that doctest compares."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import pytest

from helpers.docs_workspace import Workspace
from npc_frames.components import COMPONENTS

#: "module:qualified name" of every entry point that must carry a tested ``Examples`` section
ENTRY_POINTS = [
    "npc_frames.paths:RawSession.from_path",
    "npc_frames.components:",  # the package docstring: components.<name>(raw)
    "npc_frames.synth:make_session",
    "npc_frames.analysis:spike_counts",
    "npc_frames.analysis:aligned_spikes",
    "npc_frames.analysis:psth",
    "npc_frames.analysis:session_count_arrays",
    "npc_frames.sampling:sample_at",
    "npc_frames.nwb:to_nwb",
    "npc_frames.nwb:write_nwb",
    "npc_frames.memo:clear_caches",
    "npc_frames.cache:convert",
    "npc_frames.cache:scan",
    "npc_frames.cache:sql",
    "npc_frames.cache:connect",
    "npc_frames.cache:read_catalog",
    "npc_frames.cache:read_session",
    *[f"npc_frames.cache:scan_{name}" for name in COMPONENTS],
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _resolve(spec: str) -> Any:
    module, _, qualname = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("spec", ENTRY_POINTS)
def test_entry_point_examples_run_and_check_output(
    spec: str, docs_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    obj = _resolve(spec)
    doc = obj.__doc__ or ""
    assert "Examples\n" in doc, f"{spec}: no Examples section"
    parser = doctest.DocTestParser()
    test = parser.get_doctest(doc, {}, spec, None, 0)
    assert any(e.want.strip() for e in test.examples), f"{spec}: no example shows a result"
    monkeypatch.chdir(docs_workspace.root)
    test.globs = {**docs_workspace.namespace}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out: list[str] = []
    result = runner.run(test, out=out.append)
    assert result.failed == 0, "".join(out)
