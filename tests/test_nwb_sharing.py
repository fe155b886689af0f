"""NWB files share well: same columns in every file, umask file mode, typed errors, partial notes."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from helpers.nwb_frames import SESSION_ID, make_frames
from npc_frames.errors import OutputError
from npc_frames.nwb import PartialSessionWarning, to_nwb, validate_nwb, write_nwb
from npc_frames.schemas import SCHEMAS

pynwb = pytest.importorskip("pynwb")
warnings.filterwarnings("ignore", message=".*ndx-events.*")


def _other_session(frames: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Return the frames with other columns null: filled where the first are null, and back."""
    f = dict(frames)
    t = f["trials"]
    f["trials"] = t.with_columns(
        pl.lit(470.0).alias("opto_wavelength"),
        pl.lit("laser 1").alias("opto_label"),
        pl.lit(True).alias("is_go"),
        pl.lit(None, dtype=pl.Float64).alias("stim_start_time"),
        pl.lit(None, dtype=pl.String).alias("stim_name"),
    )
    u = f["units"]
    f["units"] = u.with_columns(
        pl.lit("MOs").alias("structure"),
        pl.lit(None, dtype=pl.String).alias("decoder_label"),
    ).drop("snr")  # an optional schema column the frame lacks altogether
    del f["spike_amplitudes"]  # a sorting without per-spike amplitudes
    del f["unit_waveforms"]  # nor templates
    return f


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    frames = make_frames()
    out = tmp_path_factory.mktemp("share")
    a = write_nwb(frames, out / "a.nwb")
    b = write_nwb(_other_session(frames), out / "b.nwb")
    return a, b


def _columns(path: Path, table: str) -> set[str]:
    with h5py.File(path) as f:
        return set(f[table].attrs["colnames"])


@pytest.mark.parametrize(
    "table", ["intervals/trials", "units", "general/extracellular_ephys/electrodes"]
)
def test_files_of_sessions_with_different_null_columns_have_the_same_columns(
    two_files: tuple[Path, Path], table: str
) -> None:
    a, b = two_files
    assert _columns(a, table) == _columns(b, table)


def test_every_schema_column_is_written(two_files: tuple[Path, Path]) -> None:
    for path in two_files:
        for component, table in (("trials", "intervals/trials"), ("units", "units")):
            declared = set(SCHEMAS[component].names) - {"session_id"}
            assert declared <= _columns(path, table), declared - _columns(path, table)
        # the templates are a component of their own, written into the units table
        assert {"channels", "waveform_mean"} <= _columns(path, "units")


def test_null_columns_are_encoded_as_documented(two_files: tuple[Path, Path]) -> None:
    lazynwb = pytest.importorskip("lazynwb")
    a, b = two_files
    trials = lazynwb.get_df(str(b), "/intervals/trials", exact_path=True, as_polars=True)
    assert trials["stim_start_time"].is_nan().all()  # float: NaN
    assert trials["stim_name"].to_list() == [""] * trials.height  # string: ""
    assert trials["opto_wavelength"].to_list() == [470.0] * trials.height
    units = lazynwb.get_df(
        str(b), "/units", exact_path=True, exclude_array_columns=False, as_polars=True
    )
    assert units["spike_amplitudes"].list.len().to_list() == [0] * units.height  # list: []
    assert units["decoder_label"].to_list() == [""] * units.height
    assert units["snr"].is_nan().all()  # absent from the frame: written as nulls
    with h5py.File(b) as f:
        assert f["units/waveform_mean"].shape[:2] == (units.height, 0)  # no templates
        assert f["units/spike_amplitudes"].shape == (0,)
        np.testing.assert_array_equal(f["units/spike_amplitudes_index"][:], 0)
    # in the first file the same columns hold the values
    units_a = lazynwb.get_df(
        str(a), "/units", exact_path=True, exclude_array_columns=False, as_polars=True
    )
    assert units_a["spike_amplitudes"].list.len().sum() > 0
    trials_a = lazynwb.get_df(str(a), "/intervals/trials", exact_path=True, as_polars=True)
    assert trials_a["opto_wavelength"].is_nan().all()


