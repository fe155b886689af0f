"""The workspace the documentation's examples run in: one small synthetic session in ``raw/`` and
its converted cache in ``cache/``, built once per test session by running `SETUP` (the first block
of README.md's "Use" section, verbatim) and converting the session into ``cache/``. README.md,
docs/*.md and the docstrings' ``Examples`` sections are written against it (tests/test_docs.py,
tests/test_doctests.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: the setup block of the docs (marked ``<!-- setup -->`` there; tests/test_docs.py checks the text)
SETUP = """\
import polars as pl
import npc_frames as nf

truth = nf.make_session("raw/", seed=1, opto=True, video_behavior=True)  # raw files + ground truth
"""

#: the folder name and session id the examples use (seed 1 of the generator)
RAW_FOLDER = "ecephys_603074_2023-08-31_12-33-31"
SESSION_ID = "603074_2023-08-31"


@dataclass(frozen=True)
class Workspace:
    root: Path  # holds raw/ and cache/
    truth: Any  # npc_frames.synth Truth of the session
    namespace: dict[str, Any]  # what SETUP defined (nf, pl, truth)

    @property
    def raw_path(self) -> Path:
        return self.root / "raw" / RAW_FOLDER


@pytest.fixture(scope="session")
def docs_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Return the shared documentation workspace (built on first use)."""
    import os

    root = tmp_path_factory.mktemp("docs_workspace")
    namespace: dict[str, Any] = {"__name__": "docs_setup"}
    here = os.getcwd()
    os.chdir(root)
    try:
        exec(compile(SETUP, "SETUP", "exec"), namespace)
    finally:
        os.chdir(here)
    truth = namespace["truth"]
    assert Path(truth.raw_path).name == RAW_FOLDER, truth.raw_path  # the docs name this folder
    namespace["nf"].convert([truth.raw_path], cache=root / "cache", progress=False)
    return Workspace(root, truth, namespace)
