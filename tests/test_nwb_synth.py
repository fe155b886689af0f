"""NWB export of a real synthetic session: raw files -> components -> cache -> NWB -> frames again.

Uses the shared ``synth_session`` fixture (3 minutes, 2 probes, opto, video) converted with the real
components into a temporary cache; every component must come back from the NWB file (pynwb and
lazynwb) equal to the cached frame, and raw AP/LFP must stream out of the memory maps unchanged.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.nwb_frames import TABLE_PATHS, compare, inspector_messages, pynwb_frame
from npc_frames.cli import main
from npc_frames.nwb import CAMERA_NAMES, to_nwb, validate_nwb, write_nwb

pytestmark = pytest.mark.slow
pynwb = pytest.importorskip("pynwb")
warnings.filterwarnings("ignore", message=".*ndx-events.*")


@pytest.fixture(scope="module")
def cached(synth_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(session id, cache root) of the synthetic session converted by the real components."""
    cache = pytest.importorskip("npc_frames.cache")
    root = tmp_path_factory.mktemp("nwb_cache")
    catalog = cache.convert([synth_session.raw_path], root, progress=False)
    failed = catalog.filter(pl.col("status") == "failed")
    if failed.height:
        pytest.skip(f"components failed on the synthetic session: {failed.rows()}")
    return str(synth_session.session_id), root


@pytest.fixture(scope="module")
def frames(cached: tuple[str, Path]) -> dict[str, pl.DataFrame]:
    from npc_frames.cache import read_session

    return read_session(*cached)


