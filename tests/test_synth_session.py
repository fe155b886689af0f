"""End-to-end synthetic sessions: layout (FORMATS §1.2), sync vs truth, MVR json rules (§12), truth I/O.

The task simulator (``synth.task``) and the ephys writer (``synth.ephys``) are written in parallel by
others; while either module is missing, a minimal stand-in with the same signature is installed for
this module's tests (tests that need the real output are skipped then).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import importlib.util
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from npc_frames.errors import ParameterError
from npc_frames.synth import Truth, make_session
from npc_frames.synth.sync import LINE_LABELS, quantize

npc_sync = pytest.importorskip("npc_sync")

HAS_TASK = importlib.util.find_spec("npc_frames.synth.task") is not None
HAS_EPHYS = importlib.util.find_spec("npc_frames.synth.ephys") is not None
needs_task = pytest.mark.skipif(not HAS_TASK, reason="synth.task not landed yet (stand-in in use)")
needs_ephys = pytest.mark.skipif(
    not HAS_EPHYS, reason="synth.ephys not landed yet (stand-in in use)"
)

INVALID = [{"start_time": 40.0, "stop_time": 45.5, "reason": "lick sensor flooded"}]


# ------------------------------------------------------------------------------------ stand-ins


@dataclasses.dataclass
class _Run:
    script_name: str
    path: Path
    start_time: datetime.datetime
    flip: np.ndarray
    vsync_rise: np.ndarray
    display: np.ndarray
    lines: dict[int, tuple[np.ndarray, np.ndarray]]
    truth: dict[str, Any]


def _standin_simulate_scripts(
    behavior_dir, *, rng, subject, sync_start, first_start_s, task_minutes, scripts, **_
):
    runs, t = [], first_start_s
    for name in scripts:
        n = int((task_minutes if name == "DynamicRouting1" else 0.2) * 1800) * 2  # diode ends low
        flip = quantize(t + np.arange(n) / 60.0)
        rise = quantize(flip - 0.004)
        diode = quantize(flip + 0.0195)
        start = (sync_start + datetime.timedelta(seconds=t)).replace(microsecond=0)
        path = Path(behavior_dir) / f"{name}_{subject}_{start:%Y%m%d_%H%M%S}.hdf5"
        with h5py.File(path, "w") as f:
            f.create_dataset("startTime", data=f"{start:%Y%m%d_%H%M%S}")
            f.create_dataset("frameIntervals", data=np.diff(flip))
        lines = {
            2: (rise, flip),
            4: (diode[0::2], diode[1::2]),
            5: (quantize([rise[0] - 1e-4]), quantize([flip[-1] + 1e-4])),
        }
        runs.append(_Run(name, path, start, flip, rise, diode + 0.008, lines, {"n_trials": 0}))
        t = float(flip[-1]) + float(rng.uniform(5, 10))
    return runs


@dataclasses.dataclass
class _EphysTruth:
    probe_letters: list[str]
    n_units: int
    n_spikes: int
    spike_times: list[np.ndarray]


def _standin_make_ephys(root, *, rng, probe_letters, units_per_probe, **_):
    node = Path(root) / "ecephys" / "ecephys_clipped" / "Record Node 101"
    node.mkdir(parents=True)
    (Path(root) / "sorting").mkdir()
    n = len(probe_letters) * units_per_probe
    spikes = [np.sort(rng.uniform(0, 100, 50)) for _ in range(n)]
    return _EphysTruth(list(probe_letters), n, 50 * n, spikes)


@pytest.fixture(scope="module", autouse=True)
def _standins():
    with pytest.MonkeyPatch.context() as mp:
        if not HAS_TASK:
            mp.setitem(
                sys.modules,
                "npc_frames.synth.task",
                types.SimpleNamespace(simulate_scripts=_standin_simulate_scripts),
            )
        if not HAS_EPHYS:
            mp.setitem(
                sys.modules,
                "npc_frames.synth.ephys",
                types.SimpleNamespace(make_ephys=_standin_make_ephys),
            )
        yield


@pytest.fixture(scope="module")
def session(tmp_path_factory, _standins) -> Truth:
    out = tmp_path_factory.mktemp("synth_session")
    return make_session(
        out,
        seed=5,
        minutes=1.0,
        n_probes=1,
        units_per_probe=3,
        invalid_times=INVALID,
        clip_seconds=0.1,
    )


@pytest.fixture(scope="module")
def sync(session):
    (path,) = Path(session.raw_path, "behavior").glob("*.h5")
    ds = npc_sync.SyncDataset(path)
    yield ds
    ds.close()


# ------------------------------------------------------------------------------------ layout §1.2


def test_folder_names_follow_the_aind_asset_layout(session):
    raw = Path(session.raw_path)
    subject, date = session.subject, session.date
    assert re.fullmatch(rf"ecephys_{subject}_{date:%Y-%m-%d}_12-33-31", raw.name)
    assert session.session_id == f"{subject}_{date:%Y-%m-%d}"
    assert 100_000 <= subject <= 999_999
    assert Path(session.truth_dir) == raw.parent / f"{raw.name}.truth"
    assert (Path(session.truth_dir) / "truth.json").is_file()
    for name in ("subject.json", "data_description.json", "session.json", "procedures.json"):
        assert (raw / name).is_file(), name
    assert (raw / "invalid_times.yaml").is_file()
    assert (raw / "behavior" / "debug.log").is_file()
    (sync_file,) = (raw / "behavior").glob("*.h5")
    assert sync_file.name == f"{session.sync_start:%Y%m%dT%H%M%S}.h5"
    assert sync_file.stem.startswith(f"{date:%Y%m%d}T")
    videos = sorted(p.name for p in (raw / "behavior_videos").iterdir())
    assert len(videos) == 6
    for label in ("Behavior", "Eye", "Face"):
        (mp4,) = (raw / "behavior_videos").glob(f"{label}_*.mp4")
        assert re.fullmatch(rf"{label}_\d{{8}}T\d{{6}}\.mp4", mp4.name)
        assert mp4.with_suffix(".json").is_file()
    assert list((raw / "ecephys" / "ecephys_clipped").glob("Record Node *"))
    assert (raw / "sorting").is_dir()


@needs_task
def test_stim_files_are_named_script_subject_date_time(session):
    behavior = Path(session.raw_path) / "behavior"
    names = sorted(p.name for p in behavior.glob("*.hdf5"))
    assert len(names) == len(session.scripts) == 3
    for s in session.scripts:
        p = Path(s["path"])
        assert p.parent == behavior
        assert re.fullmatch(
            rf"{s['script_name']}_{session.subject}_{session.date:%Y%m%d}_\d{{6}}\.hdf5", p.name
        )


@needs_task
def test_stim_start_time_lies_within_the_sync_window_near_its_first_vsync(session):
    """§1.2/§14: startTime ≥ sync start, within ~1 s of sync start + first vsync; file fits in sync."""
    sync_stop = session.sync_start + datetime.timedelta(seconds=session.sync_duration_s)
    for s in session.scripts:
        with h5py.File(s["path"]) as f:
            start = datetime.datetime.strptime(f["startTime"][()].decode(), "%Y%m%d_%H%M%S")
            total = float(np.sum(f["frameIntervals"][()]))
            assert f["frameIntervals"].shape[0] == s["n_frames"] - 1
        assert start == s["start_time"]
        first_vsync = session.sync_start + datetime.timedelta(seconds=float(s["flip"][0]))
        assert abs((first_vsync - start).total_seconds()) < 1.5
        assert start >= session.sync_start.replace(microsecond=0)
        assert start + datetime.timedelta(seconds=total) <= sync_stop


def test_default_scripts_run_in_order(session):
    assert [s["script_name"] for s in session.scripts] == [
        "RFMapping",
        "DynamicRouting1",
        "Spontaneous",
    ]


# ------------------------------------------------------------------------------------ sync vs truth


def test_sync_file_edges_equal_truth_for_every_line(session, sync):
    assert set(session.sync_lines) >= {0, 2, 4, 5, 21, 22, 25, 27, 28, 29}
    for bit in range(32):
        rising = sync.get_rising_edges(bit, units="seconds")
        falling = sync.get_falling_edges(bit, units="seconds")
        if bit in session.sync_lines:
            exp_r, exp_f = session.sync_lines[bit]
        else:
            exp_r = exp_f = np.empty(0)
        np.testing.assert_array_equal(rising, exp_r, err_msg=f"bit {bit} rising")
        np.testing.assert_array_equal(falling, exp_f, err_msg=f"bit {bit} falling")


def test_sync_meta_matches_truth(session, sync):
    with h5py.File(sync.path) as f:
        meta = ast.literal_eval(f["meta"][()].decode())
    assert datetime.datetime.fromisoformat(meta["start_time"]) == session.sync_start
    assert session.sync_start.replace(microsecond=0).time() == datetime.time(12, 33, 31)
    assert meta["total_samples"] == session.sync_total_samples
    assert meta["line_labels"] == list(LINE_LABELS) == list(session.line_labels)
    assert sync.total_seconds == pytest.approx(session.sync_duration_s)


def test_vsync_blocks_match_scripts_frame_counts(session, sync):
    blocks = sync.vsync_times_in_blocks
    assert [b.size for b in blocks] == [s["n_frames"] for s in session.scripts]
    for block, s in zip(blocks, session.scripts):
        np.testing.assert_array_equal(block, s["flip"])


@needs_task
def test_npc_sync_validates_the_file_and_recovers_display_times_within_2_ms(session, sync):
    """The reference reader's own checks (§2.3 validate) and photodiode algorithm (§2.5) accept it."""
    sync.validate(licks=True, audio=True)
    blocks = sync.frame_display_time_blocks
    assert len(blocks) == len(session.scripts)
    for block, s in zip(blocks, session.scripts):
        assert block is not None and block.size == s["n_frames"]
        assert np.nanmax(np.abs(block - np.asarray(s["display"]))) < 0.002


