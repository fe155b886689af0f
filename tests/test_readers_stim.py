"""readers.stim: FORMATS §3.1–§3.3 serialisation rules, one test per rule, plus bad input."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from npc_frames.errors import BadFormatError, MissingFileError
from npc_frames.readers.stim import StimFile, open_stim

STR = h5py.string_dtype()


def write_stim(
    path: Path,
    *,
    frame_intervals: np.ndarray | None = None,
    start_time: str = "20230831_131418",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a TaskControl-like stim file following TaskControl.saveParameters (§3.2)."""
    if frame_intervals is None:
        frame_intervals = np.full(599, 1 / 60)
    with h5py.File(path, "w") as f:
        f.create_dataset("frameIntervals", data=np.asarray(frame_intervals, dtype=np.float64))
        f.create_dataset("startTime", data=start_time, dtype=STR)
        for key, value in (extra or {}).items():
            _save(f, key, value)
    return path


def _is_strs(v: Any) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _save(group: h5py.Group, key: str, value: Any) -> None:
    # the §3.2 rules, as TaskControl applies them
    if value is None:
        group.create_dataset(key, data=np.nan)
    elif isinstance(value, dict):
        sub = group.create_group(key)
        for k, v in value.items():
            _save(sub, k, v)
    elif isinstance(value, str):
        group.create_dataset(key, data=value, dtype=STR)
    elif isinstance(value, list) and value and all(_is_strs(v) for v in value):
        group.create_dataset(
            key, data=[v if isinstance(v, str) else str(v) for v in value], dtype=STR
        )
    elif isinstance(value, list) and value and len({np.size(v) for v in value}) > 1:
        d = group.create_dataset(key, (len(value),), dtype=h5py.vlen_dtype(np.float64))
        for i, v in enumerate(value):
            d[i] = np.asarray(v, dtype=np.float64)
    else:
        group.create_dataset(key, data=value)


@pytest.fixture
def stim_path(tmp_path: Path) -> Path:
    return write_stim(
        tmp_path / "DynamicRouting1_668755_20230831_131418.hdf5",
        extra={
            "rigName": "NP3",
            "taskVersion": None,
            "githubTaskScript": None,
            "frameRate": 60,
            "trialStim": ["vis1", "sound1", "catch"],
            "trialOptoDevice": [["laser_488"], ["laser_488"]],
            "trialSoundArray": [[0.1, 0.2, 0.3], [0.5]],
            "gratingOri": {"vis1": [0], "vis2": [90]},
            "lickFrames": [10, 50, 51],
            "trialResponse": [True, False, True],
            "trialOptoVoltage": [np.nan, 1.0, np.nan],
            "drawDiodeBox": True,
        },
    )


