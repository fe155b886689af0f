"""The ``units`` component (FORMATS §10, §11.3–§11.4) on a synthetic session with known truth:
spike times on sync within one AP sample on every probe, ids, peaks, waveforms, QC, and probes
that fail or were not sorted being reported while the others convert."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers.ephys_session import clone_session, get, replace_file
from npc_frames.errors import AlignmentError, InconsistentDataError, MissingFileError

AP_SAMPLE = 1 / 30_000.0


@pytest.fixture(scope="session")
def units_df(raw: Any) -> pl.DataFrame:
    from npc_frames.components._units import units

    return units(raw, trials=None)


def truth_units(truth: Any) -> dict[str, Any]:
    e = truth.ephys
    counts = np.asarray(get(e, "unit_spike_count"))
    return {
        "probe": np.asarray(get(e, "unit_probe")).astype(str),
        "cluster_id": np.asarray(get(e, "unit_cluster_id")),
        "peak_channel": np.asarray(get(e, "unit_peak_channel")),
        "amplitude": np.asarray(get(e, "unit_amplitude")),
        "offsets": np.concatenate([[0], np.cumsum(counts)]),
        "spike_time": np.asarray(get(e, "spike_time")),
        "spike_amplitude": np.asarray(get(e, "spike_amplitude")),
    }


# ------------------------------------------------------------------------------------ tests
def test_streams_have_distinct_offsets_and_rate_errors(ephys_truth: Any) -> None:
    """Guard: the truth exercises alignment (otherwise the next test proves little)."""
    ap = [s for s in get(ephys_truth.ephys, "streams") if get(s, "kind") == "ap"]
    assert len(ap) >= 2
    rates = {get(s, "rate_on_sync") for s in ap}
    starts = {get(s, "start_time_on_sync") for s in ap}
    assert len(rates) == len(ap) and len(starts) == len(ap)
    assert all(get(s, "rate_on_sync") != get(s, "nominal_rate") for s in ap)


def test_spike_times_equal_truth_within_one_ap_sample_on_every_probe(
    units_df: pl.DataFrame, ephys_truth: Any, raw: Any
) -> None:
    t = truth_units(ephys_truth)
    ids = [f"{raw.session_id}_{p}-{c}" for p, c in zip(t["probe"], t["cluster_id"])]
    assert units_df["unit_id"].to_list() == ids
    flat = units_df["spike_times"].explode().to_numpy()
    lengths = units_df["spike_times"].list.len().to_numpy()
    np.testing.assert_array_equal(lengths, np.diff(t["offsets"]))
    err = np.abs(flat - t["spike_time"])
    assert err.max() < AP_SAMPLE, f"max error {err.max() * 1e6:.1f} µs"
    for letter in set(t["probe"]):
        rows = units_df["electrode_group_name"] == f"probe{letter}"
        assert rows.sum() == (t["probe"] == letter).sum()
    # sorted within every unit (analysis and NWB rely on it)
    d = np.diff(flat)
    boundaries = t["offsets"][1:-1] - 1
    d[boundaries[boundaries < d.size]] = 0
    assert np.all(d >= 0)


def test_unit_columns_equal_truth(units_df: pl.DataFrame, ephys_truth: Any, raw: Any) -> None:
    t = truth_units(ephys_truth)
    np.testing.assert_array_equal(units_df["cluster_id"].to_numpy(), t["cluster_id"])
    np.testing.assert_array_equal(units_df["peak_channel"].to_numpy(), t["peak_channel"])
    np.testing.assert_allclose(units_df["amplitude"].to_numpy(), t["amplitude"], rtol=1e-6)
    assert "spike_amplitudes" not in units_df.columns  # a component of its own
    np.testing.assert_array_equal(units_df["num_spikes"].to_numpy(), np.diff(t["offsets"]))
    serials = {
        get(p, "letter"): str(get(p, "serial_number")) for p in get(ephys_truth.ephys, "probes")
    }
    expected = [serials[p] for p in t["probe"]]
    assert units_df["device_name"].to_list() == expected
    assert units_df["session_id"].unique().to_list() == [str(raw.session_id)]


def test_spike_amplitudes_component_equals_truth_and_units_rows(
    units_df: pl.DataFrame, ephys_truth: Any, raw: Any
) -> None:
    """Per-spike amplitudes: one row per unit of units (same ids, probes, structures), values
    equal to the sorting truth in spike-time order."""
    from npc_frames.components._units import spike_amplitudes

    t = truth_units(ephys_truth)
    amps = spike_amplitudes(raw)  # not handed on by a units call: the sortings are read again
    assert amps.columns == nf_schema_names("spike_amplitudes")
    assert amps["unit_id"].to_list() == units_df["unit_id"].to_list()
    assert amps["electrode_group_name"].to_list() == units_df["electrode_group_name"].to_list()
    assert amps["structure"].to_list() == units_df["structure"].to_list()
    np.testing.assert_array_equal(
        amps["spike_amplitudes"].list.len().to_numpy(), units_df["num_spikes"].to_numpy()
    )
    np.testing.assert_allclose(
        amps["spike_amplitudes"].explode().to_numpy(), t["spike_amplitude"], rtol=1e-6
    )


def test_spike_amplitudes_taken_from_the_units_read_without_decoding_again(
    raw: Any, units_df: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after units, spike_amplitudes takes the amplitudes units read (no sorting decode),
    and its inputs (the files replayed from the handoff) are the sorting files units read."""
    from npc_frames import parts
    from npc_frames.components import _units

    _units.units(raw, trials=None)
    calls = []
    real = _units.read_sorting
    monkeypatch.setattr(_units, "read_sorting", lambda *a, **k: calls.append(a) or real(*a, **k))
    with parts.record_reads() as reads:
        handed = _units.spike_amplitudes(raw)
    assert calls == []
    assert any("spike_times.npy" in r or "sorting" in r for r in reads), sorted(reads)[:5]
    again = _units.spike_amplitudes(raw)  # taken once: the next call reads the sortings
    assert len(calls) == units_df["electrode_group_name"].n_unique()
    assert again.equals(handed)