def test_sync_starts_30_to_60_s_before_first_script_and_stops_after_last(session):
    first = min(float(s["flip"][0]) for s in session.scripts)
    last = max(float(s["flip"][-1]) for s in session.scripts)
    assert 30.0 <= first <= 61.0
    assert session.sync_duration_s - last >= 20.0


def test_at_least_two_barcodes_fall_inside_the_ephys_recording(session, sync):
    bc = session.barcodes
    starts = np.asarray(bc["start_times"])
    inside = (starts > bc["recording_start_s"] + 2.0) & (
        starts + 0.52 < bc["recording_stop_s"] - 2.0
    )
    assert inside.sum() >= 2
    assert session.counts["n_barcodes_in_recording"] >= 2
    rising = sync.get_rising_edges("barcode_ephys", units="seconds")
    assert np.isin(starts, rising).all()
    assert starts[0] > 2.0  # first barcode counts only > 2 s after the line starts (§10)


# ------------------------------------------------------------------------------------ video §12


def _parse_lost(report: dict[str, Any]) -> np.ndarray:
    if report["FramesLostCount"] == 0:
        return np.empty(0, dtype=np.int64)
    out: list[int] = []
    for span in report["LostFrames"][0].split(","):
        a, _, b = span.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return np.asarray(out, dtype=np.int64)


