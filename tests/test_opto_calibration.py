"""Rig opto calibration (OptoGui files): power from command volts by the quadratic fit, galvo volts
to bregma by Delaunay interpolation, and trials' ``opto_power`` from the rig file when the task file
carries no calibration; a one-point file is a typed error naming it and trials are still built."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import polars as pl
import pytest

from npc_frames.errors import BadFormatError
from npc_frames.opto_calibration import (
    galvo_to_bregma,
    power_coefficients,
    read_optogui_table,
)
from npc_frames.paths import RawSession


def _write(path: Path, header: list[str], rows: np.ndarray) -> Path:
    lines = ["\t".join(header)] + ["\t".join(f"{v:.10g}" for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n\n")  # trailing blank lines are skipped
    return path


def test_power_fit_recovers_the_quadratic(tmp_path: Path) -> None:
    poly = np.array([-0.5, 4.2, -1.6])
    v = np.linspace(0.4, 3.0, 9)
    p = _write(
        tmp_path / "NP3_laser_488_power.txt",
        ["input (V)", "power (mW)"],
        np.column_stack([v, np.polyval(poly, v)]),
    )
    coeffs = power_coefficients(read_optogui_table(str(p)), str(p))
    np.testing.assert_allclose(coeffs, poly, atol=1e-9)
    one = _write(
        tmp_path / "NP3_laser_633_power.txt", ["input (V)", "power (mW)"], np.array([[1.0, 2.0]])
    )
    with pytest.raises(BadFormatError) as info:
        power_coefficients(read_optogui_table(str(one)), str(one))
    assert info.value.path == str(one) and "at least 3" in str(info.value)


def test_galvo_to_bregma_on_an_affine_grid(tmp_path: Path) -> None:
    gx, gy = np.meshgrid(np.linspace(-2, 2, 5), np.linspace(-1, 1, 4))
    gx, gy = gx.ravel(), gy.ravel()
    bx, by = 1.5 * gx - 0.2 * gy + 0.3, 0.1 * gx + 2.0 * gy - 1.0  # mm
    table = {"bregmaX": bx, "bregmaY": by, "galvoX": gx, "galvoY": gy}
    q = np.array([[0.3, -0.4], [1.7, 0.9], [5.0, 0.0]])
    x, y = galvo_to_bregma(table, q[:, 0], q[:, 1], offset=(0.5, -0.25))
    np.testing.assert_allclose(x[:2], 1.5 * q[:2, 0] - 0.2 * q[:2, 1] + 0.3 + 0.5, atol=1e-12)
    np.testing.assert_allclose(y[:2], 0.1 * q[:2, 0] + 2.0 * q[:2, 1] - 1.0 - 0.25, atol=1e-12)
    assert np.isnan(x[2]) and np.isnan(y[2])  # outside the calibrated grid


@pytest.fixture(scope="module")
def opto_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from npc_frames import synth

    return synth.make_session(
        tmp_path_factory.mktemp("opto_cal"),
        seed=11,
        minutes=2.0,
        opto=True,
        ephys=False,
        video=False,
    )


def _strip_file_calibration(session: Any, dst: Path) -> tuple[Path, str]:
    root = Path(shutil.copytree(session.raw_path, dst / Path(session.raw_path).name))
    task = next(p for p in (root / "behavior").glob("DynamicRouting1*.hdf5"))
    with h5py.File(task, "r+") as f:
        del f["optoPowerCalibrationData"]
        rig = f["rigName"].asstr()[()] if "rigName" in f else "NP3"
    return root, str(rig)


def test_trials_power_from_rig_file(opto_session: Any, tmp_path: Path) -> None:
    from npc_frames.components import trials
    from npc_frames.synth.task_dr import OPTO_POLY

    want = trials(RawSession.from_path(opto_session.raw_path))["opto_power"].to_numpy()
    assert np.isfinite(want).any()
    root, rig = _strip_file_calibration(opto_session, tmp_path)
    bare = trials(RawSession.from_path(root))
    assert np.isnan(bare["opto_power"].to_numpy()).all()
    cal = tmp_path / "OptoGui"
    cal.mkdir()
    v = np.linspace(0.4, 3.0, 14)
    _write(
        cal / f"{rig}_laser_488_power.txt",
        ["input (V)", "power (mW)"],
        np.column_stack([v, np.polyval(OPTO_POLY, v)]),
    )
    _write(
        cal / "OTHER_laser_488_power.txt", ["input (V)", "power (mW)"], np.column_stack([v, 10 * v])
    )  # another rig's file is ignored
    got = trials(RawSession.from_path(root, annotations={"opto_calibration": str(cal)}))
    np.testing.assert_allclose(got["opto_power"].to_numpy(), want, atol=1e-9, equal_nan=True)


def test_one_point_rig_file_warns_and_trials_still_built(opto_session: Any, tmp_path: Path) -> None:
    from npc_frames.components import trials

    root, rig = _strip_file_calibration(opto_session, tmp_path)
    cal = tmp_path / "OptoGui"
    cal.mkdir()
    bad = _write(
        cal / f"{rig}_laser_488_power.txt", ["input (V)", "power (mW)"], np.array([[1.0, 2.0]])
    )
    with pytest.warns(UserWarning, match=str(bad).replace("\\", "\\\\")):
        df = trials(RawSession.from_path(root, annotations={"opto_calibration": str(cal)}))
    assert df.height > 0 and np.isnan(df["opto_power"].to_numpy()).all()
    assert df.filter(pl.col("opto_start_time").is_not_null()).height > 0
