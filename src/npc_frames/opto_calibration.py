"""Rig opto calibration (OptoGui files): laser power from command volts, galvo volts -> bregma.

OptoGui keeps per rig tab-separated tables (docs/formats.md, "Opto calibration files"):
``<rig>_<device>_power.txt`` (``input (V)``, ``power (mW)``), ``<rig>_bregma_galvo.txt``
(``bregmaX``, ``bregmaY``, ``galvoX``, ``galvoY``) and the older ``<rig>_bregma_offset.txt``.
They are not part of the raw upload: a manifest entry names their folder (or files) as
``opto_calibration``; a session folder's own ``OptoGui/`` folder is also used.

* power: a quadratic least-squares fit of mW on V, evaluated at the command voltage;
* galvo -> bregma: piecewise-linear interpolation on the Delaunay triangulation of the calibration
  galvo points, separately for x and y (NaN outside their hull), plus the rig's bregma offset.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from npc_frames.errors import BadFormatError, NpcFramesError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from npc_frames.paths import RawSession

__all__ = [
    "RigCalibration",
    "RigLookup",
    "galvo_to_bregma",
    "legacy_bregma",
    "power_coefficients",
    "read_optogui_table",
    "rig_calibration",
]

FloatArray = npt.NDArray[np.float64]

#: points a quadratic power fit needs
MIN_POWER_POINTS = 3


def read_optogui_table(path: str) -> dict[str, FloatArray]:
    """Return column name -> values of an OptoGui tab-separated table (blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\r\n") for ln in f if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFormatError(f"calibration file cannot be read: {exc}", path=path) from None
    if not lines:
        raise BadFormatError("calibration file is empty", path=path, expected="a header line")
    names = [n.strip() for n in lines[0].split("\t")]
    rows = [ln.split("\t") for ln in lines[1:]]
    for i, r in enumerate(rows, start=2):
        if len(r) != len(names):
            raise BadFormatError(
                f"line {i} has {len(r)} fields",
                path=path,
                field=f"line {i}",
                expected=f"{len(names)} tab-separated numbers",
            )
    try:
        values = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise BadFormatError(f"calibration value is not a number: {exc}", path=path) from None
    values = values.reshape(len(rows), len(names))
    return {n: values[:, j] for j, n in enumerate(names)}


def power_coefficients(table: Mapping[str, FloatArray], path: str) -> FloatArray:
    """Return the quadratic V -> mW fit (highest power first) of a ``_power.txt`` table."""
    need = ("input (V)", "power (mW)")
    if not all(k in table for k in need):
        raise BadFormatError(
            "power calibration lacks columns",
            path=path,
            field=", ".join(need),
            expected="input (V) and power (mW)",
        )
    v, p = table["input (V)"], table["power (mW)"]
    ok = np.isfinite(v) & np.isfinite(p)
    if np.unique(v[ok]).size < MIN_POWER_POINTS:
        raise BadFormatError(
            f"power calibration has {np.unique(v[ok]).size} distinct voltage(s)",
            path=path,
            field="input (V)",
            expected=f"at least {MIN_POWER_POINTS} points for a quadratic fit",
        )
    return np.polyfit(v[ok], p[ok], 2)


def galvo_to_bregma(
    table: Mapping[str, FloatArray],
    galvo_x: npt.ArrayLike,
    galvo_y: npt.ArrayLike,
    *,
    offset: tuple[float, float] = (0.0, 0.0),
    path: str | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Return bregma (x, y) of galvo voltages by piecewise-linear interpolation on the Delaunay
    triangulation of the calibration's galvo points (NaN outside their hull), plus `offset`."""
    from scipy.interpolate import LinearNDInterpolator

    need = ("bregmaX", "bregmaY", "galvoX", "galvoY")
    if not all(k in table for k in need):
        raise BadFormatError(
            "bregma-galvo calibration lacks columns", path=path, field=", ".join(need)
        )
    pts = np.column_stack([table["galvoX"], table["galvoY"]])
    if pts.shape[0] < 3:
        raise BadFormatError(
            f"bregma-galvo calibration has {pts.shape[0]} point(s)",
            path=path,
            expected="at least 3 points (a grid)",
        )
    q = np.column_stack([np.ravel(galvo_x), np.ravel(galvo_y)]).astype(np.float64)
    fx = LinearNDInterpolator(pts, table["bregmaX"])
    fy = LinearNDInterpolator(pts, table["bregmaY"])
    return fx(q) + offset[0], fy(q) + offset[1]


@dataclass(frozen=True)
class RigCalibration:
    """The OptoGui calibration files found for a session, parsed, and the ones that failed."""

    #: device (e.g. ``laser_488``) -> quadratic V -> mW coefficients
    power: Mapping[str, FloatArray] = field(default_factory=dict)
    bregma_galvo: Mapping[str, FloatArray] | None = None
    bregma_offset: tuple[float, float] = (0.0, 0.0)
    errors: Mapping[str, NpcFramesError] = field(default_factory=dict)


def _files(raw: RawSession) -> list[str]:
    given: Any = raw.annotations.get("opto_calibration")
    paths = [given] if isinstance(given, str | os.PathLike) else list(given or [])
    if not raw.is_remote:
        paths.append(os.path.join(raw.root, "OptoGui"))
    out: list[str] = []
    for p in paths:
        local = raw.local(os.fspath(p))
        if os.path.isdir(local):
            out += [os.path.join(local, n) for n in sorted(os.listdir(local)) if n.endswith(".txt")]
        elif os.path.isfile(local):
            out.append(local)
    return out


def rig_calibration(raw: RawSession, rig: str | None = None) -> RigCalibration:
    """Return the session's OptoGui calibration; with `rig`, files of other rigs are ignored.

    A file that cannot be used is kept in ``errors`` (typed, naming it); the others are used.
    """
    power: dict[str, FloatArray] = {}
    galvo: dict[str, FloatArray] | None = None
    offset = (0.0, 0.0)
    errors: dict[str, NpcFramesError] = {}
    for path in _files(raw):
        name = os.path.basename(path)[: -len(".txt")]
        if rig is not None and not name.startswith(f"{rig}_"):
            continue
        try:
            if name.endswith("_power"):
                device = name[: -len("_power")].split("_", 1)[1] if "_" in name else name
                power[device] = power_coefficients(read_optogui_table(path), path)
            elif name.endswith("_bregma_galvo"):
                galvo = read_optogui_table(path)
            elif name.endswith("_bregma_offset"):
                t = read_optogui_table(path)
                offset = (float(t["bregmaXOffset"][0]), float(t["bregmaYOffset"][0]))
        except NpcFramesError as exc:
            errors[path] = exc
        except (KeyError, IndexError):
            errors[path] = BadFormatError(
                "bregma offset lacks values", path=path, field="bregmaXOffset, bregmaYOffset"
            )
    return RigCalibration(power=power, bregma_galvo=galvo, bregma_offset=offset, errors=errors)


class RigLookup:
    """A session's rig calibration for one task file's rig, read on first use.

    Files that cannot be used are reported once by a warning naming them.
    """

    def __init__(self, raw: RawSession, rig: str | None) -> None:
        self._raw, self._rig = raw, rig
        self._cal: RigCalibration | None = None

    @property
    def calibration(self) -> RigCalibration:
        """Return the parsed calibration (read now if not yet)."""
        if self._cal is None:
            import warnings

            self._cal = rig_calibration(self._raw, self._rig)
            for path, err in self._cal.errors.items():
                warnings.warn(f"opto calibration {path} not used: {err}", stacklevel=3)
        return self._cal

    def power(self, device: str) -> FloatArray | None:
        """Return the V -> mW polynomial of `device`, or None without a usable file."""
        return self.calibration.power.get(device)

    def galvo(self) -> tuple[Mapping[str, FloatArray], tuple[float, float]] | None:
        """Return (bregma-galvo table, bregma offset), or None without a usable file."""
        cal = self.calibration
        return None if cal.bregma_galvo is None else (cal.bregma_galvo, cal.bregma_offset)


def _file_galvo_table(
    group: Mapping[str, Any] | None,
) -> tuple[dict[str, FloatArray], tuple[float, float]] | None:
    if not group or not all(k in group for k in ("bregmaX", "bregmaY", "galvoX", "galvoY")):
        return None
    table = {
        k: np.asarray(group[k], dtype=np.float64).ravel()
        for k in ("bregmaX", "bregmaY", "galvoX", "galvoY")
    }

    def first(key: str) -> float:
        v = np.asarray(group.get(key, [0.0]), dtype=np.float64).ravel()
        return float(v[0]) if v.size and np.isfinite(v[0]) else 0.0

    return table, (first("bregmaXOffset"), first("bregmaYOffset"))


def legacy_bregma(
    trial_galvo: npt.ArrayLike,
    *,
    galvo_voltage: npt.ArrayLike | None = None,
    bregma_xy: npt.ArrayLike | None = None,
    file_calibration: Mapping[str, Any] | None = None,
    rig: RigLookup | None = None,
    path: str | None = None,
) -> tuple[FloatArray, FloatArray] | None:
    """Return bregma x, y (trials × locations, mm; NaN where no galvo value) of legacy task files
    that store galvo volts per trial (``trialGalvoVoltage``) instead of opto parameter rows.

    In order: the file's ``optoBregma``/``bregmaXY`` table, matched row by row to
    ``galvoVoltage``; else galvo -> bregma with the file's ``bregmaGalvoCalibrationData`` (and its
    ``bregmaXOffset``/``bregmaYOffset``); else with the rig's OptoGui files. A file whose trial
    values are one number per trial uses its single ``galvoVoltage`` pair for every trial. None
    when nothing can convert the voltages.
    """
    tv = np.asarray(trial_galvo, dtype=np.float64)
    gv = None if galvo_voltage is None else np.asarray(galvo_voltage, np.float64).reshape(-1, 2)
    n = tv.shape[0] if tv.ndim else 0
    if tv.ndim == 1 or (tv.ndim == 2 and tv.shape[1] != 2):
        if gv is None or gv.shape[0] != 1:
            return None
        ok = np.asarray(np.isfinite(tv.reshape(n, -1)).any(axis=1), dtype=bool).reshape(n, 1)
        tv = np.where(ok, gv[0][None, :], np.nan)
    tv = tv.reshape(n, -1, 2)
    gx, gy = tv[..., 0], tv[..., 1]
    if bregma_xy is not None and gv is not None:
        bxy = np.asarray(bregma_xy, dtype=np.float64).reshape(-1, 2)
        if bxy.shape[0] == gv.shape[0]:
            match = np.all(np.isclose(tv[:, :, None, :], gv[None, None, :, :]), axis=3)
            has = match.any(axis=2)
            row = np.argmax(match, axis=2)
            return np.where(has, bxy[row, 0], np.nan), np.where(has, bxy[row, 1], np.nan)
    found: tuple[Mapping[str, FloatArray], tuple[float, float]] | None
    found = _file_galvo_table(file_calibration)
    if found is None and rig is not None:
        found = rig.galvo()
    if found is None:
        return None
    table, offset = found
    bx, by = galvo_to_bregma(table, gx.ravel(), gy.ravel(), offset=offset, path=path)
    return bx.reshape(gx.shape), by.reshape(gy.shape)
