"""Derived views (session_days, session_records) and nf.sessions over caches whose component files
are written with known contents, plus one converted synthetic session."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import npc_frames as nf
from npc_frames import storage
from npc_frames.cache.catalog import data_path
from npc_frames.cache_layout import to_parquet_bytes
from npc_frames.schemas import SCHEMAS


def write_component(cache: Path, component: str, session_id: str, **cols: Any) -> None:
    """Write one component file whose listed columns hold `cols` (others null)."""
    schema = SCHEMAS[component]
    n = max((len(v) for v in cols.values() if isinstance(v, list)), default=1)
    data = {
        c.name: pl.Series(c.name, cols[c.name] if c.name in cols else [None] * n, dtype=c.dtype)
        for c in schema.columns
        if c.name != "session_id"
    }
    df = pl.DataFrame({"session_id": [session_id] * n, **data})
    df = schema.validate(df)
    storage.atomic_write_bytes(
        data_path(str(cache), component, session_id), to_parquet_bytes(df, component=component)
    )


def add_session(
    cache: Path,
    sid: str,
    *,
    ephys: bool = True,
    sync: bool = True,
    day: int | None = None,
    kind: str | None = "brainwide survey",
    project: str | None = "DynamicRouting",
    **flags: Any,
) -> None:
    subject, date = sid.split("_")[:2]
    idx = int(sid.split("_")[2]) if sid.count("_") == 2 else 0
    kw = ["task", "ephys"] if ephys else ["task"]
    if kind:
        kw.append(kind.replace(" ", "_"))
    write_component(
        cache,
        "sessions",
        sid,
        subject_id=[int(subject)],
        date=[dt.date.fromisoformat(date)],
        session_idx=[idx],
        session_start_time=[dt.datetime(2023, 1, 1, 12)],
        institution=["x"],
        session_description=["d"],
        keywords=[kw],
        session_type=[kind],
        is_ephys=[ephys],
        is_sync=[sync],
        is_video=[True],
        is_task=[True],
        is_sorted=[ephys],
        project=[project],
        manifest_day=[day],
        **{k: [v] for k, v in flags.items()},
    )


def days(cache: Path) -> dict[str, int]:
    df = nf.sql("SELECT session_id, experiment_day FROM session_days", cache)
    return dict(df.iter_rows())


def test_days_rank_per_subject_and_kind_and_shift_when_an_earlier_session_is_added(
    tmp_path: Path,
) -> None:
    c = tmp_path / "cache"
    for sid in ("626791_2022-08-15", "626791_2022-08-16", "626791_2022-08-18"):
        add_session(c, sid)
    add_session(c, "626791_2022-08-16_1")  # same day: shares the day
    add_session(c, "626791_2022-08-01", ephys=False, sync=False, kind="training")
    add_session(c, "644866_2022-08-16")  # another subject ranks on its own
    d = days(c)
    assert d == {
        "626791_2022-08-15": 1,
        "626791_2022-08-16": 2,
        "626791_2022-08-16_1": 2,
        "626791_2022-08-18": 3,
        "626791_2022-08-01": 1,  # behavior-only sessions are ranked among themselves
        "644866_2022-08-16": 1,
    }
    before = nf.sessions(c)  # memoized selection must notice the new session too
    add_session(c, "626791_2022-08-10")  # an earlier ephys session arrives later
    d2 = days(c)
    after = nf.sessions(c)
    assert before.height == 6 and after.height == 7
    assert dict(after.select("session_id", "experiment_day").iter_rows()) == d2
    assert d2["626791_2022-08-10"] == 1
    for sid in ("626791_2022-08-15", "626791_2022-08-16", "626791_2022-08-18"):
        assert d2[sid] == d[sid] + 1
    assert d2["626791_2022-08-01"] == 1 and d2["644866_2022-08-16"] == 1


def test_manifest_day_overrides_and_keywords(tmp_path: Path) -> None:
    c = tmp_path / "cache"
    add_session(c, "626791_2022-08-15")
    add_session(c, "626791_2022-08-16", day=7)
    add_session(c, "626791_2022-08-17", kind=None)
    df = nf.sql("SELECT * FROM session_days ORDER BY session_id", c)
    rows = {r["session_id"]: r for r in df.iter_rows(named=True)}
    assert rows["626791_2022-08-16"]["experiment_day"] == 7
    assert rows["626791_2022-08-16"]["experiment_day_source"] == "manifest"
    assert rows["626791_2022-08-15"]["experiment_day_source"] == "rank"
    # day_<n> goes before the session-type keyword; appended when there is no type
    assert rows["626791_2022-08-15"]["keywords"] == ["task", "ephys", "day_1", "brainwide_survey"]
    assert rows["626791_2022-08-17"]["keywords"] == ["task", "ephys", "day_3"]
    lf = nf.scan_session_days(c)
    assert isinstance(lf, pl.LazyFrame) and lf.collect().height == 3


def _records_cache(tmp_path: Path) -> Path:
    c = tmp_path / "cache"
    a, b, t = "626791_2022-08-15", "626791_2022-08-16", "644866_2022-08-16"
    add_session(c, a, is_good_behavior=True, is_engaged=True, is_opto=False)
    add_session(c, b, is_good_behavior=False, is_engaged=True, is_opto=True)
    add_session(c, t, ephys=False, kind="training", is_good_behavior=True)
    write_component(
        c,
        "units",
        a,
        unit_id=[f"{a}_{i}" for i in range(5)],
        electrode_group_name=["probeA", "probeA", "probeB", "probeB", "probeC"],
        structure=["MOs", "MOs", "CP", None, "MOs"],
        default_qc=[True, False, True, True, True],
    )
    write_component(
        c,
        "units",
        b,
        unit_id=[f"{b}_{i}" for i in range(2)],
        electrode_group_name=["probeD", "probeD"],
        structure=["VISp", "VISp"],
        default_qc=[False, False],
    )
    for sid, letters in ((a, "ABCF"), (b, "D")):
        write_component(
            c,
            "electrode_groups",
            sid,
            name=[f"probe{x}" for x in letters],
            device_name=list(letters),
        )
    write_component(
        c,
        "performance",
        a,
        block_index=[0, 1, 2, 3],
        rewarded_modality=["vis", "aud", "vis", "aud"],
        cross_modality_dprime=[1.5, 0.5, float("nan"), 2.0],
        vis_dprime=[2.0, 1.0, float("nan"), 3.0],
        aud_dprime=[1.0, 1.0, 1.0, 1.0],
        n_hits=[5, 6, 7, 8],
        n_trials=[10, 11, 12, 13],
        n_responses=[6, 7, 8, 9],
        n_contingent_rewards=[4, 5, 6, 7],
    )
    write_component(
        c,
        "trials",
        b,
        start_time=[1.0, 5.0, 9.0],
        stop_time=[4.0, 8.0, 20.5],
        is_opto=[True, False, True],
        opto_label=["V1", None, "ACC"],
    )
    write_component(
        c,
        "epochs",
        a,
        start_time=[0.0, 100.0, 50.0],
        stop_time=[40.0, 200.0, 90.0],
        script_name=["Spontaneous", "DynamicRouting1", "RFMapping"],
        tags=[["spontaneous"], ["task", "invalid_times"], ["mapping"]],
    )
    return c


def test_session_records_against_component_contents(tmp_path: Path) -> None:
    c = _records_cache(tmp_path)
    df = nf.scan_session_records(c).collect()
    assert df.height == 3 and df["session_id"].is_unique().all()
    r = {row["session_id"]: row for row in df.iter_rows(named=True)}
    a, b, t = r["626791_2022-08-15"], r["626791_2022-08-16"], r["644866_2022-08-16"]
    assert a["areas_hit"] == ["CP", "MOs"] and a["areas_with_qc_units"] == ["CP", "MOs"]
    assert a["units_per_area"] == [
        {"area": "CP", "n_units": 1, "n_passing_qc": 1},
        {"area": "MOs", "n_units": 3, "n_passing_qc": 2},
    ]
    assert a["n_units"] == 5 and a["n_units_passing_qc"] == 4
    assert a["probe_letters_available"] == ["A", "B", "C", "F"]
    assert a["probe_letters_with_units"] == ["A", "B", "C"]
    assert a["probe_letters_annotated"] == ["A", "B", "C"]
    assert a["n_blocks"] == 4 and a["n_passing_blocks"] == 2
    assert a["cross_modality_dprime_vis_blocks"] == [1.5, None]
    assert a["cross_modality_dprime_aud_blocks"] == [0.5, 2.0]
    assert a["n_hits"] == [5, 6, 7, 8] and a["n_contingent_rewards"] == [4, 5, 6, 7]
    assert a["mean_vis_dprime"] == pytest.approx(2.0) and a["mean_aud_dprime"] == 1.0
    assert a["epochs"] == ["Spontaneous", "RFMapping", "DynamicRouting1"]
    assert a["is_spontaneous"] and a["is_rf_mapping"] and a["is_invalid_times"]
    assert not a["is_spontaneous_rewards"]
    assert a["perturbation_areas"] is None and a["ephys_day"] == 1
    assert b["areas_hit"] == ["VISp"] and b["areas_with_qc_units"] == []
    assert b["perturbation_areas"] == ["ACC", "V1"] and b["task_duration"] == 19.5
    assert b["ephys_day"] == 2 and b["record_project"] is None  # is_templeton unknown
    assert t["n_units"] == 0 and t["areas_hit"] == [] and t["ephys_day"] is None
    assert t["experiment_day"] == 1 and t["n_blocks"] is None


def test_nf_sessions_filters(tmp_path: Path) -> None:
    c = _records_cache(tmp_path)
    got = nf.sessions(c, session_type="brainwide survey", is_good_behavior=True, areas_hit=["MOs"])
    assert got["session_id"].to_list() == ["626791_2022-08-15"]
    assert nf.sessions(c, areas_hit=["MOs", "VISp"]).height == 0
    assert nf.sessions(c, subject_id=[644866])["session_id"].to_list() == ["644866_2022-08-16"]
    assert nf.sessions(c, keywords="day_2")["session_id"].to_list() == ["626791_2022-08-16"]
    assert nf.sessions(c, is_templeton=None).height == 3
    assert nf.sessions(c).height == 3
    with pytest.raises(nf.errors.ParameterError) as e:
        nf.sessions(c, area="MOs")
    assert "area" in str(e.value)


def test_views_in_sql_alongside_components(tmp_path: Path) -> None:
    c = _records_cache(tmp_path)
    df = nf.sql(
        "SELECT session_id FROM session_records WHERE list_contains(areas_hit, 'MOs') "
        "AND is_good_behavior ORDER BY session_id",
        c,
    )
    assert df["session_id"].to_list() == ["626791_2022-08-15"]
    con = nf.cache.connect(c)
    names = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    assert {"session_days", "session_records", "sessions", "units"} <= names


@pytest.mark.slow
def test_session_records_of_converted_synthetic_sessions(
    synth_sessions: list[Any], tmp_path: Path
) -> None:
    out = nf.cache.convert([t.raw_path for t in synth_sessions], tmp_path / "c", progress=False)
    assert out.filter(pl.col("status") == "failed").is_empty()
    rec = nf.sessions(tmp_path / "c")
    assert sorted(rec["session_id"]) == sorted(str(t.session_id) for t in synth_sessions)
    units = nf.scan_units(tmp_path / "c").select("session_id", "default_qc").collect()
    perf = nf.scan_performance(tmp_path / "c").collect()
    for row in rec.iter_rows(named=True):
        u = units.filter(pl.col("session_id") == row["session_id"])
        p = perf.filter(pl.col("session_id") == row["session_id"]).sort("block_index")
        assert row["n_units"] == u.height and row["n_units_passing_qc"] == u["default_qc"].sum()
        assert row["n_blocks"] == p.height
        d = p["cross_modality_dprime"]
        assert row["n_passing_blocks"] == (d.is_not_nan() & (d >= 1.0)).sum()
        assert row["n_trials"] == p["n_trials"].to_list()
        assert row["experiment_day"] == 1  # three subjects, one session each


def test_materialized_views_equal_the_live_sql_and_update_incrementally(tmp_path: Path) -> None:
    """The session summary file + Polars days give exactly what the live SQL views give over the
    component views; a changed session is recomputed alone, a removed one dropped."""
    import duckdb

    from npc_frames import views

    c = _records_cache(tmp_path)
    add_session(c, "626791_2022-08-17", day=9, kind=None)
    con = nf.cache.connect(c, views={"sessions", *views._inputs()})
    views.create_derived_views(con, {"session_days", "session_records"})  # live SQL views
    for name in ("session_days", "session_records"):
        live = pl.from_arrow(con.sql(f"SELECT * FROM {name} ORDER BY session_id").to_arrow_table())
        got = views.derived(name, c)
        assert isinstance(live, pl.DataFrame)
        # the live view reads NaN d' from Parquet through DuckDB, where isnan() misses them
        # (the NaN block then counts as passing); the summary follows the documented rule,
        # checked in test_session_records_against_component_contents
        cols = sorted(set(live.columns) - {"n_passing_blocks", "cross_modality_dprime_vis_blocks"})
        assert got.columns == live.columns or sorted(got.columns) == sorted(live.columns)
        assert got.select(cols).equals(live.select(cols))
    con.close()
    assert isinstance(con, duckdb.DuckDBPyConnection)

    store = pl.read_parquet(c / views.STORE)
    assert store.height == 4
    # one session's units change: only its summary row is recomputed
    before = {r["session_id"]: r[views.STAMP] for r in store.iter_rows(named=True)}
    write_component(
        c,
        "units",
        "626791_2022-08-16",
        unit_id=["u"],
        electrode_group_name=["probeD"],
        structure=["MOs"],
        default_qc=[True],
    )
    rec = nf.sessions(c, areas_hit=["MOs"])
    assert sorted(rec["session_id"]) == ["626791_2022-08-15", "626791_2022-08-16"]
    after = {
        r["session_id"]: r[views.STAMP]
        for r in pl.read_parquet(c / views.STORE).iter_rows(named=True)
    }
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"626791_2022-08-16"}
    import shutil

    shutil.rmtree(c / "sessions" / "session_id=644866_2022-08-16")
    assert "644866_2022-08-16" not in nf.sessions(c)["session_id"].to_list()
    assert pl.read_parquet(c / views.STORE).height == 3
