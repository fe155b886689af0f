"""NWB export: validity, best practice, round trip of every component, bad input (FORMATS §13).

The frames come from ``tests/helpers/nwb_frames.py`` (FORMATS column names, conformed to the declared
schemas, every dtype the cache holds); ``test_nwb_synth.py`` repeats the round trip on a real
synthetic session once the components and cache are available.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.nwb_frames import (
    SESSION_ID,
    TABLE_PATHS,
    _fake_cache,
    compare,
    inspector_messages,
    make_frames,
    pynwb_frame,
)
from npc_frames.errors import CacheError, InconsistentDataError, ParameterError, SchemaError
from npc_frames.nwb import (
    CAMERA_NAMES,
    to_nwb,
    validate_nwb,
    write_nwb,
)

pynwb = pytest.importorskip("pynwb")

warnings.filterwarnings("ignore", message=".*ndx-events.*")


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return make_frames()


@pytest.fixture(scope="module")
def nwb_path(frames: dict[str, pl.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nwb") / f"{SESSION_ID}.nwb"
    return write_nwb(frames, path)


@pytest.fixture(scope="module")
def nwb_read(nwb_path: Path) -> Iterator[Any]:
    with pynwb.NWBHDF5IO(str(nwb_path), "r") as io:
        yield io.read()


# --------------------------------------------------------------------------------- validity
def test_pynwb_validation_passes(nwb_path: Path) -> None:
    assert validate_nwb(nwb_path) == []


def test_nwbinspector_reports_no_critical_or_best_practice_violation(nwb_path: Path) -> None:
    pytest.importorskip("nwbinspector")
    messages = inspector_messages(nwb_path)
    bad = [
        m
        for m in messages
        if m.importance.name in ("CRITICAL", "BEST_PRACTICE_VIOLATION", "ERROR", "PYNWB_VALIDATION")
    ]
    assert not bad, [(m.check_function_name, m.location, m.message) for m in bad]
    # Remaining BEST_PRACTICE_SUGGESTIONs, deliberately kept:
    # - check_single_row: performance/aud_rf_mapping/luminance_test and the one-row
    #   analysis/sessions and analysis/subjects tables have one row in a short session; they are
    #   tables by contract (concatenated across sessions), not scalars;
    # - check_column_binary_capability: block_index is 0/1 in a two-block session; it is an index,
    #   not a flag;
    # - check_col_not_nan: schema columns that are NaN in this session (e.g. dprimes of blocks
    #   without nogo trials) stay so that every session's table has the same columns.
    allowed = {"check_single_row", "check_column_binary_capability", "check_col_not_nan"}
    others = {m.check_function_name for m in messages} - allowed
    assert not others, others


# ------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("component", sorted(TABLE_PATHS))
def test_round_trip_pynwb_every_table_component(
    component: str, frames: dict[str, pl.DataFrame], nwb_read: Any
) -> None:
    df = frames[component]
    path = TABLE_PATHS[component].strip("/").split("/")
    obj: Any = nwb_read
    if df.height == 0:
        # zero-row component -> no table
        assert path[-1] not in (nwb_read.intervals or {})
        return
    if path[0] == "intervals":
        obj = nwb_read.intervals[path[1]] if path[1] not in ("trials", "epochs") else None
        obj = obj or getattr(nwb_read, path[1])
    elif path[0] == "processing":
        obj = nwb_read.processing["behavior"][path[-1]]
    elif path[0] == "units":
        obj = nwb_read.units
    else:
        obj = nwb_read.electrodes
    compare(component, df, pynwb_frame(obj), frames.get("unit_waveforms"))


@pytest.mark.parametrize("component", sorted(TABLE_PATHS))
def test_round_trip_lazynwb_every_table_component(
    component: str, frames: dict[str, pl.DataFrame], nwb_path: Path
) -> None:
    lazynwb = pytest.importorskip("lazynwb")
    df = frames[component]
    if df.height == 0:
        with h5py.File(nwb_path) as f:
            assert TABLE_PATHS[component] not in f
        return
    got = lazynwb.get_df(
        str(nwb_path),
        TABLE_PATHS[component],
        exact_path=True,
        exclude_array_columns=False,
        as_polars=True,
        disable_progress=True,
    )
    got = got.drop([c for c in got.columns if c.startswith("_")])
    compare(component, df, got, frames.get("unit_waveforms"))


def test_round_trip_lazynwb_keeps_dtypes(frames: dict[str, pl.DataFrame], nwb_path: Path) -> None:
    lazynwb = pytest.importorskip("lazynwb")
    units = lazynwb.get_df(
        str(nwb_path), "/units", exact_path=True, exclude_array_columns=False, as_polars=True
    )
    assert units["spike_times"].dtype == pl.List(pl.Float64)
    assert units["obs_intervals"].dtype == pl.List(pl.List(pl.Float64))
    assert units["default_qc"].dtype == pl.Boolean
    assert units["cluster_id"].dtype == pl.Int64
    assert units["decoder_label"].dtype == pl.String
    # a null string reads back as "" (HDF5 has no null)
    src = frames["units"]["decoder_label"]
    assert units["decoder_label"].to_list() == src.fill_null("").to_list()
    trials = lazynwb.get_df(str(nwb_path), "/intervals/trials", exact_path=True, as_polars=True)
    # an int column with nulls -> float with NaN; a bool column with nulls -> float with NaN
    assert trials["repeat_index"].dtype == pl.Float64
    assert (
        trials["repeat_index"].is_nan().to_list()
        == frames["trials"]["repeat_index"].is_null().to_list()
    )
    assert trials["is_opto"].dtype == pl.Float64
    assert trials["is_hit"].dtype == pl.Boolean
    # an all-null column is written too (every file has every schema column): NaN for numbers
    assert frames["trials"]["opto_wavelength"].null_count() == frames["trials"].height
    assert trials["opto_wavelength"].dtype == pl.Float64
    assert trials["opto_wavelength"].is_nan().all()


def test_units_spike_times_are_written_exactly(
    frames: dict[str, pl.DataFrame], nwb_path: Path
) -> None:
    src = frames["units"]
    with h5py.File(nwb_path) as f:
        flat = f["units/spike_times"][:]
        index = f["units/spike_times_index"][:]
    want = np.concatenate([np.asarray(x, dtype=float) for x in src["spike_times"].to_list()])
    np.testing.assert_array_equal(flat, want)
    np.testing.assert_array_equal(index, np.cumsum(src["spike_times"].list.len().to_numpy()))
    assert index[0] == 0  # the silent first unit keeps its empty list


def test_units_link_peak_channel_electrode_and_group(
    frames: dict[str, pl.DataFrame], nwb_read: Any
) -> None:
    units, electrodes = frames["units"], frames["electrodes"]
    el = nwb_read.electrodes
    for i in range(len(nwb_read.units)):
        row = int(nwb_read.units["electrodes"][i].index[0])
        assert el["group_name"][row] == units["electrode_group_name"][i]
        assert el["channel"][row] == units["peak_channel"][i]
        assert nwb_read.units["electrode_group"][i].name == units["electrode_group_name"][i]
    assert len(el) == electrodes.height
    assert nwb_read.units.resolution == pytest.approx(1 / 30000)


def test_unannotated_electrodes_get_ccf_root_and_keep_their_label(nwb_read: Any) -> None:
    el = nwb_read.electrodes.to_dataframe()
    unannotated = el["location_label"] == "unannotated"
    assert unannotated.any()
    assert set(el.loc[unannotated, "location"]) == {"root"}
    assert set(el.loc[~unannotated, "location"]) == {"MOs"}


def test_session_metadata_and_subject_age_in_days(
    frames: dict[str, pl.DataFrame], nwb_read: Any
) -> None:
    s = frames["sessions"].row(0, named=True)
    assert nwb_read.session_id == SESSION_ID
    assert nwb_read.session_start_time == s["session_start_time"]  # sub-second part kept
    assert nwb_read.session_start_time.microsecond == 250000
    assert list(nwb_read.keywords[:]) == s["keywords"]
    assert nwb_read.lab == s["rig"]
    assert list(nwb_read.experimenter) == ["Gale, Sam"]
    assert nwb_read.institution == s["institution"]
    assert nwb_read.source_script == s["source_script"]
    subj = frames["subjects"].row(0, named=True)
    start = s["session_start_time"].date()
    assert nwb_read.subject.age == f"P{(start - subj['date_of_birth']).days}D"
    assert nwb_read.subject.sex == "M"
    assert nwb_read.subject.subject_id == str(subj["subject_id"])
    assert nwb_read.subject.species == "Mus musculus"
    # every session column, verbatim, for flags without an NWB field
    flags = pynwb_frame(nwb_read.analysis["sessions"])
    assert flags["is_ephys"].to_list() == [True]
    assert flags["date"].to_list() == ["2023-08-31"]


def test_running_speed_time_series_in_cm_per_s(
    frames: dict[str, pl.DataFrame], nwb_read: Any
) -> None:
    ts = nwb_read.processing["behavior"]["running_speed"]
    src = frames["running_speed"]
    assert ts.unit == "cm/s"
    np.testing.assert_array_equal(ts.data[:], src["speed"].to_numpy())
    # regular timestamps are stored as starting_time + rate (NWB best practice), exact to 1 ns
    times = ts.timestamps[:] if ts.timestamps is not None else ts.get_timestamps()
    np.testing.assert_allclose(times, src["timestamps"].to_numpy(), atol=1e-9, rtol=0)


def test_video_frame_times_one_table_per_camera(
    frames: dict[str, pl.DataFrame], nwb_read: Any
) -> None:
    src = frames["video_frame_times"]
    cams = src["camera"].unique().to_list()
    assert sorted(cams) == ["eye_camera", "side_camera"]
    for cam in cams:
        part = src.filter(pl.col("camera") == cam)
        got = pynwb_frame(nwb_read.acquisition[f"frametimes_{CAMERA_NAMES[cam]}"])
        compare("video_frame_times", part.drop("camera"), got)
        assert np.isnan(got["timestamp"][0])  # metadata frame
    assert not {"frametimes_front_camera", "frametimes_zoomed_side_camera"} & set(
        nwb_read.acquisition
    )


def test_descriptions_come_from_schemas(nwb_read: Any) -> None:
    from npc_frames.schemas import SCHEMAS

    trials = nwb_read.trials
    assert trials["stim_name"].description == SCHEMAS["trials"].column("stim_name").description
    assert trials.description == SCHEMAS["trials"].description
    licks = nwb_read.processing["behavior"]["licks"]
    assert licks["timestamp"].description == SCHEMAS["licks"].column("timestamps").description


def test_events_are_core_events_tables(nwb_read: Any) -> None:
    from pynwb.event import EventsTable

    for name in ("licks", "rewards", "quiescent_interval_violations"):
        assert isinstance(nwb_read.processing["behavior"][name], EventsTable)


# ------------------------------------------------------------------------------ compression
@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compression_round_trips_and_compresses_big_datasets(
    compression: str, frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    big = make_frames(n_units_per_probe=6, n_channels=2100)  # > COMPRESS_MIN_ELEMENTS rows
    path = write_nwb(big, tmp_path / "big.nwb", compression=compression)  # type: ignore[arg-type]
    with h5py.File(path) as f:
        assert f["units/spike_times"].compression is None  # small: left uncompressed
        assert f["general/extracellular_ephys/electrodes/rel_x"].compression == compression
        np.testing.assert_array_equal(
            f["general/extracellular_ephys/electrodes/rel_y"][:],
            big["electrodes"]["rel_y"].to_numpy(),
        )


def test_unknown_compression_is_a_parameter_error(
    frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    with pytest.raises(ParameterError, match="compression"):
        write_nwb(frames, tmp_path / "x.nwb", compression="zstd")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- bad input
def test_frame_missing_required_columns_names_them(frames: dict[str, pl.DataFrame]) -> None:
    bad = dict(frames)
    bad["trials"] = frames["trials"].drop("stop_time", "stim_name")
    with pytest.raises(SchemaError) as info:
        to_nwb(bad)
    assert "trials" in str(info.value)
    assert "stop_time" in str(info.value) and "stim_name" in str(info.value)


def test_units_without_spike_times_is_a_schema_error(frames: dict[str, pl.DataFrame]) -> None:
    bad = dict(frames)
    bad["units"] = frames["units"].drop("spike_times")
    with pytest.raises(SchemaError, match="spike_times"):
        to_nwb(bad)


def test_missing_sessions_component_is_a_schema_error(frames: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(SchemaError, match="sessions"):
        to_nwb({k: v for k, v in frames.items() if k != "sessions"})


def test_unit_on_unknown_probe_is_inconsistent(frames: dict[str, pl.DataFrame]) -> None:
    bad = dict(frames)
    bad["units"] = frames["units"].with_columns(pl.lit("probeZ").alias("electrode_group_name"))
    with pytest.raises(InconsistentDataError, match="probeZ"):
        to_nwb(bad)


def test_failed_write_leaves_no_file(frames: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    bad = dict(frames)
    bad["electrodes"] = frames["electrodes"].drop("group_name")
    dest = tmp_path / "out.nwb"
    with pytest.raises(SchemaError, match="group_name"):
        write_nwb(bad, dest)
    assert list(tmp_path.iterdir()) == []


def test_error_during_hdf5_write_leaves_no_file(
    frames: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nwb = to_nwb(frames)
    dest = tmp_path / "out.nwb"
    dest.write_bytes(b"previous version")

    def boom(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        write_nwb(nwb, dest)
    # the previous file is untouched and no temporary file is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["out.nwb"]
    assert dest.read_bytes() == b"previous version"


def test_session_absent_from_cache_is_a_cache_error(tmp_path: Path) -> None:
    pytest.importorskip("npc_frames.cache")
    with pytest.raises(CacheError, match="668755_2023-08-31"):
        to_nwb("668755_2023-08-31", cache=tmp_path)
    with pytest.raises(CacheError):
        write_nwb("668755_2023-08-31", tmp_path / "x.nwb", cache=tmp_path)
    assert not (tmp_path / "x.nwb").exists()


def test_cache_with_failed_component_is_a_cache_error_naming_it(
    frames: dict[str, pl.DataFrame], tmp_path: Path
) -> None:
    _fake_cache(tmp_path, frames, {"units": "AlignmentError: no matching barcodes"})
    with pytest.raises(CacheError) as info:
        write_nwb(SESSION_ID, tmp_path / "x.nwb", cache=tmp_path)
    assert "units" in str(info.value) and "no matching barcodes" in str(info.value)
    assert not (tmp_path / "x.nwb").exists()
    # the healthy components can still be exported by asking for them
    nwb = to_nwb(SESSION_ID, cache=tmp_path, components=["trials", "licks"])
    assert nwb.units is None and len(nwb.trials) == frames["trials"].height


def test_session_from_cache_round_trips(frames: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    _fake_cache(tmp_path, frames, {})
    from npc_frames.ids import SessionId

    # a SessionId (or its "_0" spelling) finds the same cached session
    path = write_nwb(SessionId.parse(SESSION_ID + "_0"), tmp_path / "x.nwb", cache=tmp_path)  # type: ignore[arg-type]
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        compare("trials", frames["trials"], pynwb_frame(nwb.trials))
        compare("units", frames["units"], pynwb_frame(nwb.units), frames["unit_waveforms"])


def test_session_argument_of_wrong_type_is_a_parameter_error() -> None:
    with pytest.raises(ParameterError):
        to_nwb(42)  # type: ignore[arg-type]


def test_naive_session_start_time_is_taken_as_pacific(frames: dict[str, pl.DataFrame]) -> None:
    f = dict(frames)
    f["sessions"] = frames["sessions"].with_columns(
        pl.col("session_start_time").dt.replace_time_zone(None)
    )
    nwb = to_nwb({"sessions": f["sessions"]})
    assert nwb.session_start_time.utcoffset() == datetime.timedelta(hours=-7)  # PDT in August


def test_write_nwb_returns_the_path(frames: dict[str, pl.DataFrame], tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "s.nwb"
    assert write_nwb({"sessions": frames["sessions"]}, dest) == dest
    assert dest.exists() and os.path.getsize(dest) > 0


# ------------------------------------------------------------------------------------- raw
RAW = object()  # stands for a RawSession: passed through to the (faked) stream reader


def test_include_raw_streams_memmaps_in_chunks_with_compression(
    frames: dict[str, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AP/LFP come out of the memory maps unchanged, chunked, on the stream's sync clock."""
    from npc_frames import nwb_ephys

    n_ch = int(frames["electrodes"].filter(pl.col("group_name") == "probeA").height)
    maps: dict[tuple[str, str], np.memmap] = {}
    rng = np.random.default_rng(3)
    for group in ("probeA", "probeB"):
        for band, n in (("ap", 9000), ("lfp", 750)):
            mm = np.memmap(tmp_path / f"{group}_{band}.dat", np.int16, "w+", shape=(n, n_ch))
            mm[:] = rng.integers(-500, 500, mm.shape)
            mm.flush()
            maps[group, band] = np.memmap(mm.filename, np.int16, "r", shape=(n, n_ch))
    clock = {"ap": (20.08, 30000.0705), "lfp": (20.08, 2500.0059)}

    def fake_stream(raw: Any, probe: str, band: str) -> tuple[np.ndarray, float, float, float]:
        assert raw is RAW
        return maps[probe, band], clock[band][0], clock[band][1], 0.195e-6

    monkeypatch.setattr(nwb_ephys, "_stream", fake_stream)
    nwb = to_nwb(frames, include_raw=True, raw=RAW)
    series = nwb.acquisition["probeA_ap"]
    assert isinstance(series.data, nwb_ephys.MemmapChunkIterator)  # never loaded whole
    path = write_nwb(nwb, tmp_path / "raw.nwb", compression="lzf")
    with h5py.File(path) as f:
        for (group, band), mm in maps.items():
            ds = f[f"acquisition/{group}_{band}/data"]
            assert ds.compression == "lzf" and ds.chunks is not None
            np.testing.assert_array_equal(ds[:], mm)
            start = f[f"acquisition/{group}_{band}/starting_time"]
            assert start[()] == clock[band][0]
            assert start.attrs["rate"] == clock[band][1]
            rows = f[f"acquisition/{group}_{band}/electrodes"][:]
            names = frames["electrodes"]["group_name"].to_numpy()[rows]
            assert set(names) == {group}
    assert validate_nwb(path) == []


