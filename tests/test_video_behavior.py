"""Video-derived behavior: readers against independent readers, components against synthetic truth.

Tolerances: HDF5 and zarr values round-trip exactly (compared with equality, NaN positions
included); CSV values are compared with rtol 1e-12 (decimal text).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from npc_frames import synth
from npc_frames.components import video_behavior as vb
from npc_frames.errors import (
    BadFormatError,
    InconsistentDataError,
    MissingFileError,
    ParameterError,
)
from npc_frames.paths import RawSession
from npc_frames.readers.dlc import read_dlc
from npc_frames.readers.ellipses import ELLIPSE_FEATURES, read_ellipses
from npc_frames.readers.facemap import read_motion_svd_zarr, read_proc_npy
from npc_frames.readers.lightning_pose import read_lp_metric, read_lp_predictions
from npc_frames.readers.pandas_hdf import _plain_unpickle, read_hdf_frame
from npc_frames.schemas.video_behavior import FACEMAP_MAX_COMPONENTS, facemap_column

pd = pytest.importorskip("pandas")
pytest.importorskip("tables")


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return synth.make_session(
        tmp_path_factory.mktemp("vb"),
        seed=3,
        minutes=1.5,
        ephys=False,
        video_behavior=True,
        nose_camera=True,  # four cameras: the zoomed side (Nose) camera of newer rigs too
    )


@pytest.fixture(scope="module")
def raw(truth: Any) -> RawSession:
    return RawSession.from_path(truth.raw_path, annotations={"eye_mm_per_px": 0.02})


def _asset(truth: Any, kind: str) -> Path:
    return Path(truth.assets[kind]["path"])


def _assert_frame_equal(got: pl.DataFrame, want: pl.DataFrame, *, rtol: float = 0.0) -> None:
    for c in want.columns:
        a, b = got[c].to_numpy(), want[c].to_numpy()
        if a.dtype == bool or b.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=c)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=c)


# ------------------------------------------------------------------------------------ readers
def test_ellipses_reader_equals_pandas_read_hdf(truth: Any) -> None:
    path = _asset(truth, "dlc_eye") / "ellipses_processed.h5"
    mine = read_ellipses(str(path))
    for f in ELLIPSE_FEATURES:
        theirs = pd.read_hdf(path, f)
        assert theirs.index.tolist() == list(range(mine.height))
        for col in theirs.columns:
            name = col if col.startswith(f"{f}_") else f"{f}_{col}"
            np.testing.assert_array_equal(mine[name].to_numpy(), theirs[col].to_numpy())


def test_dlc_reader_equals_pandas_read_hdf(truth: Any) -> None:
    path = next(p for p in _asset(truth, "dlc_eye").glob("*.h5") if "ellipses" not in p.name)
    mine, scorer = read_dlc(str(path))
    theirs = pd.read_hdf(path)
    assert theirs.columns.nlevels == 3 and scorer == theirs.columns[0][0]
    assert mine.width == 108 == theirs.shape[1]
    for _, bp, coord in theirs.columns:
        np.testing.assert_array_equal(
            mine[f"{bp}_{coord}"].to_numpy(), theirs[(scorer, bp, coord)].to_numpy()
        )


def test_lp_readers_equal_pandas_read_csv(truth: Any) -> None:
    for csv in _asset(truth, "lp_face_parts").rglob("*_predictions.csv"):
        mine = read_lp_predictions(str(csv))
        theirs = pd.read_csv(csv, header=[0, 1, 2], index_col=0)
        for _, bp, coord in theirs.columns:
            np.testing.assert_array_equal(
                mine[f"{bp}_{coord}"].to_numpy(),
                theirs.xs((bp, coord), axis=1, level=[1, 2]).to_numpy().ravel(),
            )
    for csv in _asset(truth, "lp_face_parts").rglob("*_temporal_norm.csv"):
        mine = read_lp_metric(str(csv))
        theirs = pd.read_csv(csv, index_col=0)
        assert mine.columns == list(theirs.columns)
        np.testing.assert_array_equal(mine.to_numpy(), theirs.to_numpy())


def test_facemap_reader_equals_zarr_and_proc_needs_opt_in(truth: Any, tmp_path: Path) -> None:
    import zarr

    path = next(_asset(truth, "facemap").glob("Face*_motSVD.zarr"))
    np.testing.assert_array_equal(read_motion_svd_zarr(str(path)), zarr.open(str(path))[:])
    np.testing.assert_array_equal(
        read_motion_svd_zarr(str(path), n_components=3), zarr.open(str(path))[:, :3]
    )
    proc = tmp_path / "Face_proc.npy"
    values = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(proc, np.array({"motSVD": [np.zeros((0, 0)), values]}, dtype=object))
    with pytest.raises(ParameterError, match="pickle"):
        read_proc_npy(str(proc))
    np.testing.assert_array_equal(read_proc_npy(str(proc), allow_pickle=True), values)


def test_pickled_attributes_are_decoded_without_building_objects() -> None:
    assert _plain_unpickle(pickle.dumps([("a", "b", "x")], protocol=0)) == [("a", "b", "x")]
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        _plain_unpickle(pickle.dumps(Path("/x"), protocol=0))


def test_object_block_in_hdfstore_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "obj.h5"
    pd.DataFrame({"a": ["x", "y"]}).to_hdf(path, key="cr")
    with pytest.raises(BadFormatError, match="pickled objects are not read"):
        read_hdf_frame(str(path), "cr")
    with pytest.raises(BadFormatError, match="no key"):
        read_hdf_frame(str(path), "eye")
    with pytest.raises(MissingFileError):
        read_hdf_frame(str(tmp_path / "none.h5"), "cr")


# --------------------------------------------------------------------------------- components
def test_eye_tracking_equals_truth_on_the_eye_camera_frame_times(
    truth: Any, raw: RawSession
) -> None:
    df = vb.eye_tracking(raw)
    want = truth.assets["dlc_eye"]["Eye"]["ellipses"]
    assert df.height == want.height == truth.video["Eye"]["n_video_frames"]
    assert len(truth.video["Eye"]["lost_frames"]) > 0  # lost frames are in this session
    _assert_frame_equal(df, want)
    np.testing.assert_array_equal(df["timestamp"].to_numpy(), truth.video["Eye"]["frame_times"])
    # likely_blink = missing eye fit dilated by 2 frames; pupil fits are blanked there too
    blink, eye_bad = df["likely_blink"].to_numpy(), df["eye_is_bad_frame"].to_numpy()
    assert (
        eye_bad.sum() > 0
        and blink.sum() == eye_bad.sum() + 4 * (np.diff(eye_bad.astype(int)) == 1).sum()
    )
    assert not (blink & ~df["pupil_is_bad_frame"].to_numpy()).any()
    np.testing.assert_allclose(
        df["pupil_area_mm2"].to_numpy(), df["pupil_area"].to_numpy() * 0.02**2, rtol=1e-12
    )
    assert vb.eye_tracking(raw, mm_per_px=None).schema == df.schema
    no_scale = vb.eye_tracking(RawSession.from_path(truth.raw_path))
    assert no_scale["pupil_area_mm2"].null_count() == no_scale.height


def test_pupil_follows_running_speed_and_reward(truth: Any, raw: RawSession) -> None:
    """The generator's pupil radius is 10 px + 0.08 px per cm/s + 5 px at a reward's peak."""
    from npc_frames.synth.video_behavior import _signals, _times

    df = vb.eye_tracking(raw)
    t = _times(np.asarray(truth.video["Eye"]["frame_times"]))
    sig = _signals(t, truth.script("DynamicRouting1")["truth"])
    ok = ~df["pupil_is_bad_frame"].to_numpy()
    design = np.column_stack([np.ones(t.size), sig["speed"], sig["reward"]])[ok]
    coef, *_ = np.linalg.lstsq(design, df["pupil_width"].to_numpy()[ok], rcond=None)
    np.testing.assert_allclose(coef, [10.0, 0.08, 5.0], atol=1e-9)


def test_dlc_eye_camera_equals_truth(truth: Any, raw: RawSession) -> None:
    df = vb.dlc_eye_camera(raw)
    _assert_frame_equal(df, truth.assets["dlc_eye"]["Eye"]["dlc"])
    np.testing.assert_array_equal(df["timestamp"].to_numpy(), truth.video["Eye"]["frame_times"])


@pytest.mark.parametrize(
    ("component", "label"),
    [
        ("lp_side_camera", "Behavior"),
        ("lp_front_camera", "Face"),
        ("lp_zoomed_side_camera", "Nose"),
    ],
)
def test_lp_camera_equals_truth(truth: Any, raw: RawSession, component: str, label: str) -> None:
    df = getattr(vb, component)(raw)
    t = truth.assets["lp_face_parts"][label]
    _assert_frame_equal(df, t["predictions"], rtol=1e-12)
    _assert_frame_equal(
        df, t["error"].rename({c: f"{c}_pca_error" for c in t["error"].columns}), rtol=1e-12
    )
    tn = t["temporal_norm"]
    _assert_frame_equal(df, tn.rename({c: f"{c}_temporal_norm" for c in tn.columns}), rtol=1e-12)
    np.testing.assert_array_equal(df["timestamp"].to_numpy(), truth.video[label]["frame_times"])
    # the tongue is seen (and moves) only around licks
    lick_frames = df["tongue_tip_likelihood"] > 0.5
    assert 0 < lick_frames.sum() < df.height / 2


@pytest.mark.parametrize(
    ("component", "label"),
    [
        ("facemap_side_camera", "Behavior"),
        ("facemap_front_camera", "Face"),
        ("facemap_zoomed_side_camera", "Nose"),
    ],
)
def test_facemap_equals_truth_and_pads_missing_components_with_null(
    truth: Any, raw: RawSession, component: str, label: str
) -> None:
    df = getattr(vb, component)(raw)
    svd = np.asarray(truth.assets["facemap"][label]["motion_svd"])
    k = svd.shape[1]
    assert k < FACEMAP_MAX_COMPONENTS
    np.testing.assert_array_equal(df.select(facemap_column(j) for j in range(k)).to_numpy(), svd)
    assert df[facemap_column(k)].null_count() == df.height
    np.testing.assert_array_equal(df["timestamp"].to_numpy(), truth.video[label]["frame_times"])
    first3 = getattr(vb, component)(raw, n_components=3)
    assert first3[facemap_column(3)].null_count() == df.height


def test_session_without_derived_assets_gives_zero_row_frames(tmp_path: Path) -> None:
    t = synth.make_session(tmp_path, seed=4, minutes=0.5, ephys=False)
    raw = RawSession.from_path(t.raw_path)
    assert raw.assets == {}
    for name in ("eye_tracking", "dlc_eye_camera", "lp_side_camera", "facemap_front_camera"):
        assert getattr(vb, name)(raw).height == 0


def test_nose_camera_is_on_sync_line_30_and_optional(truth: Any, mismatched: Any) -> None:
    """The Nose camera's frames are timed by its own exposure line; a session without a Nose
    video (and assets without its output) gives absent zoomed_side_camera components."""
    from npc_frames import parts
    from npc_frames.components.video import video_frame_times

    raw = RawSession.from_path(truth.raw_path)
    vft = video_frame_times(raw).filter(pl.col("camera") == "zoomed_side_camera")
    np.testing.assert_array_equal(vft["timestamp"].to_numpy(), truth.video["Nose"]["frame_times"])
    assert (
        truth.line_labels[30] == "nose_cam_exposing" and truth.video["Nose"]["exposing_bit"] == 30
    )
    three = RawSession.from_path(mismatched.raw_path)  # LP and facemap assets, no Nose video
    assert "Nose" not in mismatched.video
    for name in ("lp_zoomed_side_camera", "facemap_zoomed_side_camera"):
        with parts.collect() as found:
            assert getattr(vb, name)(three).height == 0
        assert [p.status for p in found] == ["absent"], found


# ------------------------------------------------------------------------------- bad inputs
@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return synth.make_session(
        tmp_path_factory.mktemp("vb_mismatch"),
        seed=6,
        minutes=0.5,
        ephys=False,
        video_behavior=True,
        video_behavior_length_delta={"dlc_eye": -3, "lp_face_parts": 2, "facemap": 5},
    )


@pytest.mark.parametrize(
    "component",
    ["eye_tracking", "dlc_eye_camera", "lp_side_camera", "lp_front_camera", "facemap_side_camera"],
)
def test_length_mismatch_is_an_inconsistent_data_error(mismatched: Any, component: str) -> None:
    raw = RawSession.from_path(mismatched.raw_path)
    with pytest.raises(InconsistentDataError, match="rows but the video has"):
        getattr(vb, component)(raw)


def _copy(truth: Any, dst: Path) -> Path:
    raw = Path(truth.raw_path)
    for p in raw.parent.glob(raw.name + "*"):
        if not p.name.endswith(".truth"):
            shutil.copytree(p, dst / p.name)
    return dst / raw.name


def test_missing_and_corrupt_files_give_typed_errors(truth: Any, tmp_path: Path) -> None:
    root = _copy(truth, tmp_path)
    raw = RawSession.from_path(root)
    (Path(raw.assets["dlc_eye"]) / "ellipses_processed.h5").unlink()
    with pytest.raises(MissingFileError, match=r"ellipses_processed\.h5"):
        vb.eye_tracking(raw)
    vb.dlc_eye_camera(raw)  # the DeepLabCut file is still there
    side = next(Path(raw.assets["lp_face_parts"]).rglob("Behavior_*_predictions.csv"))
    lines = side.read_text().splitlines()
    lines[10] = ",".join(lines[10].split(",")[:-4])  # a short row
    side.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadFormatError, match="cells"):
        vb.lp_side_camera(raw)
    side.write_text("not,a\nheader\n")
    with pytest.raises(BadFormatError, match="header rows"):
        vb.lp_side_camera(raw)
    next(Path(raw.assets["lp_face_parts"]).rglob("Face_*_temporal_norm.csv")).unlink()
    with pytest.raises(MissingFileError, match="temporal_norm"):
        vb.lp_front_camera(raw)
    for z in Path(raw.assets["facemap"]).glob("Behavior*"):
        shutil.rmtree(z)
    with pytest.raises(MissingFileError, match="motion SVD"):
        vb.facemap_side_camera(raw)
    vb.facemap_front_camera(raw)
    # the optional Nose camera: output skipped by the pipeline -> absent; a broken one -> error
    for z in Path(raw.assets["facemap"]).glob("Nose*"):
        shutil.rmtree(z)
    assert vb.facemap_zoomed_side_camera(raw).height == 0
    nose = next(Path(raw.assets["lp_face_parts"]).rglob("nose"))
    next(nose.rglob("*_error.csv")).unlink()
    with pytest.raises(MissingFileError, match="_error"):
        vb.lp_zoomed_side_camera(raw)
    shutil.rmtree(nose)
    assert vb.lp_zoomed_side_camera(raw).height == 0


# ---------------------------------------------------------------------------------------- NWB
def test_nwb_processing_behavior_round_trips_through_pynwb_and_lazynwb(
    truth: Any, raw: RawSession, tmp_path: Path
) -> None:
    import lazynwb
    from pynwb import NWBHDF5IO

    from npc_frames import components
    from npc_frames.nwb import to_nwb

    names = ["sessions", "eye_tracking", "dlc_eye_camera", "lp_side_camera",
             "lp_zoomed_side_camera", "facemap_front_camera",
             "facemap_zoomed_side_camera"]  # fmt: skip
    frames = {n: components.get(n)(raw) for n in names}
    nwb = to_nwb(frames)
    path = tmp_path / "vb.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    with NWBHDF5IO(str(path), "r") as io:
        back = io.read()
        module = back.processing["behavior"]
        eye = module["eye_tracking"].to_dataframe()
        np.testing.assert_array_equal(
            eye["pupil_area"].to_numpy(), frames["eye_tracking"]["pupil_area"].to_numpy()
        )
        np.testing.assert_array_equal(
            eye["timestamps"].to_numpy(), truth.video["Eye"]["frame_times"]
        )
        assert "pupil_area" in module["eye_tracking"].colnames
        ts = module["facemap_front_camera"]
        svd = np.asarray(truth.assets["facemap"]["Face"]["motion_svd"])
        np.testing.assert_array_equal(ts.data[:], svd)
        assert ts.unit == "pixels"
        assert module["lp_side_camera"]["tongue_tip_y"].description.startswith("tongue_tip")
        pose = module["dlc_eye_camera_pose"].pose_estimation_series["pupil3"]
        np.testing.assert_array_equal(
            pose.data[:, 0], truth.assets["dlc_eye"]["Eye"]["dlc"]["pupil3_x"].to_numpy()
        )
        np.testing.assert_array_equal(
            pose.confidence[:],
            truth.assets["dlc_eye"]["Eye"]["dlc"]["pupil3_likelihood"].to_numpy(),
        )
        assert module["lp_side_camera_pose"].source_software == "Lightning Pose"
        nose = module["facemap_zoomed_side_camera"]
        np.testing.assert_array_equal(
            nose.data[:], np.asarray(truth.assets["facemap"]["Nose"]["motion_svd"])
        )
        np.testing.assert_array_equal(nose.timestamps[:], truth.video["Nose"]["frame_times"])
        np.testing.assert_array_equal(
            module["lp_zoomed_side_camera"]["jaw_y"].data[:],
            truth.assets["lp_face_parts"]["Nose"]["predictions"]["jaw_y"].to_numpy(),
        )
    assert nf.validate_nwb(path) == []
    lz = lazynwb.get_df(path, "/processing/behavior/dlc_eye_camera", as_polars=True)
    np.testing.assert_array_equal(
        lz["pupil3_x"].to_numpy(), truth.assets["dlc_eye"]["Eye"]["dlc"]["pupil3_x"].to_numpy()
    )


# ------------------------------------------------------------------------- cache and sample_at
def test_convert_caches_the_components_and_sample_at_reads_them(
    truth: Any, raw: RawSession, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = ["trials", "eye_tracking", "lp_side_camera", "facemap_front_camera"]
    cache = tmp_path / "cache"
    manifest = {truth.session_id: {"raw_path": truth.raw_path, "eye_mm_per_px": 0.02}}
    with ThreadPoolExecutor(1) as ex:
        nf.convert(None, cache, manifest=manifest, components=names, executor=ex)
    catalog = nf.read_catalog(cache).filter(pl.col("component").is_in(names))
    assert sorted(catalog["component"].to_list()) == sorted(names)
    assert set(catalog["status"].to_list()) == {"ok"}, catalog
    eye = nf.scan("eye_tracking", cache).collect()
    np.testing.assert_array_equal(
        eye["pupil_area"].to_numpy(), vb.eye_tracking(raw)["pupil_area"].to_numpy()
    )
    assert eye["pupil_area_mm2"].null_count() == 0  # the manifest's pixel scale reached it
    n = nf.sql("SELECT count(*) AS n FROM facemap_front_camera", cache=cache)["n"][0]
    assert n == truth.video["Face"]["n_video_frames"]
    trials = nf.scan("trials", cache)
    got = nf.sample_at(
        nf.scan("eye_tracking", cache),
        trials,
        windows={"response": ("stim_start_time", 0.0, 1.0)},
        columns=["pupil_area"],
    )
    tr = trials.collect()
    t, area = eye["timestamp"].to_numpy(), eye["pupil_area"].to_numpy()
    for row, start in zip(got.iter_rows(named=True), tr["stim_start_time"].to_numpy(), strict=True):
        inside = (t >= start) & (t < start + 1.0)
        ok = inside & np.isfinite(area)
        assert row["n_frames"] == inside.sum() and row["pupil_area_n_nan"] == (inside & ~ok).sum()
        assert row["pupil_area"] == pytest.approx(area[ok].mean(), rel=1e-12)
