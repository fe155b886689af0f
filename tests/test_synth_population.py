"""The synthetic session population: its mix, determinism, independent readability, discovery and
what its truth says each component reports."""

from __future__ import annotations

import ast
import hashlib
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import npc_frames.components as C
from npc_frames.errors import MissingFileError, ParameterError
from npc_frames.paths import RawSession
from npc_frames.synth.population import (
    COMPONENT_NAMES,
    DERIVED_VIDEO_COMPONENTS,
    PopulationTruth,
    make_population,
)
from npc_frames.synth.truth import Truth

SYNTH = Path(__file__).parents[1] / "src" / "npc_frames" / "synth"
#: the sibling-asset discovery of sorted output (RawSession.assets) may not be merged yet
HAS_ASSETS = hasattr(RawSession, "assets") or "assets" in RawSession.__dataclass_fields__


@pytest.fixture(scope="module")
def pop(tmp_path_factory: pytest.TempPathFactory) -> PopulationTruth:
    return make_population(tmp_path_factory.mktemp("pop"), 7, seed=1)


def test_synth_imports_nothing_it_is_tested_against() -> None:
    forbidden = ("readers", "timing", "components", "alignment", "analysis")
    for path in SYNTH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                assert not any(name.startswith(f"npc_frames.{f}") for f in forbidden), (path, name)


def test_component_names_match_the_library() -> None:
    # every library component has an expectation, in the library's order; the only extras allowed
    # are the derived-video components (not every branch of the library has them yet)
    assert [n for n in COMPONENT_NAMES if n in C.names()] == C.names()
    assert set(COMPONENT_NAMES) - set(C.names()) <= set(DERIVED_VIDEO_COMPONENTS)


def test_population_holds_every_kind_of_tracked_session(pop: PopulationTruth) -> None:
    kinds = [m.kind for m in pop.members]
    assert kinds[:5] == ["ephys", "surface_channels", "training_box", "habituation", "ephys"]
    ids = [m.session_id for m in pop.members]
    assert len(set(ids)) == len(ids)
    surface = pop.members[1]
    assert surface.main_session_id == pop.members[0].session_id
    assert surface.session_id == pop.members[0].session_id + "_1"
    box, hab = pop.members[2], pop.members[3]
    assert (box.subject, box.date) == (hab.subject, hab.date) and box.start_time < hab.start_time
    assert hab.session_id == box.session_id + "_1"
    skipper = pop.members[4]
    assert len(skipper.probes) == 3 and len(skipper.skipped_probes) == 1
    assert skipper.status("units", skipper.skipped_probes[0]) == "absent"
    for m in pop.members:
        assert set(m.components) == set(COMPONENT_NAMES)
        assert {c["status"] for c in m.components.values()} <= {"ok", "empty", "absent"}
        assert all(c["reason"] for c in m.components.values() if c["status"] != "ok")
    # behaviour-only sessions are most of a real list
    assert sum(m.kind in ("training_box", "habituation") for m in pop.members) >= 3
    assert PopulationTruth.load(pop.out_dir) == pop


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "population.truth" not in p.parts and ".truth" not in p.parent.name
    }


def test_population_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = make_population(tmp_path / "a", 5, seed=3)
    b = make_population(tmp_path / "b", 5, seed=3)
    c = make_population(tmp_path / "c", 3, seed=4)
    strip = [(m.session_id, m.kind, m.start_time, m.components) for m in a.members]
    assert strip == [(m.session_id, m.kind, m.start_time, m.components) for m in b.members]
    assert strip[:3] != [(m.session_id, m.kind, m.start_time, m.components) for m in c.members]
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_bad_population_parameters_raise(tmp_path: Path) -> None:
    with pytest.raises(ParameterError):
        make_population(tmp_path, 0)
    with pytest.raises(ParameterError):
        make_population(tmp_path, 3, seed=-1)


def test_discovery_finds_every_member_with_its_identity(pop: PopulationTruth) -> None:
    for m in pop.members:
        raw = RawSession.from_path(m.raw_path)
        assert str(raw.session_id) == m.session_id, m.raw_path
        assert raw.is_surface_channel == (m.kind == "surface_channels")
        assert str(raw.main_session_id) == str(m.main_session_id)
        assert raw.is_behavior_box == (m.kind == "training_box")
        assert raw.is_sync == (m.kind in ("ephys", "habituation"))
        assert raw.is_ephys == (m.kind in ("ephys", "surface_channels"))
        assert raw.is_task == (m.kind != "surface_channels")
        assert raw.is_video == (m.kind != "surface_channels")


@pytest.mark.skipif(not HAS_ASSETS, reason="sibling-asset discovery (RawSession.assets) not merged")
def test_discovery_finds_sorted_output_in_the_sibling_asset(pop: PopulationTruth) -> None:
    for m in pop.members:
        raw = RawSession.from_path(m.raw_path)
        if "sorted" in m.assets:
            assert raw.sorting_path is not None
            assert raw.sorting_path.startswith(m.assets["sorted"])
        else:
            assert raw.sorting_path is None


