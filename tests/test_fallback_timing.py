"""Sound/opto fallback timing: the one rule for which trials a sync line timed, the order of the
three methods, the lazy NI-DAQ accessor, and the component modules' public names."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npc_frames.components import _nidaq
from npc_frames.components import _sound_opto as so
from npc_frames.components._task import stim_first_value
from npc_frames.errors import BadFormatError

times = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)


def brute_force_line_onsets(
    edges: list[float], trigger: list[float], lead: list[float], tolerance: float
) -> list[float]:
    """Per trial, scan every edge: the first one strictly after the trigger, if close enough."""
    out = []
    for t, ld in zip(trigger, lead, strict=True):
        after = [e for e in edges if e > t] if not math.isnan(t) else []
        first = min(after) if after else math.nan
        limit = (0.0 if math.isnan(ld) else ld) + tolerance
        out.append(first if after and first - t <= limit else math.nan)
    return out


@settings(max_examples=300, deadline=None)
@given(
    edges=st.lists(times, max_size=30).map(sorted),
    trials=st.lists(
        st.tuples(
            st.one_of(times, st.just(math.nan)),
            st.one_of(st.floats(0.0, 2.0), st.just(math.nan)),
        ),
        max_size=30,
    ),
    tolerance=st.floats(0.0, 3.0),
)
def test_line_onsets_match_a_per_trial_scan_of_every_edge(
    edges: list[float], trials: list[tuple[float, float]], tolerance: float
) -> None:
    trigger = [t for t, _ in trials]
    lead = [ld for _, ld in trials]
    got = so.line_onsets(
        np.array(edges, dtype=np.float64),
        np.array(trigger),
        lead=np.array(lead),
        tolerance=tolerance,
    )
    want = brute_force_line_onsets(edges, trigger, lead, tolerance)
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float64))


def test_line_onsets_without_a_line_time_no_trial() -> None:
    trigger = np.array([1.0, 2.0, np.nan])
    assert np.isnan(so.line_onsets(None, trigger)).all()
    assert np.isnan(so.line_onsets(np.empty(0), trigger)).all()


def test_line_onsets_default_tolerance_is_max_onset_latency() -> None:
    trigger = np.array([1.0, 5.0])
    edges = np.array([1.0 + so.MAX_ONSET_LATENCY, 5.0 + so.MAX_ONSET_LATENCY + 0.01])
    np.testing.assert_array_equal(so.line_onsets(edges, trigger), [edges[0], np.nan])


def test_method2_function_gets_only_the_untimed_trials_and_only_when_needed() -> None:
    trigger = np.array([1.0, 2.0, 3.0, np.nan])
    rising = np.array([1.01, 10.0])  # times trial 0 only
    nominal = np.full(4, 0.5)
    wave = np.full(4, 0.5 + 1 / 48000)
    seen: list[np.ndarray] = []

    def nidaq(untimed: np.ndarray) -> np.ndarray:
        seen.append(untimed.copy())
        return untimed + 0.02

    onset, offset, from_line = so.sound_times(trigger, nominal, wave, rising, nidaq_onset=nidaq)
    np.testing.assert_array_equal(seen[0], [np.nan, 2.0, 3.0, np.nan])
    np.testing.assert_allclose(onset[:3], [1.01, 2.02, 3.02])
    np.testing.assert_allclose(offset[:3], onset[:3] + wave[:3])
    np.testing.assert_array_equal(from_line, [True, False, False, False])

    # every trial timed by the line: the function is not called
    seen.clear()
    so.sound_times(trigger[:1], nominal[:1], wave[:1], rising, nidaq_onset=nidaq)
    assert seen == []

    # no NI-DAQ recording (None): flip times, nominal offsets
    onset, offset, _ = so.sound_times(trigger, nominal, wave, rising, nidaq_onset=lambda t: None)
    np.testing.assert_allclose(onset[:3], [1.01, 2.0, 3.0])
    np.testing.assert_allclose(offset[1:3], [2.5, 3.5])


def test_opto_lead_lets_the_line_time_a_delayed_command() -> None:
    trigger = np.array([1.0, 2.0])
    a_start = np.array([0.8, 0.8])  # the command turns positive 0.8 s after the trigger
    a_stop = a_start + 0.2
    rising = np.array([1.0 + 0.8 + 0.01, 2.0 + 0.8 + so.MAX_ONSET_LATENCY + 0.01])
    falling = rising + 0.2
    onset, offset, from_line = so.opto_times(
        trigger, a_start, a_stop, np.full(2, 0.2), rising, falling, nidaq_start=lambda t: t + 0.03
    )
    np.testing.assert_array_equal(from_line, [True, False])
    np.testing.assert_allclose(onset, [rising[0], 2.03 + 0.8])
    np.testing.assert_allclose(offset, [falling[0], 2.03 + 1.0])


def test_nidaq_on_demand_reads_once_and_only_when_asked() -> None:
    calls: list[int] = []
    rec = _nidaq.NidaqRecording("NI-DAQmx-105.PXI-6133", np.zeros((10, 8), np.int16), 0.0, 30000.0)

    def read() -> _nidaq.NidaqRecording:
        calls.append(1)
        return rec

    daq = _nidaq.NidaqOnDemand(read)
    assert calls == [] and not daq.source_is_none
    assert daq.get() is rec and daq.get() is rec
    assert calls == [1]
    assert _nidaq.NidaqOnDemand(rec).get() is rec
    none = _nidaq.NidaqOnDemand(None)
    assert none.source_is_none and none.get() is None


def test_a_broken_zarr_install_is_loud_not_a_silent_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = tmp_path / "ecephys_clipped" / "Record Node 102"
    stream = types.SimpleNamespace(
        record_node=str(node),
        recording_path=str(node / "experiment1" / "recording1"),
        folder_name="NI-DAQmx-105.PXI-6133",
        num_channels=8,
    )
    store = (
        tmp_path / "ecephys_compressed" / "experiment1_Record Node 102#NI-DAQmx-105.PXI-6133.zarr"
    )
    store.mkdir(parents=True)
    # an empty directory is no zarr store: no full traces, method 2 uses the clipped file
    assert _nidaq._compressed_traces(stream) is None
    monkeypatch.setitem(sys.modules, "zarr", None)  # what a broken install looks like to import
    with pytest.raises(ImportError):
        _nidaq._compressed_traces(stream)


def test_stim_first_value_reads_scalars_arrays_and_per_device_groups(tmp_path: Path) -> None:
    from npc_frames.readers.stim import open_stim

    path = tmp_path / "DynamicRouting1_366122_20230101_120000.hdf5"
    with h5py.File(path, "w") as f:
        f["frameIntervals"] = np.full(10, 1 / 60)
        f["scalar"] = 0.25
        f["array"] = np.array([0.5, 0.7])
        f["nan"] = np.nan
        f.create_group("group")["laser_488"] = 0.125
        f["text"] = "not a number"
    stim = open_stim(path)
    assert stim_first_value(stim, "scalar") == 0.25
    assert stim_first_value(stim, "array") == 0.5
    assert stim_first_value(stim, "group") == 0.125
    assert stim_first_value(stim, "nan", default=-1.0) == -1.0
    assert stim_first_value(stim, "absent", default=-2.0) == -2.0
    with pytest.raises(BadFormatError) as exc:
        stim_first_value(stim, "text")
    assert exc.value.field == "text"


@pytest.mark.parametrize("name", ["trials", "epochs", "performance"])
def test_component_stays_a_function_after_its_module_is_imported(name: str) -> None:
    import npc_frames as nf
    from npc_frames.components import COMPONENTS

    module, func = COMPONENTS[name].split(":")
    importlib.import_module(module)
    component = getattr(nf.components, name)
    assert isinstance(component, types.FunctionType)
    assert component.__name__ == func and component.__module__ == module
