"""The analysis API's promises: real concurrency, one id dtype, schemas of empty results, windows
between two columns, any interval table, invalid times, memory bounds, the memory-mapped cache
path and the pynapple bridge — each checked against brute-force numpy or pynapple itself."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import npc_frames as nf
import npc_frames.analysis as an
from npc_frames.analysis import _spikes
from npc_frames.analysis._pages import read_packed
from npc_frames.errors import ParameterError, SchemaError

SESSIONS = ("100000_2023-09-01", "100001_2023-09-02", "100002_2023-09-03")


def _units(rng: np.random.Generator, sessions=SESSIONS, n_units: int = 4) -> pl.DataFrame:
    rows = []
    for s in sessions:
        for u in range(n_units):
            n = int(rng.integers(0, 400)) if u else 0  # unit 0 has no spikes
            rows.append(
                {
                    "session_id": s,
                    "unit_id": f"{s}_A-{u}",
                    "structure": "MOs" if u % 2 else "VISp",
                    "spike_times": np.sort(rng.uniform(0, 60, n)).tolist(),
                    "obs_intervals": [[0.5, 59.0]] if u != 2 else [[0.5, 20.0], [30.0, 59.0]],
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "session_id": pl.String,
            "unit_id": pl.String,
            "structure": pl.String,
            "spike_times": pl.List(pl.Float64),
            "obs_intervals": pl.List(pl.List(pl.Float64)),
        },
    )


def _trials(rng: np.random.Generator, sessions=SESSIONS, n: int = 15) -> pl.DataFrame:
    rows = []
    for s in sessions:
        stim = np.sort(rng.uniform(1, 57, n))
        for k in range(n):
            rt = None if k % 5 == 0 else float(stim[k] + rng.uniform(-0.2, 1.5))
            rows.append(
                {
                    "session_id": s,
                    "trial_index": k,
                    "stim_start_time": float(stim[k]),
                    "response_time": rt,
                    "stim_name": "vis1" if k % 2 else "sound1",
                }
            )
    return pl.DataFrame(rows)


def _brute(spikes: list[float], obs, a: float | None, b: float | None, invalid=()) -> int | None:
    """Count of spikes in [a, b), or None where the window is undefined or not observed."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b < a:
        return None
    if not any(lo <= a and b <= hi for lo, hi in obs or []):
        return None
    if any(a < hi and lo < b for lo, hi in invalid):
        return None
    t = np.asarray(spikes, dtype=float)
    return int(np.sum((t >= a) & (t < b)))


# ------------------------------------------------------------------------------- workers
def test_workers_run_sessions_concurrently_and_give_serial_counts(monkeypatch) -> None:
    rng = np.random.default_rng(9)
    units, trials = _units(rng), _trials(rng)
    w = {"r": ("stim_start_time", 0.0, 0.5)}
    serial = an.spike_counts(units, trials, windows=w, workers=1)
    # each session waits at a barrier of two when it starts: with one worker the barrier can
    # never fill (BrokenBarrierError), with two it fills only if two sessions are in flight
    barrier = threading.Barrier(2, timeout=30)
    log: list[tuple[str, str, float]] = []

    def hook(stage: str, sid: str) -> None:
        log.append((stage, sid, time.perf_counter()))
        if stage == "start" and sid != SESSIONS[-1]:
            barrier.wait()

    monkeypatch.setattr(an, "_on_session", hook)
    parallel = an.spike_counts(units, trials, windows=w, workers=2)
    assert parallel.equals(serial)
    start0 = next(t for st, s, t in log if s == SESSIONS[0] and st == "start")
    start1 = next(t for st, s, t in log if s == SESSIONS[1] and st == "start")
    end0 = next(t for st, s, t in log if s == SESSIONS[0] and st == "end")
    end1 = next(t for st, s, t in log if s == SESSIONS[1] and st == "end")
    assert max(start0, start1) < min(end0, end1)  # the two sessions overlapped in time

    barrier = threading.Barrier(2, timeout=0.5)
    with pytest.raises(threading.BrokenBarrierError):
        an.spike_counts(units, trials, windows=w, workers=1)


def test_workers_below_one_is_a_typed_error() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ParameterError):
        an.spike_counts(
            _units(rng), _trials(rng), windows={"r": ("stim_start_time", 0, 1)}, workers=0
        )


