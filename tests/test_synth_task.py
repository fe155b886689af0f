"""Tests of the simulated stimulus computer (npc_frames.synth.stimfiles / synth.task).

The stim files are checked with independent readers: plain h5py for the §3.2 serialisation rules,
and the DynamicRoutingTask package's own ``DynRoutData`` for the task file. Consistency between the
files, the sync-line edges and the truth is checked against the FORMATS rules (§2-§8).
"""

from __future__ import annotations

import datetime
import itertools
import math
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from npc_frames.errors import ParameterError
from npc_frames.synth.stimfiles import write_stim_file
from npc_frames.synth.task import ScriptRun, simulate_scripts

SYNC_START = datetime.datetime(2024, 5, 1, 12, 33, 31, 637254)


def _simulate(
    out: Path,
    *,
    minutes: float,
    seed: int = 0,
    opto: bool = True,
    date: datetime.datetime = SYNC_START,
    scripts: tuple[str, ...] = (
        "RFMapping",
        "DynamicRouting1",
        "OptoTagging",
        "Spontaneous",
        "LuminanceTest",
    ),
) -> list[ScriptRun]:
    out.mkdir(parents=True, exist_ok=True)
    return simulate_scripts(
        out,
        rng=np.random.default_rng(seed),
        subject=668755,
        sync_start=date,
        first_start_s=30.0,
        task_minutes=minutes,
        scripts=scripts,
        opto=opto,
    )


def _by_name(runs: list[ScriptRun], name: str) -> ScriptRun:
    return next(r for r in runs if r.script_name == name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[ScriptRun]:
    """A 12-minute session with opto and every script (2-minute blocks, all trial types)."""
    return _simulate(tmp_path_factory.mktemp("task12"), minutes=12.0, seed=3)


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory: pytest.TempPathFactory) -> list[ScriptRun]:
    """A full-length 90-minute session (timed; used for the simulated mouse's rates)."""
    t0 = time.perf_counter()
    out = _simulate(
        tmp_path_factory.mktemp("task90"), minutes=90.0, seed=11, scripts=("DynamicRouting1",)
    )
    print(f"\n90-minute DynamicRouting1 simulated and written in {time.perf_counter() - t0:.2f} s")
    return out


@pytest.fixture(scope="module")
def dr(runs: list[ScriptRun]) -> ScriptRun:
    return _by_name(runs, "DynamicRouting1")


def _read(path: Path, key: str) -> Any:
    with h5py.File(path, "r") as f:
        return f[key][()]


# --------------------------------------------------------------------------------------------
# §3.2 serialisation rules, read back with plain h5py


def test_rule_none_is_nan_float64_scalar(tmp_path: Path) -> None:
    write_stim_file(tmp_path / "a.hdf5", {"x": None})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert f["x"].shape == () and f["x"].dtype == np.float64 and np.isnan(f["x"][()])


def test_rule_dict_is_group_recursively(tmp_path: Path) -> None:
    write_stim_file(tmp_path / "a.hdf5", {"g": {"vis1": [0], "inner": {"s": "x", "n": None}}})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert isinstance(f["g"], h5py.Group) and isinstance(f["g/inner"], h5py.Group)
        assert f["g/vis1"][()].tolist() == [0]
        assert f["g/inner/s"].asstr()[()] == "x" and np.isnan(f["g/inner/n"][()])


def test_rule_str_is_vlen_utf8_scalar(tmp_path: Path) -> None:
    write_stim_file(tmp_path / "a.hdf5", {"s": "stage 5 µ"})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert f["s"].shape == ()
        info = h5py.check_string_dtype(f["s"].dtype)
        assert info is not None and info.encoding == "utf-8" and info.length is None
        assert f["s"][()] == "stage 5 µ".encode()
        assert f["s"].asstr()[()] == "stage 5 µ"


def test_rule_string_list_is_1d_vlen_str(tmp_path: Path) -> None:
    write_stim_file(tmp_path / "a.hdf5", {"l": ["vis1", "sound1", ""], "t": ("a",)})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert h5py.check_string_dtype(f["l"].dtype) is not None and f["l"].shape == (3,)
        assert f["l"].asstr()[()].tolist() == ["vis1", "sound1", ""]
        assert f["t"].asstr()[()].tolist() == ["a"]