CAMERA_LINES = {"Behavior": "beh", "Eye": "eye", "Face": "face"}


@pytest.mark.parametrize("label", ["Behavior", "Eye", "Face"])
def test_mvr_json_follows_the_recording_report_rules(session, sync, label):
    (path,) = (Path(session.raw_path) / "behavior_videos").glob(f"{label}_*.json")
    report = json.loads(path.read_text())["RecordingReport"]
    for key in (
        "CameraLabel",
        "TimeStart",
        "FramesRecorded",
        "FramesLostCount",
        "LostFrames",
        "FPS",
        "CustomInitialExposureTime",
        "FrameID imprint enabled",
        "BarcodeCoordinates",
        "CameraInput",
        "CameraInputCount",
        "CameraID",
        "ExposureTime",
        "CustomInitialNumberOfFrames",
        "CameraGain",
        "ImageDimensions",
        "Codec",
        "MVR Version",
    ):
        assert key in report, key
    assert report["CameraLabel"] == label
    assert isinstance(report["FramesRecorded"], int)
    assert abs(report["FPS"] - 60) <= 0.05
    assert report["TimeStart"].endswith("Z")
    time_start = datetime.datetime.fromisoformat(report["TimeStart"][:-1])
    assert path.stem == f"{label}_{time_start:%Y%m%dT%H%M%S}"
    assert time_start > session.sync_start

    cam = CAMERA_LINES[label]
    exposures = sync.get_rising_edges(f"{cam}_cam_exposing", units="seconds")
    exposure_ends = sync.get_falling_edges(f"{cam}_cam_exposing", units="seconds")
    readouts = sync.get_rising_edges(f"{cam}_cam_frame_readout", units="seconds")
    lost = _parse_lost(report)
    assert report["FramesLostCount"] == lost.size >= 1
    assert lost.size / report["FramesRecorded"] < 0.0005  # QC: < 0.05 % lost
    # every exposure is on sync; the video holds those not lost, plus the metadata frame
    assert exposures.size - lost.size == report["FramesRecorded"]
    assert (
        abs((readouts.size - report["FramesLostCount"] + 1) - (report["FramesRecorded"] + 1)) < 20
    )
    # first exposure within 10 s of TimeStart (npc uses whole seconds)
    assert abs((time_start - session.sync_start).seconds - exposures[0]) < 10
    # fingerprint: mean of first 8 exposures == CustomInitialExposureTime (ms)
    fingerprint = round(float(np.mean(exposure_ends[:8] - exposures[:8])) * 1000)
    assert fingerprint == report["CustomInitialExposureTime"]
    assert round(float(np.median(exposure_ends[8:] - exposures[8:])) * 1000, 1) == pytest.approx(
        report["ExposureTime"], abs=0.02
    )

    # truth: frame times per video frame = NaN + exposures without the lost ones
    truth = session.video[label]
    expected = np.concatenate([[np.nan], np.delete(exposures, lost)])
    np.testing.assert_array_equal(truth["frame_times"], expected)
    assert truth["n_video_frames"] == report["FramesRecorded"] + 1 == len(truth["frame_times"])
    np.testing.assert_array_equal(truth["lost_frames"], lost)