# --------------------------------------------------------------------- dtypes and schemas
def _all_results(units: pl.DataFrame, trials: pl.DataFrame) -> dict[str, pl.DataFrame]:
    units = units.with_columns(electrode_group_name=pl.lit("probeA"))
    return {
        "counts": an.spike_counts(units, trials, windows={"r": ("stim_start_time", 0, 0.5)}),
        "aligned": an.aligned_spikes(units, trials, event="stim_start_time", start=-0.1, stop=0.3),
        "psth": an.psth(
            units,
            trials,
            event="stim_start_time",
            start=-0.1,
            stop=0.3,
            bin_size=0.1,
            by=["stim_name"],
        ),
        "histograms": an.spike_histograms(units, bin_size=5.0),
    }


def test_every_result_has_categorical_ids_and_empty_results_keep_the_schema() -> None:
    rng = np.random.default_rng(2)
    units, trials = _units(rng), _trials(rng)
    full = _all_results(units, trials)
    empty = _all_results(units.clear(), trials.clear())
    for name, df in full.items():
        assert df.height > 0, name
        assert df.schema["session_id"] == pl.Categorical(), name
        if "unit_id" in df.columns:
            assert df.schema["unit_id"] == pl.Categorical(), name
        assert empty[name].height == 0 and empty[name].schema == df.schema, name
    # no overlap between the sessions of units and trials: still the full schema
    other = trials.with_columns(session_id=pl.lit("100009_2023-09-09"))
    assert _all_results(units, other)["psth"].schema == full["psth"].schema


# ------------------------------------------------------------------------------- windows
def test_windows_between_two_columns_or_expressions_equal_brute_force() -> None:
    rng = np.random.default_rng(3)
    units, trials = _units(rng), _trials(rng)
    windows = {
        "to_response": ("stim_start_time", "response_time"),
        "late": (pl.col("stim_start_time") + 0.25, pl.col("response_time").fill_null(np.nan)),
        "fixed": ("stim_start_time", -0.5, 0.0),
    }
    got = an.spike_counts(units, trials, windows=windows)
    assert got.height == units.height * trials.height // len(SESSIONS) * 3
    n_null = 0
    for row in got.iter_rows(named=True):
        u = units.filter(pl.col("unit_id") == row["unit_id"]).row(0, named=True)
        t = trials.filter(
            pl.col("session_id") == row["session_id"], pl.col("trial_index") == row["trial_index"]
        ).row(0, named=True)
        ev, rt = t["stim_start_time"], t["response_time"]
        a, b = {
            "to_response": (ev, rt),
            "late": (ev + 0.25, rt),
            "fixed": (ev - 0.5, ev),
        }[row["window"]]
        expected = _brute(u["spike_times"], u["obs_intervals"], a, b)
        assert row["count"] == expected, row
        n_null += expected is None
    assert 0 < n_null < got.height  # both null (no response, stop < start) and counted windows


def test_bad_windows_are_typed_errors() -> None:
    rng = np.random.default_rng(4)
    units, trials = _units(rng), _trials(rng)
    for bad in [("stim_start_time",), ("stim_start_time", 1.0, 0.5), (1.0, 2.0)]:
        with pytest.raises(ParameterError):
            an.spike_counts(units, trials, windows={"w": bad})  # type: ignore[dict-item]
    with pytest.raises(SchemaError) as info:
        an.spike_counts(units, trials, windows={"w": ("stim_start_time", "no_such_column")})
    assert "no_such_column" in str(info.value)


