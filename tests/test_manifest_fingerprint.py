"""Manifest annotations and training records are convert inputs: changing them recomputes the
components that used them (and only those), and ``session_kwargs`` lands in the sessions row."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

import npc_frames as nf
from npc_frames.cache.catalog import read_catalog

pytestmark = pytest.mark.slow


def _records(path: Path, subject: int, date: dt.date, days_before: int) -> Path:
    """Write training records: `days_before` days, then the session's own date."""
    n = days_before + 1
    pl.DataFrame(
        {
            "mouse_id": [subject] * n,
            "start time": [
                f"{date - dt.timedelta(days=days_before - i)} 10:00:00" for i in range(n)
            ],
            "rig name": ["B2"] * n,
            "task version": ["stage 5 ori"] * n,
            "d' same modality": ["[2.0, 1.8, 1.6, 2.2]"] * n,
            "d' other modality go stim": ["[2.0, 1.8, 1.6, 2.2]"] * n,
            "genotype": ["VGAT-ChR2-YFP/wt"] * n,
        }
    ).write_csv(path)
    return path


def _manifest(path: Path, sid: str, raw: str, **entry: Any) -> Path:
    path.write_text(yaml.safe_dump({"sessions": [{"session_id": sid, "raw_path": raw, **entry}]}))
    return path


def _written(cache: Path) -> dict[str, Any]:
    cat = read_catalog(cache).filter(pl.col("part").is_null())
    return dict(zip(cat["component"], cat["written_at"], strict=True))


def test_annotations_and_training_records_are_fingerprinted(
    synth_sessions: list[Any], tmp_path: Path
) -> None:
    truth = synth_sessions[0]
    sid, raw = str(truth.session_id), str(truth.raw_path)
    cache = tmp_path / "cache"
    records = _records(tmp_path / "training.csv", int(truth.subject), truth.date, 2)
    man = _manifest(tmp_path / "m.yaml", sid, raw, notes="first", training_records=str(records))
    nf.convert(None, cache, manifest=man, progress=False)
    first = _written(cache)
    row = nf.scan_sessions(cache).collect().row(0, named=True)
    assert row["notes"] == "first" and row["behavior_day"] == 3
    assert row["session_kwargs"] is None
    inputs = read_catalog(cache).filter(
        (pl.col("component") == "sessions") & pl.col("part").is_null()
    )["inputs"][0]
    assert "manifest:notes" in inputs and "manifest:training_records" in inputs

    # unchanged manifest: nothing recomputed
    nf.convert(None, cache, manifest=man, progress=False)
    assert _written(cache) == first

    # a changed note: sessions recomputes, trials (which never looked at notes) does not
    _manifest(tmp_path / "m.yaml", sid, raw, notes="second", training_records=str(records))
    nf.convert(None, cache, manifest=man, progress=False)
    second = _written(cache)
    assert second["sessions"] > first["sessions"]
    assert second["trials"] == first["trials"] and second["units"] == first["units"]
    assert nf.scan_sessions(cache).collect()["notes"].to_list() == ["second"]

    # edited training records (one more day before this session): sessions recomputes
    time.sleep(0.01)
    _records(records, int(truth.subject), truth.date, 3)
    nf.convert(None, cache, manifest=man, progress=False)
    third = _written(cache)
    assert third["sessions"] > second["sessions"] and third["trials"] == first["trials"]
    assert nf.scan_sessions(cache).collect()["behavior_day"].to_list() == [4]

    # session_kwargs: stored as JSON in the sessions row; probe_letters_to_skip skips the probe,
    # so the units (which looked the key up) recompute, while trials stay
    kwargs = {"is_production": False, "probe_letters_to_skip": "A"}
    _manifest(
        tmp_path / "m.yaml",
        sid,
        raw,
        notes="second",
        training_records=str(records),
        session_kwargs=kwargs,
    )
    nf.convert(None, cache, manifest=man, progress=False)
    fourth = _written(cache)
    assert fourth["units"] > third["units"] and fourth["trials"] == first["trials"]
    row = nf.scan_sessions(cache).collect().row(0, named=True)
    assert json.loads(row["session_kwargs"]) == kwargs
    assert row["is_production"] is False
    assert nf.scan_units(cache).collect().height == 0
    assert nf.sessions(cache, is_production=False)["session_id"].to_list() == [sid]
