"""Synthetic CCF annotations: a sibling ``annotations`` asset with every file format we read.

Each probe runs in a straight line from its tip through a few real Allen structures (acronym and
structure id written into the files) to above the brain surface. The file format differs per
probe so that one six-probe session exercises them all:

====== ============================================ ==========================================
probe  file                                          regions (tip -> surface)
====== ============================================ ==========================================
A      IBL alignment payload, millimetres            CP, MOs6a, MOs5, MOs2/3, MOs1
B      TissueCyte CSV (25 µm voxels)                 LP, VISp5, VISp4, VISp2/3
C      IBL payload wrapped in ``curations``, µm       DG-mo, ACAd6a, ACAd5, ACAd2/3, ACAd1
D      legacy IBL-GUI ``ProbeD/ccf_channel_results``  MOp6a, MOp5, MOp2/3
E      IBL payload (mm) *and* a TissueCyte CSV        MOs5, MOs2/3 (the CSV says CP throughout)
F      none                                          —
====== ============================================ ==========================================

The truth per annotated probe is the expected per-channel ``ccf_ap``/``ccf_dv``/``ccf_ml`` (µm),
``location`` and ``structure`` (layer stripped — stated here, not computed from the tree).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ANNOTATION_ASSET_TIME",
    "HOLES",
    "IMPLANT",
    "REGIONS",
    "channel_structures",
    "write_annotations",
    "write_newscale_log",
    "write_probe_insertions",
]

ANNOTATION_ASSET_TIME = datetime.time(10, 0, 0)
OUT_OF_BRAIN = "out of brain"

#: per probe letter: (file kind, [(acronym, Allen structure id, stripped structure, n channels)])
REGIONS: dict[str, tuple[str, list[tuple[str, int, str, int]]]] = {
    "A": (
        "ibl_mm",
        [
            ("CP", 672, "CP", 80),
            ("MOs6a", 1021, "MOs", 60),
            ("MOs5", 767, "MOs", 80),
            ("MOs2/3", 962, "MOs", 60),
            ("MOs1", 656, "MOs", 30),
        ],
    ),
    "B": (
        "tissuecyte",
        [
            ("LP", 218, "LP", 100),
            ("VISp5", 778, "VISp", 80),
            ("VISp4", 721, "VISp", 40),
            ("VISp2/3", 821, "VISp", 60),
        ],
    ),
    "C": (
        "ibl_um_curations",
        [
            ("DG-mo", 10703, "DG", 50),
            ("ACAd6a", 919, "ACAd", 60),
            ("ACAd5", 1015, "ACAd", 90),
            ("ACAd2/3", 211, "ACAd", 60),
            ("ACAd1", 935, "ACAd", 30),
        ],
    ),
    "D": (
        "legacy_mm",
        [("MOp6a", 844, "MOp", 60), ("MOp5", 648, "MOp", 90), ("MOp2/3", 943, "MOp", 70)],
    ),
    "E": ("ibl_mm+tissuecyte", [("MOs5", 767, "MOs", 150), ("MOs2/3", 962, "MOs", 100)]),
}

#: direction of travel from the tip up the shank, per µm of shank (AP, DV, ML; DV decreases)
_DIRECTION = np.array([0.05, -0.95, 0.2])


def _track(letter: str, channel_y: np.ndarray) -> np.ndarray:
    """Return channels × (AP, DV, ML) µm of a probe whose tip sits at a letter-specific point."""
    i = "ABCDEF".index(letter)
    tip = np.array([2000.0 + 700.0 * i, 5200.0 - 100.0 * i, 3000.0 + 400.0 * i])
    return np.round(tip + channel_y[:, None] * _DIRECTION[None, :], 1)


def _labels(regions: Sequence[tuple[str, int, str, int]], n: int) -> tuple[list[Any], ...]:
    acr: list[str] = []
    ids: list[int] = []
    st: list[str] = []
    for a, rid, s, k in regions:
        acr += [a] * k
        ids += [rid] * k
        st += [s] * k
    pad = n - len(acr)
    return acr + ["void"] * pad, ids + [0] * pad, st + [OUT_OF_BRAIN] * pad


def channel_structures(letter: str, n_channels: int) -> list[str | None]:
    """Return the layer-stripped structure (or ``out of brain``) of each channel of probe
    `letter` as the annotation files say, or None per channel when the probe has none."""
    if letter not in REGIONS:
        return [None] * n_channels
    return list(_labels(REGIONS[letter][1], n_channels)[2][:n_channels])


def _ibl_payload(
    xyz_um: np.ndarray, acr: list[str], ids: list[int], scale: float
) -> dict[str, Any]:
    """Return a ``ccf_channel_results`` mapping (IBL frame: x = −ML, y = AP, z = −DV)."""
    out: dict[str, Any] = {}
    for ch in range(len(acr)):
        ap, dv, ml = xyz_um[ch] / scale
        out[f"channel_{ch}"] = {
            "x": float(-ml),
            "y": float(ap),
            "z": float(-dv),
            "axial": float(ch // 2 * 20),
            "lateral": float(ch % 2 * 32),
            "brain_region_id": int(ids[ch]),
            "brain_region": acr[ch],
        }
    return out


def write_annotations(
    out_dir: Path,
    asset_name: str,
    *,
    subject: int,
    date: datetime.date,
    channel_y: dict[str, Sequence[float]],
) -> dict[str, Any]:
    """Write the ``<asset_name>_annotations_<date + 5 days>_10-00-00`` asset; return its truth.

    `channel_y` maps each recorded probe letter to the distance of each channel (0 = tip) from
    the tip row, µm. Probes without an entry in :data:`REGIONS` get no annotation.
    """
    when = datetime.datetime.combine(date + datetime.timedelta(days=5), ANNOTATION_ASSET_TIME)
    asset = out_dir / f"{asset_name}_annotations_{when:%Y-%m-%d_%H-%M-%S}"
    (asset / "ibl").mkdir(parents=True)
    (asset / "tissuecyte").mkdir()
    probes: dict[str, Any] = {}
    for letter, ys in sorted(channel_y.items()):
        if letter not in REGIONS:
            continue
        kind, regions = REGIONS[letter]
        y = np.asarray(ys, dtype=np.float64)
        xyz = _track(letter, y)
        acr, ids, st = _labels(regions, len(y))
        inside = np.array([s != OUT_OF_BRAIN for s in st])
        location = [a if s != OUT_OF_BRAIN else OUT_OF_BRAIN for a, s in zip(acr, st, strict=True)]
        truth_xyz = xyz.copy()
        files: list[str] = []
        if kind.startswith(("ibl", "legacy")):
            scale = 1.0 if "um" in kind else 1000.0
            payload = _ibl_payload(xyz, acr, ids, scale)
            if kind.startswith("legacy"):
                path = asset / f"Probe{letter}" / "ccf_channel_results.json"
                path.parent.mkdir()
                path.write_text(json.dumps(payload))
            else:
                doc: dict[str, Any] = {
                    "channel_results": payload,  # another frame in the real files; unused
                    "ccf_channel_results": payload,
                }
                if "curations" in kind:
                    doc = {"curations": ["{}", json.dumps(doc)]}
                path = asset / "ibl" / f"{asset_name}_Probe{letter}_0.json"
                path.write_text(json.dumps(doc, indent=1))
            files.append(str(path))
        if kind.endswith("tissuecyte"):
            vox = np.round(xyz / 25.0).astype(np.int64)
            if kind == "tissuecyte":
                truth_xyz = np.where(inside[:, None], vox * 25.0, np.nan)
                region, stripped = location, st
            else:  # the lower-precedence copy: other coordinates and regions
                vox = vox + 3
                region = ["CP"] * len(y)
                stripped = ["CP"] * len(y)
            vox[~inside] = -1
            lines = ["channel,AP,DV,ML,region,region_stripped"]
            lines += [
                f"{ch},{vox[ch, 0]},{vox[ch, 1]},{vox[ch, 2]},"
                + (f"{region[ch]},{stripped[ch]}" if inside[ch] else ",")
                for ch in range(len(y))
            ]
            path = (
                asset
                / "tissuecyte"
                / f"Probe_{letter}1_channels_{subject}_warped_processed_new_sorting.csv"
            )
            path.write_text("\n".join(lines) + "\n")
            files.append(str(path))
        probes[letter] = {
            "kind": kind,
            "files": files,
            "ccf_ap": truth_xyz[:, 0].tolist(),
            "ccf_dv": truth_xyz[:, 1].tolist(),
            "ccf_ml": truth_xyz[:, 2].tolist(),
            "location": location,
            "structure": st,
        }
    return {"path": str(asset), "probes": probes}


#: implant written into the synthetic probe-insertion record
IMPLANT = "TS-5/2002/DR1"
#: hole of each probe letter in the synthetic implant (a probe's hole letter need not be its own)
HOLES = {"A": "F1", "B": "B2", "C": "C1", "D": "D2", "E": "E1", "F": "A3"}


def write_probe_insertions(
    root: Path, letters: Sequence[str], date: datetime.date
) -> dict[str, Any]:
    """Write ``<root>/<YYYYMMDD>_probe_insertions.json`` as the rig workflow does; return its truth
    (path, implant, hole per probe letter, and the expected electrode-group location)."""
    path = root / f"{date:%Y%m%d}_probe_insertions.json"
    body: dict[str, Any] = {
        f"probe{letter}": {"letter": letter, "hole": HOLES[letter], "notes": "", "angle": 0}
        for letter in letters
    }
    body.update({"implant": IMPLANT, "day_1-4": 1, f"saved_{date:%Y%m%d}0930": True})
    path.write_text(json.dumps({"probe_insertions": body}, indent=4))
    return {
        "path": str(path),
        "implant": IMPLANT,
        "holes": {letter: HOLES[letter] for letter in letters},
        "locations": {letter: f"{IMPLANT} {HOLES[letter]}" for letter in letters},
    }


#: NewScale stage serials of rig NP3 per probe letter (all long-travel, 15 mm z)
NEWSCALE_SERIALS = {
    "A": "SN40906",
    "B": "SN40908",
    "C": "SN40907",
    "D": "SN41084",
    "E": "SN40903",
    "F": "SN40902",
}
NEWSCALE_TRAVEL_UM = 15_000.0


def settings_xml_date(root: Path) -> datetime.datetime:
    """Return the ``DATE`` of the first record node's settings.xml the generator wrote."""
    import xml.etree.ElementTree as ET

    path = sorted(root.glob("ecephys/ecephys_clipped/Record Node */settings.xml"))[0]
    text = ET.parse(path).getroot().findtext("INFO/DATE")
    assert text is not None
    return datetime.datetime.strptime(text, "%d %b %Y %H:%M:%S")


