"""Sorting readers (FORMATS §11.1–§11.2): Kilosort/phy folders, the AIND legacy folder layout and
SortingAnalyzer zarr, checked against spikeinterface's own readers and a ground-truth sorting."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from npc_frames.errors import InconsistentDataError, MissingFileError
from npc_frames.readers import sorting as rs

NAME = "experiment1_Record Node 102#Neuropix-PXI-100.ProbeA-AP_recording1"


# ------------------------------------------------------------------------------ phy folder
def write_phy(folder: Path, *, seed: int = 0, n_ch: int = 6) -> dict[str, Any]:
    """A small Kilosort/phy folder: clusters 0, 2, 5 (metrics rows in order 5, 0, 2)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    clusters = np.array([0, 2, 5])
    n = 600
    spike_clusters = rng.choice(clusters, n).astype(np.int32)
    spike_times = np.sort(rng.choice(300_000, n, replace=False)).astype(np.uint64)
    amplitudes = rng.uniform(5, 50, n)
    np.save(folder / "spike_times.npy", spike_times)
    np.save(folder / "spike_clusters.npy", spike_clusters)
    np.save(folder / "spike_templates.npy", spike_clusters.astype(np.uint32))
    np.save(folder / "amplitudes.npy", amplitudes)
    np.save(folder / "channel_map.npy", np.arange(n_ch, dtype=np.int32) + 10)
    templates = np.zeros((3, 20, n_ch), np.float32)
    peaks = np.array([3, 1, 4])  # template channel of each metrics row (5, 0, 2)
    for i, p in enumerate(peaks):
        templates[i, :, p] = np.sin(np.linspace(0, 2 * np.pi, 20)) * (10 + 10 * i)
        templates[i, :, p - 1] = 1.0
    np.save(folder / "templates_average.npy", templates)
    order = np.array([5, 0, 2])
    counts = np.array([(spike_clusters == c).sum() for c in order])
    pl.DataFrame(
        {
            "": order,
            "num_spikes": counts,
            "isi_violations_ratio": [0.1, 0.9, 0.2],
            "amplitude_cutoff": [0.01, 0.05, 0.3],
            "presence_ratio": [0.95, 0.99, 0.8],
        }
    ).write_csv(folder / "quality_metrics.csv")
    pl.DataFrame({"cluster_id": order, "half_width": [0.2, 0.3, 0.4]}).write_csv(
        folder / "template_metrics.csv"
    )
    (folder / "params.py").write_text(
        "dat_path = 'continuous.dat'\nn_channels_dat = 6\ndtype = 'int16'\noffset = 0\n"
        "sample_rate = 30000.0\nhp_filtered = False\n"
    )
    return {
        "order": order,
        "counts": counts,
        "spike_times": spike_times,
        "spike_clusters": spike_clusters,
        "amplitudes": amplitudes,
        "peaks": peaks,
    }


def test_phy_units_follow_metrics_order_and_spikes_map_to_them(tmp_path: Path) -> None:
    truth = write_phy(tmp_path / "Neuropix-PXI-100.ProbeA-AP")
    so = rs.read_phy(str(tmp_path / "Neuropix-PXI-100.ProbeA-AP"))
    assert (so.layout, so.probe_letter, so.shank, so.sample_rate) == ("phy", "A", None, 30000.0)
    np.testing.assert_array_equal(so.cluster_ids, truth["order"])
    np.testing.assert_array_equal(so.cluster_ids[so.spike_units], truth["spike_clusters"])
    np.testing.assert_array_equal(so.spike_samples, truth["spike_times"].astype(np.int64))
    np.testing.assert_array_equal(so.spike_counts(), truth["counts"])
    np.testing.assert_array_equal(so.spike_amplitudes, truth["amplitudes"])
    np.testing.assert_array_equal(so.channels, np.arange(6) + 10)
    assert so.templates is not None and so.templates.shape == (3, 20, 6)
    assert so.metrics.columns[:2] == ["cluster_id", "num_spikes"]
    assert so.metrics["half_width"].to_list() == [0.2, 0.3, 0.4]  # joined on cluster id


