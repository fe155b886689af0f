"""CCF annotations (npc_frames.anatomy): per-channel CCF µm, location and layer-stripped structure
from every file format against the synthetic generator's truth, per-probe precedence, units with
anatomy (and without), manifest-given files, and bad files reported while other probes convert."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from npc_frames.anatomy import (
    OUT_OF_BRAIN,
    ccf_annotations,
    is_annotated,
    read_ibl_annotation,
    strip_layer,
)
from npc_frames.errors import BadFormatError, InconsistentDataError, ParameterError
from npc_frames.paths import RawSession
from npc_frames.probes import (
    parse_probe_letters,
    probe_selection,
    read_probe_insertions,
    skip_reasons,
)


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A short six-probe session: every annotation format, probe F unannotated."""
    from npc_frames import synth

    return synth.make_session(
        tmp_path_factory.mktemp("anatomy"),
        seed=5,
        minutes=1.0,
        n_probes=6,
        units_per_probe=5,
        video=False,
    )


@pytest.fixture(scope="module")
def six_raw(six: Any) -> RawSession:
    return RawSession.from_path(six.raw_path)


def test_strip_layer_against_allen_tree() -> None:
    given = ["ACAd5", "MOp2/3", "MOs6a", "ECT6a", "VISp2/3", "SSp-bfd4", "CA1", "DG-mo", "ACAv5"]
    want = ["ACAd", "MOp", "MOs", "ECT", "VISp", "SSp", "CA1", "DG", "ACAv"]
    assert strip_layer(pl.Series(given)).to_list() == want
    odd = pl.Series([OUT_OF_BRAIN, "NOT_A_REGION7", None])
    assert strip_layer(odd).to_list() == [OUT_OF_BRAIN, "NOT_A_REGION7", None]


def test_every_format_gives_truth_ccf_location_and_structure(six: Any, six_raw: Any) -> None:
    from npc_frames.components.ephys import electrodes

    truth = six.assets["annotations"]["probes"]
    assert sorted(truth) == list("ABCDE")
    el = electrodes(six_raw)
    for letter, t in truth.items():
        part = el.filter(pl.col("group_name") == f"probe{letter}").sort("channel")
        assert part.height == 384
        for col, key in (("x", "ccf_ap"), ("y", "ccf_dv"), ("z", "ccf_ml")):
            np.testing.assert_allclose(part[col].to_numpy(), t[key], atol=1e-6, err_msg=letter)
        assert part["location"].to_list() == t["location"], letter
        assert part["structure"].to_list() == t["structure"], letter
    f = el.filter(pl.col("group_name") == "probeF")
    assert set(f["location"]) == {"unannotated"} and f["structure"].is_null().all()
    assert f["x"].is_null().all()
    # layer stripping of IBL region ids (probe C holds ACAd5, probe D MOp2/3)
    c = el.filter(pl.col("group_name") == "probeC")
    assert set(c.filter(pl.col("location") == "ACAd5")["structure"]) == {"ACAd"}
    d = el.filter(pl.col("group_name") == "probeD")
    assert set(d.filter(pl.col("location") == "MOp2/3")["structure"]) == {"MOp"}


def test_precedence_and_sources(six_raw: Any) -> None:
    ann = ccf_annotations(six_raw)
    kinds = {letter: kind for letter, (kind, _) in ann.sources.items()}
    # E has an IBL payload and a TissueCyte CSV: the alignment wins
    assert kinds == {"A": "ibl", "B": "tissuecyte", "C": "ibl", "D": "ibl_legacy", "E": "ibl"}
    assert not ann.errors
    assert is_annotated(six_raw)


def test_units_carry_anatomy_and_unannotated_units_are_kept(six: Any, six_raw: Any) -> None:
    from npc_frames.components._units import units

    truth = six.assets["annotations"]["probes"]
    u = units(six_raw, trials=None)
    assert u.height == 6 * 5
    for letter, t in truth.items():
        part = u.filter(pl.col("electrode_group_name") == f"probe{letter}")
        peak = part["peak_channel"].to_numpy()
        np.testing.assert_allclose(part["ccf_ap"].to_numpy(), np.asarray(t["ccf_ap"])[peak])
        np.testing.assert_allclose(part["ccf_dv"].to_numpy(), np.asarray(t["ccf_dv"])[peak])
        assert part["structure"].to_list() == [t["structure"][p] for p in peak]
    f = u.filter(pl.col("electrode_group_name") == "probeF")
    assert f.height == 5 and f["structure"].is_null().all() and f["ccf_ap"].is_null().all()
    expected_mos = sum(
        t["structure"][p] == "MOs"
        for letter, t in truth.items()
        for p in u.filter(pl.col("electrode_group_name") == f"probe{letter}")["peak_channel"]
    )
    assert u.filter(pl.col("structure") == "MOs").height == expected_mos


