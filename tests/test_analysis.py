"""Trial-aligned spike analysis against brute-force per-unit numpy computations."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npc_frames.analysis as an
from npc_frames.errors import ParameterError, SchemaError

# times on a coarse grid make exact ties between spikes and window edges likely — the case a
# float shortcut would get wrong
grid_times = st.integers(0, 2000).map(lambda k: k * 0.005)
free_times = st.floats(0, 10, allow_nan=False)


@st.composite
def sessions(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame]:
    times = grid_times if draw(st.booleans()) else free_times
    n_units = draw(st.integers(0, 6))
    unit_rows = []
    for u in range(n_units):
        spikes = sorted(draw(st.lists(times, max_size=40)))
        n_obs = draw(st.integers(0, 2))
        obs = sorted(draw(st.lists(times, min_size=2 * n_obs, max_size=2 * n_obs)))
        unit_rows.append(
            {
                "session_id": "s1",
                "unit_id": f"s1_A-{u}",
                "spike_times": spikes,
                "obs_intervals": [[obs[2 * k], obs[2 * k + 1]] for k in range(n_obs)] or None,
            }
        )
    n_trials = draw(st.integers(0, 8))
    events = draw(
        st.lists(st.one_of(times, st.just(math.nan)), min_size=n_trials, max_size=n_trials)
    )
    units = pl.DataFrame(
        unit_rows,
        schema={
            "session_id": pl.String,
            "unit_id": pl.String,
            "spike_times": pl.List(pl.Float64),
            "obs_intervals": pl.List(pl.List(pl.Float64)),
        },
    )
    trials = pl.DataFrame(
        {
            "session_id": ["s1"] * n_trials,
            "trial_index": list(range(n_trials)),
            "stim_start_time": events,
        },
        schema={"session_id": pl.String, "trial_index": pl.Int64, "stim_start_time": pl.Float64},
    )
    return units, trials


def brute_counts(units: pl.DataFrame, trials: pl.DataFrame, windows: dict) -> dict:
    out = {}
    for unit in units.iter_rows(named=True):
        t = np.asarray(unit["spike_times"], dtype=float)
        obs = unit["obs_intervals"] or []
        for trial in trials.iter_rows(named=True):
            for name, (event, start, stop) in windows.items():
                ev = trial[event]
                key = (unit["unit_id"], trial["trial_index"], name)
                if ev is None or math.isnan(ev):
                    out[key] = None
                    continue
                a, b = ev + start, ev + stop
                if not any(lo <= a and b <= hi for lo, hi in obs):
                    out[key] = None
                    continue
                out[key] = int(np.sum((t >= a) & (t < b)))
    return out


@settings(max_examples=150, deadline=None)
@given(
    data=sessions(),
    start=st.sampled_from([-0.5, -0.1, 0.0]),
    width=st.sampled_from([0.005, 0.1, 0.5, 2.0]),
)
def test_counts_equal_brute_force_including_obs_interval_edges(data, start, width) -> None:
    units, trials = data
    windows = {"a": ("stim_start_time", start, start + width), "b": ("stim_start_time", 0.0, 0.25)}
    got = an.spike_counts(units.lazy(), trials.lazy(), windows=windows)
    expected = brute_counts(units, trials, windows)
    assert got.height == len(expected)
    for row in got.iter_rows(named=True):
        assert row["count"] == expected[(row["unit_id"], row["trial_index"], row["window"])], row


@settings(max_examples=100, deadline=None)
@given(data=sessions(), start=st.sampled_from([-0.3, 0.0]), stop=st.sampled_from([0.01, 0.4]))
def test_aligned_spikes_equal_brute_force(data, start, stop) -> None:
    units, trials = data
    got = an.aligned_spikes(units, trials, event="stim_start_time", start=start, stop=stop)
    assert got.height == units.height * trials.height
    lookup = {(r["unit_id"], r["trial_index"]): r["spike_times"] for r in got.iter_rows(named=True)}
    for unit in units.iter_rows(named=True):
        t = np.asarray(unit["spike_times"], dtype=float)
        for trial in trials.iter_rows(named=True):
            ev = trial["stim_start_time"]
            expected = [] if math.isnan(ev) else list(t[(t >= ev + start) & (t < ev + stop)] - ev)
            np.testing.assert_allclose(
                lookup[(unit["unit_id"], trial["trial_index"])], expected, atol=1e-12
            )


def test_counts_without_obs_intervals_and_many_sessions() -> None:
    rng = np.random.default_rng(0)
    unit_rows, trial_rows = [], []
    for s in ("100000_2023-09-01", "100001_2023-09-02"):
        for u in range(5):
            unit_rows.append(
                {
                    "session_id": s,
                    "unit_id": f"{s}_A-{u}",
                    "spike_times": np.sort(rng.uniform(0, 100, rng.integers(0, 500))).tolist(),
                }
            )
        for k in range(20):
            trial_rows.append({"session_id": s, "trial_index": k, "stim_start_time": 3.0 + 4.5 * k})
    units, trials = pl.DataFrame(unit_rows), pl.DataFrame(trial_rows)
    got = an.spike_counts(units, trials, windows={"r": ("stim_start_time", 0.0, 0.5)})
    assert got["count"].null_count() == 0
    assert got.height == 2 * 5 * 20
    for row in got.sample(30, seed=1).iter_rows(named=True):
        t = np.asarray(units.filter(pl.col("unit_id") == row["unit_id"])["spike_times"][0])
        ev = 3.0 + 4.5 * row["trial_index"]
        assert row["count"] == np.sum((t >= ev) & (t < ev + 0.5))


def test_empty_units_give_zero_counts() -> None:
    units = pl.DataFrame(
        {"session_id": ["s"], "unit_id": ["u"], "spike_times": [[]]},
        schema={"session_id": pl.String, "unit_id": pl.String, "spike_times": pl.List(pl.Float64)},
    )
    trials = pl.DataFrame({"session_id": ["s", "s"], "trial_index": [0, 1], "t": [1.0, 2.0]})
    got = an.spike_counts(units, trials, windows={"w": ("t", 0, 1)})
    assert got["count"].to_list() == [0, 0]


def test_psth_matches_brute_force_mean_and_sem() -> None:
    rng = np.random.default_rng(3)
    spikes = [np.sort(rng.uniform(0, 60, 900)), np.sort(rng.uniform(0, 60, 50))]
    units = pl.DataFrame(
        {
            "session_id": ["s", "s"],
            "unit_id": ["u0", "u1"],
            "spike_times": [x.tolist() for x in spikes],
        }
    )
    events = np.arange(2, 58, 2.0)
    kind = np.where(np.arange(events.size) % 3 == 0, "vis", "aud")
    trials = pl.DataFrame(
        {"session_id": "s", "trial_index": np.arange(events.size), "ev": events, "kind": kind}
    )
    got = an.psth(units, trials, event="ev", start=-0.2, stop=0.5, bin_size=0.1, by=["kind"])
    edges = -0.2 + 0.1 * np.arange(8)
    for row in got.iter_rows(named=True):
        t = spikes[int(row["unit_id"][1])]
        sel = events[kind == row["kind"]]
        k = round((row["bin_start"] + 0.2) / 0.1)
        counts = np.array([np.sum((t >= e + edges[k]) & (t < e + edges[k + 1])) for e in sel])
        assert row["n_trials"] == sel.size
        assert row["rate_mean"] == pytest.approx(counts.mean() / 0.1)
        assert row["rate_sem"] == pytest.approx(counts.std(ddof=1) / np.sqrt(sel.size) / 0.1)


def test_spike_histograms_per_probe() -> None:
    units = pl.DataFrame(
        {
            "session_id": ["s"] * 3,
            "unit_id": ["a", "b", "c"],
            "electrode_group_name": ["probeA", "probeB", "probeA"],
            "spike_times": [[0.1, 0.2, 1.5], [2.5], [0.9, 2.0]],
        }
    )
    got = an.spike_histograms(units, bin_size=1.0)
    a = got.filter(pl.col("electrode_group_name") == "probeA")["count"].to_list()
    b = got.filter(pl.col("electrode_group_name") == "probeB")["count"].to_list()
    assert a == [3, 1, 1] and b == [0, 0, 1]


def test_bad_parameters_and_missing_columns_are_typed_errors() -> None:
    units = pl.DataFrame({"session_id": ["s"], "unit_id": ["u"], "spike_times": [[1.0]]})
    trials = pl.DataFrame({"session_id": ["s"], "trial_index": [0], "t": [1.0]})
    with pytest.raises(ParameterError):
        an.spike_counts(units, trials, windows={"w": ("t", 0.5, 0.0)})
    with pytest.raises(SchemaError) as info:
        an.spike_counts(units, trials, windows={"w": ("stim_start_time", 0.0, 1.0)})
    assert "stim_start_time" in str(info.value)
    with pytest.raises(ParameterError):
        an.psth(units, trials, event="t", start=0, stop=1, bin_size=0)


def test_flat_list_views_are_exact_for_sliced_chunked_and_null_rows() -> None:
    from npc_frames.lists import flat_list, flat_list_chunks, list_from_flat

    s = pl.concat([pl.Series([[1.0, 2.0], None]), pl.Series([[], [3.0, 4.0, 5.0]])], rechunk=False)
    assert s.n_chunks() == 2
    values, offsets = flat_list(s)
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] and offsets.tolist() == [0, 2, 2, 2, 5]
    values, offsets = flat_list(s.rechunk()[2:])
    assert values.tolist() == [3.0, 4.0, 5.0] and offsets.tolist() == [0, 0, 3]
    assert [o.tolist() for _, o in flat_list_chunks(s)] == [[0, 2, 2], [0, 0, 3]]
    assert list_from_flat(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 3])).to_list() == [
        [],
        [1.0, 2.0, 3.0],
    ]


def test_trial_columns_are_carried_and_ids_are_compact() -> None:
    units = pl.DataFrame(
        {"session_id": ["s"] * 2, "unit_id": ["s_A-1", "s_A-2"], "spike_times": [[1.1, 2.2], [2.1]]}
    )
    trials = pl.DataFrame(
        {
            "session_id": ["s", "s"],
            "trial_index": [0, 1],
            "t": [1.0, 2.0],
            "stim_name": ["vis1", "sound1"],
        }
    )
    got = an.spike_counts(
        units, trials, windows={"w": ("t", 0.0, 0.5)}, trial_columns=["stim_name"]
    )
    assert got.schema["unit_id"] == pl.Categorical() and got.schema["window"] == pl.Enum(["w"])
    rows = {(r["unit_id"], r["stim_name"]): r["count"] for r in got.iter_rows(named=True)}
    assert rows == {
        ("s_A-1", "vis1"): 1,
        ("s_A-1", "sound1"): 1,
        ("s_A-2", "vis1"): 0,
        ("s_A-2", "sound1"): 1,
    }
    assert got.filter(pl.col("unit_id") == "s_A-2")["count"].to_list() == [0, 1]


def test_counts_and_aligned_spikes_are_the_same_for_multi_chunk_units() -> None:
    """Scans return one Arrow chunk per Parquet row group; results must not depend on chunking."""
    rng = np.random.default_rng(5)
    rows = [
        {
            "session_id": "s",
            "unit_id": f"s_A-{u}",
            "spike_times": np.sort(rng.uniform(0, 50, rng.integers(0, 300))).tolist(),
        }
        for u in range(9)
    ]
    one = pl.DataFrame(rows)
    many = pl.concat([one[0:2], one[2:3], one[3:9]], rechunk=False)
    assert many["spike_times"].n_chunks() == 3
    trials = pl.DataFrame(
        {"session_id": "s", "trial_index": np.arange(30), "t": np.linspace(1, 48, 30)}
    )
    w = {"a": ("t", -0.2, 0.0), "b": ("t", 0.0, 0.7)}
    assert an.spike_counts(many, trials, windows=w).equals(an.spike_counts(one, trials, windows=w))
    x = an.aligned_spikes(many, trials, event="t", start=-0.2, stop=0.7)
    y = an.aligned_spikes(one, trials, event="t", start=-0.2, stop=0.7)
    assert x.equals(y) and x["spike_times"].list.len().sum() > 0


def test_parallel_sessions_give_identical_counts() -> None:
    rng = np.random.default_rng(9)
    rows, trials = [], []
    for s in ("100000_2023-09-01", "100001_2023-09-02", "100002_2023-09-03"):
        rows += [
            {
                "session_id": s,
                "unit_id": f"{s}_A-{u}",
                "spike_times": np.sort(rng.uniform(0, 60, 200)).tolist(),
            }
            for u in range(4)
        ]
        trials += [{"session_id": s, "trial_index": k, "t": 2.0 + 3 * k} for k in range(15)]
    w = {"r": ("t", 0.0, 0.5)}
    serial = an.spike_counts(pl.DataFrame(rows), pl.DataFrame(trials), windows=w)
    parallel = an.spike_counts(pl.DataFrame(rows), pl.DataFrame(trials), windows=w, workers=2)
    assert parallel.equals(serial)