def write_newscale_log(
    root: Path, letters: Sequence[str], rng: np.random.Generator
) -> dict[str, Any]:
    """Write ``<root>/behavior/log.csv`` of a rig whose stages report z inverted (15 000 µm =
    retracted); return the expected ``manipulator_positions`` per probe letter.

    Per stage: a retraction the day before, a retraction and an insertion on the session day
    before the recording starts (the insertion is the row to keep), and a retraction after it.
    """
    start = settings_xml_date(root)
    rows: list[tuple[datetime.datetime, str, float, float, float]] = []
    expected: dict[str, Any] = {}
    for i, letter in enumerate(letters):
        serial = NEWSCALE_SERIALS[letter]
        x, y = (round(float(v), 1) for v in rng.uniform(1000, 14000, 2))
        depth = round(float(rng.uniform(2500, 5000)), 1)
        moved = start - datetime.timedelta(minutes=20 + 3 * i, seconds=float(rng.uniform(0, 59)))
        moved = moved.replace(microsecond=(moved.microsecond // 1000) * 1000)
        rows += [
            (start - datetime.timedelta(days=1, minutes=i), serial, 7000.0, 7000.0, 15000.0),
            (moved - datetime.timedelta(minutes=30), serial, x, y, 15000.0),
            (moved, serial, x, y, NEWSCALE_TRAVEL_UM - depth),
            (start + datetime.timedelta(minutes=5 + i), serial, x, y, 15000.0),
        ]
        expected[letter] = {
            "device_name": serial,
            "x": x,
            "y": y,
            "z": depth,
            "last_movement_time": (moved - start).total_seconds(),
        }
    rows.sort(key=lambda r: r[0])
    lines = [
        f"{t:%Y/%m/%d %H:%M:%S.%f}, {s}, {x:.1f}, {y:.1f}, {z:.1f}, {x:.1f}, {y:.1f}, {z:.1f}"
        for t, s, x, y, z in rows
    ]
    path = root / "behavior" / "log.csv"
    path.write_text("\n".join(lines) + "\n")
    return {"path": str(path), "inverted": True, "probes": expected}