def test_phy_spike_trains_equal_spikeinterface_read_phy(tmp_path: Path) -> None:
    se = pytest.importorskip("spikeinterface.extractors")
    folder = tmp_path / "phy"
    write_phy(folder, seed=4)
    so = rs.read_phy(str(folder))
    theirs = se.read_phy(folder)
    for i, cid in enumerate(so.cluster_ids):
        mine = np.sort(so.spike_samples[so.spike_units == i])
        np.testing.assert_array_equal(mine, theirs.get_unit_spike_train(int(cid)))


def test_phy_counts_disagreeing_with_metrics_raise_naming_metrics_file(tmp_path: Path) -> None:
    folder = tmp_path / "ProbeB"
    write_phy(folder)
    q = pl.read_csv(folder / "quality_metrics.csv")
    q = q.with_columns(pl.col("num_spikes") + pl.Series([0, 3, 0]))
    q.write_csv(folder / "quality_metrics.csv")
    with pytest.raises(InconsistentDataError) as info:
        rs.read_phy(str(folder))
    assert info.value.path == str(folder / "quality_metrics.csv")
    assert info.value.field == "num_spikes" and "cluster 0" in str(info.value)


def test_phy_spikes_of_unlisted_cluster_raise(tmp_path: Path) -> None:
    folder = tmp_path / "ProbeC"
    write_phy(folder)
    clusters = np.load(folder / "spike_clusters.npy")
    clusters[7] = 99
    np.save(folder / "spike_clusters.npy", clusters)
    with pytest.raises(InconsistentDataError, match=r"\[99\]"):
        rs.read_phy(str(folder))


def test_phy_without_spike_times_is_missing_file(tmp_path: Path) -> None:
    folder = tmp_path / "ProbeD"
    write_phy(folder)
    (folder / "spike_times.npy").unlink()
    with pytest.raises(MissingFileError, match=r"spike_times\.npy"):
        rs.read_phy(str(folder))


@pytest.mark.parametrize(
    ("ids", "one_based", "expected"),
    [
        (["AP1", "AP2", "AP3"], None, [0, 1, 2]),
        (["CH0", "CH1", "CH2"], None, [0, 1, 2]),
        (["AP2", "AP4"], True, [1, 3]),
        (["AP2", "AP4"], False, [2, 4]),
        ([3, 1, 2], None, [2, 0, 1]),
    ],
)
def test_channel_id_convention(ids: list[Any], one_based: bool | None, expected: list[int]) -> None:
    assert rs.channel_indices(ids, one_based=one_based).tolist() == expected


