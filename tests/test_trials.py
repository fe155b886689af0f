"""Trials (FORMATS §5.2): every derivation rule on a hand-built task file with hand-computed
expectations, the synthetic session's truth, and DynamicRoutingTask's DynRoutData.

The hand-built session: frames at flip[i] = 10 + i/60 s on the sync clock, display = flip + 20 ms,
7 trials 400 frames apart (stimulus at frame 400k + 100), two blocks (vis1 then sound1 rewarded).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.task_files import (
    AUTO,
    DISPLAY_LAG,
    LICK_LAG,
    N_FRAMES,
    OPTO_LATENCY,
    OPTO_TRIALS,
    REPEAT,
    RESPONSE,
    REWARDED,
    SOUND_LATENCY,
    STIM_FRAME,
    STIMS,
    TIMEOUT_FRAMES,
    FakeFrameTimes,
    _fa,
    flip_times,
    make_raw,
    make_sync,
    task_attrs,
    write_task,
)
from npc_frames.components._trials import build_trials
from npc_frames.errors import BadFormatError, NpcFramesError, UnsupportedVersionError
from npc_frames.schemas.behavior import TRIALS

DATE = datetime.date(2023, 9, 1)


@pytest.fixture
def task_path(tmp_path: Path) -> Path:
    return write_task(tmp_path)


def _build(path: Path, sync: Any = "default", **kw: Any) -> pl.DataFrame:
    from npc_frames.readers.stim import open_stim

    stim = open_stim(path)
    ft = FakeFrameTimes(str(path))
    if isinstance(sync, str):
        sync = make_sync()
    df = build_trials(stim, ft, sync, session_id="366122_2023-09-01", session_date=DATE, **kw)
    return TRIALS.validate(df)


# ------------------------------------------------------------------------------------ columns
def test_trials_schema_has_every_column_of_formats_5_2(task_path: Path) -> None:
    df = _build(task_path)
    assert df.columns == TRIALS.names
    assert df.height == 7  # the incomplete 8th trial is truncated (n = len(trialEndFrame))


def test_frame_derived_times_follow_flip_input_display_rules(task_path: Path) -> None:
    df = _build(task_path)
    flip = flip_times()
    s = STIM_FRAME
    np.testing.assert_allclose(df["quiescent_start_time"], flip[s - 90], atol=1e-9)
    np.testing.assert_allclose(df["start_time"], flip[s - 90], atol=1e-9)
    np.testing.assert_allclose(df["quiescent_stop_time"], flip[s - 2], atol=1e-9)  # input[s-1]
    end = s + 240 + np.where(_fa(), TIMEOUT_FRAMES, 0)
    np.testing.assert_allclose(df["stop_time"], flip[end], atol=1e-9)
    np.testing.assert_allclose(df["response_window_start_time"], flip[s + 5], atol=1e-9)
    np.testing.assert_allclose(df["response_window_stop_time"], flip[s + 60], atol=1e-9)


def test_stim_times_vis_display_aud_sound_line_catch_zero_length(task_path: Path) -> None:
    df = _build(task_path)
    flip = flip_times()
    s = STIM_FRAME
    start = df["stim_start_time"].to_numpy()
    stop = df["stim_stop_time"].to_numpy()
    for k, name in enumerate(STIMS):
        if "vis" in name:
            assert start[k] == pytest.approx(flip[s[k]] + DISPLAY_LAG, abs=1e-9)
            assert stop[k] == pytest.approx(flip[s[k] + 30] + DISPLAY_LAG, abs=1e-9)
        elif name == "catch":
            assert start[k] == pytest.approx(flip[s[k]] + DISPLAY_LAG, abs=1e-9)
            assert stop[k] == start[k]
        else:
            assert start[k] == pytest.approx(flip[s[k]] + SOUND_LATENCY, abs=1e-9)
            assert stop[k] == pytest.approx(start[k] + 0.5, abs=1e-9)


def test_sound_onset_method_3_without_sound_line(task_path: Path) -> None:
    df = _build(task_path, sync=make_sync(with_sound=False))
    flip = flip_times()
    for k, name in enumerate(STIMS):
        if "sound" in name:
            assert df["stim_start_time"][k] == pytest.approx(flip[STIM_FRAME[k]], abs=1e-9)
            assert df["stim_stop_time"][k] == pytest.approx(flip[STIM_FRAME[k]] + 0.5, abs=1e-9)


def test_response_time_first_sync_lick_strictly_inside_window(task_path: Path) -> None:
    df = _build(task_path)
    flip = flip_times()
    expected = np.where(RESPONSE, flip[STIM_FRAME + 10] + LICK_LAG, np.nan)
    np.testing.assert_allclose(df["response_time"].to_numpy(), expected, atol=1e-9)
    tc = np.where(RESPONSE, flip[STIM_FRAME + 9], np.nan)  # input time of the response frame
    np.testing.assert_allclose(df["task_control_response_time"].to_numpy(), tc, atol=1e-9)
    assert df["is_task_control_correct"].all()


def test_response_time_without_sync_is_task_control_time(task_path: Path) -> None:
    df = _build(task_path, sync=None)
    np.testing.assert_array_equal(
        df["response_time"].to_numpy(), df["task_control_response_time"].to_numpy()
    )


def test_is_task_control_correct_false_where_sync_has_no_lick(task_path: Path) -> None:
    sync = make_sync()
    r, f = sync._lines["lick_sensor"]
    drop = flip_times()[STIM_FRAME[6] + 10] + LICK_LAG
    sync._lines["lick_sensor"] = (r[r != drop], f[r != drop])
    df = _build(task_path, sync=sync)
    assert df["is_task_control_correct"].to_list() == [True] * 6 + [False]
    assert np.isnan(df["response_time"][6]) and df["is_response"][6]


def test_reward_times_from_reward_frames_assigned_to_trials(task_path: Path) -> None:
    df = _build(task_path)
    flip = flip_times()
    expected = np.full(7, np.nan)
    expected[[0, 6]] = flip[STIM_FRAME[[0, 6]] + 10]
    expected[4] = flip[STIM_FRAME[4] + 60]
    np.testing.assert_allclose(df["reward_time"].to_numpy(), expected, atol=1e-9)
    assert df["is_rewarded"].to_list() == REWARDED
    assert df["is_noncontingent_reward"].to_list() == AUTO
    assert df["is_contingent_reward"].to_list() == [True, False, False, False, False, False, True]


def test_reward_times_from_solenoid_line_from_2024_04_01(tmp_path: Path) -> None:
    from npc_frames.readers.stim import open_stim

    path = write_task(tmp_path)
    sync = make_sync()
    sol = flip_times()[STIM_FRAME[[0, 4, 6]] + [10, 60, 10]] + 0.001
    sync._lines[15] = (sol, sol + 0.03)
    df = build_trials(
        open_stim(path),
        FakeFrameTimes(str(path)),
        sync,
        session_id="366122_2024-05-01",
        session_date=datetime.date(2024, 5, 1),
    )
    np.testing.assert_allclose(df["reward_time"].to_numpy()[[0, 4, 6]], sol, atol=1e-9)


def test_timeouts_on_false_alarms_when_timeout_frames_set(task_path: Path) -> None:
    df = _build(task_path)
    flip, disp = flip_times(), flip_times() + DISPLAY_LAG
    s = STIM_FRAME
    fa = _fa()
    assert df["is_false_alarm"].to_numpy().tolist() == fa.tolist()
    t_start = np.where(fa, flip[s + 60], np.nan)  # input time of stim + rw[1] + 1
    t_stop = np.where(fa, disp[s + 61 + TIMEOUT_FRAMES], np.nan)
    np.testing.assert_allclose(df["timeout_start_time"].to_numpy(), t_start, atol=1e-9)
    np.testing.assert_allclose(df["timeout_stop_time"].to_numpy(), t_stop, atol=1e-9)
    prw = np.where(fa, s + 61 + TIMEOUT_FRAMES, s + 60)
    np.testing.assert_allclose(df["post_response_window_start_time"], disp[prw], atol=1e-9)
    np.testing.assert_allclose(df["post_response_window_stop_time"], disp[prw + 180], atol=1e-9)


def test_no_timeouts_when_timeout_frames_zero(tmp_path: Path) -> None:
    df = _build(write_task(tmp_path, incorrectTimeoutFrames=0))
    assert df["timeout_start_time"].is_nan().all()
    assert df["timeout_stop_time"].is_nan().all()


def test_trial_outcome_flags(task_path: Path) -> None:
    df = _build(task_path)
    assert df["is_go"].to_list() == [True, False, False, False, True, False, True]
    assert df["is_nogo"].to_list() == [False, True, True, False, False, True, False]
    assert df["is_hit"].to_list() == [True, False, False, False, False, False, True]
    assert df["is_miss"].to_list() == [False, False, False, False, True, False, False]
    assert df["is_correct_reject"].to_list() == [False, False, True, False, False, False, False]
    assert df["is_correct"].to_list() == [True, False, True, True, False, False, True]
    assert df["is_incorrect"].to_list() == [False, True, False, False, True, True, False]
    assert df["is_catch"].to_list() == [False, False, False, True, False, False, False]


def test_block_and_target_columns(task_path: Path) -> None:
    df = _build(task_path)
    assert df["block_index"].to_list() == [0, 0, 0, 0, 1, 1, 1]
    assert df["rewarded_modality"].to_list() == ["vis"] * 4 + ["aud"] * 3
    assert df["trial_index_in_block"].to_list() == [0, 1, 2, 3, 0, 1, 2]
    assert df["is_block_switch"].to_list() == [False] * 4 + [True, False, False]
    assert df["is_instruction"].to_list() == [True, False, False, False, True, False, False]
    assert df["is_target"].to_list() == [True, False, False, False, True, False, True]
    assert df["is_vis_nontarget"].to_list() == [False, True, True] + [False] * 4
    assert df["is_aud_nontarget"].to_list() == [False] * 5 + [True, False]
    assert df["is_vis_rewarded"].to_list() == [True] * 4 + [False] * 3
    assert df["is_aud_rewarded"].to_list() == [False] * 4 + [True] * 3
    assert df["is_repeat"].to_list() == REPEAT[:7]
    assert df["repeat_index"].to_list() == [0, 0, 1, 0, 0, 0, 0]
    ph = df["grating_phase"].to_numpy()
    assert ph[0] == 0.5 and np.isnan(ph[3]) and np.isnan(ph[4])


def test_repeat_index_counts_consecutive_repeats() -> None:
    from npc_frames.components._trials import _repeat_index

    r = np.array([False, True, True, True, False, True, False])
    assert _repeat_index(r).tolist() == [0, 1, 2, 3, 0, 1, 0]


def test_opto_onset_offset_from_sync_line_and_columns(task_path: Path) -> None:
    df = _build(task_path)
    flip = flip_times()
    on = flip[STIM_FRAME[list(OPTO_TRIALS)]] + OPTO_LATENCY
    start = df["opto_start_time"].to_numpy()
    stop = df["opto_stop_time"].to_numpy()
    np.testing.assert_allclose(start[list(OPTO_TRIALS)], on, atol=1e-9)
    np.testing.assert_allclose(stop[list(OPTO_TRIALS)], on + 0.4995, atol=1e-9)
    assert np.isnan(start[:5]).all()
    assert df["is_opto"].to_list() == [False] * 5 + [True, True]
    assert df["opto_wavelength"].to_list() == [None] * 5 + [488, 488]
    assert df["opto_label"].to_list() == [None] * 5 + ["probeA", "V1"]
    assert df["opto_stim_name"].to_list() == [""] * 5 + ["opto0_probeA", "opto0_V1"]
    assert df["opto_power"].to_list()[5:] == [3.0, 3.0]  # 1*V^2 + 2*V at 1 V
    assert df["opto_location_bregma_x"].to_list()[5:] == [[-0.5], [-3.5]]
    assert df["opto_location_bregma_y"].to_list()[5:] == [[2.0], [-3.0]]
    assert df["is_single_opto_location"].to_list() == [None] * 5 + [True, True]


def test_opto_method_3_without_opto_line(task_path: Path) -> None:
    df = _build(task_path, sync=make_sync(with_opto=False))
    flip = flip_times()
    s = STIM_FRAME[list(OPTO_TRIALS)]
    np.testing.assert_allclose(df["opto_start_time"].to_numpy()[5:], flip[s], atol=1e-9)
    np.testing.assert_allclose(df["opto_stop_time"].to_numpy()[5:], flip[s] + 0.5, atol=1e-9)


def test_non_opto_session_keeps_opto_columns_as_nulls(tmp_path: Path) -> None:
    path = write_task(
        tmp_path, trialOptoOnsetFrame=np.full(7, np.nan), optoParams=None, trialOptoLabel=None
    )
    df = _build(path)
    assert "opto_start_time" in df.columns and df["opto_start_time"].is_nan().all()
    assert df["opto_label"].null_count() == 7
    assert not df["is_opto"].any()


# ------------------------------------------------------------------------------ bad input
def test_unknown_task_version_raises_typed_error(tmp_path: Path) -> None:
    path = write_task(tmp_path, taskVersion="foraging v9")
    with pytest.raises(UnsupportedVersionError) as e:
        _build(path)
    assert e.value.field == "taskVersion" and str(path) in str(e.value)


def test_missing_key_raises_typed_error_naming_file_and_field(tmp_path: Path) -> None:
    path = write_task(tmp_path, responseWindow=None)
    with pytest.raises(BadFormatError) as e:
        _build(path)
    assert e.value.field == "responseWindow" and e.value.path == str(path)


def test_non_integral_frame_index_raises(tmp_path: Path) -> None:
    path = write_task(tmp_path, trialEndFrame=(STIM_FRAME + 240).astype(float) + 0.5)
    with pytest.raises(NpcFramesError) as e:
        _build(path)
    assert e.value.path == str(path)


def test_zero_frame_stim_file_raises_typed_error(tmp_path: Path) -> None:
    from npc_frames.readers.stim import open_stim

    path = write_task(tmp_path, frameIntervals=np.zeros(0))
    with pytest.raises(BadFormatError) as e:
        open_stim(path)
    assert e.value.field == "frameIntervals"


# --------------------------------------------------------------------------- DynRoutData
def test_flags_match_dynroutdata_except_go_includes_scheduled_autorewards(task_path: Path) -> None:
    """is_nogo/is_false_alarm/is_correct_reject equal DynRoutData's arrays; is_go/is_hit/is_miss
    equal DynRoutData's goTrials/hitTrials/missTrials OR the auto-reward-scheduled trials of the
    rewarded stimulus (npc's `is_go` includes them, DynRoutData.goTrials does not)."""
    pytest.importorskip("DynamicRoutingTask")
    from DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils import DynRoutData

    d = DynRoutData()
    with h5py.File(task_path, "r") as f:
        d.loadBehavData(str(task_path), h5pyFile=f)
    df = _build(task_path)
    np.testing.assert_array_equal(df["is_nogo"].to_numpy(), d.nogoTrials)
    np.testing.assert_array_equal(df["is_false_alarm"].to_numpy(), d.falseAlarmTrials)
    np.testing.assert_array_equal(df["is_correct_reject"].to_numpy(), d.correctRejectTrials)
    sched_go = (d.trialStim == d.rewardedStim) & d.autoRewardScheduled
    np.testing.assert_array_equal(df["is_go"].to_numpy(), d.goTrials | sched_go)
    np.testing.assert_array_equal(
        df["is_hit"].to_numpy(), d.hitTrials | (sched_go & d.trialResponse)
    )
    np.testing.assert_array_equal(
        df["is_miss"].to_numpy(), d.missTrials | (sched_go & ~d.trialResponse)
    )
    assert df["is_go"].to_numpy()[4] and not d.goTrials[4]  # the difference is real here
    np.testing.assert_array_equal(df["is_noncontingent_reward"].to_numpy(), d.autoRewarded)
    np.testing.assert_array_equal(df["is_contingent_reward"].to_numpy(), d.rewardEarned)
    np.testing.assert_array_equal(df["block_index"].to_numpy(), d.trialBlock - 1)


def test_trials_component_from_raw_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import trials

    raw = make_raw(tmp_path, monkeypatch)
    df = trials(raw)
    assert df.height == 7 and df["session_id"].unique().to_list() == ["366122_2023-09-01"]
    assert df.columns[0] == "session_id"


def test_trials_overlapping_invalid_times_dropped_touching_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import trials

    flip = flip_times()
    s = STIM_FRAME
    # overlaps trial 2 strictly; touches trial 4's start exactly (kept)
    inv = [
        {"start_time": float(flip[s[2]]), "stop_time": float(flip[s[2]] + 1), "reason": "noise"},
        {
            "start_time": float(flip[s[4] - 90] - 1),
            "stop_time": float(flip[s[4] - 90]),
            "reason": "t",
        },
    ]
    raw = make_raw(tmp_path, monkeypatch, annotations={"invalid_times": inv})
    df = trials(raw)
    assert df["trial_index"].to_list() == [0, 1, 3, 4, 5, 6]


def test_trials_behavior_only_session_on_task_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import trials

    raw = make_raw(tmp_path, monkeypatch, sync=None)
    df = trials(raw)
    fi_cum = np.concatenate(([0.0], np.cumsum(np.full(N_FRAMES - 1, 1 / 60))))
    # response_time = task-control time = input time of the response frame
    np.testing.assert_allclose(
        df["response_time"].to_numpy(), np.where(RESPONSE, fi_cum[STIM_FRAME + 10], np.nan)
    )
    # sounds without any recording: flip time of the stimulus frame (method 3)
    k = STIMS.index("sound1")
    assert df["stim_start_time"][k] == pytest.approx(fi_cum[STIM_FRAME[k] + 1], abs=1e-9)


def test_largest_task_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components._task import task_file

    small = {"frameIntervals": np.full(10, 1 / 60), "trialEndFrame": np.array([1])}
    raw = make_raw(
        tmp_path,
        monkeypatch,
        extra_stims={"DynamicRouting1_366122_20230901_110000.hdf5": small},
        frame_times={"DynamicRouting1_366122_20230901_110000.hdf5": FakeFrameTimes("x")},
    )
    path, _ = task_file(raw)
    assert path.endswith("DynamicRouting1_366122_20230901_120010.hdf5")


def test_missing_task_file_and_timing_failure_are_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames import timing
    from npc_frames.components import trials
    from npc_frames.errors import AlignmentError

    raw = make_raw(tmp_path, monkeypatch)
    monkeypatch.setattr(timing, "frame_times", lambda r: {})
    monkeypatch.setattr(
        timing, "timing_failures", lambda r: {p: "no vsync block" for p in raw.stim_paths}
    )
    with pytest.raises(AlignmentError) as e:
        trials(raw)
    assert "no vsync block" in str(e.value)


# ------------------------------------------------------------------ synthetic session (truth)
#: display-derived columns (photodiode reconstruction) are compared within 1 ms, the rest 0.1 ms
DISPLAY_COLUMNS = {
    "stim_start_time",
    "stim_stop_time",
    "timeout_stop_time",
    "post_response_window_start_time",
    "post_response_window_stop_time",
}


def script_truth(truth: Any, script: str) -> Any:
    """Return the truth record of the (first) run of `script` in a synthetic session."""
    return next(s for s in truth.scripts if s["script_name"] == script)


@pytest.fixture(scope="module")
def synth_trials(synth_raw: Any) -> pl.DataFrame:
    from npc_frames.components import get

    return get("trials")(synth_raw)


def test_synth_trial_times_match_truth(synth_session: Any, synth_trials: pl.DataFrame) -> None:
    truth = script_truth(synth_session, "DynamicRouting1")["truth"]["trials"]
    df = synth_trials
    assert df.height == len(truth["start_time"])
    checked = 0
    for col in TRIALS.names:
        if col not in truth or TRIALS.column(col).unit != "s":
            continue
        atol = 1e-3 if col in DISPLAY_COLUMNS else 1e-4
        np.testing.assert_allclose(
            df[col].to_numpy(), np.asarray(truth[col], dtype=float), atol=atol, err_msg=col
        )
        checked += 1
    assert checked >= 17


def test_synth_trial_flags_and_blocks_match_truth(
    synth_session: Any, synth_trials: pl.DataFrame
) -> None:
    truth = script_truth(synth_session, "DynamicRouting1")["truth"]["trials"]
    df = synth_trials
    flags = [c for c in TRIALS.names if c.startswith("is_") and c in truth]
    assert len(flags) >= 29  # all but is_single_opto_location (truth has no galvo)
    for col in flags:
        np.testing.assert_array_equal(df[col].to_numpy(), np.asarray(truth[col]), err_msg=col)
    for col in ("block_index", "trial_index", "trial_index_in_block", "repeat_index"):
        np.testing.assert_array_equal(df[col].to_numpy(), np.asarray(truth[col]).astype(int))
    assert df["rewarded_modality"].to_list() == list(truth["rewarded_modality"])
    assert df["stim_name"].to_list() == list(truth["stim_name"])
    assert int(df["is_response"].sum()) == int(np.sum(truth["is_response"]))
    assert int(df["is_rewarded"].sum()) == int(np.sum(truth["is_rewarded"]))


def test_synth_opto_columns_match_truth(synth_session: Any, synth_trials: pl.DataFrame) -> None:
    truth = script_truth(synth_session, "DynamicRouting1")["truth"]["trials"]
    df = synth_trials
    opto = np.asarray(truth["is_opto"])
    assert opto.any(), "the synthetic opto session should have opto trials"
    np.testing.assert_allclose(
        df["opto_power"].to_numpy(), np.asarray(truth["opto_power"], dtype=float), atol=1e-9
    )
    np.testing.assert_allclose(
        df["opto_duration"].to_numpy(), np.asarray(truth["opto_duration"], dtype=float)
    )
    wl = df["opto_wavelength"].to_numpy().astype(float)
    np.testing.assert_array_equal(
        np.nan_to_num(wl), np.nan_to_num(np.asarray(truth["opto_wavelength"], dtype=float))
    )
    assert df["opto_label"].to_list() == [
        None if x is None else str(x) for x in truth["opto_label"]
    ]
    assert df["opto_stim_name"].to_list() == [str(x) for x in truth["opto_stim_name"]]
    # one location per trial in the synthetic session: list column of length 1 vs truth float
    bx = [x[0] if x is not None else np.nan for x in df["opto_location_bregma_x"].to_list()]
    np.testing.assert_allclose(bx, np.asarray(truth["opto_location_bregma_x"], dtype=float))


def test_synth_flags_vs_dynroutdata_on_same_file(
    synth_raw: Any, synth_trials: pl.DataFrame
) -> None:
    """Same statement as on the hand-built file, on the generator's task file."""
    pytest.importorskip("DynamicRoutingTask")
    from DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils import DynRoutData

    path = synth_raw.stim_paths_for("DynamicRouting1")[0]
    d = DynRoutData()
    with h5py.File(path, "r") as f:
        d.loadBehavData(path, h5pyFile=f)
    df = synth_trials
    np.testing.assert_array_equal(df["is_nogo"].to_numpy(), d.nogoTrials)
    np.testing.assert_array_equal(df["is_false_alarm"].to_numpy(), d.falseAlarmTrials)
    sched_go = (d.trialStim == d.rewardedStim) & d.autoRewardScheduled
    np.testing.assert_array_equal(df["is_go"].to_numpy(), d.goTrials | sched_go)
    np.testing.assert_array_equal(
        df["is_hit"].to_numpy(), d.hitTrials | (sched_go & d.trialResponse)
    )
    np.testing.assert_array_equal(df["is_contingent_reward"].to_numpy(), d.rewardEarned)


def test_task_clock_times_and_licks_vs_dynroutdata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without sync: our licks equal DynRoutData.lickTimes exactly (same frames, same 0.05 s
    de-bounce, same [0, cumsum(frameIntervals)] clock) and task-control response times equal
    stimStartTimes + responseTimes; visual stim_start_time is one frame interval later than
    DynRoutData.stimStartTimes because FORMATS §3.4 defines the no-sync *flip* time of frame i as
    cumsum(frameIntervals)[i] (the [quirk] of timing.frame_times), while DynRoutData uses the
    input-data time [0, cumsum][i]."""
    pytest.importorskip("DynamicRoutingTask")
    from DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils import DynRoutData

    from npc_frames.components import get

    raw = make_raw(tmp_path, monkeypatch, sync=None)
    path = raw.stim_paths_for("DynamicRouting1")[0]
    d = DynRoutData()
    with h5py.File(path, "r") as f:
        d.loadBehavData(path, h5pyFile=f)
    np.testing.assert_allclose(get("licks")(raw)["timestamps"].to_numpy(), d.lickTimes)
    df = get("trials")(raw)
    resp = df["is_response"].to_numpy()
    np.testing.assert_allclose(
        df["task_control_response_time"].to_numpy()[resp],
        (d.stimStartTimes + d.responseTimes)[resp],
    )
    vis = df["is_vis_stim"].to_numpy()
    fi = np.full(N_FRAMES - 1, 1 / 60)
    np.testing.assert_allclose(
        df["stim_start_time"].to_numpy()[vis] - d.stimStartTimes[vis], fi[STIM_FRAME[vis]]
    )


def test_multi_location_galvo_trial_is_not_single_location(tmp_path: Path) -> None:
    params = dict(task_attrs()["optoParams"])
    params["bregmaX"] = np.array([[-1.0, 1.0], [-3.5, np.nan]])
    params["bregmaY"] = np.array([[2.0, 2.0], [-3.0, np.nan]])
    df = _build(write_task(tmp_path, optoParams=params))
    # rows are NaN-padded to the largest number of locations
    assert df["opto_location_bregma_x"].to_list()[5:] == [[-0.5, 1.5], [-3.5]]
    assert df["is_single_opto_location"].to_list()[5:] == [False, True]


def test_files_without_opto_device_assume_488_nm(tmp_path: Path) -> None:
    df = _build(write_task(tmp_path, trialOptoDevice=None))
    assert df["opto_wavelength"].to_list() == [None] * 5 + [488, 488]


def test_reward_time_fallback_when_rewards_do_not_map_onto_rewarded_trials(tmp_path: Path) -> None:
    # an extra (manual) reward inside unrewarded trial 2 breaks the one-to-one mapping
    frames = np.array(
        [STIM_FRAME[0] + 10, STIM_FRAME[2] + 20, STIM_FRAME[4] + 60, STIM_FRAME[6] + 10]
    )
    df = _build(write_task(tmp_path, rewardFrames=frames))
    flip = flip_times()
    got = df["reward_time"].to_numpy()
    assert np.isnan(got[2])  # not rewarded: no reward time although a reward fell inside
    np.testing.assert_allclose(got[[0, 4, 6]], flip[frames[[0, 2, 3]]])


def test_old_files_without_auto_reward_scheduled(tmp_path: Path) -> None:
    # trialAutoRewarded then means "scheduled"; delivered = scheduled and rewarded at stim + 60
    df = _build(write_task(tmp_path, trialAutoRewardScheduled=None))
    assert df["is_reward_scheduled"].to_list() == AUTO
    assert df["is_noncontingent_reward"].to_list() == AUTO
