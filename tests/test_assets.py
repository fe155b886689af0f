"""Derived assets of a session: the sibling rule, explicit assets, sorting found to depth 3."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from npc_frames import synth
from npc_frames.assets import ASSET_KINDS, asset_date_suffix, choose_assets
from npc_frames.errors import ParameterError
from npc_frames.paths import RawSession
from npc_frames.readers import sorting as rs

RAW = "ecephys_676909_2023-12-13_13-43-40"


# ------------------------------------------------------------------------------- the pure rule
def test_newest_by_date_suffix_among_names_that_start_with_the_raw_name() -> None:
    names = [
        f"/x/{RAW}",
        f"/x/{RAW}_dlc_eye_2024-03-01_10-00-00",
        f"/x/{RAW}_dlc_eye_2024-05-01_09-00-00",  # newest
        f"/x/{RAW}_dlc_eye_2024-04-01_23-59-59",
        "/x/ecephys_676909_2023-12-14_13-43-40_dlc_eye_2025-01-01_00-00-00",  # other session
        f"/x/behavior_{RAW[8:]}_dlc_eye_2025-01-01_00-00-00",  # does not start with the raw name
        f"/x/{RAW}_sorted_2023-12-16_06-52-11",
        f"/x/{RAW}_LPFaceParts_2024-06-01_00-00-00",
        f"/x/{RAW}.truth",
    ]
    assert choose_assets(f"/x/{RAW}", names) == {
        "dlc_eye": f"/x/{RAW}_dlc_eye_2024-05-01_09-00-00",
        "sorted": f"/x/{RAW}_sorted_2023-12-16_06-52-11",
        "lp_face_parts": f"/x/{RAW}_LPFaceParts_2024-06-01_00-00-00",
    }


def test_process_string_is_case_sensitive_and_undated_names_rank_last() -> None:
    names = [f"{RAW}_facemap", f"{RAW}_facemap_2024-01-01_00-00-00", f"{RAW}_lpfaceparts_x"]
    assert choose_assets(RAW, names) == {"facemap": f"{RAW}_facemap_2024-01-01_00-00-00"}
    assert choose_assets(RAW, [f"{RAW}_facemap"]) == {"facemap": f"{RAW}_facemap"}
    assert choose_assets(RAW, names, kinds=["sorted"]) == {}


def test_date_suffix_is_sortable() -> None:
    assert asset_date_suffix(f"{RAW}_sorted_2023-12-16_06-52-11") == "20231216065211"
    assert asset_date_suffix(f"{RAW}_sorted") is None
    assert set(ASSET_KINDS) >= {"sorted", "dlc_eye", "facemap", "lp_face_parts"}


# -------------------------------------------------------------------- sorting as a sibling asset
@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The same session (seed) written twice: sorting inside the raw folder, and as an asset."""
    kw: dict[str, Any] = dict(
        seed=5, minutes=1.0, n_probes=2, units_per_probe=4, video=False, clip_seconds=2.0
    )
    inside = synth.make_session(tmp_path_factory.mktemp("inside"), **kw)
    asset = synth.make_session(tmp_path_factory.mktemp("asset"), sorted_as_asset=True, **kw)
    return inside, asset


def _units(raw: RawSession) -> pl.DataFrame:
    from npc_frames.components._units import units

    return units(raw, trials=None)


def test_sibling_sorted_asset_gives_the_units_of_the_in_folder_layout(
    pair: tuple[Any, Any],
) -> None:
    inside, asset = pair
    raw_in = RawSession.from_path(inside.raw_path)
    raw_as = RawSession.from_path(asset.raw_path)
    assert not (Path(asset.raw_path) / "sorting").exists()
    assert raw_as.assets == {
        "sorted": asset.assets["sorted"]["path"],
        "annotations": asset.assets["annotations"]["path"],  # the generator's CCF annotations
    }
    assert raw_as.sorting_path == asset.assets["sorted"]["path"]
    assert set(raw_in.assets) == {"annotations"}
    assert raw_in.sorting_path == str(Path(inside.raw_path) / "sorting")
    # the asset's files enter the fingerprint inputs
    assert any(p.endswith("spike_times.npy") for p in raw_as.input_paths())
    a, b = _units(raw_in), _units(raw_as)
    assert a.height == 8
    for col in ("unit_id", "cluster_id", "peak_channel", "num_spikes", "device_name"):
        assert a[col].to_list() == b[col].to_list(), col
    np.testing.assert_array_equal(
        a["spike_times"].explode().to_numpy(), b["spike_times"].explode().to_numpy()
    )


