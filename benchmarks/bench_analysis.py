"""Spike counts for all units x all trials of many full-scale sessions, side by side.

Three ways to get the same counts, each in a fresh process (wall time, peak RSS and peak heap of
that process, all on a warm page cache):

- ``npc_frames``: ``nf.spike_counts(nf.scan_units(cache), nf.scan_trials(cache), windows=...)`` over
  the Parquet cache (units written with the cache's own layout, ``npc_frames.cache_layout``);
- ``lazynwb``: ``lazynwb.get_spike_times_in_intervals(..., as_counts=True)`` over NWB files of the
  same sessions (written with pynwb's bulk VectorData/VectorIndex);
- ``h5py+numpy``: per-unit ``np.searchsorted`` over spike times read from the same NWB files — the
  issue's hand-written baseline.

Every method's counts are checked against the others on a sample of units. Not run by CI.

Generating a full-scale session takes ~15 s, so only ``--distinct`` sessions (default 4) are
generated; the others are copies of them under new session and unit ids. Every cache partition
is its own file (20 distinct files in the page cache, as a real project has); the NWB files of the
copies are symlinks to the distinct ones (which favours the NWB readers: fewer distinct pages).

    python benchmarks/bench_analysis.py                          # 20 sessions x 2,400 units x 60 M spikes
    python benchmarks/bench_analysis.py --units 600 --spikes 15e6  # quarter scale
    python benchmarks/bench_analysis.py --kernels                # numpy vs numba search, one session
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

WINDOWS = {"baseline": ("stim_start_time", -0.5, 0.0), "response": ("stim_start_time", 0.0, 0.5)}
DURATION = 5400.0  # 90-minute session
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))


def session_id(i: int) -> str:
    return f"{660000 + i}_2023-{1 + i // 28:02d}-{1 + i % 28:02d}"


def make_session(
    i: int, n_units: int, n_spikes: int, n_trials: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (units, trials) frames of one synthetic full-scale session."""
    rng = np.random.default_rng(i)
    sid = session_id(i)
    rates = rng.lognormal(0.0, 1.2, n_units)
    counts = rng.multinomial(n_spikes, rates / rates.sum())
    unit_of = np.repeat(np.arange(n_units), counts)
    # sort within units with one float sort of (unit * 1e4 + t): a lexsort of 60 M takes ~20 s
    key = rng.uniform(0, DURATION, n_spikes)
    key += unit_of * 1e4
    key.sort()
    times = key - unit_of * 1e4
    del key
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    probe = np.sort(rng.integers(0, 6, n_units))
    units = pl.DataFrame(
        {
            "session_id": sid,
            "unit_id": [f"{sid}_{'ABCDEF'[p]}-{k}" for k, p in enumerate(probe)],
            "electrode_group_name": [f"probe{'ABCDEF'[p]}" for p in probe],
            "default_qc": rng.random(n_units) < 0.4,
            "spike_times": pl.from_arrow(
                pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(times))
            ).cast(pl.List(pl.Float64)),
            "obs_intervals": [[[1.0, DURATION - 1.0]]] * n_units,
        }
    )
    stim = np.sort(rng.uniform(30, DURATION - 30, n_trials))
    trials = pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(n_trials),
            "start_time": stim - 1.5,
            "stop_time": stim + 3.0,
            "stim_start_time": stim,
            "is_catch": rng.random(n_trials) < 0.1,
        }
    )
    return units, trials