def _dynroutdata(path: str) -> Any:
    analysis = pytest.importorskip("DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils")
    obj = analysis.DynRoutData()
    with h5py.File(path, "r") as f, np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj.loadBehavData("DynamicRouting1_000000_dummy.hdf5", h5pyFile=f)
    return obj


def test_raw_files_are_read_by_independent_readers(pop: PopulationTruth) -> None:
    npc_sync = pytest.importorskip("npc_sync")
    for m in pop.members:
        if m.truth_dir is None:
            continue
        truth = Truth.load(m.truth_dir)
        raw = RawSession.from_path(m.raw_path)
        if raw.sync_path is not None:
            ds = npc_sync.SyncDataset(raw.sync_path)
            assert ds.start_time == truth.sync_start
            rising = np.asarray(ds.get_rising_edges("vsync_stim", units="seconds"))
            assert rising.size == sum(s["n_frames"] for s in truth.scripts)
        (task_path,) = raw.stim_paths_for("DynamicRouting1")
        obj = _dynroutdata(task_path)
        task = next(s for s in truth.scripts if s["script_name"] == "DynamicRouting1")
        assert obj.nTrials == task["truth"]["n_trials"]
        assert obj.lickFrames.tolist() == list(task["truth"]["lick_frames"])


def test_components_report_what_the_truth_says(pop: PopulationTruth) -> None:
    """`ok` components have rows, `empty` ones none, `absent` ones none or a MissingFileError."""
    for m in pop.members:
        raw = RawSession.from_path(m.raw_path)
        for name in C.names():
            if (
                name in ("units", "spike_amplitudes", "unit_waveforms")
                and m.assets
                and not HAS_ASSETS
            ):
                continue
            expected = m.status(name)
            try:
                rows: int | None = C.get(name)(raw).height
            except MissingFileError:
                rows = None
            if expected == "ok":
                assert rows, (m.session_id, name)
            elif expected == "empty":
                assert rows == 0, (m.session_id, name)
            else:
                assert not rows, (m.session_id, name)
        if HAS_ASSETS and m.probes and m.kind == "ephys":
            for name in ("units", "spike_amplitudes", "unit_waveforms"):
                rows = C.get(name)(raw)
                for probe in m.probes:
                    n = rows.filter(rows["electrode_group_name"] == probe).height
                    assert (n > 0) == (m.status(name, probe) == "ok"), (m.session_id, probe)


def test_surface_channel_session_starts_after_its_main(pop: PopulationTruth) -> None:
    import datetime

    surface, main = pop.members[1], pop.members[0]
    row = C.get("sessions")(RawSession.from_path(surface.raw_path)).row(0, named=True)
    start = row["session_start_time"].replace(tzinfo=None)
    expected = datetime.datetime.combine(surface.date, surface.start_time)
    assert expected <= start < expected + datetime.timedelta(seconds=10)
    assert start > datetime.datetime.combine(main.date, main.start_time)
    assert row["session_idx"] == 1
    # surface channels are numbered after the tip bank's 384
    channels = C.get("electrodes")(RawSession.from_path(surface.raw_path))["channel"]
    assert channels.min() == 384 and channels.max() == 767


def test_cli_synth_population(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from npc_frames.cli import main

    assert main(["synth", str(tmp_path), "--population", "4", "--seed", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    truth = PopulationTruth.load(tmp_path)
    assert [ln.split("\t")[0] for ln in lines] == [m.session_id for m in truth.members]
    assert len(lines) == 4 and lines[1].endswith("(surface_channels)")


def test_population_size_follows_minutes_probes_and_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from npc_frames.cli import main

    args = ["--minutes", "0.5", "--probes", "1", "--units-per-probe", "3", "--seed", "2"]
    assert main(["synth", str(tmp_path), "--population", "5", *args]) == 0
    capsys.readouterr()
    truth = PopulationTruth.load(tmp_path)
    ephys = [m for m in truth.members if m.kind == "ephys"]
    assert [len(m.probes) for m in ephys] == [1, 2]  # the second has a skipped probe besides
    for m in truth.members:
        if m.truth_dir is None:
            continue
        t = Truth.load(m.truth_dir)
        assert t.params["minutes"] == 0.5
        assert t.counts["n_probes"] == len(m.probes)
        if m.probes:
            assert t.counts["n_units"] == 3 * len(m.probes)
        task = next(s for s in t.scripts if s["script_name"] == "DynamicRouting1")
        assert task["n_frames"] >= 0.5 * 3600  # at least the 30 s asked for, at 60 Hz
    with pytest.raises(ParameterError, match="probes"):
        make_population(tmp_path / "x", 2, probes=6)
    with pytest.raises(ParameterError, match="minutes"):
        make_population(tmp_path / "x", 2, minutes=0)
