"""The lab's tracked-sessions YAML layout read as a manifest; errors name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from npc_frames.cache import read_manifest
from npc_frames.cache.manifest import _annotations
from npc_frames.errors import BadFormatError

SAMPLE = """\
# hand-written sample in the lab's layout
training_records: records/DynamicRoutingTraining.sqlite
ephys:
  DynamicRouting:
    - //allen/programs/mindscope/workgroups/dynamicrouting/PilotEphys/Task 2 pilot/DRpilot_626791_20220815
    - //allen/programs/mindscope/workgroups/dynamicrouting/PilotEphys/Task 2 pilot/DRpilot_626791_20220816:
        day: 2
        session_kwargs:
          probe_letters_to_skip: C
          is_production: false
        notes: "probe C broke"
        issues:
          - https://github.com/AllenInstitute/npc_lims/issues/5
  TempletonPilotSession:
    - s3://bucket/ecephys_644866_2023-02-07_10-00-00:
        idx: 1
behavior_with_sync:
  DynamicRouting:
    - /data/DRpilot_626791_20220810
behavior:
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tracked_sessions.yaml"
    p.write_text(text)
    return p


def test_reference_layout_sample(tmp_path: Path) -> None:
    m = read_manifest(_write(tmp_path, SAMPLE))
    assert list(m) == [
        "626791_2022-08-15",
        "626791_2022-08-16",
        "644866_2023-02-07_1",
        "626791_2022-08-10",
    ]
    e = m["626791_2022-08-16"]
    assert e["raw_path"].endswith("DRpilot_626791_20220816")
    assert e["section"] == "ephys" and e["project"] == "DynamicRouting" and e["day"] == 2
    assert e["session_kwargs"] == {"probe_letters_to_skip": "C", "is_production": False}
    assert e["notes"] == "probe C broke" and len(e["issues"]) == 1
    assert e["training_records"] == str(tmp_path / "records/DynamicRoutingTraining.sqlite")
    t = m["644866_2023-02-07_1"]
    assert t["project"] == "TempletonPilotSession" and "day" not in t
    assert m["626791_2022-08-10"]["section"] == "behavior_with_sync"
    ann = _annotations(e)
    assert ann["tracked"] is True and "raw_path" not in ann


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("ephys:\n  DynamicRouting:\n    - /a/DRpilot_626791_20220815\n  - bad\n", 4, "YAML"),
        ("ephys:\n  DR:\n    - /a/DRpilot_626791_20220815\nrecordings:\n  DR: []\n", 4, "unknown"),
        (
            "ephys:\n  DR:\n    - /a/DRpilot_626791_20220815\n"
            "behavior:\n  DR:\n    - /b/DRpilot_626791_20220815:\n        day: 3\n",
            6,
            "line 3",
        ),
        ("ephys:\n  DR:\n    - /a/no_session_here\n", 3, "session id"),
        ("ephys:\n  DR:\n    - /a/DRpilot_626791_20220815:\n        dday: 1\n", 4, "unknown key"),
        ("ephys:\n  DR: /a/DRpilot_626791_20220815\n", 2, "list"),
    ],
    ids=["malformed", "unknown-section", "duplicate", "no-id", "unknown-key", "not-a-list"],
)
def test_errors_name_the_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(BadFormatError) as e:
        read_manifest(_write(tmp_path, text))
    assert e.value.field == f"line {line}", str(e.value)
    assert words in str(e.value) and str(tmp_path) in str(e.value)


def test_own_layout_still_read_and_marked_tracked(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(
        "training_records: t.csv\n"
        "366122_2023-09-01:\n  raw_path: /x\n  day: 4\n  session_kwargs: {is_hab: true}\n"
    )
    m = read_manifest(p)
    assert m["366122_2023-09-01"]["day"] == 4
    assert m["366122_2023-09-01"]["training_records"] == str(tmp_path / "t.csv")
    assert _annotations(m["366122_2023-09-01"])["session_kwargs"] == {"is_hab": True}


def test_own_layout_malformed_yaml_names_line(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text("366122_2023-09-01:\n  raw_path: /x\n    notes: [unclosed\n")
    with pytest.raises(BadFormatError) as e:
        read_manifest(p)
    assert e.value.field is not None and e.value.field.startswith("line ")