def renamed(units: pl.DataFrame, trials: pl.DataFrame, i: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return a copy of a session's frames under the ids of session `i` (spikes shared)."""
    old, new = units["session_id"][0], session_id(i)
    return (
        units.with_columns(
            session_id=pl.lit(new), unit_id=pl.col("unit_id").str.replace(old, new, literal=True)
        ),
        trials.with_columns(session_id=pl.lit(new)),
    )


def write_cache(cache: Path, units: pl.DataFrame, trials: pl.DataFrame) -> None:
    from npc_frames import storage
    from npc_frames.cache import data_path
    from npc_frames.cache_layout import to_parquet_bytes

    sid = units["session_id"][0]
    for name, df in (("units", units), ("trials", trials)):
        path = data_path(str(cache), name, sid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        storage.atomic_write_bytes(path, to_parquet_bytes(df, component=name))


def add_trials(nwb: Any, trials: pl.DataFrame) -> None:
    """Add the benchmark's trials (start/stop, stim_start_time, is_catch) to an NWBFile."""
    for name in ("stim_start_time", "is_catch"):
        nwb.add_trial_column(name=name, description=name)
    tr = trials.to_dict(as_series=False)
    for k in range(trials.height):  # 500 rows: pynwb's row API is fine for trials
        nwb.add_trial(
            start_time=tr["start_time"][k],
            stop_time=tr["stop_time"][k],
            stim_start_time=tr["stim_start_time"][k],
            is_catch=tr["is_catch"][k],
        )


def write_nwb(path: Path, units: pl.DataFrame, trials: pl.DataFrame) -> None:
    """Write units (bulk ragged spike_times + obs_intervals) and trials with pynwb."""
    import datetime as dt

    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.misc import Units

    nwb = NWBFile(
        session_description="benchmark",
        identifier=str(path.stem),
        session_start_time=dt.datetime(2023, 8, 31, tzinfo=dt.UTC),
    )
    st = units["spike_times"]
    spikes = st.explode().to_numpy()
    idx = np.cumsum(st.list.len().to_numpy())
    obs_data = np.tile([[1.0, DURATION - 1.0]], (units.height, 1))
    cols: list[Any] = []
    st_data = VectorData(name="spike_times", data=spikes, description="spike times (s)")
    cols += [st_data, VectorIndex(name="spike_times_index", data=idx, target=st_data)]
    obs = VectorData(name="obs_intervals", data=obs_data, description="observation intervals")
    cols += [
        obs,
        VectorIndex(name="obs_intervals_index", data=np.arange(1, units.height + 1), target=obs),
    ]
    cols.append(VectorData(name="unit_id", data=units["unit_id"].to_list(), description="unit id"))
    cols.append(
        VectorData(name="default_qc", data=units["default_qc"].to_numpy(), description="qc")
    )
    nwb.units = Units(name="units", description="units", columns=cols, id=np.arange(units.height))
    add_trials(nwb, trials)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


# ------------------------------------------------------------------------------ methods
def run_npc_frames(root: Path, limit: int | None) -> dict[str, Any]:
    import npc_frames as nf

    t0, c0 = time.perf_counter(), _cpu()
    units = nf.scan_units(cache=str(root / "cache"))
    trials = nf.scan_trials(cache=str(root / "cache"))
    if limit:
        keep = sorted(units.select("session_id").unique().collect()["session_id"].to_list())[:limit]
        units = units.filter(pl.col("session_id").is_in(keep))
    counts = nf.spike_counts(units, trials, windows=WINDOWS, workers=WORKERS)
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    peak = _peak_mb()  # before the sampling below, which is not part of the measured work
    anon = _SAMPLER.stop() if _SAMPLER is not None else float("nan")
    n = counts["session_id"].n_unique()
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "rows": counts.height,
        "sessions": n,
        "peak_rss_mb": peak,
        "peak_anon_mb": anon,
        "sample": _sample(counts),
    }


def run_lazynwb(root: Path, limit: int | None) -> dict[str, Any]:
    import lazynwb

    paths = sorted(str(p) for p in (root / "nwb").glob("*.nwb"))[:limit]
    t0, c0 = time.perf_counter(), _cpu()
    units = (
        lazynwb.scan_nwb(paths, "/units", disable_progress=True)
        .select("unit_id", "_nwb_path", "_table_index", "obs_intervals")
        .collect()
    )
    intervals = {
        name: (pl.col(event) + start, pl.col(event) + stop)
        for name, (event, start, stop) in WINDOWS.items()
    }
    counts = lazynwb.get_spike_times_in_intervals(
        units,
        intervals=intervals,
        intervals_df="/intervals/trials",
        as_counts=True,
        disable_progress=True,
        as_polars=True,
        use_process_pool=False,
    )
    elapsed, cpu = time.perf_counter() - t0, _cpu() - c0
    long = counts.unpivot(
        index=[c for c in counts.columns if c not in WINDOWS],
        on=list(WINDOWS),
        variable_name="window",
        value_name="count",
    )
    return {"seconds": elapsed, "cpu_seconds": cpu, "rows": long.height, "sessions": len(paths)}


def run_h5py(root: Path, limit: int | None) -> dict[str, Any]:
    import h5py

    t0, c0 = time.perf_counter(), _cpu()
    rows = 0
    sample: dict[str, int] = {}
    paths = sorted((root / "nwb").glob("*.nwb"))[:limit]
    for path in paths:
        with h5py.File(path, "r") as f:
            spikes = f["units/spike_times"][:]
            idx = f["units/spike_times_index"][:]
            unit_ids = f["units/unit_id"].asstr()[:]
            stim = f["intervals/trials/stim_start_time"][:]
        starts = np.concatenate([[0], idx[:-1]])
        for u, (a, b) in enumerate(zip(starts, idx, strict=True)):  # the per-unit idiom
            s = spikes[a:b]
            for name, (_, lo, hi) in WINDOWS.items():
                c = np.searchsorted(s, stim + hi) - np.searchsorted(s, stim + lo)
                rows += c.size
                if u < 3:
                    sample[f"{unit_ids[u]}|{name}"] = int(c[:50].sum())
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": _cpu() - c0,
        "rows": rows,
        "sessions": len(paths),
        "sample": sample,
    }


