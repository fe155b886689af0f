"""Fault injection: damaged raw files never give an ``ok`` or ``empty`` catalog row.

Two synthetic sessions are generated once (2 probes with sorting; behavior only), converted
clean as the baseline (checked against the generator's truth), then copied and damaged one way
per case. For every case, EVERY component's status, row count and error type are asserted:
components named in the case have the predicted status and error, all others equal the clean
baseline; partial/failed parts are named with typed errors.
"""

from __future__ import annotations

import glob
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from npc_frames import cache, synth
from npc_frames.components import COMPONENTS

REC = "ecephys/ecephys_clipped/Record Node 102/experiment1/recording1"
SORT_A = "sorting/Neuropix-PXI-100.ProbeA-AP"
SORT_B = "sorting/Neuropix-PXI-100.ProbeB-AP"
EPHYS = (
    "devices",
    "electrodes",
    "electrode_groups",
    "units",
    "spike_amplitudes",
    "unit_waveforms",
)
#: the components read from the sortings in one pass (same parts, same failures)
SORTING_COMPONENTS = ("units", "spike_amplitudes", "unit_waveforms")
#: components built from every stim file: one stim file without timing makes them partial
ALL_STIM = ("epochs", "rewards", "running_speed", "sessions", "qc", "qc_timing")
#: components built from the task (DynamicRouting1) file only
TASK = ("trials", "performance", "quiescent_violations")
#: the sync line of the vertical-sync pulses and of the ephys barcodes (sync file bit numbers)
VSYNC_BIT, BARCODE_BIT = 2, 0


@dataclass(frozen=True)
class Expect:
    """A component's predicted catalog row: status, error type, rows (None: rule by status)."""

    status: str
    error_type: str | None = None
    rows: int | None = None


@dataclass(frozen=True)
class Case:
    name: str
    base: str  # "ephys" | "behavior"
    damage: Callable[[Path], None]
    expect: dict[str, Expect]
    #: (component, part) -> (status, error type)
    parts: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ damage
def _one(d: Path, pattern: str) -> Path:
    found = sorted(glob.glob(str(d / pattern)))
    assert len(found) == 1, (pattern, found)
    return Path(found[0])


def _truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _truncator(path: str) -> Callable[[Path], None]:
    return lambda d: _truncate(Path(path))


def _clear_sync_line(d: Path, bit: int) -> None:
    with h5py.File(_one(d, "behavior/2023*.h5"), "r+") as f:
        data = f["data"][()]
        data[:, 1] &= ~np.uint32(1 << bit)
        f["data"][...] = data


