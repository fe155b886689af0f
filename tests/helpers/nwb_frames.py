"""Frames of one small session, built directly from FORMATS column names (test helper for NWB).

Used until/alongside the real synthetic sessions: every dtype the cache can hold appears (float
with NaN and null, int, bool, str with null, list[f64], list[str], list[list[f64]]).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_series_equal

from npc_frames.nwb import EVENT_TABLES, INTERVAL_TABLES

SESSION_ID = "668755_2023-08-31"


def make_frames(
    *, seed: int = 0, n_units_per_probe: int = 6, probes: str = "AB", n_channels: int = 16
) -> dict[str, pl.DataFrame]:
    """Return component name -> frame for one small synthetic session."""
    rng = np.random.default_rng(seed)
    sid = SESSION_ID
    lit = pl.lit(sid).alias("session_id")
    f: dict[str, pl.DataFrame] = {}
    f["sessions"] = pl.DataFrame(
        {
            "session_id": [sid],
            "subject_id": [668755],
            "date": [datetime.date(2023, 8, 31)],
            "session_idx": [0],
            "session_start_time": [
                datetime.datetime(
                    2023, 8, 31, 12, 33, 31, 250000, tzinfo=ZoneInfo("America/Los_Angeles")
                )
            ],
            "rig": ["NP3"],
            "experimenter": ["Sam Gale"],
            "institution": ["Neural Circuits & Behavior | MindScope program | Allen Institute"],
            "task_version": ["stage 5 ori AMN moving"],
            "source_script": ["https://github.com/samgale/DynamicRoutingTask/DynamicRouting1.py"],
            "session_description": ["ephys session with task, sync, video"],
            "keywords": [["task", "sync", "ephys", "units"]],
            "is_ephys": [True],
            "is_sync": [True],
            "is_video": [True],
            "is_task": [True],
            "is_sorted": [True],
            "is_training": [False],
            "is_engaged": [None],
            "issues": [[]],
        }
    )
    f["subjects"] = pl.DataFrame(
        {
            "session_id": [sid],
            "subject_id": [668755],
            "date_of_birth": [datetime.date(2023, 2, 6)],
            "sex": ["male"],
            "genotype": ["wt/wt"],
            "strain": ["C57BL6J(NP)"],
            "species": ["Mus musculus"],
        }
    )
    n = 12
    start = np.arange(n) * 5.0 + 20.0
    stim = np.array(["vis1", "vis2", "sound1", "sound2", "catch", "vis1"] * 2)
    resp = rng.random(n) > 0.5
    rt = np.where(resp, start + 1.3, np.nan)
    f["trials"] = pl.DataFrame(
        {
            "start_time": start,
            "stop_time": start + 4.5,
            "stim_start_time": start + 1.0,
            "response_time": rt,
            "opto_start_time": pl.Series([None] * n, dtype=pl.Float64),
            "stim_name": stim,
            "block_index": np.repeat([0, 1], n // 2),
            "rewarded_modality": np.repeat(["vis", "aud"], n // 2),
            "trial_index": np.arange(n),
            "trial_index_in_block": np.tile(np.arange(n // 2), 2).astype(float),
            "is_response": resp,
            "is_hit": resp & np.isin(stim, ["vis1", "sound1"]),
            "repeat_index": pl.Series([0, None] * (n // 2), dtype=pl.Int64),
            "is_opto": pl.Series([False, None, True] * (n // 3), dtype=pl.Boolean),
        }
    ).select(lit, pl.all())
    f["performance"] = pl.DataFrame(
        {
            "start_time": [20.0, 50.0],
            "stop_time": [49.5, 79.5],
            "block_index": [0, 1],
            "n_trials": [6, 6],
            "hit_rate": [0.5, np.nan],
            "rewarded_modality": ["vis", "aud"],
            "is_first_block_aud": [False, False],
        }
    ).select(lit, pl.all())
    f["vis_rf_mapping"] = pl.DataFrame(
        {
            "start_time": [100.0, 100.5, 101.0],
            "stop_time": [100.5, 101.0, 101.5],
            "stim_start_time": [100.02, 100.52, 101.02],
            "stim_stop_time": [100.27, 100.77, 101.27],
            "trial_index": [0, 2, 3],
            "is_small_field_grating": [True, False, True],
            "grating_orientation": [45.0, np.nan, 90.0],
            "grating_x": [-120.0, np.nan, 0.0],
            "flash_contrast": [np.nan, 1.0, np.nan],
        }
    ).select(lit, pl.all())
    f["aud_rf_mapping"] = pl.DataFrame(
        {
            "start_time": [102.0],
            "stop_time": [102.5],
            "trial_index": [1],
            "is_pure_tone": [True],
            "freq": [4000.0],
        }
    ).select(lit, pl.all())
    f["optotagging"] = pl.DataFrame(
        schema={
            "session_id": pl.String,
            "start_time": pl.Float64,
            "stop_time": pl.Float64,
            "location": pl.String,
        }
    )
    f["luminance_test"] = pl.DataFrame(
        {"start_time": [110.0], "stop_time": [115.0], "trial_index": [0], "level": [-0.25]}
    ).select(lit, pl.all())
    f["invalid_times"] = pl.DataFrame(
        {"start_time": [90.0], "stop_time": [95.0], "reason": ["probe B saturation"]}
    ).select(lit, pl.all())
    f["epochs"] = pl.DataFrame(
        {
            "start_time": [10.0, 99.0],
            "stop_time": [85.0, 120.0],
            "script_name": ["DynamicRouting1", "RFMapping"],
            "tags": [["task", "rewards"], ["mapping"]],
            "interval_names": [["trials", "performance"], ["vis_rf_mapping", "aud_rf_mapping"]],
            "notes": [None, "includes invalid times: probe B saturation"],
        }
    ).select(lit, pl.all())
    licks = np.sort(rng.uniform(20, 80, 40))
    f["licks"] = (
        pl.DataFrame(
            {
                "timestamps": licks,
                "duration": rng.uniform(0.01, 0.8, 40),
            }
        )
        .with_columns((pl.col("duration") <= 0.5).alias("is_likely_lick"))
        .select(lit, pl.all())
    )
    f["rewards"] = pl.DataFrame(
        {"timestamps": start[resp] + 1.35, "is_solenoid_time": np.zeros(int(resp.sum()), bool)}
    ).select(lit, pl.all())
    f["quiescent_violations"] = pl.DataFrame({"timestamps": [21.5, 33.0]}).select(lit, pl.all())
    t = 10.0 + np.arange(600) / 60.0
    f["running_speed"] = pl.DataFrame({"timestamps": t, "speed": np.sin(t) * 10.0}).select(
        lit, pl.all()
    )
    cams = []
    for cam in ("side_camera", "eye_camera"):
        ts = 5.0 + np.arange(30) / 60.0
        ts[0] = np.nan
        cams.append(pl.DataFrame({"camera": cam, "frame_index": np.arange(30), "timestamp": ts}))
    f["video_frame_times"] = pl.concat(cams).select(lit, pl.all())
    serials = {p: str(18005102491 + i) for i, p in enumerate(probes)}
    f["devices"] = pl.DataFrame(
        {
            "name": list(serials.values()),
            "description": ["Neuropixels 1.0"] * len(probes),
            "manufacturer": ["imec"] * len(probes),
            "electrode_group_name": [f"probe{p}" for p in probes],
        }
    ).select(lit, pl.all())
    f["electrode_groups"] = pl.DataFrame(
        {
            "name": [f"probe{p}" for p in probes],
            "device_name": list(serials.values()),
            "description": ["Neuropixels 1.0"] * len(probes),
            "location": ["2002 A2", "unknown"][: len(probes)] + ["unknown"] * (len(probes) - 2),
        }
    ).select(lit, pl.all())
    ch = np.arange(n_channels)
    el = []
    for i, p in enumerate(probes):
        el.append(
            pl.DataFrame(
                {
                    "electrode_index": ch + i * n_channels,
                    "group_name": f"probe{p}",
                    "channel": ch,
                    "rel_x": np.array([27.0, 59.0, 11.0, 43.0])[ch % 4],
                    "rel_y": 20.0 * (ch // 2),
                    "location": ["MOs" if i == 0 else "unannotated"] * n_channels,
                    "imp": np.full(n_channels, 150e3),
                    "reference": "tip",
                    "x": np.where(i == 0, 3000.0 + ch, np.nan),
                }
            )
        )
    f["electrodes"] = pl.concat(el).select(lit, pl.all())
    units = []
    for i, p in enumerate(probes):
        counts = rng.integers(0, 50, n_units_per_probe)
        peak = rng.integers(0, n_channels, n_units_per_probe)
        n_wf = rng.integers(1, 4, n_units_per_probe)  # 1-3 channels with template per unit
        chans = [
            sorted({int(pk), *((pk + np.arange(k)) % n_channels).tolist()})
            for pk, k in zip(peak, n_wf)
        ]
        counts[0] = 0  # a silent unit: empty list must round-trip
        spikes = [np.sort(rng.uniform(20, 120, c)) for c in counts]
        units.append(
            pl.DataFrame(
                {
                    "unit_id": [f"{sid}_{p}-{k}" for k in range(n_units_per_probe)],
                    "electrode_group_name": f"probe{p}",
                    "device_name": serials[p],
                    "peak_channel": peak,
                    "peak_electrode": peak + i * n_channels,
                    "cluster_id": np.arange(n_units_per_probe),
                    "num_spikes": counts,
                    "channels": chans,
                    "firing_rate": counts / 100.0,
                    "snr": np.where(np.arange(n_units_per_probe) == 1, np.nan, 3.0),
                    "decoder_label": ["sua", "mua", None, "noise", "sua", "sua"][
                        :n_units_per_probe
                    ],
                    "default_qc": np.arange(n_units_per_probe) % 2 == 0,
                    "spike_times": [s.tolist() for s in spikes],
                    "spike_amplitudes": [rng.uniform(50, 200, len(s)).tolist() for s in spikes],
                    "obs_intervals": [[[20.0, 120.0]]] * n_units_per_probe,
                    "waveform_mean": [
                        rng.normal(size=(len(c), 8)).astype(np.float32).tolist() for c in chans
                    ],
                }
            ).with_columns(pl.col("waveform_mean").cast(pl.List(pl.List(pl.Float32))))
        )
    f["units"] = pl.concat(units).select(lit, pl.all())
    # per-spike amplitudes are a component of their own, keyed like units
    f["spike_amplitudes"] = f["units"].select(
        "session_id", "unit_id", "electrode_group_name", "spike_amplitudes"
    )
    # and so are the average templates
    f["unit_waveforms"] = f["units"].select(
        "session_id", "unit_id", "electrode_group_name", "channels", "waveform_mean"
    )
    return {name: conform(name, df) for name, df in f.items()}


def conform(name: str, df: pl.DataFrame) -> pl.DataFrame:
    """Return `df` conformed to its declared schema (absent declared columns as nulls), if any."""
    from npc_frames.schemas import SCHEMAS

    schema = SCHEMAS.get(name)
    if schema is None:
        return df
    df = df.select([c for c in df.columns if c in schema.names])
    return schema.validate(
        df.with_columns(
            pl.lit(None, dtype=c.dtype).alias(c.name)
            for c in schema.columns
            if c.name not in df.columns
        )
    )


# ------------------------------------------------------------------------- expected values
def expected(df: pl.DataFrame) -> pl.DataFrame:
    """Return `df` as it must read back: the null-encoding rules of npc_frames.nwb_tables."""
    exprs = []
    for name in df.columns:
        s = df[name]
        if name == "session_id":
            continue
        exprs.append(_encode(s))
    return pl.DataFrame(exprs)


def _encode(s: pl.Series) -> pl.Series:
    dt = s.dtype
    if isinstance(dt, pl.List):
        # null list -> []; inner values follow the scalar rules
        s = s.fill_null(pl.Series([[]], dtype=dt))
        inner = dt.inner
        if isinstance(inner, pl.List) or not (inner.is_float() or inner == pl.String):
            return s
        fill = float("nan") if inner.is_float() else ""
        return s.list.eval(pl.element().fill_null(fill))
    if dt.is_float():
        return s.fill_null(float("nan"))
    if dt.is_integer() or dt == pl.Boolean:
        return s.cast(pl.Float64).fill_null(float("nan")) if s.null_count() else s
    if dt == pl.String or isinstance(dt, pl.Categorical | pl.Enum):
        return s.cast(pl.String).fill_null("")
    if dt == pl.Date or isinstance(dt, pl.Datetime):
        return s.dt.to_string().fill_null("")
    return s


def _same(actual: pl.Series, want: pl.Series, *, check_dtype: bool = True) -> None:
    """Assert two series hold the same values (NaN == NaN; numeric dtype family must match)."""
    if check_dtype:
        a, w = actual.dtype, want.dtype
        assert (
            a == w
            or (a.is_integer() and w.is_integer())
            or (a.is_float() and w.is_float())
            or (isinstance(a, pl.List) and isinstance(w, pl.List))
        ), f"{want.name}: dtype {a} read back, {w} written"
    if isinstance(want.dtype, pl.List) or isinstance(actual.dtype, pl.List):
        assert _nested_equal(actual.to_list(), want.to_list()), want.name
        return
    if want.dtype.is_numeric() or want.dtype == pl.Boolean:
        np.testing.assert_array_equal(
            actual.cast(pl.Float64).to_numpy(), want.cast(pl.Float64).to_numpy(), want.name
        )
        return
    assert_series_equal(actual.alias(want.name), want, check_dtypes=False)


def _nested_equal(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple | np.ndarray) and isinstance(b, list | tuple | np.ndarray):
        return len(a) == len(b) and all(_nested_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b)


def pynwb_frame(table: Any) -> pl.DataFrame:
    """Return a pynwb DynamicTable as a polars frame, ragged cells as lists."""
    from hdmf.common import VectorIndex

    cols = {}
    for name in table.colnames:
        if name == "electrodes":
            continue  # a region of another table: checked by test_units_link_peak_channel_...
        col = table[name]
        if isinstance(col, VectorIndex) or hasattr(col, "target"):
            values = [np.asarray(col[i]).tolist() for i in range(len(table))]
            cols[name] = pl.Series(name, values)
        else:
            data = col.data[:]
            if isinstance(data, list) or (
                data.dtype.kind == "O" and len(data) and not isinstance(data[0], str | bytes)
            ):
                continue  # object references (electrode_group, group)
            if data.dtype.kind in "OSU":
                data = [v.decode() if isinstance(v, bytes) else v for v in data]
            cols[name] = (
                pl.Series(name, data) if np.ndim(data) == 1 else pl.Series(name, data.tolist())
            )
    return pl.DataFrame(cols)


TABLE_PATHS: dict[str, str] = {
    **{k: f"/intervals/{v}" for k, v in INTERVAL_TABLES.items()},
    **{k: f"/processing/behavior/{v}" for k, v in EVENT_TABLES.items()},
    "units": "/units",
    "electrodes": "/general/extracellular_ephys/electrodes",
}
RENAMED = {"timestamps": "timestamp"}


def compare(
    component: str,
    want_df: pl.DataFrame,
    got: pl.DataFrame,
    waveforms: pl.DataFrame | None = None,
) -> None:
    """Assert that the NWB table `got` holds `want_df` (for units, with the templates of the
    unit_waveforms frame `waveforms` matched by unit_id)."""
    if component == "units" and waveforms is not None and "waveform_mean" not in want_df.columns:
        want_df = want_df.join(
            waveforms.select("unit_id", "channels", "waveform_mean"),
            on="unit_id",
            how="left",
            maintain_order="left",
        )
        assert want_df["waveform_mean"].null_count() == 0, "a unit without unit_waveforms row"
    want = expected(want_df)
    if component == "units" and "waveform_mean" in want.columns:
        # channels × samples of the unit's channels in the frame; NWB stores the dense
        # samples × probe channels, zero elsewhere
        dense = [np.asarray(w, dtype=np.float32) for w in got["waveform_mean"].to_list()]
        chans = want_df["channels"].to_list()
        for w, c in zip(dense, chans):
            outside = np.setdiff1d(np.arange(w.shape[1]), c)
            assert not w[:, outside].any()
        got = got.with_columns(
            pl.Series("waveform_mean", [w[:, c].T.tolist() for w, c in zip(dense, chans)])
        )
    if component == "electrodes" and "location_label" in got.columns:
        got = got.with_columns(pl.col("location_label").alias("location"))
    for name in want.columns:
        nwb_name = RENAMED.get(name, name) if component in EVENT_TABLES else name
        assert nwb_name in got.columns, f"{component}.{name} missing in NWB"
        _same(got[nwb_name], want[name])


def inspector_messages(path: Any) -> list[Any]:
    """Return nwbinspector's messages on `path`, without its crashes on zero-length datasets.

    nwbinspector's own checks read element 0 of every column and raise IndexError on a
    zero-length dataset (a list column empty in every row, written so that every file has the
    same columns: docs/nwb.md). Those crashes are the inspector's, not findings about the file;
    they are dropped only when the file does hold such a dataset.
    """
    import h5py
    import nwbinspector

    with h5py.File(path) as f:
        empty: list[str] = []
        f.visititems(
            lambda n, o: empty.append(n) if isinstance(o, h5py.Dataset) and 0 in o.shape else None
        )
    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(path)))
    crash = "Index (0) out of range for empty dimension"

    def crashed(m: Any) -> bool:
        text = f"{m.check_function_name} {m.message}"
        return "IndexError" in text and crash in text

    return [m for m in messages if not (empty and crashed(m))]


def _fake_cache(root: Path, frames: dict[str, pl.DataFrame], failed: dict[str, str]) -> None:
    """Write frames + catalog in the cache layout (docs/cache.md) without running convert."""
    cache = pytest.importorskip("npc_frames.cache")
    rows = []
    for name, df in frames.items():
        status = "failed" if name in failed else ("ok" if df.height else "empty")
        if name not in failed:
            path = Path(cache.data_path(str(root), name, SESSION_ID))
            path.parent.mkdir(parents=True, exist_ok=True)
            df.write_parquet(path)
        rows.append(
            {
                "session_id": SESSION_ID,
                "component": name,
                "status": status,
                "rows": df.height,
                "error": failed.get(name),
            }
        )
    catalog = pl.DataFrame(rows).with_columns(
        pl.lit(None, dtype=t).alias(c)
        for c, t in cache.CATALOG_SCHEMA.items()
        if c not in ("session_id", "component", "status", "rows", "error")
    )
    catalog.select(list(cache.CATALOG_SCHEMA)).write_parquet(root / cache.CATALOG_FILE)