def _clone_without_asset(six: Any, dst: Path) -> Path:
    root = dst / Path(six.raw_path).name
    shutil.copytree(six.raw_path, root, symlinks=True)
    return root


def test_manifest_given_file_annotates_probe(six: Any, tmp_path: Path) -> None:
    from npc_frames.components.ephys import electrodes

    root = _clone_without_asset(six, tmp_path / "s")
    a_file = six.assets["annotations"]["probes"]["A"]["files"][0]
    bare = RawSession.from_path(root)
    assert "annotations" not in bare.assets and not is_annotated(bare)
    given = RawSession.from_path(root, annotations={"ccf_annotations": {"probeA": a_file}})
    el = electrodes(given)
    a = el.filter(pl.col("group_name") == "probeA")
    t = six.assets["annotations"]["probes"]["A"]
    np.testing.assert_allclose(a["z"].to_numpy(), t["ccf_ml"], atol=1e-6)
    assert el.filter(pl.col("group_name") == "probeB")["x"].is_null().all()


def test_malformed_json_is_reported_and_other_probes_annotated(six: Any, tmp_path: Path) -> None:
    from npc_frames.components.ephys import electrodes

    asset = Path(shutil.copytree(six.assets["annotations"]["path"], tmp_path / "ann"))
    bad = asset / "ibl" / Path(six.assets["annotations"]["probes"]["A"]["files"][0]).name
    bad.write_text('{"ccf_channel_results": {"channel_0": ')
    raw = RawSession.from_path(six.raw_path, assets={"annotations": str(asset)})
    ann = ccf_annotations(raw)
    assert isinstance(ann.errors[str(bad)], BadFormatError) and str(bad) in str(
        ann.errors[str(bad)]
    )
    assert ann.letters == ("B", "C", "D", "E")
    with pytest.warns(UserWarning, match="ccf|CCF"):
        el = electrodes(raw)
    assert set(el.filter(pl.col("group_name") == "probeA")["location"]) == {"unannotated"}
    assert el.filter(pl.col("group_name") == "probeC")["x"].is_not_null().all()


def test_annotation_for_unrecorded_probe_is_a_typed_error(six: Any, synth_session: Any) -> None:
    # the two-probe session (A, B) given the six-probe annotations asset
    raw = RawSession.from_path(
        synth_session.raw_path, assets={"annotations": six.assets["annotations"]["path"]}
    )
    ann = ccf_annotations(raw)
    assert ann.letters == ("A", "B")
    unrecorded = {p: e for p, e in ann.errors.items()}
    assert len(unrecorded) == 4  # C, D, E (payload and CSV)
    assert all(isinstance(e, InconsistentDataError) for e in unrecorded.values())
    assert all(p in str(e) for p, e in unrecorded.items())


def test_ibl_scale_inference_and_sign_convention(tmp_path: Path) -> None:
    entry = {"x": -4.2354, "y": 3.9591, "z": -5.8539, "brain_region_id": 1015, "brain_region": "?"}
    mm = tmp_path / "ProbeA" / "ccf_channel_results.json"
    mm.parent.mkdir()
    mm.write_text(json.dumps({"channel_0": entry}))
    df, kind = read_ibl_annotation(str(mm), "probeA")
    assert kind == "ibl_legacy"
    np.testing.assert_allclose(df.select("x", "y", "z").row(0), (3959.1, 5853.9, 4235.4))
    assert df.row(0, named=True)["location"] == "ACAd5" and df["structure"][0] == "ACAd"
    um = tmp_path / "um_ProbeB.json"
    um.write_text(json.dumps({"ccf_channel_results": {"channel_3": {**entry, "x": -4235.4}}}))
    df, kind = read_ibl_annotation(str(um), "probeB")
    assert kind == "ibl" and df["channel"].to_list() == [3]
    assert df["z"][0] == pytest.approx(4235.4)
    huge = tmp_path / "huge_ProbeC.json"
    huge.write_text(json.dumps({"ccf_channel_results": {"channel_0": {**entry, "x": 25_000}}}))
    with pytest.raises(BadFormatError, match="neither mm nor µm"):
        read_ibl_annotation(str(huge), "probeC")
    void = tmp_path / "void_ProbeD.json"
    void.write_text(
        json.dumps({"channel_0": {**entry, "brain_region_id": 0, "brain_region": "void"}})
    )
    df, _ = read_ibl_annotation(str(void), "probeD")
    assert df["location"][0] == OUT_OF_BRAIN and df["structure"][0] == OUT_OF_BRAIN