def test_lazynwb_scan_across_files_sees_one_column_set(two_files: tuple[Path, Path]) -> None:
    lazynwb = pytest.importorskip("lazynwb")
    both = lazynwb.scan_nwb([str(p) for p in two_files], "/intervals/trials").collect()
    assert both.height == 2 * make_frames()["trials"].height
    per_file = both.group_by("_nwb_path").agg(pl.col("opto_wavelength").is_nan().all())
    assert sorted(per_file["opto_wavelength"].to_list()) == [False, True]


def test_both_files_pass_pynwb_validation(two_files: tuple[Path, Path]) -> None:
    for path in two_files:
        assert validate_nwb(path) == []


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_file_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    frames = {k: v for k, v in make_frames().items() if k in ("sessions", "trials")}
    old = os.umask(umask)
    try:
        path = write_nwb(frames, tmp_path / "x.nwb")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["x.nwb"]  # no temporary file left


def test_unwritable_destination_is_a_typed_error(tmp_path: Path) -> None:
    frames = {k: v for k, v in make_frames().items() if k in ("sessions", "trials")}
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="a_file") as info:
        write_nwb(frames, blocker / "x.nwb")
    assert isinstance(info.value, OSError)
    assert "writable folder" in str(info.value)


def _cache_with_statuses(root: Path, statuses: dict[str, tuple[str, str | None]]) -> None:
    from helpers.nwb_frames import _fake_cache

    frames = {k: v for k, v in make_frames().items() if k in ("sessions", "trials", "licks")}
    _fake_cache(root, frames, {})
    from npc_frames import cache

    catalog = pl.read_parquet(root / cache.CATALOG_FILE)
    catalog = catalog.with_columns(
        pl.col("component")
        .replace_strict({k: v[0] for k, v in statuses.items()}, default=pl.col("status"))
        .alias("status"),
        pl.col("component")
        .replace_strict({k: v[1] for k, v in statuses.items()}, default=pl.col("error"))
        .alias("error"),
    )
    catalog.write_parquet(root / cache.CATALOG_FILE)


def test_partial_session_says_so_in_notes_and_a_warning(tmp_path: Path) -> None:
    _cache_with_statuses(tmp_path, {"licks": ("partial", "licks of stim file 2 unreadable")})
    with pytest.warns(PartialSessionWarning, match="licks"):
        path = write_nwb(SESSION_ID, tmp_path / "x.nwb", cache=tmp_path)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        notes = io.read().notes
    assert notes.endswith(
        "incomplete session: the cache holds these components only in part: "
        "licks (partial: licks of stim file 2 unreadable)"
    )


