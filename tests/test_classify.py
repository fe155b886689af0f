"""Session classification: every flag, type, keyword and description rule on a population of
hand-built sessions (rig, genotype, task version, opto, photodiode, autorewards, manifest entries,
training records) and on the pure rule functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers.task_files import OPTO_TRIALS, STIMS, FakeFrameTimes, make_raw
from npc_frames.components._classify import Facts, classify, description, keywords, session_type

TASK = "DynamicRouting1_366122_20230901_120010.hdf5"
NO_OPTO = np.full(len(STIMS), np.nan)
TRACKED = {"tracked": True, "project": "DynamicRouting"}


def _subject(genotype: str) -> dict[str, str]:
    return {
        "subject.json": json.dumps(
            {
                "subject_id": "366122",
                "sex": "male",
                "genotype": genotype,
                "date_of_birth": "2023-01-01",
            }
        )
    }


def _row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> dict[str, Any]:
    from npc_frames.components import sessions

    return sessions(make_raw(tmp_path, monkeypatch, **kw)).row(0, named=True)


# --------------------------------------------------------------------------- population branches
def test_habituation_on_np_rig_without_opto(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = _row(tmp_path, monkeypatch, annotations=TRACKED, trialOptoOnsetFrame=NO_OPTO)
    assert row["is_hab"] is True and row["is_training"] is False
    assert row["is_opto"] is False and row["is_opto_control"] is False
    assert row["session_type"] == "habituation"
    kw = row["keywords"]
    assert {"hab", "prod", "dynamic_routing", "habituation", "task", "sync"} <= set(kw)
    assert "training" not in kw and "opto_perturbation" not in kw
    assert row["is_production"] is True and row["is_injection_perturbation"] is False


def test_training_on_behavior_box_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = _row(
        tmp_path, monkeypatch, annotations=TRACKED, trialOptoOnsetFrame=NO_OPTO, rigName="B2"
    )
    assert row["is_training"] is True and row["is_hab"] is False
    assert row["session_type"] == "training" and "training" in row["keywords"]
    assert row["rig"] == "B2"


@pytest.mark.parametrize(
    ("genotype", "opto", "control", "kind", "tag"),
    [
        ("VGAT-ChR2-YFP/wt", True, False, "opto perturbation", "opto_perturbation"),
        ("wt/wt", False, True, "opto control", "opto_control"),
    ],
)
def test_opto_transgenic_vs_wild_type(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    genotype: str,
    opto: bool,
    control: bool,
    kind: str,
    tag: str,
) -> None:
    row = _row(tmp_path, monkeypatch, annotations=TRACKED, top_files=_subject(genotype))
    assert len(OPTO_TRIALS) > 0
    assert row["is_opto"] is opto and row["is_opto_control"] is control
    assert row["is_wild_type"] is (genotype == "wt/wt")
    assert row["is_hab"] is False  # an NP rig with opto trials is not habituation
    assert row["session_type"] == kind and tag in row["keywords"]
    other = "opto_control" if tag == "opto_perturbation" else "opto_perturbation"
    assert other not in row["keywords"]
    assert ("optogenetic inactivation" in row["session_description"]) is opto


def test_templeton_from_task_version_untracked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = _row(tmp_path, monkeypatch, taskVersion="templeton ori AMN", trialOptoOnsetFrame=NO_OPTO)
    assert row["is_templeton"] is True and row["is_context_naive"] is True
    assert row["is_naive"] is False and row["is_stage_5_passed"] is False
    assert row["session_type"] == "templeton"
    kw = row["keywords"]
    assert "dynamic_routing" not in kw and {"context_naive", "templeton"} <= set(kw)
    # untracked: manifest-only flags are unknown, not guessed
    assert row["is_production"] is None and row["is_injection_perturbation"] is None
    assert "prod" not in kw and "dev" not in kw


def test_context_naive_from_manifest_kwarg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = {**TRACKED, "session_kwargs": {"is_context_naive": True, "is_production": False}}
    row = _row(tmp_path, monkeypatch, annotations=ann, trialOptoOnsetFrame=NO_OPTO)
    assert row["is_templeton"] is False and row["is_context_naive"] is True
    assert row["session_type"] == "context naive"
    assert {"dev", "context_naive", "dynamic_routing"} <= set(row["keywords"])
    assert "prod" not in row["keywords"]


def test_untracked_session_type_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = _row(tmp_path, monkeypatch, trialOptoOnsetFrame=NO_OPTO)
    # not Templeton by task version, but injection flags unknown without a manifest entry
    assert row["is_templeton"] is False and row["is_injection_control"] is None
    assert row["session_type"] is None


def test_no_photodiode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ft = {TASK: FakeFrameTimes("", display_source="flip")}
    row = _row(tmp_path, monkeypatch, frame_times=ft, annotations=TRACKED)
    assert row["is_photodiode"] is False and "no_photodiode" in row["keywords"]
    row = _row(tmp_path / "b", monkeypatch, annotations=TRACKED)
    assert row["is_photodiode"] is True and "no_photodiode" not in row["keywords"]


def test_photodiode_unknown_without_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = _row(tmp_path, monkeypatch, sync=None)
    assert row["is_photodiode"] is None and "no_photodiode" not in row["keywords"]
    assert row["session_description"].endswith(", without precise timing information")


@pytest.mark.parametrize(("frame", "late"), [(60, True), (30, False)])
def test_late_vs_early_autorewards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: int, late: bool
) -> None:
    row = _row(tmp_path, monkeypatch, autoRewardOnsetFrame=frame)
    assert row["is_late_autorewards"] is late
    assert ("late_autorewards" if late else "early_autorewards") in row["keywords"]


def test_first_block_and_behavior_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    row = _row(tmp_path, monkeypatch, blockStimRewarded=["sound1", "vis1"])
    assert row["is_first_block_aud"] is True and row["is_first_block_vis"] is False
    # 7 trials: not engaged, hence neither good nor bad behavior
    assert row["is_engaged"] is False and row["is_good_behavior"] is False
    assert row["is_bad_behavior"] is False
    assert "first_block_aud" in row["keywords"] and "bad_behavior" not in row["keywords"]


# ------------------------------------------------------------------------------ training records
def _records(path: Path, rows: list[tuple[str, str, str, str]], subject: int = 366122) -> Path:
    import polars as pl

    pl.DataFrame(
        {
            "mouse_id": [subject] * len(rows),
            "start time": [r[0] for r in rows],
            "rig name": ["B2"] * len(rows),
            "task version": [r[1] for r in rows],
            "d' same modality": [r[2] for r in rows],
            "d' other modality go stim": [r[3] for r in rows],
            "ignore": [""] * len(rows),
            "genotype": ["VGAT-ChR2-YFP/wt"] * len(rows),
        }
    ).write_csv(path)
    return path


PASS = "[2.0, 1.8, 1.6, 2.2, 1.9, nan]"
FAIL = "[2.0, 1.8, 0.4, 0.2, 1.9, nan]"


@pytest.mark.parametrize(
    ("history", "passed"),
    [
        ([("stage 5 ori", PASS), ("stage 5 ori", FAIL), ("stage 5 ori", PASS)], False),
        ([("stage 4", PASS), ("stage 5 ori", PASS), ("stage 5 ori", PASS)], True),
        ([("stage 5 ori", PASS)], False),
    ],
)
def test_stage_5_history_from_training_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, history: list[tuple[str, str]], passed: bool
) -> None:
    rows = [
        (f"2023-08-{20 + i:02d} 10:00:00", version, d, d) for i, (version, d) in enumerate(history)
    ]
    rows.append(("2023-09-01 12:00:10", "stage 5 ori", PASS, PASS))  # this session (not counted)
    csv = _records(tmp_path / "training.csv", rows)
    row = _row(tmp_path / "s", monkeypatch, annotations={**TRACKED, "training_records": str(csv)})
    assert row["is_stage_5_passed"] is passed
    assert ("stage_5_passed" in row["keywords"]) is passed
    assert row["behavior_day"] == len(history) + 1 and row["is_naive"] is False
    # genotype from the records (no subject.json): transgenic, so opto trials are perturbation
    assert row["is_wild_type"] is False and row["is_opto"] is True
    assert f"(behavior day {len(history) + 1})" in row["session_description"]


def test_subject_absent_from_training_records_is_templeton(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = _records(tmp_path / "t.csv", [("2023-08-01 10:00", "stage 1", "", "")], subject=999999)
    row = _row(tmp_path / "s", monkeypatch, annotations={"training_records": str(csv)})
    assert row["is_templeton"] is True and row["session_type"] == "templeton"
    assert row["behavior_day"] is None


def test_first_training_day_is_naive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = _records(tmp_path / "t.csv", [("2023-09-01 12:00", "stage 1", "", "")])
    row = _row(tmp_path / "s", monkeypatch, annotations={**TRACKED, "training_records": str(csv)})
    assert row["behavior_day"] == 1 and row["is_naive"] is True


def test_training_records_sqlite_per_subject_tables(tmp_path: Path) -> None:
    import sqlite3

    from npc_frames.training_records import read_training_records, subject_genotype

    db = tmp_path / "DynamicRoutingTraining.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE all_mice (ID INTEGER PRIMARY KEY, mouse_id TEXT, genotype TEXT)")
    con.execute("INSERT INTO all_mice (mouse_id, genotype) VALUES ('366122', 'wt/wt')")
    con.execute(
        'CREATE TABLE "366122" (ID INTEGER PRIMARY KEY, start_time TEXT, task_version TEXT, '
        "ignore TEXT)"
    )
    con.executemany(
        'INSERT INTO "366122" (start_time, task_version, ignore) VALUES (?, ?, ?)',
        [("2023-08-01 10:00", "stage 1", ""), ("2023-08-02 10:00", "x", "1"), ("", "y", "")],
    )
    con.commit()
    con.close()
    t = read_training_records(db)
    # row 2 ignored, row 3 has no start time: only row 1 is kept, with its sheet row number
    assert t["id"].to_list() == [1] and t["subject_id"].to_list() == [366122]
    assert subject_genotype(t, 366122) == "wt/wt"


def test_training_records_bad_start_time_names_row(tmp_path: Path) -> None:
    from npc_frames.errors import BadFormatError
    from npc_frames.training_records import read_training_records

    csv = _records(tmp_path / "t.csv", [("2023-08-01 10:00", "a", "", ""), ("soon", "b", "", "")])
    with pytest.raises(BadFormatError) as e:
        read_training_records(csv)
    assert "row 2" in str(e.value.field) and "soon" in str(e.value)


# ---------------------------------------------------------------------------- pure rule functions
def _flags(**kw: Any) -> dict[str, bool | None]:
    base: dict[str, Any] = {
        "is_task": True,
        "is_sync": True,
        "is_ephys": True,
        "is_sorted": True,
        "is_annotated": True,
        "rig": "NP3",
        "task_version": "stage 5",
        "genotype": "wt/wt",
        "has_opto_trials": False,
        "tracked": True,
        "project": "DynamicRouting",
        "display_source": "photodiode",
        "engaged": True,
        "good_behavior": True,
        "first_block_rewarded": "vis1",
        "auto_reward_onset_frame": 30,
    }
    base.update(kw)
    return classify(Facts(**base))


def test_brainwide_survey_and_type_order() -> None:
    f = _flags()
    assert session_type(f) == "brainwide survey" and f["is_good_behavior"] is True
    assert f["is_bad_behavior"] is False and f["is_lfp"] is True
    assert session_type(_flags(session_kwargs={"is_injection_perturbation": True})) == (
        "muscimol perturbation"
    )
    assert session_type(_flags(session_kwargs={"is_injection_control": True})) == "muscimol control"
    # Templeton wins over every later type
    f = _flags(project="TempletonPilotSession", session_kwargs={"is_injection_control": True})
    assert session_type(f) == "templeton"
    assert session_type(_flags(is_ephys=False, rig=None)) is None  # hab/training unknown
    assert session_type(_flags(is_surface_channels=True)) == (
        "deep-insertion surface channels recording"
    )


def test_bad_behavior_is_engaged_and_not_good() -> None:
    assert _flags(good_behavior=False)["is_bad_behavior"] is True
    assert _flags(engaged=False, good_behavior=False)["is_bad_behavior"] is False
    assert _flags(engaged=None, good_behavior=None)["is_bad_behavior"] is None


def test_opto_unknown_genotype_is_null_not_guessed() -> None:
    f = _flags(genotype=None, has_opto_trials=True)
    assert f["is_opto"] is None and f["is_opto_control"] is None and f["is_wild_type"] is None
    assert session_type(f) is None
    assert _flags(genotype=None)["is_opto"] is False  # no opto trials: known


def test_keyword_order_and_description() -> None:
    facts = Facts(
        is_ephys=True,
        is_sync=True,
        is_video=True,
        is_task=True,
        is_sorted=True,
        is_annotated=False,
        rig="NP1",
        task_version="stage 5",
        genotype="Sst-IRES-Cre/wt;Ai32/wt",
        has_opto_trials=True,
        first_block_rewarded="sound1",
        auto_reward_onset_frame=60,
        display_source="flip",
        engaged=True,
        good_behavior=False,
        tracked=True,
        project="DynamicRouting",
        issues=["https://x/1"],
        epoch_tags=["task", "opto_perturbation", "rewards", "optotagging"],
    )
    flags = classify(facts)
    kind = session_type(flags)
    assert kind == "opto perturbation"
    assert keywords(facts, flags, kind) == [
        "issues",
        "task",
        "sync",
        "video",
        "ephys",
        "units",
        "dynamic_routing",
        "prod",
        "first_block_aud",
        "late_autorewards",
        "bad_behavior",
        "no_photodiode",
        "rewards",
        "optotagging",
        "opto_perturbation",
    ]
    assert description(flags, 12) == (
        "ecephys session without CCF-annotated units, with behavioral task data (behavior day 12), "
        "optogenetic inactivation during task and video recording of behavior"
    )
    flags2 = classify(Facts(is_ephys=True, is_sync=False, tracked=True))
    assert description(flags2) == (
        "ecephys session without sorted units, without behavioral task data, without precise "
        "timing information"
    )


def test_blocks_without_dprime_never_pass() -> None:
    import polars as pl

    from npc_frames.components._performance import session_flags

    nan = float("nan")
    perf = pl.DataFrame(
        {
            "rewarded_modality": ["vis", "aud", "vis", "aud"],
            "cross_modality_dprime": [nan, nan, 1.2, 1.5],
            "n_trials": [20] * 4,
            "n_contingent_rewards": [12] * 4,
        }
    )
    assert session_flags(perf) == {"is_engaged": True, "is_good_behavior": False}
    perf = perf.with_columns(pl.Series("cross_modality_dprime", [1.1, 2.0, 1.2, 1.5]))
    assert session_flags(perf)["is_good_behavior"] is True


def test_corrupt_subject_json_leaves_genotype_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = _row(tmp_path, monkeypatch, annotations=TRACKED, top_files={"subject.json": "{not json"})
    assert row["is_wild_type"] is None and row["is_opto"] is None  # opto trials, genotype unknown
    assert row["is_task"] is True