def test_rule_nested_string_lists_become_their_repr(tmp_path: Path) -> None:
    write_stim_file(tmp_path / "a.hdf5", {"dev": [["laser_488"], [""], "x"]})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert f["dev"].asstr()[()].tolist() == ["['laser_488']", "['']", "x"]


def test_rule_ragged_sequences_are_vlen_float64(tmp_path: Path) -> None:
    rows = [np.zeros(0), np.arange(3.0), [1, 2]]
    write_stim_file(tmp_path / "a.hdf5", {"r": rows})
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert h5py.check_vlen_dtype(f["r"].dtype) == np.float64
        back = f["r"][()]
        assert [b.tolist() for b in back] == [[], [0.0, 1.0, 2.0], [1.0, 2.0]]


def test_rule_rest_goes_through_create_dataset(tmp_path: Path) -> None:
    write_stim_file(
        tmp_path / "a.hdf5",
        {"i": 3, "b": [True, False], "nan": [1, np.nan], "pairs": [(1, 2), (3, 4)], "e": []},
    )
    with h5py.File(tmp_path / "a.hdf5") as f:
        assert f["i"].dtype == np.int64 and f["i"][()] == 3
        assert f["b"].dtype == np.bool_ and f["b"][()].tolist() == [True, False]
        assert f["nan"].dtype == np.float64 and np.isnan(f["nan"][1])
        assert f["pairs"].shape == (2, 2)
        assert f["e"].shape == (0,) and f["e"].dtype == np.float64


