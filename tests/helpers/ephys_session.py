"""The session-scoped synthetic ephys session shared by the units and electrodes tests, and small
file helpers (``get``, ``clone_session``) for corrupting copies of it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def ephys_truth(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The shared ``synth_session`` (2 probes) — or, if it cannot be built, an equivalent one."""
    try:
        return request.getfixturevalue("synth_session")
    except Exception as exc:  # the shared generator is being developed in parallel
        synth = pytest.importorskip("npc_frames.synth", reason=f"no synth: {exc}")
        return synth.make_session(
            tmp_path_factory.mktemp("ephys_truth"),
            seed=2,
            minutes=3.0,
            n_probes=2,
            units_per_probe=6,
            video=False,
        )


@pytest.fixture(scope="session")
def raw(ephys_truth: Any) -> Any:
    from npc_frames.paths import RawSession

    return RawSession.from_path(Path(ephys_truth.raw_path))


def get(obj: Any, key: str) -> Any:
    """Field of a truth record: fresh truths are dataclasses, loaded ones mappings."""
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)


def clone_session(src: str | Path, dst: Path) -> Path:
    """Copy a session tree as hard links (cheap); edit a file only after unlinking it."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another filesystem
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)
    return dst


def replace_file(path: Path, write: Any) -> None:
    """Replace a linked file by a new one written by `write(path)`."""
    path.unlink()
    write(path)
