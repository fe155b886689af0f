"""The cache over real synthetic sessions (npc_frames.synth + the real components).

One question — per session, unit count, spike count, and the spike times of each unit — answered
through scan_* (Polars), sql (DuckDB) and directly from the generator's truth.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from npc_frames import cache

#: spike times on the sync clock come from a fitted clock: allow half a 30 kHz sample
TIME_TOLERANCE_S = 0.5 / 30_000


def _f(ephys: Any, name: str) -> Any:
    """Return field `name` of an ephys truth (EphysTruth attribute or loaded Record item)."""
    return getattr(ephys, name) if hasattr(ephys, name) else ephys[name]


@pytest.fixture(scope="module")
def synth_cache(synth_sessions: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_cache")
    with cf.ThreadPoolExecutor(2) as ex:
        out = cache.convert([t.raw_path for t in synth_sessions], root, executor=ex, progress=False)
    failed = out.filter(pl.col("status") == "failed")
    assert failed.is_empty(), failed.select("session_id", "component", "error").rows()
    return root


@pytest.mark.slow
def test_synth_units_and_spikes_agree_across_scan_sql_and_truth(synth_cache, synth_sessions):
    truth = {str(t.session_id): t.ephys for t in synth_sessions}
    direct = sorted(
        (sid, len(_f(e, "unit_cluster_id")), len(_f(e, "spike_time"))) for sid, e in truth.items()
    )
    via_polars = (
        cache.scan_units(synth_cache)
        .group_by("session_id")
        .agg(
            pl.len().cast(pl.Int64).alias("n_units"),
            pl.col("spike_times").list.len().sum().cast(pl.Int64),
        )
        .sort("session_id")
        .collect()
        .rows()
    )
    via_sql = cache.sql(
        "SELECT u.session_id, u.n_units, s.n_spikes FROM "
        "(SELECT session_id, count(*) AS n_units FROM units GROUP BY 1) u JOIN "
        "(SELECT session_id, count(*) AS n_spikes FROM spike_times GROUP BY 1) s USING (session_id) "
        "ORDER BY 1",
        synth_cache,
    ).rows()
    assert via_polars == direct
    assert via_sql == direct


@pytest.mark.slow
def test_synth_spike_times_of_each_unit_match_truth(synth_cache, synth_sessions):
    units = (
        cache.scan_units(synth_cache)
        .select("session_id", "electrode_group_name", "cluster_id", "spike_times")
        .collect()
    )
    for t in synth_sessions:
        e = t.ephys
        for k, (probe, cluster) in enumerate(zip(_f(e, "unit_probe"), _f(e, "unit_cluster_id"))):
            row = units.filter(
                (pl.col("session_id") == str(t.session_id))
                & (pl.col("electrode_group_name") == f"probe{probe}")
                & (pl.col("cluster_id") == int(cluster))
            )
            assert row.height == 1
            got = row["spike_times"][0].to_numpy()
            want = np.sort(_f(e, "spike_time")[_f(e, "spike_unit") == k])
            assert got.shape == want.shape
            assert np.max(np.abs(got - want), initial=0) < TIME_TOLERANCE_S


@pytest.mark.slow
def test_synth_trials_question_same_in_polars_and_sql(synth_cache, synth_sessions):
    via_polars = (
        cache.scan_trials(synth_cache)
        .group_by("session_id")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("stop_time").max())
        .sort("session_id")
        .collect()
    )
    via_sql = cache.sql(
        "SELECT session_id, count(*) AS n, max(stop_time) AS stop_time FROM trials "
        "GROUP BY 1 ORDER BY 1",
        synth_cache,
    )
    assert via_polars.rows() == via_sql.rows()
    assert via_polars.height == len(synth_sessions)
    sid = str(synth_sessions[0].session_id)
    per_session = cache.read_session(sid, synth_cache)
    assert per_session["trials"].height == dict(via_polars.select("session_id", "n").rows())[sid]


@pytest.mark.slow
def test_synth_manifest_notes_and_invalid_times_land_in_components(synth_sessions, tmp_path):
    t = synth_sessions[0]
    sid = str(t.session_id)
    manifest = tmp_path / "tracked.yaml"
    manifest.write_text(
        f"{sid}:\n"
        f"  raw_path: {t.raw_path}\n"
        "  notes: left eye closed for the first block\n"
        "  issues: [https://github.com/example/tracker/issues/7]\n"
        "  invalid_times:\n"
        "    - {start_time: 10.0, stop_time: 12.5, reason: lick sensor unplugged}\n"
    )
    out = cache.convert(
        None, tmp_path / "c", manifest=manifest, components=["sessions", "invalid_times"]
    )
    assert set(out["status"]) == {"ok"}, out.select("component", "error").rows()
    sessions = cache.scan_sessions(tmp_path / "c").collect()
    assert sessions["notes"].to_list() == ["left eye closed for the first block"]
    assert sessions["issues"].to_list() == [["https://github.com/example/tracker/issues/7"]]
    inv = cache.scan_invalid_times(tmp_path / "c").collect()
    assert inv.select("session_id", "start_time", "stop_time", "reason").rows() == [
        (sid, 10.0, 12.5, "lick sensor unplugged")
    ]