def test_interval_tables_without_trial_index_are_numbered_or_use_the_index_column() -> None:
    rng = np.random.default_rng(5)
    units = _units(rng)
    epochs = pl.DataFrame(
        {
            "session_id": [s for s in SESSIONS for _ in range(3)],
            "start_time": [0.0, 20.0, 40.0] * len(SESSIONS),
            "stop_time": [20.0, 40.0, 59.0] * len(SESSIONS),
            "stim_name": ["Spontaneous", "DynamicRouting1", "OptoTagging"] * len(SESSIONS),
            "pulse": [7, 3, 5] * len(SESSIONS),
        }
    )
    got = an.spike_counts(
        units,
        epochs,
        windows={"epoch": ("start_time", "stop_time")},
        trial_columns=["stim_name"],
    )
    assert got["interval_index"].to_list()[:3] == [0, 1, 2]
    for row in got.iter_rows(named=True):
        u = units.filter(pl.col("unit_id") == row["unit_id"]).row(0, named=True)
        k = row["interval_index"]
        a, b = [0.0, 20.0, 40.0][k], [20.0, 40.0, 59.0][k]
        assert row["stim_name"] == ["Spontaneous", "DynamicRouting1", "OptoTagging"][k]
        assert row["count"] == _brute(u["spike_times"], u["obs_intervals"], a, b)
    by_pulse = an.spike_counts(
        units, epochs, windows={"e": ("start_time", "stop_time")}, index="pulse"
    )
    assert sorted(by_pulse["pulse"].unique().to_list()) == [3, 5, 7]
    first = by_pulse.filter(pl.col("pulse") == 3).sort("unit_id")["count"]
    second = got.filter(pl.col("interval_index") == 1).sort("unit_id")["count"]
    assert first.to_list() == second.to_list()
    with pytest.raises(SchemaError):
        an.spike_counts(units, epochs, windows={"e": ("start_time", "stop_time")}, index="nope")
    with pytest.raises(SchemaError):  # an index must be an integer column
        an.spike_counts(
            units, epochs, windows={"e": ("start_time", "stop_time")}, index="stim_name"
        )


def test_exclude_invalid_times_nulls_overlapping_windows() -> None:
    rng = np.random.default_rng(6)
    units, trials = _units(rng), _trials(rng)
    invalid = pl.DataFrame(
        {
            "session_id": [SESSIONS[0], SESSIONS[0], SESSIONS[1]],
            "start_time": [10.0, 40.0, 0.0],
            "stop_time": [15.0, 41.0, 30.0],
            "reason": ["probe A noise", "x", "y"],
        }
    )
    w = {"r": ("stim_start_time", -0.5, 0.5)}
    got = an.spike_counts(
        units, trials, windows=w, exclude_invalid_times=True, invalid_times=invalid
    )
    plain = an.spike_counts(units, trials, windows=w)
    spans = {
        s: [
            (r["start_time"], r["stop_time"])
            for r in invalid.filter(pl.col("session_id") == s).iter_rows(named=True)
        ]
        for s in SESSIONS
    }
    dropped = 0
    for row, before in zip(got.iter_rows(named=True), plain["count"], strict=True):
        u = units.filter(pl.col("unit_id") == row["unit_id"]).row(0, named=True)
        ev = trials.filter(
            pl.col("session_id") == row["session_id"], pl.col("trial_index") == row["trial_index"]
        )["stim_start_time"].item()
        expected = _brute(
            u["spike_times"], u["obs_intervals"], ev - 0.5, ev + 0.5, spans[row["session_id"]]
        )
        assert row["count"] == expected
        dropped += expected is None and before is not None
    assert dropped > 0
    with pytest.raises(ParameterError):  # invalid times given but not asked for
        an.spike_counts(units, trials, windows=w, invalid_times=invalid)
    with pytest.raises(ParameterError):  # asked for, but an in-memory frame has no cache
        an.spike_counts(units, trials, windows=w, exclude_invalid_times=True)


_INVALID = pl.DataFrame(
    {
        "session_id": [SESSIONS[0], SESSIONS[0], SESSIONS[1]],
        "start_time": [10.0, 40.0, 0.0],
        "stop_time": [15.0, 41.0, 30.0],
    }
)


def _overlaps_invalid(session_id: str, a: float, b: float) -> bool:
    spans = _INVALID.filter(pl.col("session_id") == session_id).rows()
    return any(a < hi and lo < b for _, lo, hi in spans)


