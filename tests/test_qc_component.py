"""The ``qc`` / ``qc_timing`` components (sync-based QC computed at convert time) against the
synthetic generator's truth, and their catalog statuses and report for a session with a broken
probe and no photodiode."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

import npc_frames as nf
from helpers.nidaq_files import _rewrite_sync_without_line, write_nidaq_from_truth
from npc_frames.cache.catalog import read_catalog, session_status
from npc_frames.paths import RawSession
from npc_frames.synth import make_session

pytestmark = pytest.mark.slow

CENTER_REFRESH = 0.008  # display time = photodiode edge + top-to-centre refresh


@pytest.fixture(scope="module")
def nidaq_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A session with a sound line, an opto line and a full NI-DAQ recording of both."""
    truth = make_session(
        tmp_path_factory.mktemp("qc_nidaq"),
        seed=21,
        minutes=3.0,
        n_probes=1,
        units_per_probe=2,
        date=dt.date(2023, 8, 31),
        opto=True,
        video=False,
        clip_seconds=0.05,
    )
    write_nidaq_from_truth(truth)
    return truth


def _checks(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in df.iter_rows(named=True)}


def test_sync_qc_values_against_truth(nidaq_session: Any) -> None:
    from npc_frames.components import qc, qc_timing

    truth = nidaq_session
    raw = RawSession.from_path(truth.raw_path)
    checks = _checks(qc(raw))
    timing = qc_timing(raw)

    # vsync intervals and dropped frames, per script and overall, from the truth flips
    n_all = dropped = 0
    regular: list[np.ndarray] = []
    longest = 0.0
    for script in truth.scripts:
        flip = np.asarray(script["flip"], dtype=float)
        d = np.diff(flip)
        limit = 1.5 * np.median(d)
        row = timing.filter(
            (pl.col("measure") == "vsync_interval")
            & (pl.col("script_name") == script["script_name"])
        ).row(0, named=True)
        assert row["n"] == d.size and row["n_outliers"] == int((d > limit).sum())
        assert row["median"] == pytest.approx(np.median(d), abs=1e-9)
        assert sum(row["hist_counts"]) == d.size
        n_all += d.size
        dropped += int((d > limit).sum())
        regular.append(d[d <= limit])
        longest = max(longest, float(d.max()))
        # photodiode lag per block: diode edge - flip (generator: ~19.55 ms)
        lag = np.asarray(script["display"], dtype=float) - CENTER_REFRESH - flip
        lag_row = timing.filter(
            (pl.col("measure") == "photodiode_lag")
            & (pl.col("script_name") == script["script_name"])
        ).row(0, named=True)
        assert lag_row["median"] == pytest.approx(np.median(lag), abs=2e-5)
        assert lag_row["median"] == pytest.approx(0.01955, abs=5e-4)
    assert dropped > 0  # the generator drops ~1 frame in 2000
    assert checks["vsync_dropped_fraction"]["value"] == pytest.approx(dropped / n_all, rel=1e-12)
    assert checks["vsync_dropped_fraction"]["passed"] is True
    assert checks["vsync_max_interval"]["value"] == pytest.approx(longest, abs=1e-9)
    assert checks["vsync_jitter"]["value"] == pytest.approx(
        np.std(np.concatenate(regular)), rel=1e-9
    )
    assert checks["vsync_jitter"]["value"] == pytest.approx(1e-4, rel=0.2)  # generator's jitter
    assert checks["photodiode_blocks"]["value"] == 1.0 and checks["photodiode_lag"]["passed"]

    # sound latency: truth onset - flip of the stimulus frame, on the line and on the NI-DAQ
    dr = truth.script("DynamicRouting1")
    trials = dr["truth"]["trials"]
    flip = np.asarray(dr["flip"], dtype=float)
    onset = np.asarray(trials["sound_onset_time"], dtype=float)
    aud = np.isfinite(onset) & np.array(["vis" not in s for s in trials["stim_name"]])
    frames = np.asarray(trials["stim_start_frame"], dtype=np.int64)
    latency = onset[aud] - flip[frames[aud]]
    assert checks["sound_latency_line"]["value"] == pytest.approx(np.median(latency), abs=1e-7)
    assert checks["sound_latency_nidaq"]["value"] == pytest.approx(np.median(latency), abs=1e-4)
    assert checks["sound_line_vs_nidaq"]["value"] <= 1e-4
    assert checks["sound_line_timed_fraction"]["value"] == 1.0
    line = timing.filter(pl.col("measure") == "sound_latency_line").row(0, named=True)
    assert line["n"] == aud.sum()
    assert line["min"] == pytest.approx(latency.min(), abs=1e-7)
    assert line["max"] == pytest.approx(latency.max(), abs=1e-7)
    # opto: the generator turns the laser on 0.5-1.5 ms after the commanded time
    opto = timing.filter(pl.col("measure") == "opto_latency_line").row(0, named=True)
    assert opto["n"] == int(np.isfinite(np.asarray(trials["opto_start_time"], float)).sum())
    assert 0.0005 - 1e-5 <= opto["min"] <= opto["max"] <= 0.0015 + 1e-5
    assert checks["opto_latency_nidaq"]["value"] == pytest.approx(opto["median"], abs=1e-4)
    assert checks["opto_line_vs_nidaq"]["passed"] is True
    assert all(c["passed"] is True for c in checks.values())