def test_include_raw_without_raw_session_is_a_parameter_error(
    frames: dict[str, pl.DataFrame],
) -> None:
    with pytest.raises(ParameterError, match="raw"):
        to_nwb(frames, include_raw=True)


def test_raw_channel_count_mismatch_is_inconsistent(
    frames: dict[str, pl.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames import nwb_ephys

    monkeypatch.setattr(
        nwb_ephys, "_stream", lambda raw, probe, band: (np.zeros((10, 3), np.int16), 0.0, 1.0, 1.0)
    )
    with pytest.raises(InconsistentDataError, match="channels"):
        to_nwb(frames, include_raw=True, raw=RAW)


# ------------------------------------------------------------------------------------- CLI
def test_cli_nwb_exports_a_cached_session(
    frames: dict[str, pl.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from npc_frames.cli import main

    _fake_cache(tmp_path, frames, {})
    out = tmp_path / "out" / "s.nwb"
    status = main(["nwb", SESSION_ID, "--cache", str(tmp_path), "-o", str(out), "--validate"])
    assert status == 0
    assert "pynwb validation: ok" in capsys.readouterr().out
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        assert len(io.read().units) == frames["units"].height


def test_cli_nwb_missing_session_fails_without_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from npc_frames.cli import main

    pytest.importorskip("npc_frames.cache")
    out = tmp_path / "s.nwb"
    assert main(["nwb", "668755_2023-08-31", "--cache", str(tmp_path), "-o", str(out)]) == 1
    assert "668755_2023-08-31" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