def test_aligned_spikes_exclude_invalid_times_gives_null_lists() -> None:
    rng = np.random.default_rng(16)
    units, trials = _units(rng), _trials(rng)
    trials = trials.with_columns(  # one null event: an empty list, never excluded
        pl.when(pl.col("trial_index") == 3)
        .then(None)
        .otherwise(pl.col("stim_start_time"))
        .alias("stim_start_time")
    )
    start, stop = -0.4, 0.6
    got = an.aligned_spikes(
        units,
        trials,
        event="stim_start_time",
        start=start,
        stop=stop,
        exclude_invalid_times=True,
        invalid_times=_INVALID,
    )
    assert got.height == units.height * 15
    spikes = {r["unit_id"]: np.asarray(r["spike_times"]) for r in units.iter_rows(named=True)}
    events = {
        (r["session_id"], r["trial_index"]): r["stim_start_time"] for r in trials.rows(named=True)
    }
    n_null = 0
    for row in got.iter_rows(named=True):
        ev = events[(row["session_id"], row["trial_index"])]
        if ev is None:
            assert row["spike_times"] == []
            continue
        if _overlaps_invalid(row["session_id"], ev + start, ev + stop):
            assert row["spike_times"] is None
            n_null += 1
            continue
        t = spikes[row["unit_id"]]
        expected = t[(t >= ev + start) & (t < ev + stop)] - ev
        np.testing.assert_allclose(row["spike_times"], expected, rtol=0, atol=1e-12)
    assert n_null > 0
    plain = an.aligned_spikes(units, trials, event="stim_start_time", start=start, stop=stop)
    keep = got["spike_times"].is_not_null()
    assert got.filter(keep).equals(plain.filter(keep))
    with pytest.raises(ParameterError):
        an.aligned_spikes(
            units, trials, event="stim_start_time", start=0, stop=1, invalid_times=_INVALID
        )


def test_psth_exclude_invalid_times_leaves_intervals_out() -> None:
    rng = np.random.default_rng(17)
    units, trials = _units(rng), _trials(rng)
    start, stop, bin_size = -0.2, 0.5, 0.1
    got = an.psth(
        units,
        trials,
        event="stim_start_time",
        start=start,
        stop=stop,
        bin_size=bin_size,
        by=["stim_name"],
        exclude_invalid_times=True,
        invalid_times=_INVALID,
    )
    edges = start + bin_size * np.arange(8)
    n_excluded = 0
    for row in got.iter_rows(named=True):
        sid = row["session_id"]
        tr = trials.filter(pl.col("session_id") == sid, pl.col("stim_name") == row["stim_name"])
        ev = tr["stim_start_time"].to_numpy()
        ok = np.array([not _overlaps_invalid(sid, e + edges[0], e + edges[-1]) for e in ev])
        n_excluded += int((~ok).sum())
        t = np.asarray(units.filter(pl.col("unit_id") == row["unit_id"])["spike_times"][0])
        k = round((row["bin_start"] - start) / bin_size)
        counts = [np.sum((t >= e + edges[k]) & (t < e + edges[k + 1])) for e in ev[ok]]
        assert row["n_trials"] == ok.sum()
        assert row["rate_mean"] == pytest.approx(np.mean(counts) / bin_size, abs=1e-9)
        sem = np.std(counts, ddof=1) / np.sqrt(len(counts)) / bin_size
        assert row["rate_sem"] == pytest.approx(sem, abs=1e-9, nan_ok=True)
    assert n_excluded > 0
    # session 1's invalid span covers half its trials: fewer trials than without exclusion
    plain = an.psth(
        units,
        trials,
        event="stim_start_time",
        start=start,
        stop=stop,
        bin_size=bin_size,
        by=["stim_name"],
    )
    s1 = pl.col("session_id") == SESSIONS[1]
    assert got.filter(s1)["n_trials"].sum() < plain.filter(s1)["n_trials"].sum()
    s2 = pl.col("session_id") == SESSIONS[2]
    assert got.filter(s2).equals(plain.filter(s2))


# ------------------------------------------------------------------------- memory bounds
def test_huge_results_raise_before_allocating(monkeypatch) -> None:
    rng = np.random.default_rng(7)
    units, trials = _units(rng), _trials(rng)
    with pytest.raises(ParameterError) as info:  # 1.5 G bins: refused from the bin count alone
        an.psth(units, trials, event="stim_start_time", start=-0.5, stop=1.0, bin_size=1e-9)
    assert "MAX_RESULT_BYTES" in str(info.value)
    monkeypatch.setattr(an, "MAX_RESULT_BYTES", 2**29)
    with pytest.raises(ParameterError):  # 1.5 M bins x 4 units x 2 groups x 80 B ~ 0.9 GiB
        an.psth(
            units,
            trials,
            event="stim_start_time",
            start=-0.5,
            stop=1.0,
            bin_size=1e-6,
            by=["stim_name"],
        )
    monkeypatch.setattr(an, "MAX_RESULT_BYTES", 1_000)
    with pytest.raises(ParameterError):
        an.spike_counts(units, trials, windows={"r": ("stim_start_time", 0, 0.5)})
    with pytest.raises(ParameterError):
        an.spike_histograms(units.with_columns(electrode_group_name=pl.lit("A")), bin_size=1e-3)
    with pytest.raises(ParameterError):
        an.aligned_spikes(units, trials, event="stim_start_time", start=-30, stop=30)