def test_newest_of_several_sorted_assets_is_chosen_and_explicit_assets_override(
    pair: tuple[Any, Any], tmp_path: Path
) -> None:
    _, asset = pair
    name = Path(asset.raw_path).name
    raw_dir = tmp_path / name
    shutil.copytree(asset.raw_path, raw_dir)
    src = Path(asset.assets["sorted"]["path"])
    older = tmp_path / f"{name}_sorted_2020-01-01_00-00-00"
    newest = tmp_path / f"{name}_sorted_2030-01-01_00-00-00"
    shutil.copytree(src, older)
    shutil.copytree(src, newest)
    shutil.copytree(src, tmp_path / f"old_{name}_sorted_2040-01-01_00-00-00")
    raw = RawSession.from_path(raw_dir)
    assert raw.sorting_path == str(newest) and raw.assets["sorted"] == str(newest)
    given = RawSession.from_path(raw_dir, assets={"sorted": older})
    assert given.sorting_path == str(older) and given.assets == {"sorted": str(older)}
    # an explicit asset also wins over sorting inside the raw folder
    shutil.copytree(src / "phy", raw_dir / "sorting")
    assert RawSession.from_path(raw_dir).sorting_path == str(raw_dir / "sorting")
    assert RawSession.from_path(raw_dir).assets == {}
    assert RawSession.from_path(raw_dir, assets={"sorted": older}).sorting_path == str(older)
    with pytest.raises(ParameterError, match="unknown asset kind"):
        RawSession.from_path(raw_dir, assets={"sorting": older})


def _phy(folder: Path) -> None:
    folder.mkdir(parents=True)
    np.save(folder / "spike_times.npy", np.arange(3, dtype=np.uint64))
    (folder / "params.py").write_text("sample_rate = 30000.0\n")


def test_phy_folders_are_found_to_depth_three_and_not_deeper(tmp_path: Path) -> None:
    _phy(tmp_path / "ProbeA")  # depth 1
    _phy(tmp_path / "a" / "b" / "ProbeC")  # depth 3
    _phy(tmp_path / "a" / "b" / "c" / "ProbeD")  # depth 4: not found
    (tmp_path / "x" / "ProbeE").mkdir(parents=True)  # spike_times.npy without params.py
    np.save(tmp_path / "x" / "ProbeE" / "spike_times.npy", np.arange(3, dtype=np.uint64))
    found = rs.find_sortings(str(tmp_path))
    assert found == {"ProbeA": str(tmp_path / "ProbeA"), "ProbeC": str(tmp_path / "a/b/ProbeC")}
    assert rs.find_sortings(str(tmp_path / "a" / "b" / "ProbeC")) == {
        "ProbeC": str(tmp_path / "a/b/ProbeC")
    }


def test_aind_result_root_below_an_asset_is_found_and_not_searched_further(
    tmp_path: Path,
) -> None:
    root = tmp_path / "results" / "run1"  # depth 2
    (root / "sorting_precurated" / "experiment1_Record Node 102#ProbeB-AP_recording1").mkdir(
        parents=True
    )
    _phy(root / "postprocessed" / "inner" / "ProbeF")  # inside a result root: not an entry
    found = rs.find_sortings(str(tmp_path))
    assert found == {"experiment1_Record Node 102#ProbeB-AP_recording1": str(root)}