def test_camera_fingerprints_are_distinct(session):
    values = []
    for path in (Path(session.raw_path) / "behavior_videos").glob("*.json"):
        values.append(json.loads(path.read_text())["RecordingReport"]["CustomInitialExposureTime"])
    assert len(set(values)) == 3


def test_exposure_intervals_have_no_outliers_that_split_recordings(sync):
    """npc splits exposure times at |z| > 50; a single continuous recording must not split."""
    for cam in ("beh", "eye", "face"):
        t = sync.get_rising_edges(f"{cam}_cam_exposing", units="seconds")
        iv = np.diff(t)
        z = np.abs(iv - np.median(iv)) / np.std(iv)
        assert z.max() < 50


# ------------------------------------------------------------------------------------ metadata §13


def test_metadata_files_hold_the_truth(session):
    raw = Path(session.raw_path)
    subject = json.loads((raw / "subject.json").read_text())
    md = session.metadata
    assert subject["subject_id"] == str(session.subject)
    assert subject["date_of_birth"] == md.date_of_birth.isoformat()
    assert subject["genotype"] == md.genotype == "wt/wt"
    assert subject["sex"] == md.sex and subject["background_strain"] == md.background_strain
    log = (raw / "behavior" / "debug.log").read_text()
    assert re.findall(r"User\('([^']+)'\)", log) == [md.experimenter]
    doc = yaml.safe_load((raw / "invalid_times.yaml").read_text())
    assert doc["invalid_times"] == INVALID == md.invalid_times
    desc = json.loads((raw / "data_description.json").read_text())
    assert desc["name"] == raw.name and desc["subject_id"] == str(session.subject)


# ------------------------------------------------------------------------------------ truth I/O


def test_truth_round_trips_through_disk_lazily(session):
    loaded = Truth.load(session.truth_dir)
    assert loaded.session_id == session.session_id
    assert loaded.sync_start == session.sync_start
    assert loaded.date == session.date and loaded.subject == session.subject
    assert loaded.counts["n_vsyncs"] == session.counts["n_vsyncs"]
    for bit, (r, f) in session.sync_lines.items():
        lr, lf = loaded.sync_lines[bit]
        np.testing.assert_array_equal(lr, r)
        np.testing.assert_array_equal(lf, f)
    assert sorted(loaded.sync_lines) == sorted(session.sync_lines)
    for a, b in zip(loaded.scripts, session.scripts):
        assert a["script_name"] == b["script_name"] and a.path == b["path"]
        np.testing.assert_array_equal(a["flip"], b["flip"])
        np.testing.assert_array_equal(a["display"], b["display"])
    np.testing.assert_array_equal(
        loaded.video["Eye"]["frame_times"], session.video["Eye"]["frame_times"]
    )
    assert loaded.metadata.experimenter == session.metadata.experimenter
    # big arrays stay out of the json
    assert (Path(session.truth_dir) / "truth.json").stat().st_size < 200_000
    assert isinstance(loaded.sync_lines[27][0], np.memmap)


