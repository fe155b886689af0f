"""nf.sample_at against a brute-force numpy computation."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import npc_frames as nf
from npc_frames.errors import ParameterError, SchemaError


def _brute(t, v, events, start, stop, agg):  # type: ignore[no-untyped-def]
    out, n_frames, n_nan = [], [], []
    for e in events:
        inside = (t >= e + start) & (t < e + stop) if np.isfinite(e) else np.zeros(t.size, bool)
        vals = v[inside]
        ok = vals[np.isfinite(vals)]
        n_frames.append(int(inside.sum()))
        n_nan.append(int(inside.sum() - ok.size))
        if ok.size == 0:
            out.append(None)
        else:
            out.append(
                float({"mean": np.mean, "sum": np.sum, "min": np.min, "max": np.max}[agg](ok))
            )
    return out, n_frames, n_nan


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    n_trials=st.integers(1, 12),
    agg=st.sampled_from(["mean", "sum", "min", "max"]),
    seed=st.integers(0, 2**32 - 1),
    start=st.floats(-2.0, 1.0),
    length=st.floats(0.01, 3.0),
)
def test_sample_at_equals_brute_force(
    n: int, n_trials: int, agg: str, seed: int, start: float, length: float
) -> None:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 10, n))
    if n:
        t[0] = np.nan  # a metadata frame
    v = rng.normal(size=n)
    v[rng.random(n) < 0.3] = np.nan
    perm = rng.permutation(n)  # frames need not be sorted
    events = rng.uniform(-1, 11, n_trials)
    events[rng.random(n_trials) < 0.1] = np.nan
    frames = pl.DataFrame(
        {
            "session_id": ["a"] * n + ["b"] * 3,
            "timestamp": np.r_[t[perm], [0.5, 1.5, 2.5]],
            "x": np.r_[v[perm], [1.0, 2.0, 3.0]],
        }
    )
    trials = pl.DataFrame(
        {"session_id": ["a"] * n_trials, "trial_index": np.arange(n_trials), "ev": events}
    )
    got = nf.sample_at(
        frames.lazy(), trials, windows={"w": ("ev", start, start + length)}, columns=["x"], agg=agg
    )
    want, n_frames, n_nan = _brute(t, v, events, start, start + length, agg)
    assert got["session_id"].to_list() == ["a"] * n_trials  # session b has no trials
    assert got["n_frames"].to_list() == n_frames
    assert got["x_n_nan"].to_list() == n_nan
    for a, b in zip(got["x"].to_list(), want, strict=True):
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-9, abs=1e-9)


def test_several_windows_columns_and_running_speed_style_time_column() -> None:
    f = pl.DataFrame(
        {
            "session_id": ["s"] * 5,
            "timestamps": [0.0, 1, 2, 3, 4],
            "speed": [1.0, 2, 3, 4, 5],
            "y": [None, 1.0, 1.0, 1.0, 1.0],
        }
    )
    tr = pl.DataFrame({"session_id": ["s", "s"], "trial_index": [0, 1], "t0": [1.0, 3.0]})
    got = nf.sample_at(
        f, tr, windows={"pre": ("t0", -1, 0), "post": ("t0", 0, 2)}, columns=["speed", "y"]
    )
    assert got.columns == [
        "session_id",
        "trial_index",
        "window",
        "n_frames",
        "speed",
        "speed_n_nan",
        "y",
        "y_n_nan",
    ]
    rows = {(r["trial_index"], r["window"]): r for r in got.iter_rows(named=True)}
    assert rows[(0, "pre")]["speed"] == 1.0 and rows[(0, "pre")]["y"] is None
    assert rows[(0, "pre")]["y_n_nan"] == 1
    assert rows[(1, "post")]["speed"] == 4.5 and rows[(1, "post")]["n_frames"] == 2


def test_bad_parameters_are_typed_errors() -> None:
    f = pl.DataFrame({"session_id": ["s"], "timestamp": [0.0], "x": [1.0]})
    tr = pl.DataFrame({"session_id": ["s"], "trial_index": [0], "t0": [0.0]})
    with pytest.raises(ParameterError):
        nf.sample_at(f, tr, windows={"w": ("t0", 0, 1)}, columns=["x"], agg="median")
    with pytest.raises(ParameterError):
        nf.sample_at(f, tr, windows={"w": ("t0", 1, 0)}, columns=["x"])
    with pytest.raises(SchemaError):
        nf.sample_at(f, tr, windows={"w": ("t0", 0, 1)}, columns=["nope"])
    with pytest.raises(SchemaError):
        nf.sample_at(f, tr, windows={"w": ("t1", 0, 1)}, columns=["x"])
