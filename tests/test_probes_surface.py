"""Surface-channel recordings (npc_frames.probes, components.ephys): channels are electrode
numbers (+384 for bank 1) with that bank's geometry, probes still on the tip bank and probes the
main session skipped are skipped with their reasons, the manifest key skips what it names, the
recording is linked to its main session, and tip-bank annotations do not leak onto surface
electrodes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers.ephys_session import clone_session
from npc_frames.paths import RawSession
from npc_frames.probes import SURFACE_SKIP_KEY, main_session, probe_selection

synth = pytest.importorskip("npc_frames.synth")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, Path]:
    """(truth, main folder, surface folder): the main recording's sorting lacks probe B; the
    surface recording moved A and B to bank 1 and left C on the tip bank."""
    from npc_frames.synth.ephys import set_channel_banks

    base = tmp_path_factory.mktemp("surface")
    truth = synth.make_session(
        base / "src",
        seed=21,
        minutes=0.5,
        n_probes=3,
        units_per_probe=2,
        video=False,
        clip_seconds=0.05,
    )
    name = Path(truth.raw_path).name
    main = clone_session(truth.raw_path, base / "day" / name)
    for folder in (main / "sorting").iterdir():
        if "ProbeB" in folder.name:
            shutil.rmtree(folder)
    surface = base / "day" / f"{name}_surface_channels"
    surface.mkdir()
    clone_session(Path(truth.raw_path) / "ecephys", surface / "ecephys")
    for meta in ("subject.json", "data_description.json"):
        shutil.copy2(Path(truth.raw_path) / meta, surface / meta)
    set_channel_banks(surface, {"A": 1, "B": 1, "C": 0})
    return truth, main, surface


def _raw(path: Path, truth: Any, **annotations: Any) -> RawSession:
    return RawSession.from_path(
        path,
        annotations=annotations,
        assets={"annotations": truth.assets["annotations"]["path"]},
    )


def test_link_to_main_session(pair: tuple[Any, Path, Path]) -> None:
    truth, main, surface = pair
    raw = _raw(surface, truth)
    assert raw.is_surface_channel and str(raw.session_id) == f"{truth.session_id}_1"
    assert str(raw.main_session_id) == truth.session_id
    found = main_session(raw)
    assert found is not None and found.root.rstrip("/") == str(main)
    assert main_session(_raw(main, truth)) is None


def test_tip_bank_and_main_skips(pair: tuple[Any, Path, Path]) -> None:
    truth, main, surface = pair
    assert probe_selection(_raw(main, truth)).skipped == {"B": "not in the sorting output"}
    sel = probe_selection(_raw(surface, truth))
    assert sel.used == ("A",)
    assert (
        sel.skipped["B"]
        == f"skipped in the main session {truth.session_id}: not in the sorting output"
    )
    assert sel.skipped["C"].startswith("still on the tip bank")


def test_manifest_key_skips_the_letters_it_names(pair: tuple[Any, Path, Path]) -> None:
    truth, _, surface = pair
    sel = probe_selection(_raw(surface, truth, **{SURFACE_SKIP_KEY: "A"}))
    assert sel.used == ()
    assert sel.skipped["A"] == f"{SURFACE_SKIP_KEY} (manifest)"
    # the main session ignores the surface-only key
    assert probe_selection(_raw(pair[1], truth, **{SURFACE_SKIP_KEY: "A"})).used == ("A", "C")


def test_surface_electrodes_are_bank_one_and_unannotated(pair: tuple[Any, Path, Path]) -> None:
    import warnings

    from npc_frames.components.ephys import electrodes

    truth, main, surface = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        el = electrodes(_raw(surface, truth))
        base = electrodes(_raw(main, truth))
    assert el["group_name"].unique().to_list() == ["probeA"]
    ch = el["channel"].to_numpy()
    np.testing.assert_array_equal(ch, np.arange(384, 768))
    # electrode k sits 20 µm × (k // 2) above the tip: bank 1 starts 3.84 mm up the shank
    np.testing.assert_array_equal(el["rel_y"].to_numpy(), 20.0 * (ch // 2))
    # the main recording's annotation (electrodes 0-383) is not applied 3.84 mm lower
    assert set(el["location"]) == {"unannotated"} and el["structure"].is_null().all()
    a = base.filter(pl.col("group_name") == "probeA")
    assert a["structure"].is_not_null().all()
    want = truth.assets["annotations"]["probes"]["A"]["structure"]
    assert a["structure"].to_list() == want