def test_moved_session_and_truth_resolve_paths_in_their_new_place(session, tmp_path):
    import shutil

    raw, tdir = Path(session.raw_path), Path(session.truth_dir)
    shutil.copytree(raw, tmp_path / raw.name)
    shutil.copytree(tdir, tmp_path / tdir.name)
    moved = Truth.load(tmp_path / tdir.name)
    assert moved.raw_path == str(tmp_path / raw.name)
    for s in moved.scripts:
        assert Path(s["path"]).parent == tmp_path / raw.name / "behavior"
        assert Path(s["path"]).is_file()
    assert Path(moved.video["Face"]["json_path"]).is_file()
    assert str(tmp_path) in moved.video["Face"]["json_path"]
    assert str(raw) not in (tmp_path / tdir.name / "truth.json").read_text().replace(
        f'"raw_path": "{raw}"', ""
    )


def test_truth_load_of_missing_folder_is_a_typed_error(tmp_path):
    from npc_frames.errors import BadFormatError, MissingFileError

    with pytest.raises(MissingFileError) as info:
        Truth.load(tmp_path)
    assert info.value.path.endswith("truth.json")
    (tmp_path / "truth.json").write_text('{"truth_version": 99}')
    with pytest.raises(BadFormatError) as info2:
        Truth.load(tmp_path)
    assert info2.value.field == "truth_version"


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    kw = dict(minutes=0.5, n_probes=1, units_per_probe=2, video=True, clip_seconds=0.1)
    a = make_session(tmp_path / "a", seed=9, **kw)
    b = make_session(tmp_path / "b", seed=9, **kw)
    c = make_session(tmp_path / "c", seed=10, **kw)
    assert Path(a.raw_path).name == Path(b.raw_path).name
    files_a = sorted(p.relative_to(a.raw_path) for p in Path(a.raw_path).rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.raw_path) for p in Path(b.raw_path).rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix in (".h5", ".json", ".npy", ".log", ".yaml"):
            pa, pb = Path(a.raw_path, rel), Path(b.raw_path, rel)
            if rel.suffix == ".h5":
                with h5py.File(pa) as fa, h5py.File(pb) as fb:
                    np.testing.assert_array_equal(fa["data"][()], fb["data"][()])
                    assert fa["meta"][()] == fb["meta"][()]
            else:
                assert pa.read_bytes() == pb.read_bytes(), rel
    assert c.subject != a.subject
    assert not np.array_equal(c.sync_lines[0][0], a.sync_lines[0][0])


def test_turning_video_off_keeps_task_lines_identical(tmp_path):
    kw = dict(seed=4, minutes=0.5, n_probes=1, units_per_probe=2, clip_seconds=0.1)
    with_video = make_session(tmp_path / "v", video=True, **kw)
    without = make_session(tmp_path / "n", video=False, **kw)
    for bit in (0, 2, 4, 5):
        np.testing.assert_array_equal(with_video.sync_lines[bit][1], without.sync_lines[bit][1])
    assert 27 not in without.sync_lines
    assert not (Path(without.raw_path) / "behavior_videos").exists()


# ------------------------------------------------------------------------------------ parameters


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"minutes": 0}, "minutes"),
        ({"minutes": -1.0}, "minutes"),
        ({"minutes": float("nan")}, "minutes"),
        ({"n_probes": 7}, "n_probes"),
        ({"n_probes": -1}, "n_probes"),
        ({"n_probes": 0, "units_per_probe": 4}, "units_per_probe"),
        ({"units_per_probe": -2}, "units_per_probe"),
        ({"date": "2023-13-45"}, "date"),
        ({"date": datetime.date(2015, 1, 1)}, "date"),
        ({"date": datetime.date(datetime.date.today().year + 1, 1, 1)}, "date"),
        ({"subject": 12}, "subject"),
        ({"seed": -1}, "seed"),
        ({"scripts": "DynamicRouting1"}, "scripts"),
        ({"invalid_times": [{"start_time": 5, "stop_time": 1, "reason": "x"}]}, "invalid_times"),
        ({"clip_seconds": 0}, "clip_seconds"),
    ],
)
def test_impossible_parameters_raise_parameter_error(tmp_path, kwargs, field):
    with pytest.raises(ParameterError) as info:
        make_session(tmp_path, **kwargs)
    assert info.value.field == field
    assert info.value.expected