# ---------------------------------------------------------- memory-mapped cache reading
def _write_cache(root: Path, units: pl.DataFrame, trials: pl.DataFrame) -> None:
    from npc_frames.cache import data_path
    from npc_frames.cache_layout import to_parquet_bytes

    for sid in units["session_id"].unique():
        for name, df in (("units", units), ("trials", trials)):
            path = data_path(str(root), name, sid)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            part = df.filter(pl.col("session_id") == sid)
            Path(path).write_bytes(to_parquet_bytes(part, component=name))


def test_cache_scans_are_read_from_mapped_pages_and_equal_brute_force(
    tmp_path: Path, monkeypatch
) -> None:
    rng = np.random.default_rng(8)
    units = _units(rng, n_units=70)  # several row groups of at most 32 units
    units = units.with_columns(  # a null list and a one-spike unit (shorter than a byte view)
        spike_times=pl.when(pl.col("unit_id").str.ends_with("-5"))
        .then(None)
        .when(pl.col("unit_id").str.ends_with("-6"))
        .then(pl.lit([12.5]))
        .otherwise(pl.col("spike_times"))
    )
    trials = _trials(rng)
    _write_cache(tmp_path, units, trials)
    scan = nf.scan_units(cache=str(tmp_path)).filter(pl.col("structure") == "MOs")
    assert _spikes.cache_root_of(scan) == str(tmp_path)
    w = {"a": ("stim_start_time", -0.3, 0.2), "b": ("stim_start_time", "response_time")}

    def no_polars(*args: object, **kwargs: object) -> None:
        raise AssertionError("spikes were read through Polars, not the mapped pages")

    with monkeypatch.context() as m:
        m.setattr(an, "load_frame_spikes", no_polars)
        got = an.spike_counts(scan, nf.scan_trials(cache=str(tmp_path)), windows=w)
        # psth and aligned_spikes read the same pages
        ev = {"event": "stim_start_time", "start": -0.3, "stop": 0.4}
        aligned = an.aligned_spikes(scan, trials, **ev)
        rates = an.psth(scan, trials, **ev, bin_size=0.05, by=["stim_name"])
    assert aligned.equals(an.aligned_spikes(scan.collect(), trials, **ev))
    assert aligned["spike_times"].list.len().sum() > 0
    assert rates.equals(an.psth(scan.collect(), trials, **ev, bin_size=0.05, by=["stim_name"]))
    via_frames = an.spike_counts(
        scan.collect(), nf.scan_trials(cache=str(tmp_path)).collect(), windows=w
    )
    assert got.equals(via_frames)
    assert got["unit_id"].cast(pl.String).str.ends_with("-5").any()
    lookup = {r["unit_id"]: r for r in units.iter_rows(named=True)}
    tr = {(r["session_id"], r["trial_index"]): r for r in trials.iter_rows(named=True)}
    for row in got.iter_rows(named=True):
        u, t = lookup[row["unit_id"]], tr[(row["session_id"], row["trial_index"])]
        ev = t["stim_start_time"]
        a, b = (ev - 0.3, ev + 0.2) if row["window"] == "a" else (ev, t["response_time"])
        assert row["count"] == _brute(u["spike_times"] or [], u["obs_intervals"], a, b)


