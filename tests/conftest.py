"""Shared fixtures: synthetic raw sessions with known truth (npc_frames.synth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: fixtures shared by several test modules live in tests/helpers/ (no test module imports another)
pytest_plugins = ["helpers.ephys_session", "helpers.docs_workspace"]


def _make(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: Any) -> Any:
    synth = pytest.importorskip("npc_frames.synth", reason="npc_frames.synth not available")
    out = tmp_path_factory.mktemp(name)
    return synth.make_session(out, **kwargs)


@pytest.fixture(scope="session")
def synth_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 3-minute task session with 2 probes, opto, videos and sync (seed 1); returns its Truth."""
    return _make(
        tmp_path_factory,
        "synth_session",
        seed=1,
        minutes=3.0,
        n_probes=2,
        units_per_probe=6,
        opto=True,
        clip_seconds=0.2,  # continuous.dat is clipped in real uploads too; short keeps tests fast
    )


@pytest.fixture(scope="session")
def synth_raw(synth_session: Any) -> Any:
    """The RawSession of `synth_session`."""
    from npc_frames.paths import RawSession

    return RawSession.from_path(Path(synth_session.raw_path))


@pytest.fixture(scope="session")
def synth_sessions(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """Three small sessions of different subjects/dates (seeds 11-13) for cross-session tests."""
    import datetime as dt

    return [
        _make(
            tmp_path_factory,
            f"synth_sessions_{seed}",
            seed=seed,
            minutes=2.0,
            n_probes=1,
            units_per_probe=4,
            date=dt.date(2023, 9, 1) + dt.timedelta(days=seed),
            clip_seconds=0.2,
        )
        for seed in (11, 12, 13)
    ]


@pytest.fixture(scope="session")
def oe_sdist() -> Path:
    """Path to the open-ephys-python-tools sdist (real Open Ephys GUI recordings); skips if absent."""
    import os

    candidates = [
        os.environ.get("NPC_FRAMES_OE_SDIST", ""),
        str(Path(__file__).parents[1] / ".external" / "open_ephys_python_tools-1.0.1.tar.gz"),
    ]
    for c in candidates:
        if c and Path(c).exists():
            return Path(c)
    pytest.skip(
        "open-ephys-python-tools sdist not downloaded (bash .ci/run fetches it into .external/)"
    )
