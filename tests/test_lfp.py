"""Subsampled LFP (npc_frames.subsampled_lfp): computed from the raw LFP band equals the recipe
built independently here (numpy median, scipy FFT resampling and Butterworth high-pass), an
``LFP_Subsampled`` zarr asset is read as written, time slices and event-aligned windows pick the
right samples, and a zarr with the wrong channel count is a typed error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from npc_frames.errors import BadFormatError
from npc_frames.paths import RawSession

# float32 output of float64 arithmetic: agreement to 1e-3 µV on signals of ~10–100 µV
TOL_UV = 1e-3


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return nf.make_session(
        tmp_path_factory.mktemp("lfp"),
        seed=7,
        minutes=1.0,
        n_probes=2,
        units_per_probe=3,
        video=False,
    )


@pytest.fixture(scope="module")
def raw(session: Any) -> RawSession:
    return RawSession.from_path(session.raw_path)


def _raw_lfp(session: Any, letter: str) -> tuple[np.ndarray, float, float]:
    """Independent read of the raw LFP band: (µV samples × 384, bit µV, nominal rate)."""
    import json

    root = Path(session.raw_path)
    folder = next(
        root.glob(f"ecephys/ecephys_clipped/*/experiment1/recording1/continuous/*Probe{letter}-LFP")
    )
    oebin = json.loads((folder.parents[1] / "structure.oebin").read_text())
    entry = next(c for c in oebin["continuous"] if c["folder_name"].rstrip("/") == folder.name)
    bit = float(entry["channels"][0]["bit_volts"])
    data = np.fromfile(folder / "continuous.dat", dtype=np.int16).reshape(-1, entry["num_channels"])
    return data, bit, float(entry["sample_rate"])


def _recipe(x: np.ndarray, rate: float, ref: np.ndarray | None) -> np.ndarray:
    from scipy import signal

    x = x.astype(np.float64)
    if ref is not None:
        x = x - np.median(x[:, ref], axis=1, keepdims=True)
    x = x[:, ::4]
    y = signal.resample(x, x.shape[0] // 2, axis=0)
    sos = signal.butter(5, 0.1, btype="highpass", fs=rate / 2, output="sos")
    return signal.sosfiltfilt(sos, y, axis=0)


def test_lfp_from_raw_equals_independent_recipe(session: Any, raw: RawSession) -> None:
    truth = session.assets["annotations"]["probes"]["A"]
    inside = [i for i, s in enumerate(truth["structure"]) if s != "out of brain"]
    ref = np.arange(max(inside) + 10, 384)  # channels above the surface
    data, bit, rate = _raw_lfp(session, "A")
    want = _recipe(data, rate, ref) * bit
    lf = nf.lfp(raw, "probeA")
    got, times = lf.sel()
    assert got.shape == want.shape == (data.shape[0] // 2, 96)
    np.testing.assert_array_equal(lf.channels, np.arange(0, 384, 4))
    np.testing.assert_allclose(got, want, atol=TOL_UV, rtol=1e-5)
    # probe B is annotated by a TissueCyte file: its reference is its own surface channels
    b = session.assets["annotations"]["probes"]["B"]["structure"]
    ref_b = np.arange(max(i for i, s in enumerate(b) if s != "out of brain") + 10, 384)
    data_b, bit_b, _ = _raw_lfp(session, "B")
    np.testing.assert_allclose(
        nf.lfp(raw, "B").sel()[0], _recipe(data_b, rate, ref_b) * bit_b, atol=TOL_UV, rtol=1e-5
    )
    # times: sample k at start + k / (LFP rate on sync / 2)
    stream = session.ephys.stream(
        next(s.folder_name for s in session.ephys.streams if s.folder_name.endswith("ProbeA-LFP"))
    )
    np.testing.assert_allclose(times[:3], stream.sync_time([0, 2, 4]), atol=2e-5)


def test_time_slice_and_cached_zarr(raw: RawSession, tmp_path: Path) -> None:
    import zarr

    mem = nf.lfp(raw, "A")
    cached = nf.lfp(raw, "A", cache=tmp_path)
    assert isinstance(cached.data, zarr.Array)
    a, b = mem.start_time + 0.3, mem.start_time + 1.1
    x, t = cached.sel(time=slice(a, b))
    assert t[0] >= a and t[-1] < b and t[0] - 1 / mem.rate < a and t[-1] + 1 / mem.rate >= b - 1e-9
    i0 = int(np.searchsorted(mem.times(), a))
    np.testing.assert_array_equal(x, mem.sel()[0][i0 : i0 + len(t)])
    again = nf.lfp(raw, "A", cache=tmp_path)  # reuses the stored zarr
    assert again.data.store.path == cached.data.store.path


def _full_samples(raw: RawSession, letter: str) -> int:
    """Subsampled length of the whole recording (the pipeline reads the full LFP band)."""
    from npc_frames.alignment import session_clocks

    clocks = session_clocks(raw)
    return clocks.clock(clocks.probe_stream(letter, "lfp")).num_samples // 2


def _write_zarr(folder: Path, letter: str, values: np.ndarray, ids: list[str]) -> Path:
    import zarr

    z = folder / f"Probe{letter}_lfp_subsampled.zarr"
    g = zarr.open_group(str(z), mode="w")
    g.create_dataset("traces_seg0", data=values, chunks=(1000, values.shape[1]))
    g.create_dataset("channel_ids", data=np.asarray(ids, dtype="U8"))
    return z


def test_zarr_asset_equals_its_source(raw: RawSession, session: Any, tmp_path: Path) -> None:
    src = nf.lfp(raw, "A")  # from the clipped upload's first seconds
    n_full = _full_samples(raw, "A")
    clip = np.round(src.sel()[0] / src.uv_per_unit).astype(np.int16)  # as the pipeline stores
    units = np.zeros((n_full, 96), np.int16)
    units[: clip.shape[0]] = clip
    asset = tmp_path / "lfp_asset"
    asset.mkdir()
    z = _write_zarr(asset, "A", units, [f"LFP{c + 1}" for c in range(0, 384, 4)])
    with_asset = RawSession.from_path(session.raw_path, assets={"lfp_subsampled": str(asset)})
    lf = nf.lfp(with_asset, "A")
    assert lf.source == str(z)
    np.testing.assert_array_equal(lf.channels, np.arange(0, 384, 4))
    assert lf.num_samples == n_full
    got, t = lf.sel(time=slice(None, src.times()[-1] + 0.5 / src.rate))
    np.testing.assert_allclose(got, clip * np.float32(src.uv_per_unit), rtol=1e-6)
    np.testing.assert_allclose(t, src.times())
    # probe B has no zarr in the asset: computed from raw
    assert nf.lfp(with_asset, "B").source.endswith("continuous.dat")


def test_zarr_with_wrong_channel_count_is_a_typed_error(
    raw: RawSession, session: Any, tmp_path: Path
) -> None:
    n = _full_samples(raw, "A")
    asset = tmp_path / "bad"
    asset.mkdir()
    z = _write_zarr(asset, "A", np.zeros((n, 95), np.int16), [f"LFP{c + 1}" for c in range(95)])
    bad = RawSession.from_path(session.raw_path, assets={"lfp_subsampled": str(asset)})
    with pytest.raises(BadFormatError) as info:
        nf.lfp(bad, "A")
    assert info.value.path == str(z) and "95" in str(info.value)
    assert nf.lfp(bad, "B").source.endswith("continuous.dat")  # the other probe is unaffected


def test_aligned_lfp_picks_each_trials_window(raw: RawSession) -> None:
    lf = nf.lfp(raw, "A")
    uv, t = lf.sel()
    events = [t[100] + 0.2 / lf.rate, t[400], np.nan, t[-1] + 5.0, t[1000] - 0.3 / lf.rate]
    trials = pl.DataFrame({"trial_index": range(5), "stim_start_time": events})
    out = nf.aligned_lfp(lf, "A", trials, event="stim_start_time", start=-0.01, stop=0.05)
    n = round(0.06 * lf.rate)
    assert out.shape == (5, 96, n)
    for k, i in ((0, 100), (1, 400), (4, 1000)):
        first = int(np.round((events[k] - 0.01 - lf.start_time) * lf.rate))
        assert abs(first - (i - round(0.01 * lf.rate))) <= 1
        np.testing.assert_array_equal(out[k], uv[first : first + n].T)
    assert np.isnan(out[2]).all() and np.isnan(out[3]).all()


def test_nwb_lfp_series_reference_their_own_probe_rows(raw: RawSession, tmp_path: Path) -> None:
    import pynwb

    from npc_frames.components.ephys import devices, electrode_groups, electrodes
    from npc_frames.components.session import sessions

    el = electrodes(raw)
    frames = {
        "sessions": sessions(raw),
        "devices": devices(raw),
        "electrode_groups": electrode_groups(raw),
        "electrodes": el,
    }
    nwb = nf.to_nwb(frames, include_raw=True, raw=raw)
    path = tmp_path / "lfp.nwb"
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        container = f.processing["ecephys"]["LFP"]
        assert sorted(container.electrical_series) == ["probeA", "probeB"]
        for group in ("probeA", "probeB"):
            series = container.electrical_series[group]
            lf = nf.lfp(raw, group)
            np.testing.assert_allclose(
                series.data[:] * series.conversion * 1e6, lf.sel()[0], rtol=1e-5, atol=1e-4
            )
            rows = np.asarray(series.electrodes.data[:])
            want = (
                el.with_row_index("row")
                .filter((pl.col("group_name") == group) & (pl.col("channel") % 4 == 0))
                .sort("channel")["row"]
                .to_numpy()
            )
            np.testing.assert_array_equal(rows, want)
            assert series.rate == pytest.approx(lf.rate)


def test_nwb_writes_other_probes_when_one_lfp_zarr_is_bad(
    raw: RawSession, session: Any, tmp_path: Path
) -> None:
    import datetime

    import pynwb

    from npc_frames.components.ephys import electrodes
    from npc_frames.nwb_anatomy import add_lfp

    n = _full_samples(raw, "A")
    asset = tmp_path / "bad"
    asset.mkdir()
    z = _write_zarr(asset, "A", np.zeros((n, 95), np.int16), [f"LFP{c + 1}" for c in range(95)])
    bad = RawSession.from_path(session.raw_path, assets={"lfp_subsampled": str(asset)})
    el = electrodes(bad)
    f = pynwb.NWBFile("s", "id", datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    dev = f.create_device("probe")
    for g in ("probeA", "probeB"):
        f.create_electrode_group(g, "g", "unknown", dev)
    for group in el["group_name"].to_list():  # one row per channel, electrodes-table order
        f.add_electrode(group=f.electrode_groups[group], location="x", x=0.0, y=0.0, z=0.0)
    with pytest.warns(UserWarning, match=str(z)):
        series = add_lfp(f, bad, el)
    assert [s.name for s in series] == ["probeB"]  # the other probe is still written