def test_session_without_ephys_or_probes_still_has_barcodes(tmp_path):
    t = make_session(tmp_path, seed=2, minutes=0.5, n_probes=0, units_per_probe=0, video=False)
    assert t.ephys is None and t.counts["n_probes"] == 0
    assert not (Path(t.raw_path) / "ecephys").exists()
    assert t.sync_lines[0][0].size > 0


# ------------------------------------------------------------------------------------ CLI


def test_cli_synth_writes_each_session_and_prints_where(tmp_path, capsys):
    from npc_frames.cli import main

    rc = main(
        [
            *("synth", str(tmp_path), "--sessions", "2", "--seed", "3", "--minutes", "0.3"),
            *("--probes", "0", "--date", "2023-09-10", "--no-video"),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for k, line in enumerate(lines):
        session_id, raw_path, _ = line.split("\t")
        assert session_id.endswith(f"_2023-09-{10 + k}")
        assert Path(raw_path).is_dir() and Path(raw_path).parent == tmp_path
        truth = Truth.load(Path(raw_path).with_name(Path(raw_path).name + ".truth"))
        assert truth.session_id == session_id and truth.params["seed"] == 3 + k


def test_cli_synth_help_describes_every_option(capsys):
    from npc_frames.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["synth", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--sessions",
        "--seed",
        "--minutes",
        "--probes",
        "--units-per-probe",
        "--date",
        "--opto",
    ):
        assert option in text
    synth = parser._subparsers._group_actions[0].choices["synth"]  # type: ignore[union-attr]
    for action in synth._actions:
        assert action.help, action.dest


def test_cli_synth_bad_parameters_exit_2_with_the_field(tmp_path, capsys):
    from npc_frames.cli import main

    assert main(["synth", str(tmp_path), "--minutes", "-2"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "minutes" in err and "expected" in err


# ------------------------------------------------------------------------------------ fixture

FIXTURE = Path(__file__).parents[1] / "data" / "fixtures" / "ecephys_644070_2023-08-31_12-33-31"


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="committed fixture absent")
def test_committed_fixture_sync_file_matches_its_truth():
    truth = Truth.load(FIXTURE.with_name(FIXTURE.name + ".truth"))
    assert truth.raw_path == str(FIXTURE)
    assert truth.session_id == "644070_2023-08-31"
    (path,) = (FIXTURE / "behavior").glob("*.h5")
    with npc_sync.SyncDataset(path) as ds:
        assert ds.start_time == truth.sync_start
        for bit in range(32):
            exp_r, exp_f = truth.sync_lines.get(bit, ((), ()))
            np.testing.assert_array_equal(ds.get_rising_edges(bit, units="seconds"), exp_r)
            np.testing.assert_array_equal(ds.get_falling_edges(bit, units="seconds"), exp_f)
        blocks = ds.vsync_times_in_blocks
    assert [b.size for b in blocks] == [s["n_frames"] for s in truth.scripts]
    for s in truth.scripts:
        assert Path(s["path"]).is_file()


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="committed fixture absent")
def test_committed_fixture_video_json_matches_its_truth():
    truth = Truth.load(FIXTURE.with_name(FIXTURE.name + ".truth"))
    for label, cam in truth.video.items():
        report = json.loads(Path(cam["json_path"]).read_text())["RecordingReport"]
        exposures = np.asarray(truth.sync_lines[cam["exposing_bit"]][0])
        lost = _parse_lost(report)
        np.testing.assert_array_equal(lost, cam["lost_frames"])
        expected = np.concatenate([[np.nan], np.delete(exposures, lost)])
        np.testing.assert_array_equal(cam["frame_times"], expected)
        assert report["FramesRecorded"] + 1 == cam["n_video_frames"], label
    size = sum(p.stat().st_size for p in FIXTURE.parent.rglob("*") if p.is_file())
    assert size < 5_000_000
