"""Legacy galvo task files (per-trial ``trialGalvoVoltage``, no ``optoParams``): bregma locations
of trials and optotagging from the file's bregma-galvo calibration, else the rig's OptoGui files
(generator-written, with the bregma offset added), and optotagging power from the rig's power file
when the task file has no calibration — each against the generator's truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from npc_frames.paths import RawSession

synth = pytest.importorskip("npc_frames.synth")


@pytest.fixture(scope="module")
def opto_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return synth.make_session(
        tmp_path_factory.mktemp("opto_legacy"),
        seed=11,
        minutes=2.0,
        opto=True,
        ephys=False,
        video=False,
    )


def _galvo_of(bregma: np.ndarray) -> np.ndarray:
    """The generator's bregma -> galvo calibration (an affine grid)."""
    from npc_frames.synth.task_mapping import _galvo_calibration

    g = _galvo_calibration()
    bx, by, gx, gy = (np.asarray(g[k]) for k in ("bregmaX", "bregmaY", "galvoX", "galvoY"))
    ax = np.polyfit(bx, gx, 1)
    ay = np.polyfit(by, gy, 1)
    return np.column_stack([np.polyval(ax, bregma[:, 0]), np.polyval(ay, bregma[:, 1])])


def _copy(session: Any, dst: Path) -> Path:
    return Path(shutil.copytree(session.raw_path, dst / Path(session.raw_path).name))


def _write_group(f: h5py.File, name: str, values: dict[str, Any]) -> None:
    g = f.create_group(name)
    for k, v in values.items():
        g.create_dataset(k, data=np.asarray(v, dtype=np.float64))


def _legacy_task(
    root: Path, truth_trials: Any, *, file_cal: bool, offset: tuple[float, float] = (0.0, 0.0)
) -> None:
    """Rewrite the DynamicRouting1 file as a pre-2024 galvo file (volts per trial)."""
    from npc_frames.synth.task_mapping import _galvo_calibration

    bx = np.asarray(truth_trials["opto_location_bregma_x"], dtype=np.float64)
    by = np.asarray(truth_trials["opto_location_bregma_y"], dtype=np.float64)
    volts = _galvo_of(np.column_stack([bx - offset[0], by - offset[1]]))  # NaN without opto
    task = next((root / "behavior").glob("DynamicRouting1*.hdf5"))
    with h5py.File(task, "r+") as f:
        n = f["trialOptoOnsetFrame"].shape[0]
        for key in ("optoParams", "trialOptoParamsIndex", "trialGalvoX", "trialGalvoY"):
            if key in f:
                del f[key]
        f.create_dataset("trialGalvoVoltage", data=volts[:n])
        if file_cal:
            _write_group(f, "bregmaGalvoCalibrationData", _galvo_calibration())


def _first(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v[0] for v in values], dtype=np.float64)


@pytest.mark.parametrize("source", ["file", "rig"])
def test_trials_bregma_of_legacy_galvo_files(
    opto_session: Any, tmp_path: Path, source: str
) -> None:
    from npc_frames.components import trials

    truth = opto_session.script("DynamicRouting1")["truth"]["trials"]
    want_x = np.asarray(truth["opto_location_bregma_x"], dtype=np.float64)
    want_y = np.asarray(truth["opto_location_bregma_y"], dtype=np.float64)
    assert np.isfinite(want_x).sum() > 3
    root = _copy(opto_session, tmp_path)
    annotations: dict[str, Any] = {}
    offset = (0.0, 0.0)
    if source == "rig":  # the generator's rig files, with a bregma offset of this rig
        rig = opto_session.assets["opto_calibration"]
        cal = Path(shutil.copytree(rig["path"], tmp_path / "OptoGui"))
        offset = (0.3, -0.2)
        (cal / f"{rig['rig']}_bregma_offset.txt").write_text(
            "bregmaXOffset\tbregmaYOffset\n0.3\t-0.2\n"
        )
        annotations["opto_calibration"] = str(cal)
    _legacy_task(root, truth, file_cal=source == "file", offset=offset)
    df = trials(RawSession.from_path(root, annotations=annotations))
    by_index = dict(zip(truth["trial_index"], range(len(want_x)), strict=True))
    rows = [by_index[i] for i in df["trial_index"].to_list()]
    np.testing.assert_allclose(
        _first(df["opto_location_bregma_x"].to_list()), want_x[rows], atol=1e-9
    )
    np.testing.assert_allclose(
        _first(df["opto_location_bregma_y"].to_list()), want_y[rows], atol=1e-9
    )
    if source == "rig":  # without any calibration the locations are unknown, not wrong
        bare = trials(RawSession.from_path(root))
        assert bare["opto_location_bregma_x"].is_null().all()