def test_other_components_unaffected_by_bad_annotation(six: Any, tmp_path: Path) -> None:
    from npc_frames.components.ephys import devices, electrode_groups

    asset = tmp_path / "ann"
    (asset / "ibl").mkdir(parents=True)
    (asset / "ibl" / "x_ProbeA_0.json").write_text("not json")
    raw = RawSession.from_path(six.raw_path, assets={"annotations": str(asset)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert devices(raw).height == 6 and electrode_groups(raw).height == 6
    assert not is_annotated(raw)


# ------------------------------------------------------------------- probe insertions, selection
def _clone(six: Any, dst: Path) -> Path:
    from helpers.ephys_session import clone_session

    return clone_session(six.raw_path, dst / Path(six.raw_path).name)


def test_electrode_groups_located_by_insertion_record(six: Any, six_raw: Any) -> None:
    from npc_frames.components.ephys import electrode_groups

    groups = electrode_groups(six_raw)
    want = six.probe_insertions["locations"]
    assert groups["location"].to_list() == [want[g[-1]] for g in groups["name"]]
    assert want["A"] == "TS-5/2002/DR1 F1"  # a probe's hole letter need not be its own
    assert skip_reasons(six_raw) == {}


def test_manifest_skip_excludes_probes_everywhere_with_reasons(six: Any) -> None:
    from npc_frames.components._units import units_with_report
    from npc_frames.components.ephys import devices, electrode_groups, electrodes

    raw = RawSession.from_path(six.raw_path, annotations={"probe_letters_to_skip": "probeD, E"})
    reasons = skip_reasons(raw)
    assert set(reasons) == {"probeD", "probeE"} and all("manifest" in r for r in reasons.values())
    kept = ["probeA", "probeB", "probeC", "probeF"]
    assert devices(raw)["electrode_group_name"].to_list() == kept
    assert electrode_groups(raw)["name"].to_list() == kept
    el = electrodes(raw)
    assert el["group_name"].unique(maintain_order=True).to_list() == kept
    np.testing.assert_array_equal(el["electrode_index"].to_numpy(), np.arange(4 * 384))
    u, report = units_with_report(raw, trials=None)
    assert sorted(set(u["electrode_group_name"])) == kept and set(report.skipped) == {"D", "E"}
    assert ccf_annotations(raw, probe_selection(raw).recorded).letters == tuple("ABCDE")
    use = RawSession.from_path(six.raw_path, annotations={"probe_letters_to_use": ["A", "probeB"]})
    sel = probe_selection(use)
    assert sel.used == ("A", "B") and set(sel.skipped) == set("CDEF")


def test_probes_missing_from_sorting_are_skipped(six: Any, tmp_path: Path) -> None:
    from npc_frames.components.ephys import electrodes

    root = _clone(six, tmp_path)
    shutil.rmtree(next((root / "sorting").glob("*ProbeC-AP")))
    raw = RawSession.from_path(root)
    assert skip_reasons(raw) == {"probeC": "not in the sorting output"}
    assert "probeC" not in set(electrodes(raw)["group_name"])


def test_uninserted_probe_skipped_unless_annotated(six: Any, tmp_path: Path) -> None:
    from helpers.ephys_session import replace_file

    root = _clone(six, tmp_path)
    path = root / Path(six.probe_insertions["path"]).name
    doc = json.loads(path.read_text())
    doc["probe_insertions"]["probeF"]["hole"] = None  # F has no annotation
    doc["probe_insertions"]["probeA"]["hole"] = ""  # A has one: the annotation wins
    replace_file(path, lambda p: p.write_text(json.dumps(doc)))
    raw = RawSession.from_path(root, assets={"annotations": six.assets["annotations"]["path"]})
    with pytest.warns(UserWarning, match="annotation wins"):
        sel = probe_selection(raw)
    assert set(sel.skipped) == {"F"} and sel.skipped["F"].startswith("not inserted")
    assert sel.insertions is not None and sel.insertions.location("A") == "unknown"


def test_bad_probe_letters_and_bad_insertion_record(six: Any, tmp_path: Path) -> None:
    from helpers.ephys_session import replace_file
    from npc_frames.components.ephys import devices, electrode_groups

    assert parse_probe_letters("DE") == ("D", "E")
    assert parse_probe_letters(["probe_F", "ProbeA"]) == ("A", "F")
    with pytest.raises(ParameterError):
        parse_probe_letters("probeG")
    root = _clone(six, tmp_path)
    path = root / Path(six.probe_insertions["path"]).name
    replace_file(path, lambda p: p.write_text("{"))
    raw = RawSession.from_path(root)
    with pytest.warns(UserWarning, match="probe insertions"):
        groups = electrode_groups(raw)
    assert set(groups["location"]) == {"unknown"} and devices(raw).height == 6
    with pytest.raises(BadFormatError) as info:
        read_probe_insertions(str(path))
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------ manipulator positions
def test_manipulator_positions_after_z_inversion(six: Any, six_raw: Any) -> None:
    from npc_frames.components.manipulators import manipulator_positions

    truth = six.probe_insertions["newscale_log"]["probes"]
    df = manipulator_positions(six_raw)
    assert df["electrode_group_name"].to_list() == [f"probe{k}" for k in sorted(truth)]
    for row in df.iter_rows(named=True):
        t = truth[row["electrode_group_name"][-1]]
        assert row["device_name"] == t["device_name"]
        assert (row["x"], row["y"]) == pytest.approx((t["x"], t["y"]))
        assert row["z"] == pytest.approx(t["z"])  # 15 000 − logged z (inverted rig)
        assert row["last_movement_time"] == pytest.approx(t["last_movement_time"], abs=1e-3)
        assert row["last_movement_time"] < 0


def test_manipulator_positions_drop_skipped_probes(six: Any) -> None:
    from npc_frames.components.manipulators import manipulator_positions

    raw = RawSession.from_path(six.raw_path, annotations={"probe_letters_to_skip": "A"})
    assert "probeA" not in set(manipulator_positions(raw)["electrode_group_name"])


def test_unknown_serial_on_inverted_rig_is_a_typed_error(six: Any, tmp_path: Path) -> None:
    from helpers.ephys_session import replace_file
    from npc_frames.components._units import units
    from npc_frames.components.manipulators import manipulator_positions

    root = _clone(six, tmp_path)
    log = root / "behavior" / "log.csv"
    text = log.read_text().replace("SN40906", "SN99999")
    replace_file(log, lambda p: p.write_text(text))
    raw = RawSession.from_path(root)
    with pytest.raises(InconsistentDataError) as info:
        manipulator_positions(raw)
    assert info.value.path == str(log) and "SN99999" in str(info.value)
    assert units(raw, trials=None).height == 30  # other components are unaffected


def test_manipulator_positions_in_nwb(six: Any, six_raw: Any) -> None:
    from npc_frames.components.ephys import devices, electrode_groups
    from npc_frames.components.manipulators import manipulator_positions
    from npc_frames.components.session import sessions
    from npc_frames.nwb import to_nwb

    df = manipulator_positions(six_raw)
    nwb = to_nwb(
        {
            "sessions": sessions(six_raw),
            "devices": devices(six_raw),
            "electrode_groups": electrode_groups(six_raw),
            "manipulator_positions": df,
        }
    )
    table = nwb.acquisition["manipulator_positions"].to_dataframe()
    np.testing.assert_allclose(table["z"].to_numpy(), df["z"].to_numpy())
    assert table["device_name"].tolist() == df["device_name"].to_list()
    for serial in df["device_name"]:
        assert nwb.devices[serial].manufacturer == "NewScale"


# --------------------------------------------------------------------------- spike histograms
def test_all_spike_histograms_pool_good_units_per_probe(six: Any, six_raw: Any) -> None:
    from npc_frames.components._units import units
    from npc_frames.components.ephys import devices, electrode_groups, electrodes
    from npc_frames.components.session import sessions
    from npc_frames.nwb import to_nwb
    from npc_frames.nwb_anatomy import spike_histograms

    u = units(six_raw, trials=None)
    # make probe A's good set explicit and probe B have no good unit (falls back to all units)
    qc = (pl.col("electrode_group_name") == "probeA") & (pl.col("unit_id").rank() % 2 == 0)
    u = u.with_columns(qc.alias("default_qc"))
    hists = spike_histograms(u)
    assert sorted(hists) == [f"probe{k}" for k in "ABCDEF"]
    for group, only_good in (("probeA", True), ("probeB", False)):
        part = u.filter(pl.col("electrode_group_name") == group)
        if only_good:
            part = part.filter("default_qc")
        t = np.concatenate([np.asarray(x) for x in part["spike_times"].to_list()])
        counts, centres, good = hists[group]
        assert good is only_good and counts.sum() == t.size
        first = np.floor(t.min())
        want = np.bincount((np.floor(t) - first).astype(int))
        np.testing.assert_array_equal(counts, want)
        np.testing.assert_allclose(centres, first + 0.5 + np.arange(want.size))
    nwb = to_nwb(
        {
            "sessions": sessions(six_raw),
            "devices": devices(six_raw),
            "electrode_groups": electrode_groups(six_raw),
            "electrodes": electrodes(six_raw),
            "units": u,
        }
    )
    series = nwb.analysis["all_spike_histograms"].time_series["probeA"]
    np.testing.assert_array_equal(series.data, hists["probeA"][0])
    assert series.unit == "spikes/s" and "good" in series.description