def test_unit_waveforms_taken_from_the_units_read_without_decoding_again(
    raw: Any, units_df: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after units (and spike_amplitudes), unit_waveforms takes the templates units read
    (no sorting decode), with the sorting files units read as its inputs."""
    from npc_frames import parts
    from npc_frames.components import _units

    _units.units(raw, trials=None)
    _units.spike_amplitudes(raw)  # convert's order: amplitudes first, then the templates
    calls = []
    real = _units.read_sorting
    monkeypatch.setattr(_units, "read_sorting", lambda *a, **k: calls.append(a) or real(*a, **k))
    with parts.record_reads() as reads:
        handed = _units.unit_waveforms(raw)
    assert calls == []
    assert any("templates" in r or "sorting" in r for r in reads), sorted(reads)[:5]
    assert handed["unit_id"].to_list() == units_df["unit_id"].to_list()
    again = _units.unit_waveforms(raw)  # taken once: the next call reads the sortings
    assert len(calls) == units_df["electrode_group_name"].n_unique()
    assert again.equals(handed)


def test_unit_waveforms_of_a_sorting_without_templates_is_absent(
    raw: Any, units_df: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sorting without templates is not damaged: units are complete, unit_waveforms names
    each such probe as an absent part and, when no probe has templates, is absent."""
    import dataclasses

    from npc_frames import parts
    from npc_frames.components import _units

    real = _units.read_sorting
    monkeypatch.setattr(
        _units,
        "read_sorting",
        lambda *a, **k: dataclasses.replace(real(*a, **k), templates=None),
    )
    with parts.collect() as found:
        units = _units.units(raw, trials=None)
        wf = _units.unit_waveforms(raw)
    assert units["unit_id"].to_list() == units_df["unit_id"].to_list()
    assert wf.height == 0 and wf.columns == nf_schema_names("unit_waveforms")
    absent = {(p.part, p.message) for p in found if p.status == "absent"}
    for k in ("A", "B"):
        assert (f"probe{k}", "the sorting has no templates") in absent, found
    assert any(p == parts.COMPONENT and "templates" in m for p, m in absent), found


def nf_schema_names(component: str) -> list[str]:
    from npc_frames.schemas import SCHEMAS

    return SCHEMAS[component].names


def test_peak_electrode_points_at_the_peak_channel_row(units_df: pl.DataFrame, raw: Any) -> None:
    from npc_frames.components.ephys import electrodes

    el = electrodes(raw)
    rows = el[units_df["peak_electrode"].to_numpy()]
    assert rows["group_name"].to_list() == units_df["electrode_group_name"].to_list()
    assert rows["channel"].to_list() == units_df["peak_channel"].to_list()


def test_waveform_mean_is_the_average_template_on_the_units_own_channels(
    units_df: pl.DataFrame, ephys_truth: Any, raw: Any
) -> None:
    """unit_waveforms: one row per unit of units (same ids, probes, structures), each unit's
    average template on the channels where the sorting's template is not all zero."""
    from npc_frames.components._units import unit_waveforms

    assert "channels" not in units_df.columns and "waveform_mean" not in units_df.columns
    wf = unit_waveforms(raw)  # not handed on by a units call: the sortings are read again
    assert wf.columns == nf_schema_names("unit_waveforms")
    assert wf["unit_id"].to_list() == units_df["unit_id"].to_list()
    assert wf["electrode_group_name"].to_list() == units_df["electrode_group_name"].to_list()
    assert wf["structure"].to_list() == units_df["structure"].to_list()
    root = Path(ephys_truth.raw_path)
    for letter in ("A", "B"):
        part = wf.filter(pl.col("electrode_group_name") == f"probe{letter}")
        folder = next((root / "sorting").glob(f"*Probe{letter}-AP"))
        tpl = np.load(folder / "templates_average.npy")  # units x samples x channels
        for row, (chans, wave) in enumerate(
            zip(part["channels"].to_list(), part["waveform_mean"].to_list())
        ):
            nonzero = np.flatnonzero(np.any(tpl[row] != 0, axis=0))
            assert chans == nonzero.tolist()
            np.testing.assert_array_equal(np.asarray(wave, np.float32), tpl[row][:, nonzero].T)


def test_obs_intervals_start_at_the_probe_and_end_within_the_sync_recording(
    units_df: pl.DataFrame, ephys_truth: Any
) -> None:
    e = ephys_truth.ephys
    for letter in ("A", "B"):
        stream = next(
            s
            for s in get(e, "streams")
            if get(s, "kind") == "ap" and get(s, "probe_letter") == letter
        )
        obs = units_df.filter(pl.col("electrode_group_name") == f"probe{letter}")["obs_intervals"]
        starts = obs.list.first().list.first().to_numpy()
        stops = obs.list.first().list.last().to_numpy()
        np.testing.assert_allclose(starts, get(stream, "start_time_on_sync"), atol=AP_SAMPLE)
        assert np.all(stops <= ephys_truth.sync_duration_s)
        # clipped upload: the end is the last evidence of recording, close to the true stop
        true_stop = get(stream, "start_time_on_sync") + get(stream, "num_samples") / get(
            stream, "rate_on_sync"
        )
        assert np.all(stops <= true_stop + AP_SAMPLE) and np.all(stops > true_stop - 2.0)


def test_default_qc_follows_npc_rule_without_drift(units_df: pl.DataFrame) -> None:
    expected = (
        (pl.col("isi_violations_ratio") <= 0.5)
        & (pl.col("amplitude_cutoff") <= 0.1)
        & (pl.col("presence_ratio") >= 0.7)
        & (pl.col("decoder_label").fill_null("sua") != "noise")
    ).fill_null(False)
    check = units_df.select(expected.alias("e"), "default_qc", "is_qc_pass")
    assert check["e"].to_list() == check["default_qc"].to_list() == check["is_qc_pass"].to_list()
    assert units_df["activity_drift"].is_null().all()
    assert 0 < units_df["default_qc"].sum() < units_df.height  # the rule discriminates


def test_default_units_compute_drift_from_the_sessions_trials(
    units_df: pl.DataFrame, raw: Any
) -> None:
    """`convert` calls units(raw): drift then comes from the session's own trials and enters the
    default_qc rule exactly as when the trials frame is passed in."""
    from npc_frames.components import get as component
    from npc_frames.components._units import units

    auto = units(raw)
    explicit = units(raw, trials=component("trials")(raw))
    assert auto["activity_drift"].is_not_null().any()
    assert auto["activity_drift"].to_list() == explicit["activity_drift"].to_list()
    rule = (
        (pl.col("activity_drift") < 0.1)
        & (pl.col("isi_violations_ratio") <= 0.5)
        & (pl.col("amplitude_cutoff") <= 0.1)
        & (pl.col("presence_ratio") >= 0.7)
        & (pl.col("decoder_label").fill_null("sua") != "noise")
    ).fill_null(False)
    assert auto.select(rule.alias("e"))["e"].to_list() == auto["default_qc"].to_list()


def test_units_frame_conforms_to_schema(units_df: pl.DataFrame) -> None:
    from npc_frames.schemas import get_schema

    schema = get_schema("units")
    assert units_df.schema == schema.polars_schema
    assert units_df.columns[0] == "session_id"
    assert units_df["spike_times"].dtype == pl.List(pl.Float64)


def test_activity_drift_with_trials_matches_scipy(units_df: pl.DataFrame, raw: Any) -> None:
    from scipy.stats import anderson_ksamp

    from npc_frames.components._units import _qc, activity_drift

    rng = np.random.default_rng(0)
    n_trials = 60
    stim = np.sort(rng.uniform(20, 150, n_trials))
    trials = pl.DataFrame(
        {
            "stim_start_time": stim,
            "is_catch": np.arange(n_trials) % 10 == 0,
            "rewarded_modality": np.where(np.arange(n_trials) < 30, "vis", "aud"),
            "stim_name": np.where(np.arange(n_trials) % 2 == 0, "vis1", "sound1"),
            "block_index": np.arange(n_trials) // 15,
        }
    )
    drift = activity_drift(units_df, trials).to_numpy()
    # independent: loop over groups as the reference does, for a unit of each probe (chunk)
    keep = trials.filter(~pl.col("is_catch"))
    for row in (0, units_df.height - 1):
        spikes = np.asarray(units_df["spike_times"][row].to_list())
        stats = []
        for (_, _), g in keep.group_by(["rewarded_modality", "stim_name"]):
            t0 = g["stim_start_time"].to_numpy()
            counts = np.searchsorted(spikes, t0 + 2.0) - np.searchsorted(spikes, t0 - 1.5)
            blocks = g["block_index"].to_numpy()
            samples = [counts[blocks == b] for b in np.unique(blocks)]
            if len(samples) == 1:
                samples = list(np.array_split(counts, 3))
            if np.unique(counts).size < 2:  # scipy rejects identical observations: no drift
                stats.append(0.0)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stats.append(anderson_ksamp(samples, midrank=True).statistic)
        assert drift[row] == pytest.approx(np.clip(max(stats) / 100, 0, 1))
    assert np.all((drift >= 0) & (drift <= 1))
    qc = _qc(units_df.with_columns(pl.Series("activity_drift", drift)))
    assert not (qc["default_qc"] & ~units_df["default_qc"]).any()  # drift only removes units


# ----------------------------------------------------------------- failures are reported
def _units(raw_path: Path) -> tuple[pl.DataFrame, Any, list[str]]:
    from npc_frames.components._units import units_with_report
    from npc_frames.paths import RawSession

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df, report = units_with_report(RawSession.from_path(raw_path))
    return df, report, [str(w.message) for w in caught]


def test_probe_without_sorting_is_reported_not_dropped_silently(
    ephys_truth: Any, tmp_path: Path
) -> None:
    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    shutil.rmtree(next((root / "sorting").glob("*ProbeB-AP")))
    df, report, messages = _units(root)
    assert set(df["electrode_group_name"]) == {"probeA"}
    assert report.unsorted == ("B",) and df.attrs["unsorted"] == ["B"]
    assert any("probe B" in m and "no sorting" in m for m in messages)


def test_corrupt_metrics_on_one_probe_leave_the_other_converted(
    ephys_truth: Any, tmp_path: Path
) -> None:
    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    metrics = next((root / "sorting").glob("*ProbeB-AP")) / "quality_metrics.csv"
    q = pl.read_csv(metrics)
    replace_file(metrics, lambda p: q.with_columns(pl.col("num_spikes") + 1).write_csv(p))
    df, report, messages = _units(root)
    assert set(df["electrode_group_name"]) == {"probeA"}
    assert isinstance(report.failures["B"], InconsistentDataError)
    assert report.failures["B"].path == str(metrics)
    assert "num_spikes" in df.attrs["failed"]["B"]
    assert any("probe B" in m for m in messages)


def test_probe_that_cannot_be_aligned_is_reported(ephys_truth: Any, tmp_path: Path) -> None:
    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    ttl = next(root.glob("ecephys/ecephys_clipped/*/experiment1/recording1/events/*ProbeB-AP"))
    ttl = ttl / "TTL"
    samples = np.load(ttl / "sample_numbers.npy")
    states = np.load(ttl / "states.npy")
    keep = samples < samples[0] + 30_000 * 40  # only the first ~40 s: at most one barcode
    replace_file(ttl / "sample_numbers.npy", lambda p: np.save(p, samples[keep]))
    replace_file(ttl / "states.npy", lambda p: np.save(p, states[keep]))
    df, report, _ = _units(root)
    assert set(df["electrode_group_name"]) == {"probeA"}
    assert isinstance(report.failures["B"], AlignmentError)
    assert "ProbeB-AP" in str(report.failures["B"])


def test_missing_settings_xml_still_converts_units(ephys_truth: Any, tmp_path: Path) -> None:
    from npc_frames.components.ephys import electrodes
    from npc_frames.paths import RawSession

    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    for f in root.glob("ecephys/ecephys_clipped/*/settings.xml"):
        f.unlink()
    df, report, _ = _units(root)
    assert not report.failures and df.height == len(get(ephys_truth.ephys, "unit_cluster_id"))
    assert df["device_name"].is_null().all() and df["peak_electrode"].is_null().all()
    with pytest.raises(MissingFileError) as info:
        electrodes(RawSession.from_path(root))
    assert str(info.value.path).endswith("settings.xml")


def test_all_probes_failing_raises(ephys_truth: Any, tmp_path: Path) -> None:
    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    for folder in (root / "sorting").iterdir():
        (folder / "spike_times.npy").unlink()
        np.save(folder / "spike_times.npy", np.zeros(3, np.uint64))
    from npc_frames.components._units import units
    from npc_frames.paths import RawSession

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception) as info:
            units(RawSession.from_path(root))
    assert "spike" in str(info.value)