def _short_spike_times(folder: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        p = d / folder / "spike_times.npy"
        np.save(p, np.load(p)[:100])

    return damage


def _both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        for fn in damages:
            fn(d)

    return damage


def _stim(script: str, fraction: float = 0.2) -> Callable[[Path], None]:
    return lambda d: _truncate(_one(d, f"behavior/{script}_*.hdf5"), fraction)


def _task_file(d: Path) -> str:
    return _one(d, "behavior/DynamicRouting1_*.hdf5").name


def _task_damage(fail: str = "AlignmentError") -> dict[str, Expect]:
    """Predicted rows when the task file has no timing (truncated, empty, cleared vsync)."""
    return {
        **{c: Expect("failed", fail) for c in TASK},
        "rewards": Expect("failed", "AlignmentError"),
        "running_speed": Expect("partial", "AlignmentError"),
        "epochs": Expect("partial", "AlignmentError"),
        "sessions": Expect("partial", "AlignmentError"),
        # sync-based QC: the task's blocks and latencies are missing
        "qc": Expect("partial", "AlignmentError"),
        "qc_timing": Expect("partial", "AlignmentError"),
    }


SYNC_FAILS = (
    "aud_rf_mapping",
    "epochs",
    "licks",
    "luminance_test",
    "optotagging",
    "performance",
    "quiescent_violations",
    "rewards",
    "running_speed",
    "sessions",
    "trials",
    "units",
    "spike_amplitudes",
    "unit_waveforms",
    "video_frame_times",
    "vis_rf_mapping",
    "qc",
    "qc_timing",
)


def _sortings(expect: Expect) -> dict[str, Expect]:
    """Return the same prediction for units, spike_amplitudes and unit_waveforms: the amplitudes
    and templates are read with the units' sortings, so what breaks one probe's units breaks
    them too."""
    return {c: expect for c in SORTING_COMPONENTS}


def _sorting_parts(found: dict[str, tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Return the part predictions `found` (part -> (status, error type)) for units,
    spike_amplitudes and unit_waveforms alike (a failed, absent or unannotated probe is the same
    part of all three)."""
    return {(c, part): v for c in SORTING_COMPONENTS for part, v in found.items()}


def _remove_templates(*sortings: str) -> Callable[[Path], None]:
    """Return a damage removing the average templates (and the raw ones) of `sortings`."""

    def damage(d: Path) -> None:
        for s in sortings:
            for name in ("templates_average.npy", "templates.npy"):
                (d / s / name).unlink(missing_ok=True)

    return damage


CASES: list[Case] = [
    Case("clean_ephys", "ephys", lambda d: None, {}),
    Case(
        "probeB_spike_times_shorter_than_clusters",
        "ephys",
        _short_spike_times(SORT_B),
        _sortings(Expect("partial", "BadFormatError", rows=4)),
        _sorting_parts({"probeB": ("failed", "BadFormatError"), "probeA": ("ok", "")}),
    ),
    Case(
        "probeB_spike_times_empty_file",
        "ephys",
        lambda d: (d / SORT_B / "spike_times.npy").write_bytes(b""),
        _sortings(Expect("partial", "BadFormatError", rows=4)),
        _sorting_parts({"probeB": ("failed", "BadFormatError")}),
    ),
    Case(
        "probeB_amplitudes_truncated",
        "ephys",
        lambda d: _truncate(d / SORT_B / "amplitudes.npy"),
        _sortings(Expect("partial", "BadFormatError", rows=4)),
        _sorting_parts({"probeB": ("failed", "BadFormatError")}),
    ),
    Case(
        "probeB_amplitudes_removed_is_absent_part",
        "ephys",
        lambda d: (d / SORT_B / "amplitudes.npy").unlink(),
        # a sorting without per-spike amplitudes is not damaged: units are complete, and
        # spike_amplitudes holds probe A's and names probe B as absent
        {"spike_amplitudes": Expect("ok", None, rows=4), "unit_waveforms": Expect("ok", None, 8)},
        {
            ("units", "probeB"): ("ok", ""),
            ("spike_amplitudes", "probeA"): ("ok", ""),
            ("spike_amplitudes", "probeB"): ("absent", "AbsentModalityError"),
        },
    ),
    Case(
        "no_sorting_has_amplitudes_is_absent",
        "ephys",
        lambda d: [(d / s / "amplitudes.npy").unlink() for s in (SORT_A, SORT_B)] and None,
        {
            "spike_amplitudes": Expect("absent", "AbsentModalityError", rows=0),
            "unit_waveforms": Expect("ok", None, rows=8),
        },
        {("units", "probeA"): ("ok", ""), ("units", "probeB"): ("ok", "")},
    ),
    Case(
        "probeB_templates_removed_is_absent_part",
        "ephys",
        _remove_templates(SORT_B),
        # a sorting without templates is not damaged: units (without peak channel and CCF for
        # probe B) and amplitudes are complete; unit_waveforms holds probe A's and names
        # probe B as absent
        {
            "units": Expect("ok", None, rows=8),
            "spike_amplitudes": Expect("ok", None, rows=8),
            "unit_waveforms": Expect("ok", None, rows=4),
        },
        {
            ("units", "probeB"): ("ok", ""),
            ("unit_waveforms", "probeA"): ("ok", ""),
            ("unit_waveforms", "probeB"): ("absent", "AbsentModalityError"),
        },
    ),
    Case(
        "no_sorting_has_templates_is_absent",
        "ephys",
        _remove_templates(SORT_A, SORT_B),
        {
            "units": Expect("ok", None, rows=8),
            "spike_amplitudes": Expect("ok", None, rows=8),
            "unit_waveforms": Expect("absent", "AbsentModalityError", rows=0),
        },
        {("units", "probeA"): ("ok", ""), ("units", "probeB"): ("ok", "")},
    ),
    Case(
        "probeB_quality_metrics_truncated",
        "ephys",
        lambda d: _truncate(d / SORT_B / "quality_metrics.csv", 0.3),
        _sortings(Expect("partial", "InconsistentDataError", rows=4)),
        _sorting_parts({"probeB": ("failed", "InconsistentDataError")}),
    ),
    Case(
        "both_probes_spike_times_short",
        "ephys",
        lambda d: _both(_short_spike_times(SORT_A), _short_spike_times(SORT_B))(d),
        _sortings(Expect("failed", "BadFormatError")),
        _sorting_parts(
            {"probeA": ("failed", "BadFormatError"), "probeB": ("failed", "BadFormatError")},
        ),
    ),
    Case(
        "probeB_sorting_removed_is_absent_part",
        "ephys",
        lambda d: shutil.rmtree(d / SORT_B),
        {  # a recorded probe missing from the sorting output is skipped everywhere
            "devices": Expect("ok", None, rows=1),
            "electrode_groups": Expect("ok", None, rows=1),
            "electrodes": Expect("ok", None, rows=384),
            **_sortings(Expect("ok", None, rows=4)),
            "manipulator_positions": Expect("ok", None, rows=1),
        },
        {
            ("units", "probeB"): ("absent", "AbsentModalityError"),
            ("spike_amplitudes", "probeB"): ("absent", "AbsentModalityError"),
            ("unit_waveforms", "probeB"): ("absent", "AbsentModalityError"),
            ("devices", "probeB"): ("absent", "AbsentModalityError"),
            ("electrode_groups", "probeB"): ("absent", "AbsentModalityError"),
            ("electrodes", "probeB"): ("absent", "AbsentModalityError"),
        },
    ),
    Case(
        "probeA_ttl_events_truncated",
        "ephys",
        lambda d: _truncate(
            d / REC / "events/Neuropix-PXI-100.ProbeA-AP/TTL/sample_numbers.npy", 0.5
        ),
        _sortings(Expect("partial", "BadFormatError", rows=4)),
        _sorting_parts({"probeA": ("failed", "BadFormatError"), "probeB": ("ok", "")}),
    ),
    Case(
        "probeA_ttl_events_missing",
        "ephys",
        lambda d: shutil.rmtree(d / REC / "events/Neuropix-PXI-100.ProbeA-AP"),
        _sortings(Expect("partial", "MissingFileError", rows=4)),
        _sorting_parts({"probeA": ("failed", "MissingFileError")}),
    ),
    Case(
        "structure_oebin_truncated",
        "ephys",
        lambda d: _truncate(d / REC / "structure.oebin"),
        {
            "devices": Expect("failed", "BadFormatError"),
            "electrode_groups": Expect("failed", "BadFormatError"),
            "electrodes": Expect("failed", "BadFormatError"),
            **_sortings(Expect("failed", "MissingFileError")),
            # probe serials come from the same record node
            "manipulator_positions": Expect("partial", "BadFormatError", rows=2),
        },
        {
            ("devices", "Record Node 102"): ("failed", "BadFormatError"),
            ("electrodes", "Record Node 102"): ("failed", "BadFormatError"),
            ("units", "probeA"): ("failed", "MissingFileError"),
            ("spike_amplitudes", "probeA"): ("failed", "MissingFileError"),
            ("unit_waveforms", "probeA"): ("failed", "MissingFileError"),
        },
    ),
    Case(
        "settings_xml_of_every_node_truncated",
        "ephys",
        lambda d: (
            [_truncate(Path(p)) for p in glob.glob(str(d / "ecephys/*/*/settings.xml"))] and None
        ),
        {
            "devices": Expect("failed", "BadFormatError"),
            "electrode_groups": Expect("failed", "BadFormatError"),
            "electrodes": Expect("failed", "BadFormatError"),
            **_sortings(Expect("partial", "BadFormatError", rows=8)),
            "manipulator_positions": Expect("failed", "BadFormatError"),
        },
        _sorting_parts({"electrodes": ("failed", "BadFormatError")}),
    ),
    Case(
        "settings_xml_of_one_node_truncated",
        "ephys",
        lambda d: _truncate(d / "ecephys/ecephys_clipped/Record Node 102/settings.xml"),
        {
            "devices": Expect("partial", "BadFormatError", rows=2),
            "electrode_groups": Expect("partial", "BadFormatError", rows=2),
            "electrodes": Expect("partial", "BadFormatError", rows=768),
            **_sortings(Expect("partial", "BadFormatError", rows=8)),
            "manipulator_positions": Expect("partial", "BadFormatError", rows=2),
        },
        {("devices", "Record Node 102/settings.xml"): ("failed", "BadFormatError")},
    ),
    Case(
        "task_file_truncated",
        "ephys",
        _stim("DynamicRouting1"),
        {
            **_task_damage(),
            "units": Expect("partial", "AlignmentError", rows=8),
            "spike_amplitudes": Expect("ok", None, rows=8),
            "unit_waveforms": Expect("ok", None, rows=8),
        },
        # activity_drift needs the trials; the amplitudes and templates do not
        {("units", "activity_drift"): ("failed", "AlignmentError")},
    ),
    Case(
        "task_file_zero_bytes",
        "ephys",
        lambda d: _one(d, "behavior/DynamicRouting1_*.hdf5").write_bytes(b""),
        {**_task_damage(), "units": Expect("partial", "AlignmentError", rows=8)},
    ),
    Case(
        "rf_mapping_file_truncated",
        "ephys",
        _stim("RFMapping", 0.5),
        {
            "vis_rf_mapping": Expect("failed", "AlignmentError"),
            "aud_rf_mapping": Expect("failed", "AlignmentError"),
            **{c: Expect("partial", "AlignmentError") for c in ALL_STIM},
        },
    ),
    Case(
        "spontaneous_file_truncated",
        "ephys",
        _stim("Spontaneous", 0.5),
        {c: Expect("partial", "AlignmentError") for c in ALL_STIM},
    ),
    Case(
        "sync_file_truncated",
        "ephys",
        lambda d: _truncate(_one(d, "behavior/2023*.h5")),
        {c: Expect("failed", "BadFormatError") for c in SYNC_FAILS},
    ),
    Case(
        "vsync_line_cleared",
        "ephys",
        lambda d: _clear_sync_line(d, VSYNC_BIT),
        {
            **_task_damage(),
            "rewards": Expect("failed", "AlignmentError"),
            "running_speed": Expect("failed", "AlignmentError"),
            "epochs": Expect("failed", "AlignmentError"),
            "vis_rf_mapping": Expect("failed", "AlignmentError"),
            "aud_rf_mapping": Expect("failed", "AlignmentError"),
            "units": Expect("partial", "AlignmentError", rows=8),
            "qc": Expect("failed", "AlignmentError"),
            "qc_timing": Expect("failed", "AlignmentError"),
        },
    ),
    Case(
        "barcode_line_cleared",
        "ephys",
        lambda d: _clear_sync_line(d, BARCODE_BIT),
        _sortings(Expect("failed", "AlignmentError")),
        _sorting_parts(
            {"probeA": ("failed", "AlignmentError"), "probeB": ("failed", "AlignmentError")},
        ),
    ),
    Case(
        "video_sidecar_truncated",
        "ephys",
        lambda d: _truncate(_one(d, "behavior_videos/Eye_*.json")),
        # the other cameras' rows are written; the eye camera is the failed part
        {"video_frame_times": Expect("partial", "BadFormatError")},
        {("video_frame_times", "eye_camera"): ("failed", "BadFormatError")},
    ),
    Case(
        "subject_json_corrupt",
        "ephys",
        lambda d: (d / "subject.json").write_text("{not json"),
        {
            "subjects": Expect("failed", "BadFormatError"),
            "epochs": Expect("failed", "BadFormatError"),
        },
    ),
    Case(
        "one_probe_broken_and_task_truncated",
        "ephys",
        _both(_short_spike_times(SORT_B), _stim("DynamicRouting1")),
        {
            **_task_damage(),
            "units": Expect("partial", "AlignmentError", rows=4),
            "spike_amplitudes": Expect("partial", "BadFormatError", rows=4),
            "unit_waveforms": Expect("partial", "BadFormatError", rows=4),
        },
        {
            ("units", "probeB"): ("failed", "BadFormatError"),
            ("spike_amplitudes", "probeB"): ("failed", "BadFormatError"),
            ("unit_waveforms", "probeB"): ("failed", "BadFormatError"),
            ("units", "activity_drift"): ("failed", "AlignmentError"),
        },
    ),
    Case("clean_behavior_only", "behavior", lambda d: None, {}),
    Case(
        "behavior_only_task_truncated",
        "behavior",
        _stim("DynamicRouting1"),
        _task_damage(),
    ),
    Case(
        "behavior_only_rf_mapping_truncated",
        "behavior",
        _stim("RFMapping", 0.5),
        {
            "vis_rf_mapping": Expect("failed", "AlignmentError"),
            "aud_rf_mapping": Expect("failed", "AlignmentError"),
            **{c: Expect("partial", "AlignmentError") for c in ALL_STIM},
        },
    ),
    Case(
        "behavior_only_sync_truncated",
        "behavior",
        lambda d: _truncate(_one(d, "behavior/2023*.h5")),
        {c: Expect("failed", "BadFormatError") for c in SYNC_FAILS if c not in SORTING_COMPONENTS},
    ),
    Case(
        "behavior_only_vsync_cleared",
        "behavior",
        lambda d: _clear_sync_line(d, VSYNC_BIT),
        {
            **_task_damage(),
            "rewards": Expect("failed", "AlignmentError"),
            "running_speed": Expect("failed", "AlignmentError"),
            "epochs": Expect("failed", "AlignmentError"),
            "vis_rf_mapping": Expect("failed", "AlignmentError"),
            "aud_rf_mapping": Expect("failed", "AlignmentError"),
            "qc": Expect("failed", "AlignmentError"),
            "qc_timing": Expect("failed", "AlignmentError"),
        },
    ),
]


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fault_bases")
    ephys = synth.make_session(
        root, seed=3, minutes=2.0, n_probes=2, units_per_probe=4, clip_seconds=0.2
    )
    behavior = synth.make_session(root, seed=4, minutes=2.0, ephys=False, date="2023-09-02")
    return {"ephys": ephys, "behavior": behavior}


def _convert(raw: Path, cache_dir: Path) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cache.convert([str(raw)], cache_dir, progress=False)


@pytest.fixture(scope="module")
def baselines(bases: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = {}
    for name, truth in bases.items():
        run = _convert(Path(truth.raw_path), tmp_path_factory.mktemp(f"baseline_{name}"))
        comp = run.filter(pl.col("part").is_null())
        out[name] = {r["component"]: r for r in comp.iter_rows(named=True)}
    return out


def test_clean_baselines_match_truth(bases, baselines):
    ephys, behavior = baselines["ephys"], baselines["behavior"]
    truth = bases["ephys"].ephys
    units_truth = len(
        truth.unit_cluster_id if hasattr(truth, "unit_cluster_id") else truth["unit_cluster_id"]
    )
    assert ephys["units"]["rows"] == units_truth == 8
    assert ephys["spike_amplitudes"]["rows"] == 8  # every synthetic sorting has amplitudes
    assert ephys["spike_amplitudes"]["status"] == "ok"
    assert ephys["unit_waveforms"]["rows"] == 8  # every synthetic sorting has templates
    assert ephys["unit_waveforms"]["status"] == "ok"
    assert ephys["devices"]["rows"] == ephys["electrode_groups"]["rows"] == 2
    assert ephys["electrodes"]["rows"] == 2 * 384
    # a clean session: nothing damaged; what it lacks (no RF mapping file, no derived video
    # asset ...) is absent with the reason, never empty
    assert {r["status"] for r in ephys.values()} <= {"ok", "empty", "absent"}
    for row in (*ephys.values(), *behavior.values()):
        if row["status"] == "absent":
            assert row["rows"] == 0 and row["error_type"] == "AbsentModalityError", row
    for name in EPHYS:  # a behavior-only session has no ephys: absent, with the reason
        assert behavior[name]["status"] == "absent"
        assert behavior[name]["error_type"] == "AbsentModalityError"
        assert "no Open Ephys record nodes" in behavior[name]["error"] or name in SORTING_COMPONENTS
    # no record nodes: no stage log to assign to probes either
    assert behavior["manipulator_positions"]["status"] == "absent"
    assert {
        r["status"] for n, r in behavior.items() if n not in (*EPHYS, "manipulator_positions")
    } <= {"ok", "empty", "absent"}
    assert set(ephys) == set(behavior) == set(COMPONENTS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_statuses(case: Case, bases, baselines, tmp_path):
    truth = bases[case.base]
    base = baselines[case.base]
    raw = tmp_path / Path(truth.raw_path).name
    shutil.copytree(truth.raw_path, raw)
    case.damage(raw)
    damaged = _changed_files(Path(truth.raw_path), raw)
    run = _convert(raw, tmp_path / "cache")
    assert run.filter(pl.col("component") == "*").is_empty()
    comp = {r["component"]: r for r in run.filter(pl.col("part").is_null()).iter_rows(named=True)}
    assert set(comp) == set(COMPONENTS)
    for name, row in comp.items():
        exp = case.expect.get(name)
        got = (row["status"], row["rows"], row["error_type"])
        if exp is None:  # untouched by the fault: exactly the clean baseline
            want = base[name]
            assert got == (want["status"], want["rows"], want["error_type"]), name
            continue
        assert row["status"] == exp.status, (name, got, row["error"])
        assert row["error_type"] == exp.error_type, (name, got, row["error"])
        if exp.rows is not None:
            assert row["rows"] == exp.rows, name
        elif exp.status == "partial":
            assert 0 < row["rows"] <= base[name]["rows"], name
        elif exp.status == "failed":
            assert row["rows"] == 0, name
        if exp.status in ("failed", "partial"):
            assert row["error"] and row["error_location"], name
    parts = {
        (r["component"], r["part"]): r
        for r in run.filter(pl.col("part").is_not_null()).iter_rows(named=True)
    }
    for key, (status, error_type) in case.parts.items():
        assert key in parts, (key, sorted(parts))
        assert parts[key]["status"] == status, (key, parts[key]["error"])
        assert (parts[key]["error_type"] or "") == error_type, key
    for key, r in parts.items():  # every failed part is named with a typed error and a location
        if r["status"] == "failed":
            assert r["error_type"] and r["error"] and r["error_location"], key
        if key[0] in case.expect and r["status"] == "failed":
            assert comp[key[0]]["status"] in ("partial", "failed"), key
    # complete fingerprints: a component whose outcome changed had read a damaged file (a removed
    # file changes every fingerprint through the session's file listing, which probe selection
    # reads without opening the files)
    removed = {p for p in damaged if not (raw / p).exists()}
    for name, row in comp.items():
        if removed:
            break
        want = base[name]
        if (row["status"], row["rows"], row["error_type"]) != (
            want["status"],
            want["rows"],
            want["error_type"],
        ):
            assert set(want["inputs"]) & damaged, (name, sorted(damaged))
    # the written files agree with the catalog: no file for failed/absent, rows for the rest
    for name, row in comp.items():
        path = tmp_path / "cache" / name / f"session_id={row['session_id']}" / "data.parquet"
        if row["status"] in ("failed", "absent"):
            assert not path.exists(), name
        else:
            assert pl.read_parquet(path).height == row["rows"], name
    status = cache.session_status(row["session_id"], tmp_path / "cache")
    bad = {c for c, r in comp.items() if r["status"] in ("partial", "failed")}
    assert status.is_complete == (not bad)
    assert {p.split(":")[0].split("/")[0] for p in status.problems} == bad


def _changed_files(base: Path, copy: Path) -> set[str]:
    """Return the relative paths of files that differ between `base` and `copy` (or are gone)."""
    out = set()
    for p in base.rglob("*"):
        if p.is_file():
            rel = str(p.relative_to(base))
            q = copy / rel
            if (
                not q.is_file()
                or q.stat().st_size != p.stat().st_size
                or q.read_bytes() != p.read_bytes()
            ):
                out.add(rel)
    return out


#: files of different readers whose touch must recompute exactly the components that read them
TOUCHED = (
    REC + "/structure.oebin",
    "ecephys/ecephys_clipped/Record Node 102/settings.xml",
    REC + "/events/Neuropix-PXI-100.ProbeA-AP/TTL/sample_numbers.npy",
    SORT_B + "/spike_times.npy",
    "behavior/DynamicRouting1_*.hdf5",
    "behavior/RFMapping_*.hdf5",
    "behavior/2023*.h5",
    "behavior_videos/Eye_*.json",
    "subject.json",
)


def test_touching_a_file_recomputes_exactly_the_components_that_read_it(bases, tmp_path):
    truth = bases["ephys"]
    raw = tmp_path / Path(truth.raw_path).name
    shutil.copytree(truth.raw_path, raw)
    first = _convert(raw, tmp_path / "c").filter(pl.col("part").is_null())
    inputs = {r["component"]: set(r["inputs"]) for r in first.iter_rows(named=True)}
    status = {r["component"]: r["status"] for r in first.iter_rows(named=True)}
    # every component that wrote rows read something (an empty one may have found no input:
    # its fingerprint still holds the names of all files, so an added input recomputes it)
    unread = [c for c in COMPONENTS if status[c] == "ok"]
    assert all(inputs[c] for c in unread), [c for c in unread if not inputs[c]]
    for k, pattern in enumerate(TOUCHED):
        path = _one(raw, pattern)
        rel = str(path.relative_to(raw))
        readers = {c for c, files in inputs.items() if rel in files}
        assert readers, rel  # every one of these files is read by some component
        stamp = time.time() + 10 * (k + 1)
        os.utime(path, (stamp, stamp))  # same bytes, new modification time
        run = _convert(raw, tmp_path / "c").filter(pl.col("part").is_null())
        recomputed = set(run.filter(~pl.col("skipped"))["component"])
        assert recomputed == readers, (rel, sorted(recomputed ^ readers))
        changed = {r["component"]: r["fingerprint"] for r in run.iter_rows(named=True)}
        assert all(
            changed[c] != f
            for c, f in zip(first["component"], first["fingerprint"], strict=True)
            if c in readers
        )
        first = run


def test_repairing_a_file_recomputes_and_clears_the_error(bases, tmp_path):
    truth = bases["ephys"]
    raw = tmp_path / Path(truth.raw_path).name
    shutil.copytree(truth.raw_path, raw)
    oebin = raw / REC / "structure.oebin"
    good = oebin.read_bytes()
    _truncate(oebin)
    first = _convert(raw, tmp_path / "c").filter(pl.col("part").is_null())
    assert first.filter(pl.col("component") == "devices")["status"].item() == "failed"
    oebin.write_bytes(good)  # the repair: structure.oebin is part of the fingerprint
    second = _convert(raw, tmp_path / "c").filter(pl.col("part").is_null())
    # exactly the components that read structure.oebin are recomputed
    # manipulator_positions reads settings.xml too (probe serials)
    # so do the sync-based QC components (the NI-DAQ stream is described there)
    assert set(second.filter(~pl.col("skipped"))["component"]) == {
        *EPHYS,
        "manipulator_positions",
        "qc",
        "qc_timing",
    }
    # what the session lacks (derived video assets, RF mapping ...) stays absent; the repaired
    # components are ok again
    assert set(second["status"]) <= {"ok", "empty", "absent"}
    repaired = second.filter(pl.col("component").is_in([*EPHYS, "manipulator_positions"]))
    assert set(repaired["status"]) == {"ok"}
    cat = cache.read_catalog(tmp_path / "c")
    assert cat.filter(pl.col("status").is_in(["failed", "partial"])).is_empty()
    assert os.path.exists(tmp_path / "c" / "devices")
