"""Licks, rewards, running speed, quiescent violations (FORMATS §7–§8) on hand-built inputs."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.task_files import N_FRAMES, RESPONSE, STIM_FRAME, FakeSync, flip_times, make_raw
from npc_frames.components.behavior import (
    filter_running_speed,
    licks_from_edges,
    licks_from_frames,
    running_speed_from_counts,
)
from npc_frames.errors import InconsistentDataError


# ------------------------------------------------------------------------------------ licks
def test_licks_drop_leading_falling_and_trailing_rising_edges() -> None:
    rising = np.array([1.0, 2.0, 3.0, 9.0])
    falling = np.array([0.5, 1.1, 2.7, 3.05])
    df = licks_from_edges(rising, falling)
    np.testing.assert_allclose(df["timestamps"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(df["duration"], [0.1, 0.7, 0.05])
    assert df["is_likely_lick"].to_list() == [True, False, True]  # > 0.5 s: grooming


def test_licks_unpaired_edges_raise() -> None:
    with pytest.raises(InconsistentDataError):
        licks_from_edges(np.array([1.0, 2.0, 3.0]), np.array([1.5, 4.0]))


def test_licks_from_frames_debounce_like_dynroutdata() -> None:
    times = np.arange(100) / 60.0
    df = licks_from_frames([10, 11, 12, 20, 21, 50], times)
    # 11 and 12 are 1/60 s after the previous *detected* lick (< 0.05 s); 21 likewise
    np.testing.assert_allclose(df["timestamps"], times[[10, 20, 50]])
    assert df["duration"].is_nan().all() and df["is_likely_lick"].null_count() == 3


def test_licks_component_uses_sync_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import licks

    raw = make_raw(tmp_path, monkeypatch)
    df = licks(raw)
    flip = flip_times()
    resp = flip[STIM_FRAME[np.flatnonzero(RESPONSE)] + 10] + 0.005
    expected = np.sort(np.concatenate((resp, [flip[STIM_FRAME[1] + 3]])))
    np.testing.assert_allclose(df["timestamps"], expected)
    np.testing.assert_allclose(df["duration"], 0.05)
    assert df.columns[0] == "session_id"


def test_licks_component_without_sync_uses_task_lick_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import licks

    raw = make_raw(tmp_path, monkeypatch, sync=None)
    df = licks(raw)
    frame_times = np.concatenate(([0.0], np.cumsum(np.full(N_FRAMES - 1, 1 / 60))))
    np.testing.assert_allclose(
        df["timestamps"], frame_times[STIM_FRAME[np.flatnonzero(RESPONSE)] + 10]
    )


# ----------------------------------------------------------------------------------- rewards
def test_rewards_before_2024_04_are_reward_frame_flips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import rewards

    raw = make_raw(tmp_path, monkeypatch)
    df = rewards(raw)
    flip = flip_times()
    expected = flip[np.array([STIM_FRAME[0] + 10, STIM_FRAME[4] + 60, STIM_FRAME[6] + 10])]
    np.testing.assert_allclose(df["timestamps"], expected)
    assert not df["is_solenoid_time"].any() and df["duration"].is_nan().all()


def test_rewards_from_2024_04_use_solenoid_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from npc_frames.components import rewards
    from npc_frames.ids import SessionId

    sol = np.array([20.0, 30.0, 40.0])
    sync = FakeSync({15: (sol, sol + 0.03)})
    raw = make_raw(tmp_path, monkeypatch, sync=sync)
    sid = SessionId.parse("366122_2024-05-01")
    raw = dataclasses.replace(raw, session_id=sid)
    df = rewards(raw)
    np.testing.assert_allclose(df["timestamps"], sol)
    np.testing.assert_allclose(df["duration"], 0.03)
    assert df["is_solenoid_time"].all()
    assert raw.session_id.date == datetime.date(2024, 5, 1)


# ----------------------------------------------------------------------------- running speed
def test_running_speed_formula_timestamps_and_filter() -> None:
    n = 600
    counts = np.arange(n) * 10.0  # constant 10 counts per frame
    inp = np.concatenate(([np.nan], 10.0 + np.arange(n - 1) / 60))  # sync input times
    t, v = running_speed_from_counts(counts, inp, counts_per_rev=8192, wheel_radius_cm=4.69)
    expected_speed = 10 / 8192 * 2 * np.pi * 4.69 * 60
    # one speed per consecutive read pair; first dropped; +half a sample interval
    assert t.size == v.size == n - 1
    np.testing.assert_allclose(t, 10.0 + np.arange(n - 1) / 60 + 1 / 120, atol=1e-12)
    np.testing.assert_allclose(v, expected_speed, rtol=1e-9)  # constant passes unchanged


def test_running_speed_filter_is_4hz_lowpass_zero_phase() -> None:
    t = np.arange(3600) / 60.0
    slow = np.sin(2 * np.pi * 0.5 * t)
    fast = np.sin(2 * np.pi * 15 * t)
    out = filter_running_speed(slow + fast)
    mid = slice(600, 3000)
    np.testing.assert_allclose(out[mid], slow[mid], atol=0.02)  # no lag, fast removed
    assert np.all(np.isfinite(filter_running_speed(np.array([np.nan, 1.0, 2.0] * 10))))


def test_running_speed_component_task_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import running_speed

    raw = make_raw(tmp_path, monkeypatch)
    df = running_speed(raw)
    flip = flip_times()
    assert df.height == N_FRAMES - 1
    np.testing.assert_allclose(df["timestamps"], flip[:-1] + 1 / 120, atol=1e-9)
    np.testing.assert_allclose(df["speed"], 10 / 8192 * 2 * np.pi * 4.69 * 60, rtol=1e-6)


# ---------------------------------------------------------------------- quiescent violations
def test_quiescent_violations_are_input_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import quiescent_violations

    raw = make_raw(tmp_path, monkeypatch)
    df = quiescent_violations(raw)
    flip = flip_times()
    np.testing.assert_allclose(df["timestamps"], flip[[49, 449]])


# ------------------------------------------------------------------ synthetic session (truth)
def _runs(truth: Any) -> list[Any]:
    return [s["truth"] for s in truth.scripts]


def test_synth_licks_equal_truth(synth_session: Any, synth_raw: Any) -> None:
    from npc_frames.components import get

    df = get("licks")(synth_raw)
    runs = [r["licks"] for r in _runs(synth_session)]
    ts = np.sort(np.concatenate([np.asarray(r["timestamps"], dtype=float) for r in runs]))
    dur = np.concatenate([np.asarray(r["duration"], dtype=float) for r in runs])
    assert df.height == ts.size
    np.testing.assert_allclose(df["timestamps"], ts, atol=1e-4)
    np.testing.assert_allclose(np.sort(df["duration"].to_numpy()), np.sort(dur), atol=1e-4)
    assert int(df["is_likely_lick"].sum()) == int(sum(np.sum(r["is_likely_lick"]) for r in runs))


def test_synth_rewards_equal_truth(synth_session: Any, synth_raw: Any) -> None:
    from npc_frames.components import get

    df = get("rewards")(synth_raw)
    ts = np.sort(
        np.concatenate(
            [
                np.asarray(r["rewards"]["timestamps"], dtype=float).ravel()
                for r in _runs(synth_session)
            ]
        )
    )
    assert df.height == ts.size
    np.testing.assert_allclose(df["timestamps"], ts, atol=1e-4)


def test_synth_running_speed_within_tolerance_of_truth(synth_session: Any, synth_raw: Any) -> None:
    """Truth is the generator's per-frame (unfiltered) speed at input times; we compare with the
    same 4 Hz zero-phase filter implemented independently (second-order sections)."""
    from scipy.signal import butter, sosfiltfilt

    from npc_frames.components import get

    df = get("running_speed")(synth_raw)
    sos = butter(3, 4.0, btype="low", fs=60.0, output="sos")
    ts, vs = [], []
    for r in _runs(synth_session):
        rs = r["running_speed"]
        t = np.asarray(rs["timestamps"], dtype=float)[1:]
        v = np.asarray(rs["speed"], dtype=float)[1:]
        if t.size < 2:
            continue
        ts.append(t + 0.5 * np.median(np.diff(t)))
        vs.append(sosfiltfilt(sos, np.nan_to_num(v)))
    order = np.argsort([t[0] for t in ts])
    t = np.concatenate([ts[i] for i in order])
    v = np.concatenate([vs[i] for i in order])
    assert df.height == t.size
    np.testing.assert_allclose(df["timestamps"], t, atol=1e-4)
    np.testing.assert_allclose(df["speed"], v, atol=0.05 * np.max(np.abs(v)))


def test_synth_quiescent_violations_equal_truth(synth_session: Any, synth_raw: Any) -> None:
    from npc_frames.components import get

    truth = next(s for s in synth_session.scripts if s["script_name"] == "DynamicRouting1")
    exp = np.unique(np.asarray(truth["truth"]["quiescent_violations"]["timestamps"], dtype=float))
    df = get("quiescent_violations")(synth_raw)
    np.testing.assert_allclose(df["timestamps"], exp, atol=1e-4)


# ---------------------------------------------------------------- independence / task clock
BEHAVIOR_COMPONENTS = (
    "sessions",
    "subjects",
    "epochs",
    "trials",
    "performance",
    "vis_rf_mapping",
    "aud_rf_mapping",
    "optotagging",
    "luminance_test",
    "invalid_times",
    "licks",
    "rewards",
    "running_speed",
    "quiescent_violations",
)


def test_behavior_only_session_gives_every_component_on_task_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import get
    from npc_frames.schemas import get_schema

    raw = make_raw(tmp_path, monkeypatch, sync=None)
    for name in BEHAVIOR_COMPONENTS:
        df = get(name)(raw)
        assert df.columns == get_schema(name).names, name
    assert get("trials")(raw).height == 7 and get("licks")(raw).height == 4
    assert get("running_speed")(raw)["timestamps"][0] == pytest.approx(1 / 60 + 1 / 120)


def test_broken_task_file_fails_only_the_components_that_need_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import get
    from npc_frames.errors import NpcFramesError

    raw = make_raw(tmp_path, monkeypatch, trialStim=None)
    failed = set()
    for name in BEHAVIOR_COMPONENTS:
        try:
            get(name)(raw)
        except NpcFramesError as exc:
            assert exc.path is not None and "DynamicRouting1" in exc.path
            failed.add(name)
    assert failed == {"trials", "performance"}