# --------------------------------------------------------------- other inputs of the component
def test_continuous_returns_memmap_and_sync_times(ephys_truth: Any, raw: Any) -> None:
    from npc_frames.alignment import continuous

    e = ephys_truth.ephys
    for letter, band in (("A", "ap"), ("B", "lfp")):
        stream = next(
            s
            for s in get(e, "streams")
            if get(s, "kind") == band and get(s, "probe_letter") == letter
        )
        data, times = continuous(raw, f"probe{letter}", band)  # type: ignore[arg-type]
        assert isinstance(data, np.memmap) and data.dtype == np.int16
        assert data.shape == (get(stream, "num_samples_clipped"), get(stream, "num_channels"))
        k = np.arange(data.shape[0])
        truth = get(stream, "start_time_on_sync") + k / get(stream, "rate_on_sync")
        period = 1 / get(stream, "nominal_rate")
        assert np.max(np.abs(times - truth)) < period


def test_truncated_continuous_raises_while_units_still_convert(
    ephys_truth: Any, tmp_path: Path
) -> None:
    from npc_frames.alignment import continuous
    from npc_frames.errors import BadFormatError
    from npc_frames.paths import RawSession

    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    dat = next(root.glob("ecephys/ecephys_clipped/*/experiment1/recording1/continuous/*ProbeA-AP"))
    dat = dat / "continuous.dat"
    size = dat.stat().st_size
    replace_file(dat, lambda p: p.write_bytes(b"\0" * (size // 2 - size // 2 % (384 * 2))))
    session = RawSession.from_path(root)
    with pytest.raises(BadFormatError) as info:
        continuous(session, "A")
    assert info.value.path == str(dat) and "truncated" in str(info.value)
    df, report, _ = _units(root)
    assert not report.failures and set(df["electrode_group_name"]) == {"probeA", "probeB"}


def write_aind_legacy(phy: Path, out: Path, name: str) -> None:
    """Rewrite a phy folder in the AIND pipeline's legacy layout (FORMATS §11.2)."""
    q = pl.read_csv(phy / "quality_metrics.csv")
    cluster_ids = q["cluster_id"].to_numpy()
    clusters = np.load(phy / "spike_clusters.npy")
    unit_index = np.searchsorted(cluster_ids, clusters)
    spikes = np.zeros(
        clusters.size,
        dtype=[("sample_index", "<i8"), ("unit_index", "<i8"), ("segment_index", "<i8")],
    )
    spikes["sample_index"] = np.load(phy / "spike_times.npy").astype(np.int64)
    spikes["unit_index"] = unit_index
    sorted_dir = out / "sorting_precurated" / name
    (sorted_dir / "properties").mkdir(parents=True)
    np.save(sorted_dir / "spikes.npy", spikes)
    (sorted_dir / "numpysorting_info.json").write_text(
        '{"sampling_frequency": 30000.0, "num_segments": 1}'
    )
    np.save(sorted_dir / "properties" / "original_cluster_id.npy", cluster_ids)
    labels = np.where(np.arange(cluster_ids.size) % 3 == 0, "noise", "sua")
    np.save(sorted_dir / "properties" / "decoder_label.npy", labels)
    post = out / "postprocessed" / name
    (post / "quality_metrics").mkdir(parents=True)
    q.rename({"cluster_id": ""}).write_csv(post / "quality_metrics" / "metrics.csv")
    (post / "spike_amplitudes").mkdir()
    np.save(post / "spike_amplitudes" / "amplitude_segment_0.npy", np.load(phy / "amplitudes.npy"))
    shutil.copy(phy / "templates_average.npy", post / "templates_average.npy")
    (post / "recording_info").mkdir()
    (post / "recording_info" / "recording_attributes.json").write_text(
        '{"channel_ids": [' + ", ".join(f'"AP{k + 1}"' for k in range(384)) + "]}"
    )


def test_aind_legacy_sorting_gives_the_same_units(
    ephys_truth: Any, tmp_path: Path, units_df: pl.DataFrame
) -> None:
    root = clone_session(ephys_truth.raw_path, tmp_path / Path(ephys_truth.raw_path).name)
    sorting = root / "sorting"
    phy = {p.name: tmp_path / p.name for p in sorting.iterdir()}
    for folder_name, dst in phy.items():
        shutil.move(sorting / folder_name, dst)
    for folder_name, src in phy.items():
        write_aind_legacy(src, sorting, f"experiment1_Record Node 102#{folder_name}_recording1")
    df, report, _ = _units(root)
    assert report.converted == ("A", "B") and not report.failures
    for col in ("unit_id", "cluster_id", "peak_channel", "num_spikes", "device_name"):
        assert df[col].to_list() == units_df[col].to_list(), col
    np.testing.assert_array_equal(
        df["spike_times"].explode().to_numpy(), units_df["spike_times"].explode().to_numpy()
    )
    # decoder labels from the pipeline's properties enter the QC rule
    noise = df["decoder_label"] == "noise"
    assert noise.sum() > 0 and not (df["default_qc"] & noise).any()


def test_probe_units_from_flat_arrays_shank_ids_and_unsorted_samples() -> None:
    from npc_frames.alignment import StreamClock
    from npc_frames.components._units import _probe_units, list_series
    from npc_frames.readers.sorting import SortingOutput

    samples = np.array([90, 10, 50, 30, 70, 20], dtype=np.int64)  # not time-ordered
    units_idx = np.array([1, 0, 1, 0, 2, 0])
    tpl = np.zeros((3, 4, 5), np.float32)
    tpl[0, :, 2] = [0, 5, -5, 0]
    tpl[1, :, 4] = [0, 1, -9, 0]
    tpl[1, :, 3] = [0, 1, 0, 0]
    so = SortingOutput(
        path="x",
        layout="aind_legacy",
        name="ProbeC-AP_group1",
        probe_letter="C",
        shank=1,
        cluster_ids=np.array([7, 3, 11]),
        spike_samples=samples,
        spike_units=units_idx,
        spike_amplitudes=np.arange(6.0),
        templates=tpl,
        channels=np.array([0, 1, 2, 3, 4]) + 100,
        metrics=pl.DataFrame({"cluster_id": [7, 3, 11]}),
    )
    clock = StreamClock("s", 30_000.0, 30_000.0 * (1 + 1e-5), 4.0, num_samples=1000)
    df, amplitudes, waveforms = _probe_units(
        so,
        clock,
        session_id="668755_2023-08-31",
        letter="C",
        device_name="123",
        lookup=(np.array([102, 104]), np.array([40, 41])),
        sync_total_seconds=4.02,
        channel_offset=0,
    )
    assert df["unit_id"].to_list() == [f"668755_2023-08-31_C-1-{c}" for c in (7, 3, 11)]
    expected = [[10, 20, 30], [50, 90], [70]]
    got = df["spike_times"].to_list()
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, clock.times(np.array(e)))
    assert amplitudes is not None
    assert amplitudes.to_list() == [[1.0, 5.0, 3.0], [2.0, 0.0], [4.0]]
    assert df["peak_channel"].to_list() == [102, 104, None]
    assert df["peak_electrode"].to_list() == [40, 41, None]
    assert df["amplitude"].to_list()[:2] == [10.0, 10.0]
    assert waveforms is not None
    channels, waveform_mean = waveforms
    assert channels.to_list() == [[102], [103, 104], []]
    assert waveform_mean.to_list()[1] == [[0.0, 1.0, 0.0, 0.0], [0.0, 1.0, -9.0, 0.0]]
    stop = 4.02  # clipped at the end of the sync recording
    assert df["obs_intervals"].to_list() == [[[4.0, stop]]] * 3
    assert list_series("x", np.arange(6.0), np.array([0, 2, 3]), inner=2).to_list() == [
        [[0.0, 1.0], [2.0, 3.0]],
        [[4.0, 5.0]],
    ]
