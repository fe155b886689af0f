"""sessions, subjects, epochs (FORMATS §13) and the metadata readers, on hand-built folders."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.interval_files import OT_NAME, RF_NAME, _raw
from helpers.task_files import make_raw
from npc_frames.readers.metadata import parse_experimenter, read_subject
from npc_frames.schemas.behavior import EPOCHS, SESSIONS, SUBJECTS

SUBJECT = {
    "subject_id": "366122",
    "sex": "female",
    "date_of_birth": "2023-05-01",
    "genotype": "VGAT-ChR2-YFP/wt",
    "background_strain": "C57BL/6J",
}
DEBUG_LOG = "INFO start\nINFO User('sam.gale') logged in\nINFO User('jane.doe') took over\n"


def test_parse_experimenter_last_user_title_cased_and_known_short_names() -> None:
    assert parse_experimenter(DEBUG_LOG) == "Jane Doe"
    assert parse_experimenter("User('samg')") == "Sam Gale"
    assert parse_experimenter("nothing here") is None


def test_read_subject_fields(tmp_path: Path) -> None:
    p = tmp_path / "subject.json"
    p.write_text(json.dumps(SUBJECT))
    info = read_subject(p)
    assert info.subject_id == 366122 and info.sex == "F"
    assert info.date_of_birth == datetime.date(2023, 5, 1) and info.strain == "C57BL/6J"


def test_read_subject_bad_date_names_field(tmp_path: Path) -> None:
    from npc_frames.errors import BadFormatError

    p = tmp_path / "subject.json"
    p.write_text(json.dumps({**SUBJECT, "date_of_birth": "yesterday"}))
    with pytest.raises(BadFormatError) as e:
        read_subject(p)
    assert e.value.field == "date_of_birth" and str(p) in str(e.value)


def test_sessions_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import sessions

    raw = make_raw(
        tmp_path,
        monkeypatch,
        top_files={"behavior/debug.log": DEBUG_LOG},
        annotations={"notes": "good session", "issues": ["https://x/1"]},
    )
    # discovery must find behavior/debug.log (it was written before from_path ran)
    df = sessions(raw)
    assert df.columns == SESSIONS.names and df.height == 1
    row = df.row(0, named=True)
    assert row["session_id"] == "366122_2023-09-01" and row["subject_id"] == 366122
    assert row["date"] == datetime.date(2023, 9, 1) and row["session_idx"] == 0
    st = row["session_start_time"]
    assert st.tzinfo is not None and str(st.tzinfo) == "America/Los_Angeles"
    # sync start of the fake: 12:00:00.5 local; the sub-second part is kept (documented decision)
    assert st.replace(tzinfo=None) == datetime.datetime(2023, 9, 1, 12, 0, 0, 500000)
    assert row["rig"] == "NP3" and row["experimenter"] == "Jane Doe"
    assert row["task_version"] == "stage 5 ori AMN moving timeouts repeats"
    assert row["is_sync"] and row["is_task"] and not row["is_ephys"]
    # NP rig without ephys: not training; opto trials in a mouse of unknown genotype: opto and
    # habituation unknown (no subject.json, no training records)
    assert row["is_training"] is False and row["is_hab"] is None
    assert row["is_opto"] is None and row["is_opto_control"] is None
    assert row["is_first_block_aud"] is False
    assert row["is_late_autorewards"] is True
    assert row["is_engaged"] is False and row["is_good_behavior"] is False  # 7 trials only
    assert row["notes"] == "good session" and row["issues"] == ["https://x/1"]
    assert {"task", "sync", "first_block_vis", "issues"} <= set(row["keywords"])
    assert "training" not in row["keywords"] and row["session_type"] is None


def test_sessions_survives_broken_task_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import sessions, trials
    from npc_frames.errors import NpcFramesError

    raw = make_raw(tmp_path, monkeypatch, trialStim=None)
    with pytest.raises(NpcFramesError):
        trials(raw)
    row = sessions(raw).row(0, named=True)
    assert row["is_task"] is True and row["is_engaged"] is None and row["rig"] == "NP3"


def test_sessions_behavior_only_start_is_task_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import sessions

    raw = make_raw(tmp_path, monkeypatch, sync=None)
    st = sessions(raw)["session_start_time"][0]
    assert st.replace(tzinfo=None) == datetime.datetime(2023, 9, 1, 12, 0, 10)
    assert not sessions(raw)["is_sync"][0]


def test_subjects_from_subject_json_age_in_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import subjects

    raw = make_raw(tmp_path, monkeypatch, top_files={"subject.json": json.dumps(SUBJECT)})
    row = subjects(raw).row(0, named=True)
    assert subjects(raw).columns == SUBJECTS.names
    assert row["age"] == f"P{(datetime.date(2023, 9, 1) - datetime.date(2023, 5, 1)).days}D"
    assert row["sex"] == "F" and row["species"] == "Mus musculus" and row["is_wild_type"] is False


def test_subjects_without_subject_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from npc_frames.components import subjects

    row = subjects(make_raw(tmp_path, monkeypatch)).row(0, named=True)
    assert row["subject_id"] == 366122 and row["age"] is None and row["sex"] is None


def test_epochs_rows_tags_and_interval_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from npc_frames.components import epochs

    yaml = "invalid_times: [{start_time: 2.5, stop_time: 2.6, reason: probe drift}]\n"
    raw = _raw(tmp_path, monkeypatch, top_files={"invalid_times.yaml": yaml})
    df = epochs(raw)
    assert df.columns == EPOCHS.names
    assert df["script_name"].to_list() == [
        "RFMapping",
        "DynamicRouting1",
        "OptoTagging",
        "LuminanceTest",
    ]
    assert df["stim_file"][0] == RF_NAME and df["stim_file"][2] == OT_NAME
    assert np.all(np.diff(df["start_time"].to_numpy()) > 0)
    tags = dict(zip(df["script_name"], df["tags"].to_list(), strict=True))
    assert tags["DynamicRouting1"] == ["task", "opto_perturbation", "rewards"]
    assert tags["RFMapping"] == ["mapping", "invalid_times"]
    assert tags["OptoTagging"] == ["optotagging"]
    assert df["notes"][0] == "includes invalid times: probe drift"
    names = dict(zip(df["script_name"], df["interval_names"].to_list(), strict=True))
    assert names["RFMapping"] == ["vis_rf_mapping", "aud_rf_mapping"]
    # start/stop = first/last display time (flip + 20 ms)
    assert df["start_time"][0] == pytest.approx(2.02) and df["stop_time"][0] == pytest.approx(
        2.02 + 200 / 60
    )


# ------------------------------------------------------------------ synthetic session (truth)
def _get(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def test_synth_sessions_subjects_epochs_match_truth(synth_session: Any, synth_raw: Any) -> None:
    from npc_frames.components import get

    md = synth_session.metadata
    row = get("sessions")(synth_raw).row(0, named=True)
    assert row["session_id"] == str(synth_session.session_id)
    assert row["rig"] == md.rig
    assert row["experimenter"] == " ".join(p.title() for p in md.experimenter.split("."))
    assert row["is_sync"] and row["is_ephys"] and row["is_task"] and row["is_opto"]
    assert row["is_video"] == bool(_get(synth_session.params, "video"))
    start = synth_session.sync_start
    start = (
        datetime.datetime.fromisoformat(str(start))
        if not isinstance(start, datetime.datetime)
        else start
    )
    assert row["session_start_time"].replace(tzinfo=None) == start
    sub = get("subjects")(synth_raw).row(0, named=True)
    assert sub["subject_id"] == md.subject_id and sub["sex"] == md.sex[0].upper()
    assert sub["date_of_birth"] == md.date_of_birth
    assert sub["age"] == f"P{(start.date() - md.date_of_birth).days}D"
    assert sub["is_wild_type"] is False
    ep = get("epochs")(synth_raw)
    assert ep["script_name"].to_list() == [s["script_name"] for s in synth_session.scripts]
    tags = dict(zip(ep["script_name"], ep["tags"].to_list(), strict=True))
    assert "task" in tags["DynamicRouting1"] and "opto_perturbation" in tags["DynamicRouting1"]
    assert tags["OptoTagging"] == ["optotagging"]