def test_private_keys_skipped_and_file_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "a.hdf5"
    write_stim_file(path, {"old": 1})
    write_stim_file(path, {"_hidden": 1, "new": 2})
    with h5py.File(path) as f:
        assert sorted(f.keys()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["a.hdf5"]  # no temp files left


def test_unserialisable_value_raises_typed_error_naming_key(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as err:
        write_stim_file(tmp_path / "a.hdf5", {"ok": 1, "bad": {"inner": object()}})
    assert err.value.field == "/bad/inner" and "a.hdf5" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="folder"):
        write_stim_file(tmp_path / "nope" / "a.hdf5", {"x": 1})


# --------------------------------------------------------------------------------------------
# the task file through DynamicRoutingTask's own reader


def _dynroutdata(path: Path) -> Any:
    analysis = pytest.importorskip("DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils")
    obj = analysis.DynRoutData()
    with h5py.File(path, "r") as f, np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # npc hands it a dummy path (its file-name regex wants _<6 digits>_) plus the open file
        obj.loadBehavData("DynamicRouting1_000000_dummy.hdf5", h5pyFile=f)
    return obj


def test_dynroutdata_reads_task_file_and_trial_classes_match_truth(dr: ScriptRun) -> None:
    obj = _dynroutdata(dr.path)
    t = {k: np.asarray(v) for k, v in dr.truth["trials"].items()}
    n = dr.truth["n_trials"]
    assert obj.nTrials == n
    assert obj.trialStim.tolist() == t["stim_name"].tolist()
    assert (obj.trialBlock - 1).tolist() == t["block_index"].tolist()
    go_no_auto = t["is_go"] & ~t["is_reward_scheduled"]
    np.testing.assert_array_equal(obj.goTrials, go_no_auto)
    np.testing.assert_array_equal(obj.nogoTrials, t["is_nogo"])
    np.testing.assert_array_equal(obj.hitTrials, t["is_hit"] & go_no_auto)
    np.testing.assert_array_equal(obj.falseAlarmTrials, t["is_false_alarm"])
    np.testing.assert_array_equal(obj.catchTrials, t["is_catch"])
    np.testing.assert_array_equal(obj.catchResponseTrials, t["is_catch"] & t["is_response"])
    np.testing.assert_array_equal(obj.autoRewarded, t["is_noncontingent_reward"])
    np.testing.assert_array_equal(obj.rewardEarned, t["is_contingent_reward"])
    np.testing.assert_array_equal(obj.trialRepeat, t["is_repeat"])
    # every kind of trial occurs in a 12-minute session
    for key in (
        "is_hit",
        "is_miss",
        "is_false_alarm",
        "is_correct_reject",
        "is_catch",
        "is_repeat",
        "is_timeout",
        "is_opto",
    ):
        assert t[key].any(), key
    # running speed: DynRoutData's unfiltered speed equals the truth per frame
    np.testing.assert_allclose(
        obj.runningSpeed,
        np.asarray(dr.truth["running_speed"]["speed"], dtype=float),
        equal_nan=True,
    )
    # opto is detected and normalised by DynRoutData
    assert obj.trialOptoLabel.tolist().count("V1") == int(t["is_opto"].sum())


def test_task_file_has_every_checklist_key(dr: ScriptRun) -> None:
    keys = [
        "rigName",
        "taskVersion",
        "startTime",
        "frameIntervals",
        "trialStartFrame",
        "trialEndFrame",
        "trialStimStartFrame",
        "newBlockAutoRewards",
        "newBlockGoTrials",
        "autoRewardOnsetFrame",
        "trialRepeat",
        "incorrectTrialRepeats",
        "incorrectTimeoutFrames",
        "quiescentFrames",
        "quiescentViolationFrames",
        "responseWindow",
        "trialStim",
        "trialBlock",
        "blockStimRewarded",
        "rewardFrames",
        "rewardSize",
        "trialResponse",
        "trialResponseFrame",
        "trialRewarded",
        "trialAutoRewardScheduled",
        "trialAutoRewarded",
        "lickFrames",
        "visStimContrast",
        "trialVisStimContrast",
        "gratingOri",
        "trialGratingOri",
        "soundVolume",
        "trialSoundVolume",
        "trialVisStimFrames",
        "postResponseWindowFrames",
        "trialGratingPhase",
        "trialSoundDur",
        "trialSoundType",
        "trialSoundFreq",
        "trialSoundAM",
        "trialSoundSeed",
        "soundSampleRate",
        "soundHanningDur",
        "rotaryEncoder",
        "rotaryEncoderCount",
        "rotaryEncoderCountsPerRev",
        "wheelRadius",
        "frameRate",
        "subjectName",
        "computerName",
        "githubTaskScript",
        "lastFrame",
        "maxFrames",
        "monWidth",
        "monDistance",
        "monSizePix",
        "drawDiodeBox",
        "diodeBoxSize",
        "diodeBoxPosition",
        "diodeBoxFrameInterval",
        "lickDetectorFrames",
        "manualRewardFrames",
        "solenoidOpenTime",
        "rewardVol",
        "soundMode",
        "optoSampleRate",
        "trialOptoOnsetFrame",
        "trialOptoDur",
        "trialOptoVoltage",
        "trialOptoDevice",
        "optoParams",
        "trialSoundArray",
        "framesPerBlock",
        "blockCatchProb",
    ]
    with h5py.File(dr.path) as f:
        missing = [k for k in keys if k not in f]
        assert not missing
        n = f["trialEndFrame"].size
        assert f["trialRepeat"].size == n + 1
        assert f["trialStartFrame"].size in (n, n + 1)
        assert f["trialStimStartFrame"].size in (n, n + 1)
        assert f["trialSoundArray"].shape == (0,)
        assert f["trialOptoDevice"].asstr()[()][0] in ("['laser_488']", "['']")
        assert f["trialSoundFreq"].shape[1] == 2
        assert f["rotaryEncoder"].asstr()[()] == "digital"
        assert f["lastFrame"][()] == f["frameIntervals"].size


# --------------------------------------------------------------------------------------------
# frames, clocks and lines


def test_vsync_count_equals_frame_intervals_plus_one(runs: list[ScriptRun]) -> None:
    for run in runs:
        fi = _read(run.path, "frameIntervals")
        assert run.truth["vsync_count"] == fi.size + 1 == run.flip.size
        rise, fall = run.lines[2]
        np.testing.assert_array_equal(fall, run.flip)
        assert np.all(rise < fall) and np.all(rise[1:] > fall[:-1])


def test_stim_clock_runs_slightly_fast_and_intervals_are_60hz(runs: list[ScriptRun]) -> None:
    for run in runs:
        fi = _read(run.path, "frameIntervals")
        ratio = fi / np.diff(run.flip)
        np.testing.assert_allclose(ratio, run.truth["stim_clock_scale"], rtol=1e-9)
        assert 0 < run.truth["stim_clock_scale"] - 1 < 1e-5
        assert np.median(fi) == pytest.approx(1 / 60, abs=2e-4)


def test_start_time_and_file_name_are_sync_start_plus_first_flip(runs: list[ScriptRun]) -> None:
    for run in runs:
        expected = (SYNC_START + datetime.timedelta(seconds=float(run.flip[0]))).replace(
            microsecond=0
        )
        assert run.start_time == expected
        stamp = expected.strftime("%Y%m%d_%H%M%S")
        assert _read(run.path, "startTime").decode() == stamp
        assert run.path.name == f"{run.script_name}_668755_{stamp}.hdf5"


def test_scripts_are_back_to_back_with_gaps_over_one_second(runs: list[ScriptRun]) -> None:
    names = [r.script_name for r in runs]
    assert names == ["RFMapping", "DynamicRouting1", "OptoTagging", "Spontaneous", "LuminanceTest"]
    assert runs[0].flip[0] == pytest.approx(30.0, abs=1e-5)
    for a, b in itertools.pairwise(runs):
        assert b.lines[5][0][0] - a.lines[5][1][0] > 1.0
        assert 5.0 <= b.flip[0] - a.flip[-1] <= 20.1


def test_stim_running_brackets_the_frames(runs: list[ScriptRun]) -> None:
    for run in runs:
        (rise,), (fall,) = run.lines[5]
        assert rise < run.vsync_rise[0] and fall > run.flip[-1]
        assert run.flip[-1] - fall > -1e-3


def test_photodiode_toggles_every_frame_first_rising_lagging_flip(runs: list[ScriptRun]) -> None:
    for run in runs:
        rise, fall = run.lines[4]
        n = run.flip.size
        assert rise.size == math.ceil(n / 2)
        assert fall.size == rise.size  # closed by the window if it ended white
        assert rise[0] > run.flip[0] + 0.015  # first toggle is rising, after first vsync + 15 ms
        edges = np.sort(np.concatenate((rise, fall)))[:n]
        lag = edges - run.flip
        assert np.all((lag > 0.0185) & (lag < 0.0206))
        np.testing.assert_allclose(run.display, edges + 0.008)


def test_diode_toggles_every_three_frames_from_2025_07_15(tmp_path: Path) -> None:
    (run,) = _simulate(
        tmp_path, minutes=2, date=datetime.datetime(2025, 8, 1, 9, 0, 0), scripts=("Spontaneous",)
    )
    assert _read(run.path, "diodeBoxFrameInterval") == 3
    rise, fall = run.lines[4]
    n_toggles = math.ceil(run.flip.size / 3)
    assert rise.size == math.ceil(n_toggles / 2) and fall.size == rise.size
    toggles = np.sort(np.concatenate((rise, fall)))[:n_toggles]
    np.testing.assert_allclose(run.display[::3], toggles + 0.008)
    between = run.display[1::3] - run.flip[1::3]
    assert np.all((between > 0.0265) & (between < 0.0286))


def test_dropped_frames_occur_about_once_per_2000(long_runs: list[ScriptRun]) -> None:
    iv = np.diff(long_runs[0].flip)
    n_drop = int((iv > 1.5 / 60).sum())
    assert 0.2 * iv.size / 2000 < n_drop < 3 * iv.size / 2000
    assert np.std(iv[iv < 1.5 / 60]) == pytest.approx(1e-4, rel=0.3)


def test_all_edges_are_on_the_100khz_grid(runs: list[ScriptRun]) -> None:
    for run in runs:
        for bit, (r, f) in run.lines.items():
            for arr in (r, f):
                np.testing.assert_allclose(
                    arr * 1e5, np.round(arr * 1e5), atol=1e-4, err_msg=str(bit)
                )


# --------------------------------------------------------------------------------------------
# licks, responses, rewards, quiescent violations


def _flip_window(run: ScriptRun, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sync interval in which a contact must start to be first seen at ``frames``."""
    flip = run.flip
    lo = np.where(frames >= 2, flip[np.maximum(frames - 2, 0)], -np.inf)
    hi = np.where(frames >= 1, flip[np.maximum(frames - 1, 0)] + 0.0025, flip[0])
    return lo, hi


def test_lick_frames_match_sync_licks_as_a_per_frame_poll_would(runs: list[ScriptRun]) -> None:
    for run in runs:
        on, off = (np.asarray(a) for a in run.lines[31])
        lick_frames = _read(run.path, "lickFrames")
        detector = _read(run.path, "lickDetectorFrames")
        assert set(lick_frames.tolist()) <= set(detector.tolist())
        lo, hi = _flip_window(run, lick_frames)
        k = np.searchsorted(on, lo, side="right")
        assert np.all(on[np.minimum(k, on.size - 1)] <= hi), run.script_name
        # every contact spanning more than two refreshes inside the script is seen by the poll
        long = (off - on > 2.2 / 60) & (on > run.flip[0]) & (off < run.flip[-2])
        j = np.searchsorted(run.flip, on[long])  # first flip at/after the onset
        seen = np.isin(j, lick_frames) | np.isin(
            j + 1, lick_frames
        )  # poll just after flip j-1 or j
        assert seen.all(), run.script_name
        # sync contacts > 0.5 s exist and are flagged as not-likely licks
    dr = _by_name(runs, "DynamicRouting1")
    licks = dr.truth["licks"]
    assert not all(licks["is_likely_lick"]) and any(licks["is_likely_lick"])
    assert np.all(np.diff(dr.lines[31][0]) > 0)


def test_responses_fall_inside_the_window_and_match_lick_frames(dr: ScriptRun) -> None:
    t = {k: np.asarray(v) for k, v in dr.truth["trials"].items()}
    lick_frames = _read(dr.path, "lickFrames")
    stim = t["stim_start_frame"]
    resp = t["response_frame"]
    for i in range(stim.size):
        in_win = lick_frames[(lick_frames >= stim[i] + 6) & (lick_frames < stim[i] + 60)]
        assert t["is_response"][i] == (in_win.size > 0)
        if in_win.size:
            assert resp[i] == in_win[0]
        else:
            assert np.isnan(resp[i])
    ok = t["is_response"]
    assert np.all(
        (t["task_control_response_time"][ok] >= t["response_window_start_time"][ok])
        & (t["task_control_response_time"][ok] < t["response_window_stop_time"][ok])
    )
    fin = np.isfinite(t["response_time"])
    assert np.all(t["response_time"][fin] > t["response_window_start_time"][fin])
    assert np.all(t["response_time"][fin] < t["response_window_stop_time"][fin])
    assert (fin == ok).mean() > 0.9


def test_final_quiescent_window_has_no_licks_and_violations_are_licks(dr: ScriptRun) -> None:
    t = dr.truth["trials"]
    lick_frames = _read(dr.path, "lickFrames")
    violations = _read(dr.path, "quiescentViolationFrames")
    assert violations.size > 0 and np.isin(violations, lick_frames).all()
    for s in t["stim_start_frame"]:
        assert not np.any((lick_frames > s - 90) & (lick_frames < s))
    np.testing.assert_allclose(
        dr.truth["quiescent_violations"]["timestamps"], dr.flip[np.unique(violations) - 1]
    )


def test_rewards_frames_solenoid_and_trials_agree(dr: ScriptRun) -> None:
    t = {k: np.asarray(v) for k, v in dr.truth["trials"].items()}
    reward_frames = _read(dr.path, "rewardFrames")
    expected = np.where(
        t["is_noncontingent_reward"], t["stim_start_frame"] + 60, t["response_frame"]
    )
    expected = expected[t["is_rewarded"]].astype(int)
    np.testing.assert_array_equal(reward_frames[: expected.size], expected)
    assert _read(dr.path, "rewardSize").size == reward_frames.size
    rise, fall = dr.lines[15]  # 2024-05-01 >= 2024-04-01
    assert rise.size == reward_frames.size
    assert np.all((rise - dr.flip[reward_frames] > 0) & (rise - dr.flip[reward_frames] < 0.002))
    np.testing.assert_allclose(fall - rise, 0.03, atol=0.0025)
    np.testing.assert_allclose(dr.truth["rewards"]["timestamps"], rise)


def test_sound_line_marks_each_auditory_stimulus(dr: ScriptRun) -> None:
    t = {k: np.asarray(v) for k, v in dr.truth["trials"].items()}
    rise, fall = dr.lines[1]
    stim_frames = _read(dr.path, "trialStimStartFrame")
    names = _read(dr.path, "trialStim").astype(str)[: stim_frames.size]  # n+1 if last incomplete
    aud_frames = stim_frames[np.char.find(names, "sound") >= 0]
    assert rise.size == aud_frames.size
    latency = rise - dr.flip[aud_frames]
    assert np.all((latency > 0) & (latency < 0.1))
    np.testing.assert_allclose(fall - rise, 23999 / 48000, atol=1e-5)
    aud = t["is_aud_stim"]
    np.testing.assert_array_equal(t["stim_start_time"][aud], rise[: aud.sum()])
    vis = t["is_vis_stim"]
    np.testing.assert_array_equal(t["stim_start_time"][vis], dr.display[t["stim_start_frame"][vis]])


def test_opto_marker_follows_opto_trials(dr: ScriptRun) -> None:
    t = {k: np.asarray(v) for k, v in dr.truth["trials"].items()}
    rise, fall = dr.lines[11]
    opto = t["is_opto"]
    onset = _read(dr.path, "trialOptoOnsetFrame")[: opto.size]
    assert np.array_equal(np.isfinite(onset), opto)
    np.testing.assert_array_equal(rise[: opto.sum()], t["opto_start_time"][opto])
    trigger = dr.flip[(t["stim_start_frame"] + np.nan_to_num(onset).astype(int))[opto]]
    assert np.all((rise[: opto.sum()] - trigger > 0) & (rise[: opto.sum()] - trigger < 0.002))
    np.testing.assert_allclose(fall - rise, 1.1 - 1 / 2000, atol=2e-5)  # 1 s + 0.1 s off-ramp


def test_date_gates_for_sound_and_solenoid_lines(tmp_path: Path) -> None:
    early = _simulate(
        tmp_path / "a",
        minutes=3,
        date=datetime.datetime(2023, 8, 30, 12),
        scripts=("DynamicRouting1",),
    )[0]
    mid = _simulate(
        tmp_path / "b",
        minutes=3,
        date=datetime.datetime(2023, 9, 1, 12),
        scripts=("DynamicRouting1",),
    )[0]
    assert early.lines[1][0].size == 0 and early.lines[15][0].size == 0
    assert mid.lines[1][0].size > 0 and mid.lines[15][0].size == 0
    assert not mid.truth["rewards"]["is_solenoid_time"]
    assert _read(mid.path, "diodeBoxFrameInterval") == 1


# --------------------------------------------------------------------------------------------
# other scripts


def test_rf_mapping_trials_and_sounds(runs: list[ScriptRun]) -> None:
    rf = _by_name(runs, "RFMapping")
    with h5py.File(rf.path) as f:
        start = f["stimStartFrame"][()]
        contrast, ori = f["trialFullFieldContrast"][()], f["trialGratingOri"][()]
        tone, am = f["trialToneFreq"][()], f["trialAMNoiseFreq"][()]
        arrays = f["trialSoundArray"][()]
        assert f["trialVisXY"].shape == (start.size, 2)
    np.testing.assert_array_equal(np.diff(start), 31)
    assert rf.flip.size == 31 * start.size
    for kind in (contrast, ori, tone, am):
        assert np.isfinite(kind).sum() >= 3
    is_aud = np.isfinite(tone) | np.isfinite(am)
    assert [a.size for a in arrays] == [12000 if x else 0 for x in is_aud]
    rise, _ = rf.lines[1]
    assert rise.size == is_aud.sum()
    aud = rf.truth["aud_rf_mapping"]
    vis = rf.truth["vis_rf_mapping"]
    assert len(aud["trial_index"]) + len(vis["trial_index"]) == start.size
    np.testing.assert_allclose(np.asarray(aud["stim_stop_time"]) - aud["stim_start_time"], 0.25)
    np.testing.assert_allclose(vis["stim_start_time"], rf.display[start[~is_aud]])


def test_opto_tagging_absolute_onsets_and_marker(runs: list[ScriptRun]) -> None:
    ot = _by_name(runs, "OptoTagging")
    onset = _read(ot.path, "trialOptoOnsetFrame")
    assert onset[0] == 60 and np.all((np.diff(onset) >= 60) & (np.diff(onset) <= 66))
    assert 20 <= onset.size <= 100
    rise, fall = ot.lines[11]
    assert rise.size == onset.size
    dur = _read(ot.path, "trialOptoDur")
    assert np.all(np.abs((fall - rise) - (dur + 0.001)) < 0.002)
    assert ot.truth["optotagging"]["location"][0] in ("probeA", "probeC")


def test_no_opto_means_no_opto_tagging_and_no_marker(tmp_path: Path) -> None:
    runs = _simulate(tmp_path, minutes=2, opto=False)
    assert "OptoTagging" not in [r.script_name for r in runs]
    assert all(r.lines[11][0].size == 0 for r in runs)
    with h5py.File(_by_name(runs, "DynamicRouting1").path) as f:
        assert f["trialOptoOnsetFrame"].size == 0 and np.isnan(f["optoParams"][()])


def test_luminance_test_levels(runs: list[ScriptRun]) -> None:
    lum = _by_name(runs, "LuminanceTest")
    levels = _read(lum.path, "trialLevel")
    assert sorted(levels.tolist()) == np.arange(-1, 1.01, 0.25).tolist()
    assert lum.truth["luminance_test"]["level"] == np.round(levels, 3).tolist()


# --------------------------------------------------------------------------------------------
# the simulated mouse, speed, determinism, bad input


def test_mouse_rates_over_a_long_session(long_runs: list[ScriptRun]) -> None:
    (run,) = long_runs
    t = {k: np.asarray(v) for k, v in run.truth["trials"].items()}
    assert 450 <= t["trial_index"].size <= 900
    first_try = ~t["is_repeat"] & ~t["is_instruction"]
    go = t["is_go"] & first_try
    hit_rate = t["is_response"][go].mean()
    other_target = t["is_nogo"] & first_try & np.isin(t["stim_name"], ["vis1", "sound1"])
    non_target = t["is_nogo"] & first_try & np.isin(t["stim_name"], ["vis2", "sound2"])
    catch = t["is_catch"] & first_try
    assert 0.75 <= hit_rate <= 0.95
    assert 0.08 <= t["is_response"][other_target].mean() <= 0.35
    assert t["is_response"][non_target].mean() <= 0.15
    assert t["is_response"][catch].mean() <= 0.2
    assert catch.sum() / first_try.sum() == pytest.approx(0.1, abs=0.04)
    assert sorted(set(t["block_index"].tolist())) == list(range(6))
    assert len(run.truth["quiescent_violations"]["frame"]) > 20
    # after a switch the mouse is slow to adopt the new context: instruction trials it misses are
    # auto-rewarded (non-contingent), the others earn their reward
    instr = t["is_instruction"] & (t["block_index"] > 0)
    assert 0.2 < t["is_noncontingent_reward"][instr].mean() < 0.9
    assert not (t["is_noncontingent_reward"] & t["is_contingent_reward"]).any()


def test_two_minute_task_simulates(tmp_path: Path) -> None:
    """Smoke test of the short task; its speed is measured in benchmarks/bench_synth.py."""
    runs = _simulate(tmp_path, minutes=2, scripts=("DynamicRouting1",))
    assert len(runs) == 1 and runs[0].path.exists()


def test_same_seed_same_truth_and_files(tmp_path: Path) -> None:
    a = _simulate(tmp_path / "a", minutes=2, seed=5)
    b = _simulate(tmp_path / "b", minutes=2, seed=5)
    c = _simulate(tmp_path / "c", minutes=2, seed=6)
    for x, y in zip(a, b, strict=True):
        assert x.path.name == y.path.name
        np.testing.assert_array_equal(x.flip, y.flip)
        assert _read(x.path, "lickFrames").tolist() == _read(y.path, "lickFrames").tolist()
    assert not np.array_equal(a[0].flip, c[0].flip)


def test_truth_is_json_serialisable(dr: ScriptRun) -> None:
    import json

    text = json.dumps(dr.truth)
    assert json.loads(text)["trials"]["trial_index"][:3] == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scripts": ("Nope",)}, "scripts"),
        ({"task_minutes": 0.0}, "task_minutes/first_start_s"),
    ],
)
def test_bad_parameters_raise_typed_errors(
    tmp_path: Path, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {
        "rng": np.random.default_rng(0),
        "subject": 668755,
        "sync_start": SYNC_START,
        "first_start_s": 30.0,
        "task_minutes": 2.0,
    }
    args.update(kwargs)
    with pytest.raises(ParameterError) as err:
        simulate_scripts(tmp_path, **args)
    assert err.value.field == field


def test_missing_behavior_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as err:
        simulate_scripts(
            tmp_path / "missing",
            rng=np.random.default_rng(0),
            subject=1,
            sync_start=SYNC_START,
            first_start_s=1.0,
            task_minutes=1.0,
        )
    assert "missing" in str(err.value)