def test_frame_count_is_len_frame_intervals_plus_one(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.n_frames == 600
    assert stim.frame_intervals.shape == (599,)
    np.testing.assert_allclose(stim.frame_intervals, 1 / 60)


def test_script_name_is_file_stem_up_to_first_underscore(stim_path: Path) -> None:
    assert open_stim(stim_path).script_name == "DynamicRouting1"


def test_start_time_parsed_from_start_time_dataset(stim_path: Path) -> None:
    assert open_stim(stim_path).start_time == datetime.datetime(2023, 8, 31, 13, 14, 18)


def test_string_scalars_are_decoded_from_vlen_utf8(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.str("rigName") == "NP3"
    assert stim.get("rigName") == "NP3"


def test_nan_scalar_means_unset_and_reads_as_none(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.get("taskVersion") is None
    assert stim.str("githubTaskScript") is None
    # NaN elements inside arrays are data and are kept
    v = stim.array("trialOptoVoltage")
    assert np.isnan(v[0]) and v[1] == 1.0


def test_string_lists_and_nested_list_reprs(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.strs("trialStim") == ["vis1", "sound1", "catch"]
    assert stim.strs("trialOptoDevice") == ["['laser_488']", "['laser_488']"]
    assert stim.strs("rigName") == ["NP3"]


def test_ragged_lists_read_as_vlen_float_arrays(stim_path: Path) -> None:
    arr = open_stim(stim_path).get("trialSoundArray")
    assert arr.dtype == object and len(arr) == 2
    np.testing.assert_allclose(arr[0], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(arr[1], [0.5])


def test_dicts_read_back_as_groups(stim_path: Path) -> None:
    g = open_stim(stim_path).group("gratingOri")
    assert set(g) == {"vis1", "vis2"}
    assert g["vis2"].tolist() == [90]


def test_plain_datasets_keep_their_dtype(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.array("lickFrames").dtype.kind == "i"
    assert stim.array("trialResponse").dtype == np.bool_
    assert stim.get("frameRate") == 60 and isinstance(stim.get("frameRate"), int)
    assert stim.get("drawDiodeBox") is True
    assert stim.array("lickFrames", float).dtype == np.float64


def test_get_returns_default_and_has_reports_absent_keys(stim_path: Path) -> None:
    stim = open_stim(stim_path)
    assert stim.get("noSuchKey", 5) == 5
    assert not stim.has("noSuchKey") and stim.has("gratingOri/vis1")


def test_agrees_with_raw_h5py_values(stim_path: Path) -> None:
    """Decoded frameIntervals/startTime equal the raw h5py values."""
    with h5py.File(stim_path, "r") as f:
        theirs_fi = f["frameIntervals"][:]
        theirs_start = f["startTime"].asstr()[()]
    stim = open_stim(stim_path)
    np.testing.assert_array_equal(stim.frame_intervals, theirs_fi)
    assert stim.start_time.strftime("%Y%m%d_%H%M%S") == theirs_start


def test_open_is_memoized_and_survives_a_caller_closing_it(stim_path: Path) -> None:
    a = open_stim(stim_path)
    assert open_stim(str(stim_path)) is a
    a.close()
    b = open_stim(stim_path)
    assert b is not a and b.n_frames == 600


# -------------------------------------------------------------------------------- bad input
def test_zero_frame_stim_file_raises_bad_format(tmp_path: Path) -> None:
    path = write_stim(
        tmp_path / "Spontaneous_668755_20230831_120000.hdf5", frame_intervals=np.empty(0)
    )
    with pytest.raises(BadFormatError) as exc:
        open_stim(path)
    assert exc.value.field == "frameIntervals"
    assert exc.value.path == str(path)


def test_missing_frame_intervals_raises_bad_format(tmp_path: Path) -> None:
    path = tmp_path / "RFMapping_668755_20230831_124434.hdf5"
    with h5py.File(path, "w") as f:
        f["startTime"] = "20230831_124434"
    with pytest.raises(BadFormatError) as exc:
        open_stim(path)
    assert exc.value.field == "frameIntervals"


def test_unreadable_file_raises_bad_format(tmp_path: Path) -> None:
    path = tmp_path / "DynamicRouting1_668755_20230831_131418.hdf5"
    path.write_bytes(b"not an hdf5 file at all" * 10)
    with pytest.raises(BadFormatError) as exc:
        open_stim(path)
    assert exc.value.path == str(path)


def test_missing_file_raises_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        open_stim(tmp_path / "none.hdf5")


def test_bad_start_time_and_missing_key_name_the_field(stim_path: Path, tmp_path: Path) -> None:
    bad = write_stim(tmp_path / "X_1_2.hdf5", start_time="yesterday")
    with pytest.raises(BadFormatError) as exc:
        _ = open_stim(bad).start_time
    assert exc.value.field == "startTime"
    stim: StimFile = open_stim(stim_path)
    with pytest.raises(BadFormatError) as exc:
        stim.array("trialEndFrame")
    assert exc.value.field == "trialEndFrame" and exc.value.path == os.fspath(stim_path)
    with pytest.raises(BadFormatError):
        stim.group("rigName")
    with pytest.raises(BadFormatError):
        stim.str("lickFrames")


@pytest.mark.slow  # builds the shared synthetic session
def test_synth_task_file_agrees_with_dynroutdata(request: pytest.FixtureRequest) -> None:
    """DynamicRoutingTask's own DynRoutData reads the same values from a synthetic DR1 file,
    and its frame times ([0, cumsum(frameIntervals)]) equal our task-clock flip times."""
    from npc_frames.errors import NpcFramesError
    from npc_frames.timing import frame_times_from_stim

    utils = pytest.importorskip("DynamicRoutingTask.Analysis.DynamicRoutingAnalysisUtils")
    synth = pytest.importorskip("npc_frames.synth")
    if not hasattr(synth, "make_session"):
        pytest.skip("npc_frames.synth.make_session not available yet")
    try:
        truth = request.getfixturevalue("synth_session")
    except NpcFramesError as exc:
        pytest.skip(f"synthetic session could not be built: {exc}")
    path = next(Path(truth.raw_path, "behavior").glob("DynamicRouting1_*.hdf5"))
    theirs = utils.DynRoutData()
    theirs.loadBehavData(str(path))
    stim = open_stim(path)
    assert stim.str("rigName") == theirs.rigName
    assert stim.str("startTime") == theirs.startTime
    assert stim.strs("trialStim")[: theirs.nTrials] == list(theirs.trialStim)
    np.testing.assert_array_equal(stim.array("lickFrames"), theirs.lickFrames)
    np.testing.assert_array_equal(stim.array("trialEndFrame"), theirs.trialEndFrame)
    np.testing.assert_allclose(
        frame_times_from_stim(stim).flip, theirs.frameTimes, rtol=0, atol=1e-12
    )
