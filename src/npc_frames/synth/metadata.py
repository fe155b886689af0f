"""Synthetic session metadata: AIND json files, the workflow debug.log and invalid_times.yaml (§13).

Written at the session root: ``subject.json``, ``data_description.json``, ``session.json``,
``procedures.json`` (AIND schema subsets holding what npc reads) and optionally
``invalid_times.yaml``; in ``behavior/``: ``debug.log`` containing ``User('first.last')``.

Decision: ``invalid_times.yaml`` holds a mapping ``{invalid_times: [{start_time, stop_time, reason},
…]}`` like the session-tracking YAML of §13 (times in seconds on the sync clock; ``stop_time: -1``
means "to the end of the sync recording").
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from npc_frames.errors import ParameterError

__all__ = ["MetadataTruth", "write_metadata"]

_EXPERIMENTERS = ("jane.doe", "alex.smith", "sam.jones", "kim.lee", "pat.morgan")
_GENOTYPES_OPTO = ("VGAT-ChR2-YFP/wt", "Sst-IRES-Cre/wt;Ai32(RCL-ChR2(H134R)_EYFP)/wt")
_STRAIN = "C57BL/6J"
_SCHEMA_URL = "https://raw.githubusercontent.com/AllenNeuralDynamics/aind-data-schema/main/src/aind_data_schema/core/{}.py"


@dataclass
class MetadataTruth:
    """What the metadata files say: subject facts, experimenter, rig and invalid times."""

    subject_id: int
    date_of_birth: datetime.date
    sex: str
    genotype: str
    background_strain: str
    experimenter: str
    rig: str
    invalid_times: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def _title(user: str) -> str:
    return " ".join(part.capitalize() for part in user.split("."))


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=4, default=str))


def write_metadata(
    root: str | Path,
    *,
    rng: np.random.Generator,
    subject: int,
    session_start: datetime.datetime,
    session_end: datetime.datetime,
    asset_name: str,
    rig: str = "NP3",
    opto: bool = False,
    invalid_times: Sequence[Mapping[str, Any]] | None = None,
) -> MetadataTruth:
    """Return the metadata truth after writing the json files, debug.log and invalid_times.yaml.

    Parameters
    ----------
    root:
        Session root (``behavior/`` is created for debug.log).
    rng:
        Random source for date of birth, sex, experimenter, genotype.
    subject:
        Subject id (6–7 digits).
    session_start, session_end:
        Naive local wall-clock times of the sync recording.
    asset_name:
        ``ecephys_<subject>_<YYYY-MM-DD>_<HH-MM-SS>``.
    rig:
        Rig name as stim files store it (``NP3``).
    opto:
        Opto sessions get an opsin genotype (so npc tags them ``opto_perturbation``).
    invalid_times:
        Rows ``{start_time, stop_time, reason}`` for ``invalid_times.yaml``; ``None`` writes no file.
    """
    root = Path(root)
    (root / "behavior").mkdir(parents=True, exist_ok=True)
    dob = session_start.date() - datetime.timedelta(days=int(rng.integers(90, 240)))
    sex = "Male" if rng.random() < 0.5 else "Female"
    genotype = str(rng.choice(_GENOTYPES_OPTO)) if opto else "wt/wt"
    user = str(rng.choice(_EXPERIMENTERS))

    _write_json(
        root / "subject.json",
        {
            "describedBy": _SCHEMA_URL.format("subject"),
            "schema_version": "0.5.5",
            "subject_id": str(subject),
            "sex": sex,
            "date_of_birth": dob.isoformat(),
            "genotype": genotype,
            "species": {"name": "Mus musculus", "abbreviation": None, "registry": "NCBI"},
            "background_strain": _STRAIN,
            "breeding_info": {"breeding_group": genotype.split("/")[0], "maternal_id": None},
            "source": {"name": "Allen Institute", "abbreviation": "AI"},
            "housing": None,
            "notes": None,
        },
    )
    _write_json(
        root / "data_description.json",
        {
            "describedBy": _SCHEMA_URL.format("data_description"),
            "schema_version": "0.13.0",
            "license": "CC-BY-4.0",
            "platform": {"name": "Electrophysiology platform", "abbreviation": "ecephys"},
            "subject_id": str(subject),
            "creation_time": session_start.isoformat(),
            "label": None,
            "name": asset_name,
            "institution": {"name": "Allen Institute for Neural Dynamics", "abbreviation": "AIND"},
            "funding_source": [{"funder": "Allen Institute", "grant_number": None}],
            "data_level": "raw",
            "group": None,
            "investigators": [_title(user)],
            "project_name": "Dynamic Routing",
            "modality": [
                {"name": "Extracellular electrophysiology", "abbreviation": "ecephys"},
                {"name": "Behavior videos", "abbreviation": "behavior-videos"},
                {"name": "Behavior", "abbreviation": "behavior"},
            ],
        },
    )
    _write_json(
        root / "session.json",
        {
            "describedBy": _SCHEMA_URL.format("session"),
            "schema_version": "0.3.4",
            "experimenter_full_name": [_title(user)],
            "session_start_time": session_start.isoformat(),
            "session_end_time": session_end.isoformat(),
            "session_type": "DynamicRouting1",
            "iacuc_protocol": "2104",
            "rig_id": rig,
            "subject_id": str(subject),
            "mouse_platform_name": "Mouse Platform",
            "active_mouse_platform": False,
            "data_streams": [],
            "stimulus_epochs": [],
            "notes": None,
        },
    )
    _write_json(
        root / "procedures.json",
        {
            "describedBy": _SCHEMA_URL.format("procedures"),
            "schema_version": "0.11.2",
            "subject_id": str(subject),
            "subject_procedures": [],
            "specimen_procedures": [],
            "notes": None,
        },
    )

    t = session_start
    log_lines = [
        f"{t:%Y-%m-%d %H:%M:%S},001 | INFO | np_workflows | Starting workflow DynamicRouting",
        f"{t:%Y-%m-%d %H:%M:%S},050 | INFO | np_workflows | User('{user}') logged in on {rig}",
        f"{t:%Y-%m-%d %H:%M:%S},112 | INFO | np_workflows | Mouse('{subject}') selected",
        f"{session_end:%Y-%m-%d %H:%M:%S},480 | INFO | np_workflows | Session finished",
    ]
    (root / "behavior" / "debug.log").write_text("\n".join(log_lines) + "\n")

    rows: list[dict[str, Any]] = []
    paths = {
        name: str(root / name)
        for name in ("subject.json", "data_description.json", "session.json", "procedures.json")
    }
    paths["debug.log"] = str(root / "behavior" / "debug.log")
    if invalid_times is not None:
        for i, row in enumerate(invalid_times):
            missing = {"start_time", "stop_time", "reason"} - set(row)
            if missing:
                raise ParameterError(
                    f"invalid_times row {i} lacks {sorted(missing)}",
                    field="invalid_times",
                    expected="rows with start_time, stop_time, reason",
                )
            start, stop = float(row["start_time"]), float(row["stop_time"])
            if start < 0 or (stop != -1 and stop <= start):
                raise ParameterError(
                    f"invalid_times row {i}: start_time={start}, stop_time={stop}",
                    field="invalid_times",
                    expected="0 ≤ start_time < stop_time (or stop_time == -1)",
                )
            rows.append({"start_time": start, "stop_time": stop, "reason": str(row["reason"])})
        path = root / "invalid_times.yaml"
        path.write_text(yaml.safe_dump({"invalid_times": rows}, sort_keys=False))
        paths["invalid_times.yaml"] = str(path)

    return MetadataTruth(
        subject_id=subject,
        date_of_birth=dob,
        sex=sex,
        genotype=genotype,
        background_strain=_STRAIN,
        experimenter=user,
        rig=rig,
        invalid_times=rows,
        paths=paths,
    )