def _cpu() -> float:
    """Return this process's user + system CPU seconds (all threads): a figure that a loaded,
    shared machine distorts less than wall time."""
    t = os.times()
    return t.user + t.system


def _peak_mb() -> float:
    """Return this process's peak RSS (VmHWM). ``ru_maxrss`` would be wrong here: Linux keeps it
    across exec, so a child would report the parent's peak from generating the sessions."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_SAMPLER: _AnonPeak | None = None


class _AnonPeak:
    """Sample the process's anonymous (heap) memory every 5 ms: peak RSS also counts the pages of
    memory-mapped Parquet files that Polars has touched, which are page cache, not allocations."""

    def __init__(self) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def _sample(counts: pl.DataFrame) -> dict[str, int]:
    first = counts.group_by("session_id").agg(pl.col("unit_id").unique().sort().head(3))
    keep = first.explode("unit_id")
    sub = counts.join(keep, on=["session_id", "unit_id"]).filter(pl.col("trial_index") < 50)
    agg = sub.group_by("unit_id", "window").agg(pl.col("count").sum())
    return {f"{u}|{w}": int(c) for u, w, c in agg.iter_rows()}


def compare_kernels(root: Path) -> None:
    """Print the edge-search time of numpy and of a numba kernel on one session's mmapped spikes,
    numba's import and cached-compile time included (a fresh process pays them once)."""
    from npc_frames.analysis import _search
    from npc_frames.analysis._spikes import load_cache_spikes

    cache = str(root / "cache")
    sid = session_id(0)
    units = pl.read_parquet(
        f"{cache}/units/session_id={sid}/data.parquet", columns=["unit_id", "obs_intervals"]
    )
    spikes = load_cache_spikes(cache, sid, units, with_obs=False)
    assert spikes is not None
    # the kernels search one aligned flat array (the library reads each unit into an aligned
    # buffer before its search: that read is not part of this comparison)
    values, offsets = spikes.flat()
    starts, lengths = offsets[:-1], np.diff(offsets)
    rows = np.arange(spikes.n_units, dtype=np.int64)
    stim = pl.read_parquet(f"{cache}/trials/session_id={sid}/data.parquet")["stim_start_time"]
    ev = stim.to_numpy()
    bounds = np.unique(np.concatenate([ev - 0.5, ev, ev + 0.5]))
    out = np.zeros((spikes.n_units, bounds.size), dtype=np.int64)
    t0 = time.perf_counter()
    _search.below_into(values, starts, lengths, bounds, rows, out)
    t_numpy_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    _search.below_into(values, starts, lengths, bounds, rows, out)
    t_numpy = time.perf_counter() - t0
    expected = out.copy()

    t0 = time.perf_counter()
    import numba

    @numba.njit(nogil=True, cache=True)  # type: ignore[misc]
    def below_sorted(values, starts, lengths, bounds, rows, out):  # type: ignore[no-untyped-def]
        for i in range(starts.size):
            a, n, lo = starts[i], lengths[i], 0
            for j in range(bounds.size):  # sorted bounds: each search starts where the last ended
                hi = n
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if values[a + mid] < bounds[j]:
                        lo = mid + 1
                    else:
                        hi = mid
                out[rows[i], j] = lo

    out[:] = 0
    below_sorted(values, starts, lengths, bounds, rows, out)
    t_numba_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    below_sorted(values, starts, lengths, bounds, rows, out)
    t_numba = time.perf_counter() - t0
    print(
        f"edge search, {spikes.n_units} units x {bounds.size} edges: numpy {t_numpy:.3f} s "
        f"(first call {t_numpy_first:.3f} s); numba {t_numba:.3f} s (import + load/compile + "
        f"first call {t_numba_first:.3f} s); identical: {np.array_equal(out, expected)}"
    )


METHODS = {"npc_frames": run_npc_frames, "lazynwb": run_lazynwb, "h5py+numpy": run_h5py}