# ---------------------------------------------------------------- SpikeInterface outputs
@pytest.fixture(scope="module")
def gt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A ground-truth recording + sorting, an analyzer zarr and the legacy folder layout."""
    si = pytest.importorskip("spikeinterface.core")
    root = tmp_path_factory.mktemp("aind")
    rec, sorting = si.generate_ground_truth_recording(
        durations=[8.0], sampling_frequency=30_000.0, num_channels=8, num_units=5, seed=11
    )
    cluster_ids = np.array([3, 5, 8, 13, 21])
    sorting.set_property("original_cluster_id", cluster_ids)
    sorting.set_property("decoder_label", np.array(["sua", "mua", "noise", "sua", "sua"]))
    sorting.set_property("decoder_probability", np.linspace(0.5, 0.9, 5))
    post = root / "postprocessed"
    post.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer = si.create_sorting_analyzer(
            sorting, rec, format="zarr", folder=post / f"{NAME}.zarr", sparse=True
        )
        analyzer.compute(["random_spikes", "templates", "spike_amplitudes"])
        analyzer.compute(
            "quality_metrics",
            metric_names=["num_spikes", "firing_rate", "presence_ratio", "isi_violation"],
        )
    (root / "sorting_precurated").mkdir()
    # legacy layout of the same sorting, written as the pipeline did before SpikeInterface 0.101
    legacy = tmp_path_factory.mktemp("aind_legacy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sorting.save(folder=legacy / "sorting_precurated" / NAME)
    lpost = legacy / "postprocessed" / NAME
    (lpost / "quality_metrics").mkdir(parents=True)
    metrics = analyzer.get_extension("quality_metrics").get_data()
    metrics.index = cluster_ids
    metrics.to_csv(lpost / "quality_metrics" / "metrics.csv")
    templates = analyzer.get_extension("templates").get_data(operator="average")
    np.save(lpost / "templates_average.npy", templates)
    (lpost / "spike_amplitudes").mkdir()
    amps = analyzer.get_extension("spike_amplitudes").get_data()
    np.save(lpost / "spike_amplitudes" / "amplitude_segment_0.npy", amps)
    (lpost / "recording_info").mkdir()
    (lpost / "recording_info" / "recording_attributes.json").write_text(
        json.dumps({"channel_ids": [f"AP{k + 1}" for k in range(8)]})
    )
    return {
        "root": root,
        "legacy": legacy,
        "sorting": sorting,
        "cluster_ids": cluster_ids,
        "templates": templates,
        "amplitudes": amps,
        "metrics": metrics,
    }


def _check_against_spikeinterface(so: rs.SortingOutput, gt: dict[str, Any]) -> None:
    sorting = gt["sorting"]
    np.testing.assert_array_equal(so.cluster_ids, gt["cluster_ids"])
    counts = sorting.count_num_spikes_per_unit(outputs="array")
    np.testing.assert_array_equal(so.spike_counts(), counts)
    for i, uid in enumerate(sorting.unit_ids):
        mine = np.sort(so.spike_samples[so.spike_units == i])
        np.testing.assert_array_equal(mine, sorting.get_unit_spike_train(uid))
    np.testing.assert_array_equal(so.metrics["num_spikes"].to_numpy(), counts)
    np.testing.assert_allclose(so.spike_amplitudes, gt["amplitudes"], rtol=1e-6)
    assert so.templates is not None
    np.testing.assert_allclose(so.templates, gt["templates"], rtol=1e-6)
    np.testing.assert_array_equal(so.channels, np.arange(8))
    assert so.properties["decoder_label"].to_list() == ["sua", "mua", "noise", "sua", "sua"]
    assert so.probe_letter == "A" and so.sample_rate == 30_000.0


def test_sorting_analyzer_zarr_equals_spikeinterface(gt: dict[str, Any]) -> None:
    found = rs.find_sortings(str(gt["root"]))
    assert list(found) == [NAME]
    (ok, failed) = rs.read_sortings(str(gt["root"]))
    assert not failed and list(ok) == ["A"]
    assert ok["A"].layout == "aind_analyzer"
    _check_against_spikeinterface(ok["A"], gt)


def test_legacy_folder_layout_equals_spikeinterface(gt: dict[str, Any]) -> None:
    (ok, failed) = rs.read_sortings(str(gt["legacy"]))
    assert not failed and ok["A"].layout == "aind_legacy"
    _check_against_spikeinterface(ok["A"], gt)


def test_aind_entries_named_sorting_are_ignored_and_shanks_keyed(tmp_path: Path) -> None:
    for entry in (NAME, "sorting_cached", f"{NAME.replace('ProbeA', 'ProbeB')}_group1"):
        (tmp_path / "sorting_precurated" / entry).mkdir(parents=True)
    found = rs.find_sortings(str(tmp_path))
    assert sorted(found) == sorted([NAME, f"{NAME.replace('ProbeA', 'ProbeB')}_group1"])
    ok, failed = rs.read_sortings(str(tmp_path))
    assert not ok and sorted(failed) == ["A", "B-1"]  # no spikes.npy: reported per probe
    assert isinstance(failed["A"], MissingFileError)
