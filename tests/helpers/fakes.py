"""Fake components + schemas for the cache tests (importable by worker processes).

A fake raw session is a folder ``ecephys_<subject>_<date>_12-00-00/`` holding ``fake.json``
(``seed``, ``n_trials``, ``n_units``, ``fail``: components that must raise, ``sleep``: seconds to
sleep in ``units``). The fake component functions derive deterministic frames from it; the same
generator (:func:`truth`) is the ground truth the tests compare scans and SQL with.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from npc_frames.errors import BadFormatError
from npc_frames.schemas import Column, Schema

STRUCTURES = np.array(["CA1", "VISp", "MOs", "LP", "DG"])

FAKE_SCHEMAS = {
    "sessions": Schema(
        "sessions",
        "fake sessions",
        (
            Column("session_id", pl.String, "id"),
            Column("n_trials", pl.Int64, "trial count"),
            Column("notes", pl.String, "manifest notes", required=False),
            Column("issues", pl.List(pl.String), "manifest issues", required=False),
        ),
    ),
    "trials": Schema(
        "trials",
        "fake trials",
        (
            Column("session_id", pl.String, "id"),
            Column("trial_index", pl.Int64, "index"),
            Column("start_time", pl.Float64, "s"),
            Column("stop_time", pl.Float64, "s"),
            Column("stim_name", pl.String, "stim"),
            Column("is_hit", pl.Boolean, "hit"),
            Column("response_time", pl.Float64, "s", required=False),
        ),
    ),
    "invalid_times": Schema(
        "invalid_times",
        "fake invalid times",
        (
            Column("session_id", pl.String, "id"),
            Column("start_time", pl.Float64, "s"),
            Column("stop_time", pl.Float64, "s"),
            Column("reason", pl.String, "why"),
        ),
    ),
    "units": Schema(
        "units",
        "fake units",
        (
            Column("session_id", pl.String, "id"),
            Column("unit_id", pl.String, "id"),
            Column("structure", pl.String, "area", required=False),
            Column("is_qc_pass", pl.Boolean, "qc"),
            Column("amplitude", pl.Float64, "uV"),
            Column("spike_times", pl.List(pl.Float64), "s"),
        ),
    ),
}

FAKE_COMPONENTS = {name: f"helpers.fakes:{name}" for name in FAKE_SCHEMAS}


def make_fake_session(
    out: Path,
    subject: int,
    date: dt.date,
    *,
    seed: int = 0,
    n_trials: int = 20,
    n_units: int = 12,
    fail: tuple[str, ...] = (),
    sleep: float = 0.0,
    crash: tuple[str, ...] = (),
) -> Path:
    """Write a fake raw session folder and return its path."""
    root = out / f"ecephys_{subject}_{date.isoformat()}_12-00-00"
    root.mkdir(parents=True, exist_ok=True)
    spec = {"seed": seed, "n_trials": n_trials, "n_units": n_units, "fail": list(fail)}
    spec["sleep"] = sleep
    spec["crash"] = list(crash)  # components whose process dies (os._exit), like an OOM kill
    (root / "fake.json").write_text(json.dumps(spec))
    return root


def _spec(raw: Any) -> dict[str, Any]:
    path = f"{raw.root}/fake.json"
    with raw.open(path) as f:
        return dict(json.loads(f.read()))


def truth(spec: dict[str, Any], session_id: str) -> dict[str, pl.DataFrame]:
    """Return the frames every fake component yields for `spec` (the ground truth)."""
    rng = np.random.default_rng(spec["seed"])
    n = spec["n_trials"]
    start = np.cumsum(rng.uniform(3, 6, n))
    trials = pl.DataFrame(
        {
            "session_id": [session_id] * n,
            "trial_index": np.arange(n),
            "start_time": start,
            "stop_time": start + 2.5,
            "stim_name": rng.choice(["vis1", "vis2", "sound1", "sound2"], n),
            "is_hit": rng.random(n) < 0.6,
        }
    )
    u = spec["n_units"]
    counts = rng.integers(0, 400, u)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # spike times: sorted per unit, quantized to 30 kHz samples like real sorted spikes
    samples = rng.integers(0, 30_000 * 600, int(offsets[-1]))
    unit_of = np.repeat(np.arange(u), counts)
    order = np.lexsort((samples, unit_of))
    times = samples[order] / 30_000.0 + 0.25
    spikes = pl.Series("spike_times", [times[offsets[i] : offsets[i + 1]] for i in range(u)]).cast(
        pl.List(pl.Float64)
    )
    units = pl.DataFrame(
        {
            "session_id": [session_id] * u,
            "unit_id": [f"{session_id}_A-{i}" for i in range(u)],
            "structure": rng.choice(STRUCTURES, u),
            "is_qc_pass": rng.random(u) < 0.5,
            "amplitude": rng.uniform(50, 300, u),
        }
    ).with_columns(spikes)
    return {"trials": trials, "units": units}


def _maybe_fail(spec: dict[str, Any], name: str, raw: Any) -> None:
    if name in spec.get("crash", ()):
        os._exit(137)
    if name in spec["fail"]:
        raise BadFormatError(
            f"fake {name} input is broken", path=f"{raw.root}/fake.json", field=name
        )


def sessions(raw: Any) -> pl.DataFrame:
    spec = _spec(raw)
    _maybe_fail(spec, "sessions", raw)
    ann = dict(raw.annotations)
    return pl.DataFrame(
        {
            "session_id": [str(raw.session_id)],
            "n_trials": [spec["n_trials"]],
            "notes": [ann.get("notes")],
            "issues": [list(ann.get("issues") or [])],
        },
        schema_overrides={"notes": pl.String, "issues": pl.List(pl.String)},
    )


def trials(raw: Any) -> pl.DataFrame:
    spec = _spec(raw)
    _maybe_fail(spec, "trials", raw)
    return truth(spec, str(raw.session_id))["trials"]


def invalid_times(raw: Any) -> pl.DataFrame:
    spec = _spec(raw)
    _maybe_fail(spec, "invalid_times", raw)
    entries = list(dict(raw.annotations).get("invalid_times") or [])
    return pl.DataFrame(
        {
            "session_id": [str(raw.session_id)] * len(entries),
            "start_time": [float(e["start_time"]) for e in entries],
            "stop_time": [float(e["stop_time"]) for e in entries],
            "reason": [str(e["reason"]) for e in entries],
        },
        schema=FAKE_SCHEMAS["invalid_times"].polars_schema,
    )


def units(raw: Any) -> pl.DataFrame:
    spec = _spec(raw)
    _maybe_fail(spec, "units", raw)
    if spec.get("sleep"):
        time.sleep(float(spec["sleep"]))
    return truth(spec, str(raw.session_id))["units"]


def install(monkeypatch: Any) -> None:
    """Point the component and schema registries at the fakes for one test."""
    import npc_frames.components as components
    import npc_frames.schemas as schemas

    monkeypatch.setattr(components, "COMPONENTS", dict(FAKE_COMPONENTS))
    monkeypatch.setattr(schemas, "SCHEMAS", dict(FAKE_SCHEMAS))
    # worker processes (spawned pools, dask workers) must import this module too
    here = str(Path(__file__).parents[1])  # tests/, so `helpers.fakes` imports
    current = os.environ.get("PYTHONPATH", "")
    if here not in current.split(os.pathsep):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, current) if p))


def _spec_of(raw_path: Path) -> dict[str, Any]:
    """Return the spec of the fake session folder at `raw_path`."""
    return dict(json.loads((Path(raw_path) / "fake.json").read_text()))