@pytest.fixture(scope="module")
def nwb_path(cached: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    session_id, root = cached
    out = tmp_path_factory.mktemp("nwb_out") / f"{session_id}.nwb"
    status = main(["nwb", session_id, "--cache", str(root), "-o", str(out), "--validate"])
    assert status == 0
    return out


def test_cli_nwb_writes_a_valid_file(nwb_path: Path) -> None:
    assert validate_nwb(nwb_path) == []


def test_nwbinspector_on_synthetic_session(nwb_path: Path) -> None:
    pytest.importorskip("nwbinspector")
    bad = [
        (m.check_function_name, m.location, m.message)
        for m in inspector_messages(nwb_path)
        if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR")
    ]
    assert not bad


def test_every_cached_component_round_trips(
    frames: dict[str, pl.DataFrame], nwb_path: Path
) -> None:
    lazynwb = pytest.importorskip("lazynwb")
    checked = []
    with pynwb.NWBHDF5IO(str(nwb_path), "r") as io:
        nwb = io.read()
        for component, table_path in TABLE_PATHS.items():
            df = frames.get(component)
            if df is None or df.height == 0:
                continue
            obj: Any
            parts = table_path.strip("/").split("/")
            if parts[0] == "units":
                obj = nwb.units
            elif parts[0] == "general":
                obj = nwb.electrodes
            elif parts[0] == "processing":
                obj = nwb.processing["behavior"][parts[-1]]
            elif parts[1] in ("trials", "epochs", "invalid_times"):
                obj = getattr(nwb, parts[1])
            else:
                obj = nwb.intervals[parts[1]]
            compare(component, df, pynwb_frame(obj), frames.get("unit_waveforms"))
            got = lazynwb.get_df(
                str(nwb_path),
                table_path,
                exact_path=True,
                exclude_array_columns=False,
                as_polars=True,
                disable_progress=True,
            )
            compare(
                component,
                df,
                got.drop([c for c in got.columns if c.startswith("_")]),
                frames.get("unit_waveforms"),
            )
            checked.append(component)
        vft = frames["video_frame_times"]
        for (cam,), part in vft.group_by("camera"):
            got = pynwb_frame(nwb.acquisition[f"frametimes_{CAMERA_NAMES[str(cam)]}"])
            compare("video_frame_times", part.drop("camera"), got)
        rs = nwb.processing["behavior"]["running_speed"]
        np.testing.assert_array_equal(rs.data[:], frames["running_speed"]["speed"].to_numpy())
        times = rs.timestamps[:] if rs.timestamps is not None else rs.get_timestamps()
        np.testing.assert_allclose(
            times, frames["running_speed"]["timestamps"].to_numpy(), atol=1e-9
        )
        probes = [d for d in nwb.devices.values() if d.manufacturer == "imec"]
        assert len(probes) == frames["devices"].height
        # plus one NewScale stage per manipulator_positions row
        stages = [d for d in nwb.devices.values() if d.manufacturer == "NewScale"]
        assert len(stages) == frames["manipulator_positions"].height
        assert set(nwb.electrode_groups) == set(frames["electrode_groups"]["name"])
    assert {"trials", "units", "electrodes", "licks"} <= set(checked)


def test_units_match_the_synthetic_truth_spike_counts(
    frames: dict[str, pl.DataFrame], nwb_path: Path
) -> None:
    units = frames["units"]
    with h5py.File(nwb_path) as f:
        index = f["units/spike_times_index"][:]
        flat = f["units/spike_times"][:]
    counts = np.diff(np.concatenate([[0], index]))
    np.testing.assert_array_equal(counts, units["num_spikes"].to_numpy())
    assert flat.size == int(units["num_spikes"].sum())


def test_include_raw_streams_ap_and_lfp_on_the_sync_clock(
    frames: dict[str, pl.DataFrame], synth_raw: Any, tmp_path: Path
) -> None:
    from npc_frames import alignment
    from npc_frames.readers import openephys as oe

    nwb = to_nwb(frames, include_raw=True, raw=synth_raw)
    path = write_nwb(nwb, tmp_path / "raw.nwb")
    clocks = alignment.session_clocks(synth_raw)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        read = io.read()
        for group in frames["electrode_groups"]["name"]:
            for band in ("ap", "lfp"):
                series = read.acquisition[f"{group}_{band}"]
                stream = clocks.probe_stream(group.removeprefix("probe"), band)
                clock = clocks.clock(stream)
                mm = oe.continuous_memmap(stream)
                assert series.data.shape == mm.shape
                # spot-check the beginning, the middle and the end of the stream
                for sl in (slice(0, 1000), slice(len(mm) // 2, len(mm) // 2 + 10), slice(-5, None)):
                    np.testing.assert_array_equal(series.data[sl], mm[sl])
                assert series.starting_time == pytest.approx(clock.start_time, abs=1e-12)
                assert series.rate == pytest.approx(clock.rate_on_sync, rel=1e-12)
                assert series.conversion == pytest.approx(0.195e-6, rel=1e-3)
                rows = series.electrodes.data[:]
                names = frames["electrodes"]["group_name"].to_numpy()[rows]
                assert set(names) == {group}
    assert validate_nwb(path) == []


def test_units_spike_amplitudes_equal_the_sorting_truth(
    synth_session: Any, frames: dict[str, pl.DataFrame], nwb_path: Path
) -> None:
    """The NWB units table carries the per-spike amplitudes of the spike_amplitudes component,
    row by row as the units: equal to the generator's per-spike amplitudes."""
    e = synth_session.ephys

    def get(key: str) -> Any:
        return e[key] if isinstance(e, dict) else getattr(e, key)

    counts = np.asarray(get("unit_spike_count"))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ids = [
        f"{synth_session.session_id}_{p}-{c}"
        for p, c in zip(np.asarray(get("unit_probe")).astype(str), get("unit_cluster_id"))
    ]
    amps = np.asarray(get("spike_amplitude"))
    truth = {u: amps[a:b] for u, a, b in zip(ids, offsets[:-1], offsets[1:])}
    units = frames["units"]
    with h5py.File(nwb_path) as f:
        index = f["units/spike_amplitudes_index"][:]
        flat = f["units/spike_amplitudes"][:]
    starts = np.concatenate([[0], index[:-1]])
    assert len(index) == units.height == len(truth)
    for uid, a, b in zip(units["unit_id"].to_list(), starts, index):
        np.testing.assert_allclose(flat[a:b], truth[uid], rtol=1e-6)