@pytest.fixture(scope="module")
def broken_cache(synth_session: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A converted copy of `synth_session` whose sync file lost the photodiode line and whose
    probe B sorting output is damaged."""
    tmp = tmp_path_factory.mktemp("qc_broken")
    src = Path(synth_session.raw_path)
    raw = tmp / src.name
    shutil.copytree(src, raw)
    _rewrite_sync_without_line(next((raw / "behavior").glob("*.h5")), 4)
    (raw / "sorting/Neuropix-PXI-100.ProbeB-AP/spike_times.npy").write_bytes(b"")
    cache = tmp / "cache"
    nf.convert([raw], cache, progress=False)
    return cache, str(synth_session.session_id)


def test_broken_probe_and_no_photodiode_statuses_and_report(
    broken_cache: tuple[Path, str], tmp_path: Path
) -> None:
    cache, sid = broken_cache
    cat = read_catalog(cache)
    comp = {
        r["component"]: r["status"]
        for r in cat.filter(pl.col("part").is_null()).iter_rows(named=True)
    }
    assert comp["qc"] == "ok" and comp["qc_timing"] == "ok"
    assert comp["units"] == "partial"
    qc_parts = {
        r["part"]: r["status"]
        for r in cat.filter((pl.col("component") == "qc") & pl.col("part").is_not_null()).iter_rows(
            named=True
        )
    }
    assert qc_parts["photodiode"] == "absent"
    assert qc_parts["nidaq"] == "absent"  # the clipped upload has no usable NI-DAQ samples
    status = session_status(sid, cache)
    assert status.components["qc"] == "ok" and status.status == "partial"

    checks = _checks(nf.scan_qc(cache).collect())
    assert (
        checks["photodiode_blocks"]["passed"] is False and checks["photodiode_blocks"]["value"] == 0
    )
    assert "photodiode_lag" not in checks  # absent modality: no row
    assert checks["vsync_dropped_fraction"]["passed"] is True
    timing = nf.scan_qc_timing(cache).collect()
    assert "photodiode_lag" not in timing["measure"].to_list()
    # queryable across sessions in SQL
    failed = nf.sql("SELECT name FROM qc WHERE NOT passed ORDER BY name", cache)
    assert failed["name"].to_list() == ["photodiode_blocks"]

    index = nf.plot.qc_report(sid, cache, tmp_path)
    doc = json.loads((index.parent / "qc.json").read_text())
    verdict = {c["name"]: c["passed"] for c in doc["checks"]}
    assert verdict["photodiode_blocks"] is False and verdict["photodiode"] is False
    assert verdict["yield_probeB"] is False and verdict["vsync_jitter"] is True
    assert doc["passed"] is False
    text = index.read_text()
    for title in ("Vsync intervals", "Photodiode lag", "Sound and opto latency"):
        assert title in text
    from matplotlib.image import imread

    img = imread(index.parent / "vsync_intervals.png")
    assert img.std() > 0
