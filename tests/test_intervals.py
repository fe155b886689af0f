"""RF mapping, optotagging, luminance test and invalid_times (FORMATS §6, §13) on hand-built files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.interval_files import (
    LT_T0,
    OT_T0,
    RF_T0,
    _frames,
    _raw,
    rf_attrs,
)
from helpers.task_files import FakeSync, make_raw
from npc_frames.schemas.behavior import (
    AUD_RF_MAPPING,
    LUMINANCE_TEST,
    OPTOTAGGING,
    VIS_RF_MAPPING,
)


def test_rf_mapping_vis_and_aud_subsets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import aud_rf_mapping, vis_rf_mapping

    raw = _raw(tmp_path, monkeypatch)
    vis, aud = vis_rf_mapping(raw), aud_rf_mapping(raw)
    flip = RF_T0 + np.arange(201) / 60
    assert vis.columns == VIS_RF_MAPPING.names and aud.columns == AUD_RF_MAPPING.names
    assert vis["trial_index"].to_list() == [0, 1, 4]
    assert aud["trial_index"].to_list() == [2, 3]
    sf = np.array([0, 31, 124])
    np.testing.assert_allclose(vis["start_time"], flip[sf])
    np.testing.assert_allclose(vis["stim_start_time"], flip[sf] + 0.02)
    np.testing.assert_allclose(vis["stim_stop_time"], flip[sf + 15] + 0.02)
    # last trial: stim + 30 frames = 154 <= 200 is in range
    np.testing.assert_allclose(vis["stop_time"], flip[sf + 30])
    assert vis["is_full_field_flash"].to_list() == [True, False, True]
    assert vis["grating_orientation"][1] == 45.0 and vis["grating_x"][1] == 100.0
    np.testing.assert_allclose(aud["stim_start_time"], flip[[62, 93]] + 0.004)
    np.testing.assert_allclose(aud["stim_stop_time"], flip[[62, 93]] + 0.004 + 0.25)
    assert aud["is_pure_tone"].to_list() == [True, False]
    assert aud["is_AM_noise"].to_list() == [False, True]  # 0 Hz AM noise counts
    assert aud["freq"].to_list() == [6000.0, 0.0]


def test_rf_mapping_stop_time_beyond_last_frame_divides_by_frame_rate() -> None:
    from npc_frames.components.intervals import build_rf_mapping

    class S:
        path = "rf.hdf5"

        def __init__(self, a: dict[str, Any]) -> None:
            self.a = a

        def has(self, k: str) -> bool:
            return k in self.a

        def get(self, k: str, d: Any = None) -> Any:
            return self.a.get(k, d)

        def array(self, k: str, dtype: Any = None) -> np.ndarray:
            return np.asarray(self.a[k], dtype=dtype)

    a = rf_attrs()
    a["stimStartFrame"] = np.array([0, 31, 62, 93, 180])  # 180 + 30 > 200 frames
    import datetime

    vis, _ = build_rf_mapping(
        S(a), _frames(RF_T0, 201), None, session_id="x", session_date=datetime.date(2023, 9, 1)
    )
    flip = RF_T0 + np.arange(201) / 60
    assert vis["stop_time"][-1] == pytest.approx(flip[195] + 0.02 + 15 / 60)


def test_optotagging_onsets_offsets_locations_power(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import optotagging

    raw = _raw(tmp_path, monkeypatch)
    df = optotagging(raw)
    assert df.columns == OPTOTAGGING.names
    flip = OT_T0 + np.arange(301) / 60
    on = flip[[60, 125, 190]] + 0.001
    off = on + np.array([0.0095, 0.1995, 0.0095])
    np.testing.assert_allclose(df["stim_start_time"], on)
    np.testing.assert_allclose(df["stim_stop_time"], off)
    np.testing.assert_allclose(df["start_time"], on - 0.2)  # analysis period min(0.2, 0.5)
    np.testing.assert_allclose(df["baseline_stop_time"], on - 0.0015)
    np.testing.assert_allclose(df["response_stop_time"], off - 0.0015)
    assert df["location"].to_list() == ["probeA", "probeC", "probeA"]
    assert df["bregma_x"].to_list() == [-3.2, -1.6, -3.2]
    assert df["power"].to_list() == [5.0, 5.0, 10.0]
    assert df["wavelength"].to_list() == [488] * 3
    assert df["stim_name"].to_list() == ["square"] * 3


def test_optotagging_without_laser_line_is_unrecorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import optotagging

    raw = _raw(
        tmp_path,
        monkeypatch,
        sync=FakeSync({"lick_sensor": (np.empty(0), np.empty(0))}),
        add_lines=False,
    )
    assert optotagging(raw).height == 0


def test_luminance_test_levels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import luminance_test

    df = luminance_test(_raw(tmp_path, monkeypatch))
    flip = LT_T0 + np.arange(100) / 60
    assert df.columns == LUMINANCE_TEST.names
    np.testing.assert_allclose(df["start_time"], flip[[0, 30, 60]])
    np.testing.assert_allclose(df["stop_time"], flip[[30, 60, 90]])
    assert df["level"].to_list() == [-1.0, 0.25, 1.0]


def test_absent_scripts_give_zero_row_frames_of_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import aud_rf_mapping, luminance_test, optotagging, vis_rf_mapping

    raw = make_raw(tmp_path, monkeypatch)
    for fn, schema in (
        (vis_rf_mapping, VIS_RF_MAPPING),
        (aud_rf_mapping, AUD_RF_MAPPING),
        (optotagging, OPTOTAGGING),
        (luminance_test, LUMINANCE_TEST),
    ):
        df = fn(raw)
        assert df.height == 0 and df.schema == schema.polars_schema


def test_invalid_times_from_yaml_stop_minus_one_is_end_of_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import invalid_times, vis_rf_mapping

    yaml = "invalid_times:\n  - {start_time: 2.5, stop_time: 2.6, reason: probe drift}\n  - {start_time: 80, stop_time: -1, reason: end}\n"
    raw = _raw(tmp_path, monkeypatch, top_files={"invalid_times.yaml": yaml})
    df = invalid_times(raw)
    assert df.columns == ["session_id", "start_time", "stop_time", "reason"]
    assert df["stop_time"].to_list() == [2.6, 100.0]  # FakeSync.total_seconds
    assert df["reason"].to_list() == ["probe drift", "end"]
    # the RF trial 1 (flip 2.5167 .. 3.0167) overlaps the first interval
    assert vis_rf_mapping(raw)["trial_index"].to_list() == [0, 4]


def test_invalid_times_annotations_take_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import invalid_times

    yaml = "invalid_times: [{start_time: 1, stop_time: 2, reason: file}]\n"
    ann = {"invalid_times": [{"start_time": 5, "stop_time": 6, "reason": "manifest"}]}
    raw = _raw(tmp_path, monkeypatch, top_files={"invalid_times.yaml": yaml}, annotations=ann)
    assert invalid_times(raw)["reason"].to_list() == ["manifest"]


def test_bad_invalid_times_raise_typed_error_naming_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import invalid_times
    from npc_frames.errors import BadFormatError

    raw = _raw(
        tmp_path,
        monkeypatch,
        top_files={"invalid_times.yaml": "invalid_times: [{start_time: 3}]\n"},
    )
    with pytest.raises(BadFormatError) as e:
        invalid_times(raw)
    assert e.value.field == "invalid_times[0].stop_time" and "invalid_times.yaml" in str(
        e.value.path
    )


# ------------------------------------------------------------------ synthetic session (truth)
def _truth_table(truth: Any, script: str, name: str) -> Any:
    return next(s for s in truth.scripts if s["script_name"] == script)["truth"][name]


@pytest.mark.parametrize(
    ("component", "script"),
    [
        ("vis_rf_mapping", "RFMapping"),
        ("aud_rf_mapping", "RFMapping"),
        ("optotagging", "OptoTagging"),
    ],
)
def test_synth_interval_tables_equal_truth(
    synth_session: Any, synth_raw: Any, component: str, script: str
) -> None:
    from npc_frames.components import get
    from npc_frames.schemas import get_schema

    df = get(component)(synth_raw)
    truth = _truth_table(synth_session, script, component)
    assert df.height == len(truth["trial_index"])
    schema = get_schema(component)
    display = {"stim_start_time", "stim_stop_time"} if component == "vis_rf_mapping" else set()
    for col in schema.names[1:]:
        if col not in truth:
            continue
        exp = np.asarray(truth[col])
        got = df[col].to_numpy()
        if exp.dtype.kind == "f":
            atol = 1e-3 if col in display else 1e-4
            np.testing.assert_allclose(got.astype(float), exp, atol=atol, err_msg=col)
        else:
            assert got.tolist() == exp.tolist(), col


@pytest.fixture(scope="module")
def synth_invalid(tmp_path_factory: pytest.TempPathFactory) -> Any:
    synth = pytest.importorskip("npc_frames.synth")
    inv = [
        {"start_time": 100.0, "stop_time": 110.0, "reason": "probe drift"},
        {"start_time": 300.0, "stop_time": -1, "reason": "end of good data"},
    ]
    return synth.make_session(
        tmp_path_factory.mktemp("synth_invalid"),
        seed=5,
        minutes=2.0,
        ephys=False,
        video=False,
        invalid_times=inv,
    )


@pytest.mark.slow  # generates its own 2-minute session (~10 s)
def test_synth_invalid_times_file_drops_overlapping_trials(synth_invalid: Any) -> None:
    from npc_frames.components import get
    from npc_frames.paths import RawSession

    raw = RawSession.from_path(synth_invalid.raw_path)
    inv = get("invalid_times")(raw)
    assert inv["reason"].to_list() == ["probe drift", "end of good data"]
    assert inv["stop_time"][1] == pytest.approx(float(synth_invalid.sync_duration_s), abs=1e-3)
    truth = next(s for s in synth_invalid.scripts if s["script_name"] == "DynamicRouting1")
    t = truth["truth"]["trials"]
    start, stop = np.asarray(t["start_time"]), np.asarray(t["stop_time"])
    bad = np.zeros(start.size, dtype=bool)
    for a, b in zip(inv["start_time"], inv["stop_time"], strict=True):
        bad |= (start < b) & (stop > a)
    assert bad.any() and not bad.all()
    trials = get("trials")(raw)
    assert trials["trial_index"].to_list() == np.flatnonzero(~bad).tolist()
    ep = get("epochs")(raw)
    assert any("invalid_times" in tags for tags in ep["tags"].to_list())