def _warm(paths: list[Path]) -> None:
    """Read files once so every method runs on a warm page cache (the issue's condition)."""
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def child(method: str, root: Path, limit: int | None) -> None:
    if method == "npc_frames":
        _warm(sorted((root / "cache").rglob("*.parquet")))
    else:
        _warm(sorted((root / "nwb").glob("*.nwb"))[:limit])
    global _SAMPLER
    _SAMPLER = _AnonPeak()
    out = METHODS[method](root, limit)
    out.setdefault("peak_anon_mb", _SAMPLER.stop())
    out.setdefault("peak_rss_mb", _peak_mb())
    print("RESULT " + json.dumps(out, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--units", type=int, default=2400)
    ap.add_argument("--spikes", type=float, default=60e6, help="spikes per session")
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument(
        "--distinct", type=int, default=4, help="sessions generated; the rest are renamed copies"
    )
    ap.add_argument(
        "--kernels", action="store_true", help="time numpy vs numba edge search on one session"
    )
    ap.add_argument("--dir", type=Path, default=None, help="reuse/keep data here")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument(
        "--slow-sessions",
        type=int,
        default=None,
        help="run lazynwb on only the first N sessions (it takes ~30 s per full-scale "
        "session); ratios are then per session",
    )
    ap.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "kernels":
        compare_kernels(args.dir)
        return
    if args.child:
        child(args.child, args.dir, args.limit)
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_analysis_"))
    stamp = root / (
        f"done_{args.sessions}_{args.units}_{int(args.spikes)}_{args.trials}_{args.distinct}"
    )
    if not stamp.exists():
        t0 = time.perf_counter()
        (root / "nwb").mkdir(parents=True, exist_ok=True)
        distinct = max(1, min(args.distinct, args.sessions))
        for i in range(distinct):
            units, trials = make_session(i, args.units, int(args.spikes), args.trials)
            write_nwb(root / "nwb" / f"{session_id(i)}.nwb", units, trials)
            for j in range(i, args.sessions, distinct):
                write_cache(root / "cache", *renamed(units, trials, j))
                link = root / "nwb" / f"{session_id(j)}.nwb"
                if j != i and not link.exists():
                    link.symlink_to(root / "nwb" / f"{session_id(i)}.nwb")
            del units, trials
        stamp.touch()
        print(f"prepared {args.sessions} sessions in {time.perf_counter() - t0:.0f} s under {root}")
    if args.kernels:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "kernels", "--dir", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        print(proc.stdout.strip() or proc.stderr.strip().splitlines()[-1:])
        return
    print(
        f"{args.sessions} sessions x {args.units} units x {args.trials} trials, "
        f"{args.spikes:.3g} spikes/session, windows {list(WINDOWS)}; {os.cpu_count()} cores"
    )
    results: dict[str, dict[str, Any]] = {}
    for method in args.methods.split(","):
        limit = (
            []
            if method != "lazynwb" or not args.slow_sessions
            else ["--limit", str(args.slow_sessions)]
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--child", method, "--dir", str(root), *limit],
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{method:12s} failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        results[method] = json.loads(line[7:])
        print(f"{method}: {line[7:200]}", flush=True)
    base = results.get("npc_frames")
    print(
        f"{'method':12s} {'sessions':>8s} {'seconds':>8s} {'s/session':>9s} {'cpu s/ses':>9s} "
        f"{'peak MB':>8s} {'heap MB':>8s} {'rows':>11s}  per-session time (cpu) vs npc_frames"
    )
    for method, r in results.items():
        per = r["seconds"] / max(r["sessions"], 1)
        cpu = r.get("cpu_seconds", float("nan")) / max(r["sessions"], 1)
        ratio = per / (base["seconds"] / max(base["sessions"], 1)) if base else float("nan")
        cpu_ratio = (
            cpu / (base.get("cpu_seconds", float("nan")) / max(base["sessions"], 1))
            if base
            else float("nan")
        )
        print(
            f"{method:12s} {r['sessions']:8d} {r['seconds']:8.2f} {per:9.2f} {cpu:9.2f} "
            f"{r['peak_rss_mb']:8.0f} {r.get('peak_anon_mb', float('nan')):8.0f} "
            f"{r['rows']:11d}  {ratio:.1f}x ({cpu_ratio:.1f}x)"
        )
    print(f"load average during the run: {os.getloadavg()}")
    if base and "h5py+numpy" in results:
        a, b = base["sample"], results["h5py+numpy"]["sample"]
        common = set(a) & set(b)
        agree = all(a[k] == b[k] for k in common)
        print(
            f"counts agree with the h5py+numpy baseline on {len(common)} sampled unit-windows: {agree}"
        )


if __name__ == "__main__":
    main()