def test_complete_session_has_no_incomplete_note(tmp_path: Path) -> None:
    _cache_with_statuses(tmp_path, {"licks": ("absent", None)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", PartialSessionWarning)
        nwb = to_nwb(SESSION_ID, cache=tmp_path)
    assert "incomplete" not in (nwb.notes or "")


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_unit_templates_across_chunk_boundaries_round_trip(
    tmp_path: Path, compression: str | None
) -> None:
    from helpers.nwb_frames import compare, pynwb_frame

    # 70 channels: chunks of 32 channels, templates on channels that wrap (e.g. 0, 68, 69) and
    # that straddle the 31|32 and 63|64 boundaries
    frames = make_frames(n_channels=70, seed=3)
    chans = frames["unit_waveforms"]["channels"].to_list()
    assert any(min(c) < 32 <= max(c) for c in chans)
    path = write_nwb(frames, tmp_path / "w.nwb", compression=compression)  # type: ignore[arg-type]
    with h5py.File(path) as f:
        dset = f["units/waveform_mean"]
        assert dset.shape == (frames["units"].height, 8, 70)
        assert dset.chunks == (1, 8, 32)
        assert dset.compression == compression
        # only chunks holding a template are stored
        touched = {(u, c // 32) for u, cs in enumerate(chans) for c in cs}
        assert dset.id.get_num_chunks() == len(touched)
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        compare("units", frames["units"], pynwb_frame(io.read().units), frames["unit_waveforms"])


def test_reference_columns_point_at_their_groups_and_no_private_hdmf_api_is_used(
    two_files: tuple[Path, Path],
) -> None:
    frames = make_frames()
    with pynwb.NWBHDF5IO(str(two_files[0]), "r") as io:
        nwb = io.read()
        groups = [g.name for g in nwb.electrodes["group"][:]]
        unit_groups = [g.name for g in nwb.units["electrode_group"][:]]
    assert groups == frames["electrodes"]["group_name"].to_list()
    assert unit_groups == frames["units"]["electrode_group_name"].to_list()
    # the writer uses public pynwb/hdmf API only: no name-mangled private member of an hdmf,
    # h5py or pynwb class is read or replaced anywhere in the package
    src = Path(__file__).resolve().parents[1] / "src" / "npc_frames"
    mangled = re.compile(r"\b_(ObjectMapper|HDF5IO|NWBHDF5IO|HDMFIO|BuildManager|TypeMap)__\w+")
    found = [
        f"{p.relative_to(src)}: {m.group(0)}"
        for p in sorted(src.rglob("*.py"))
        for m in mangled.finditer(p.read_text())
    ]
    assert found == []


@pytest.mark.parametrize("block", [7, 1 << 20])
def test_spike_histograms_in_blocks_equal_numpy_histogram(
    monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    from npc_frames import nwb_anatomy

    monkeypatch.setattr(nwb_anatomy, "HISTOGRAM_BLOCK", block)
    rng = np.random.default_rng(5)
    n = 40
    times: list[list[float | None] | None] = [
        sorted(rng.uniform(3.2, 61.7, int(rng.integers(0, 30))).tolist()) for _ in range(n)
    ]
    times[3] = None  # null list
    times[4] = []
    times[5] = [10.0, None, 12.5]  # a null spike time is not counted
    times[6] = rng.uniform(0.5, 90.0, 50).tolist()  # more spikes than a block of 7
    times[8] = [-1e-17, -0.5, 2.0, 2.999999999999999]  # just below whole seconds
    groups = ["probeA", "probeB", "probeC"] * (n // 3) + ["probeA"] * (n % 3)  # interleaved
    qc: list[bool | None] = [bool(i % 2) for i in range(n)]
    qc[7] = None
    for i, g in enumerate(groups):
        if g == "probeC":
            qc[i] = False  # probe C has no good unit: all its units are pooled
    units = pl.DataFrame(
        {
            "electrode_group_name": groups,
            "default_qc": pl.Series(qc, dtype=pl.Boolean),
            "spike_times": pl.Series(times, dtype=pl.List(pl.Float64)),
        }
    ).with_row_index("i")
    got = nwb_anatomy.spike_histograms(units.slice(1))  # a slice: offsets do not start at 0
    units = units.slice(1)
    assert sorted(got) == ["probeA", "probeB", "probeC"]
    for group in got:
        mine = units.filter(pl.col("electrode_group_name") == group)
        only_good = bool(mine["default_qc"].fill_null(False).any())
        if only_good:
            mine = mine.filter(pl.col("default_qc").fill_null(False))
        t = np.array([x for xs in mine["spike_times"].to_list() if xs for x in xs if x is not None])
        edges = np.arange(np.floor(t.min()), np.floor(t.max()) + 2.0)
        want, _ = np.histogram(t, bins=edges)
        counts, centres, good = got[group]
        assert good is only_good
        assert (group == "probeC") is not only_good
        np.testing.assert_array_equal(counts, want)
        np.testing.assert_array_equal(centres, edges[:-1] + 0.5)