def test_single_galvo_pair_files_use_it_for_every_opto_trial(
    opto_session: Any, tmp_path: Path
) -> None:
    from npc_frames.components import trials

    truth = opto_session.script("DynamicRouting1")["truth"]["trials"]
    want_x = np.asarray(truth["opto_location_bregma_x"], dtype=np.float64)
    root = _copy(opto_session, tmp_path)
    _legacy_task(root, truth, file_cal=True)
    task = next((root / "behavior").glob("DynamicRouting1*.hdf5"))
    with h5py.File(task, "r+") as f:
        volts = f["trialGalvoVoltage"][:]
        del f["trialGalvoVoltage"]
        f.create_dataset("trialGalvoVoltage", data=volts[:, 0])  # one value per trial
        f.create_dataset("galvoVoltage", data=volts[np.isfinite(volts[:, 0])][:1])
    df = trials(RawSession.from_path(root))
    by_index = dict(zip(truth["trial_index"], range(len(want_x)), strict=True))
    rows = [by_index[i] for i in df["trial_index"].to_list()]
    np.testing.assert_allclose(
        _first(df["opto_location_bregma_x"].to_list()), want_x[rows], atol=1e-9
    )


def _edit_tagging(root: Path, drop: tuple[str, ...]) -> None:
    from npc_frames.memo import clear_caches

    clear_caches()  # readers keep task files open
    task = next((root / "behavior").glob("OptoTagging*.hdf5"))
    with h5py.File(task, "r+") as f:
        for key in drop:
            del f[key]


def test_optotagging_bregma_from_calibration_when_no_bregma_table(
    opto_session: Any, tmp_path: Path
) -> None:
    from npc_frames.components.intervals import optotagging

    truth = opto_session.script("OptoTagging")["truth"]["optotagging"]
    root = _copy(opto_session, tmp_path)
    _edit_tagging(root, ("bregmaXY",))
    df = optotagging(RawSession.from_path(root))
    np.testing.assert_allclose(df["bregma_x"].to_numpy(), truth["bregma_x"], atol=1e-9)
    np.testing.assert_allclose(df["bregma_y"].to_numpy(), truth["bregma_y"], atol=1e-9)
    # nor a calibration in the file: the rig's OptoGui file
    _edit_tagging(root, ("bregmaGalvoCalibrationData",))
    cal = {"opto_calibration": opto_session.assets["opto_calibration"]["path"]}
    df = optotagging(RawSession.from_path(root, annotations=cal))
    np.testing.assert_allclose(df["bregma_y"].to_numpy(), truth["bregma_y"], atol=1e-9)
    assert optotagging(RawSession.from_path(root))["bregma_x"].is_nan().all()


def test_optotagging_power_from_rig_file_without_file_calibration(
    opto_session: Any, tmp_path: Path
) -> None:
    from npc_frames.components.intervals import optotagging

    truth = opto_session.script("OptoTagging")["truth"]["optotagging"]
    root = _copy(opto_session, tmp_path)
    _edit_tagging(root, ("optoPowerCalibrationData", "optoPower"))
    assert optotagging(RawSession.from_path(root))["power"].is_nan().all()
    cal = {"opto_calibration": opto_session.assets["opto_calibration"]["path"]}
    df = optotagging(RawSession.from_path(root, annotations=cal))
    np.testing.assert_allclose(df["power"].to_numpy(), truth["power"], atol=1e-6)