def test_plans_that_change_spike_times_or_ids_are_not_read_from_pages(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    units, trials = _units(rng), _trials(rng)
    _write_cache(tmp_path, units, trials)
    scan = nf.scan_units(cache=str(tmp_path))
    shifted = scan.with_columns(pl.col("spike_times").list.eval(pl.element() + 1.0))
    renamed = scan.with_columns(pl.col("unit_id").str.to_uppercase())
    assert _spikes.cache_root_of(shifted) is None and _spikes.cache_root_of(renamed) is None
    w = {"r": ("stim_start_time", 0.0, 1.0)}
    got = an.spike_counts(shifted, trials, windows=w)
    expected = an.spike_counts(shifted.collect(), trials, windows=w)
    assert got.equals(expected)
    assert not got.equals(an.spike_counts(scan, trials, windows=w))
    # with a cache scan, exclude_invalid_times finds the cache's invalid_times component
    inv = pl.DataFrame(
        {"session_id": [SESSIONS[0]], "start_time": [0.0], "stop_time": [60.0], "reason": ["x"]}
    )
    from npc_frames.cache import data_path
    from npc_frames.cache_layout import to_parquet_bytes

    path = data_path(str(tmp_path), "invalid_times", SESSIONS[0])
    os.makedirs(os.path.dirname(path))
    Path(path).write_bytes(to_parquet_bytes(inv, component="invalid_times"))
    excl = an.spike_counts(scan, trials, windows=w, exclude_invalid_times=True)
    first = excl.filter(pl.col("session_id") == SESSIONS[0])
    assert first["count"].null_count() == first.height
    plain = an.spike_counts(scan, trials, windows=w)
    others = pl.col("session_id") != SESSIONS[0]
    assert excl.filter(others).equals(plain.filter(others))


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_packed_page_reader_equals_pyarrow(tmp_path: Path, version: str) -> None:
    rng = np.random.default_rng(11)
    values = [
        None if k % 7 == 3 else rng.uniform(0, 1, int(rng.integers(0, 3000))).tobytes()
        for k in range(300)
    ]
    table = pa.table({"x": pa.array(values, pa.large_binary())})
    path = str(tmp_path / "p.parquet")
    pq.write_table(
        table,
        path,
        compression="none",
        use_dictionary=False,
        data_page_size=20_000,
        data_page_version=version,
        row_group_size=70,
    )
    assert pq.ParquetFile(path).metadata.num_row_groups == 5
    packed = read_packed(path, "x")
    for k, v in enumerate(values):
        if v is None:
            assert packed.start[k] == -1 and packed.nbytes[k] == 0
        else:
            s = int(packed.start[k])
            assert bytes(packed.buffer[s : s + int(packed.nbytes[k])]) == v


# ------------------------------------------------------------------------------ pynapple
def test_pynapple_bridge_equals_pynapple_counts() -> None:
    nap = pytest.importorskip("pynapple")
    rng = np.random.default_rng(12)
    units = _units(rng, sessions=SESSIONS[:1], n_units=6).drop("obs_intervals")
    trials = pl.DataFrame(
        {
            "session_id": SESSIONS[0],
            "trial_index": np.arange(12),
            "start_time": np.arange(12) * 4.7 + 0.31,
            "stop_time": np.arange(12) * 4.7 + 3.93,
            "stim_name": ["vis1", "sound1"] * 6,
        }
    )
    group = nf.to_pynapple(units)
    assert isinstance(group, nap.TsGroup) and len(group) == units.height
    for k, row in enumerate(units.iter_rows(named=True)):
        np.testing.assert_array_equal(group[k].index, np.asarray(row["spike_times"]))
    assert list(group.metadata["unit_id"]) == units["unit_id"].to_list()
    ep = nf.to_pynapple_intervals(trials)
    assert isinstance(ep, nap.IntervalSet)
    np.testing.assert_array_equal(ep.start, trials["start_time"].to_numpy())
    np.testing.assert_array_equal(ep.end, trials["stop_time"].to_numpy())
    assert list(ep.metadata["stim_name"]) == trials["stim_name"].to_list()
    theirs = np.asarray(group.count(ep=ep))  # (intervals, units)
    ours = an.spike_counts(units, trials, windows={"t": ("start_time", "stop_time")})
    mine = ours["count"].to_numpy().reshape(units.height, trials.height).T
    np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ParameterError):
        nf.to_pynapple(_units(rng))  # three sessions
    assert len(nf.to_pynapple(_units(rng), session_id=SESSIONS[1])) == 4


def test_session_count_arrays_equal_spike_counts() -> None:
    rng = np.random.default_rng(18)
    units, trials = _units(rng), _trials(rng)
    w = {"a": ("stim_start_time", -0.3, 0.2), "b": ("stim_start_time", "response_time")}
    one = units.filter(pl.col("session_id") == SESSIONS[1])
    ids, order, counts, valid = an.session_count_arrays(one, trials, windows=w)
    frame = an.spike_counts(one, trials, windows=w)
    assert ids == frame["unit_id"].cast(pl.String).unique(maintain_order=True).to_list()
    assert order.tolist() == list(range(15))
    expected = frame["count"].to_numpy().reshape(2, len(ids), 15)
    assert np.array_equal(valid, ~np.isnan(expected))
    assert np.array_equal(counts[valid], expected[valid])
    with pytest.raises(ParameterError):  # one session only
        an.session_count_arrays(units, trials, windows=w)
