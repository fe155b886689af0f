"""unit_responses and RF maps on full-scale sessions (issue 14): time per session and memory.

Builds full-scale in-memory sessions (2,400 units, 60 M spikes over 90 minutes; ~570 task trials,
six RF-mapping blocks — 1,152 gratings on a 6 × 4 grid, 72 flashes, 312 tones, 120 AM noises — and
100 opto pulses) and times, per session, ``compute_unit_responses`` (all nine stimulus types)
and ``compute_vis_rf_maps`` / ``compute_aud_rf_maps`` (200 shuffles). Reading the inputs from the
cache is not included (that is ``nf.spike_counts``' read path, measured by bench_analysis.py); the
counting inside is. Not run by CI.

    python benchmarks/bench_responses.py                      # 2 full-scale sessions
    python benchmarks/bench_responses.py --sessions 1 --spikes 20e6

``--cache 20`` measures the cached path instead, end to end: 20 full-scale sessions are written to
a cache (``--distinct`` of them generated, the others renamed copies: every session its own
files), and a fresh process runs ``nf.unit_responses(cache, executor=ThreadPoolExecutor(2))``
over all of them (reading the inputs from the cache, computing, writing the results and the
catalog), then ``nf.vis_rf_maps`` of one session; each prints wall, CPU (user + system, all
threads) and peak RSS, on a warm page cache.

    python benchmarks/bench_responses.py --cache 20           # the issue's 20-session figure
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

DURATION = 5400.0


def make_session(
    i: int, n_units: int, n_spikes: int
) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Return (units, interval tables) of one synthetic full-scale session."""
    rng = np.random.default_rng(i)
    sid = f"{660000 + i}_2023-01-{1 + i % 28:02d}"
    rates = rng.lognormal(0.0, 1.2, n_units)
    counts = rng.multinomial(n_spikes, rates / rates.sum())
    unit_of = np.repeat(np.arange(n_units), counts)
    key = rng.uniform(0, DURATION, n_spikes) + unit_of * 1e4
    key.sort()
    times = key - unit_of * 1e4
    del key
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    units = pl.DataFrame(
        {
            "session_id": sid,
            "unit_id": [f"{sid}_A-{k}" for k in range(n_units)],
            "spike_times": pl.from_arrow(
                pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(times))
            ).cast(pl.List(pl.Float64)),
            "obs_intervals": [[[1.0, DURATION - 1.0]]] * n_units,
        }
    )

    def onsets(n: int, lo: float, hi: float) -> np.ndarray:
        return np.sort(rng.uniform(lo, hi, n))

    n_task = 570
    stim = rng.choice(["vis1", "vis2", "sound1", "sound2", "catch"], n_task)
    trials = pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(n_task),
            "stim_start_time": onsets(n_task, 1000, 4800),
            "is_vis_target": stim == "vis1",
            "is_vis_nontarget": stim == "vis2",
            "is_aud_target": stim == "sound1",
            "is_aud_nontarget": stim == "sound2",
            "rewarded_modality": np.where((np.arange(n_task) // 95) % 2 == 0, "vis", "aud"),
        }
    )
    gx, gy = np.linspace(-800, 800, 6), np.linspace(-440, 440, 4)
    n_g, n_f = 1152, 72
    vis = pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(n_g + n_f),
            "stim_start_time": onsets(n_g + n_f, 10, 900),
            "is_small_field_grating": np.arange(n_g + n_f) < n_g,
            "is_full_field_flash": np.arange(n_g + n_f) >= n_g,
            "grating_x": np.concatenate(
                [np.tile(np.repeat(gx, 4), n_g // 24), np.full(n_f, np.nan)]
            ),
            "grating_y": np.concatenate([np.tile(np.tile(gy, 6), n_g // 24), np.full(n_f, np.nan)]),
        }
    ).with_columns(pl.col("grating_x", "grating_y").fill_nan(None))
    n_t, n_am = 312, 120
    aud = pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(n_t + n_am),
            "stim_start_time": onsets(n_t + n_am, 10, 900),
            "is_pure_tone": np.arange(n_t + n_am) < n_t,
            "is_AM_noise": np.arange(n_t + n_am) >= n_t,
            "freq": np.concatenate(
                [np.tile(np.arange(4000, 16001, 1000.0), n_t // 13), np.full(n_am, 20.0)]
            ),
        }
    )
    opto = pl.DataFrame(
        {
            "session_id": sid,
            "trial_index": np.arange(100),
            "stim_start_time": onsets(100, 5000, 5300),
        }
    )
    return units, {
        "trials": trials,
        "vis_rf_mapping": vis,
        "aud_rf_mapping": aud,
        "optotagging": opto,
    }


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_mb() -> float:
    """Return this process's peak RSS (VmHWM: ru_maxrss would include the parent's, across exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_cache(
    root: Path, n_sessions: int, distinct: int, n_units: int, n_spikes: int
) -> list[str]:
    """Write `n_sessions` sessions' units and interval tables to the cache at `root`; return ids."""
    from npc_frames import storage
    from npc_frames.cache import data_path
    from npc_frames.cache_layout import to_parquet_bytes

    sids = []
    for i in range(distinct):
        units, tables = make_session(i, n_units, n_spikes)
        old = units["session_id"][0]
        for j in range(i, n_sessions, distinct):
            sid = f"{661000 + j}_2023-02-{1 + j % 28:02d}"
            frames = {
                "units": units.with_columns(
                    session_id=pl.lit(sid),
                    unit_id=pl.col("unit_id").str.replace(old, sid, literal=True),
                ),
                **{k: v.with_columns(session_id=pl.lit(sid)) for k, v in tables.items()},
            }
            for name, df in frames.items():
                path = data_path(str(root), name, sid)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                storage.atomic_write_bytes(path, to_parquet_bytes(df, component=name))
            sids.append(sid)
        del units, tables
    return sorted(sids)


def _warm(root: Path) -> None:
    for p in sorted(root.rglob("*.parquet")):
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def child(root: Path, what: str, workers: int) -> None:
    import npc_frames as nf
    import npc_frames.derived
    import npc_frames.responses
    import npc_frames.rf_maps

    sids = json.loads((root / "sessions.json").read_text())
    _warm(root)
    t0, c0 = time.perf_counter(), _cpu()
    if what == "unit_responses":
        with ThreadPoolExecutor(workers) as pool:
            df = nf.unit_responses(cache=str(root), session_ids=sids, executor=pool, overwrite=True)
    else:
        # the first call of a process also pays one-time costs (package metadata for the catalog
        # row, lazy imports, thread pools): timed separately from a second session's map
        df = nf.vis_rf_maps(cache=str(root), session_ids=sids[:1], overwrite=True)
        first_s, first_cpu = time.perf_counter() - t0, _cpu() - c0
        t0, c0 = time.perf_counter(), _cpu()
        df = nf.vis_rf_maps(cache=str(root), session_ids=sids[1:2], overwrite=True)
    out = {
        "what": what,
        "sessions": df["session_id"].n_unique(),
        "rows": df.height,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": _cpu() - c0,
        "peak_rss_mb": _peak_mb(),
    }
    if what != "unit_responses":
        out |= {"first_seconds": first_s, "first_cpu_seconds": first_cpu}
    print("RESULT " + json.dumps(out))


def cached(args: argparse.Namespace) -> None:
    root = args.dir or Path(tempfile.mkdtemp(prefix="bench_responses_"))
    stamp = root / f"done_{args.cache}_{args.distinct}_{args.units}_{int(args.spikes)}"
    if not stamp.exists():
        t0 = time.perf_counter()
        root.mkdir(parents=True, exist_ok=True)
        sids = write_cache(root, args.cache, args.distinct, args.units, int(args.spikes))
        (root / "sessions.json").write_text(json.dumps(sids))
        stamp.touch()
        print(f"wrote {len(sids)} sessions in {time.perf_counter() - t0:.0f} s under {root}")
    for what in ("unit_responses", "vis_rf_maps"):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                what,
                "--dir",
                str(root),
                "--workers",
                str(args.workers),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{what} failed: {proc.stderr.strip().splitlines()[-3:]}")
            continue
        r = json.loads(line[7:])
        print(
            f"{what}: {r['sessions']} sessions x {args.units} units, {r['rows']} rows: "
            f"{r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU "
            f"({r['cpu_seconds'] / max(r['sessions'], 1):.2f} s CPU per session), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
            + (
                f"; first call of the process {r['first_seconds']:.1f} s wall, "
                f"{r['first_cpu_seconds']:.1f} s CPU"
                if "first_seconds" in r
                else ""
            ),
            flush=True,
        )
    print(f"load average: {os.getloadavg()} ({os.cpu_count()} cores)")


def main() -> None:
    from npc_frames.responses import compute_unit_responses
    from npc_frames.rf_maps import compute_aud_rf_maps, compute_vis_rf_maps

    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2)
    parser.add_argument("--units", type=int, default=2400)
    parser.add_argument("--spikes", type=float, default=60e6)
    parser.add_argument("--cache", type=int, default=0, help="sessions in a cache (see above)")
    parser.add_argument("--distinct", type=int, default=2, help="with --cache: generated sessions")
    parser.add_argument("--workers", type=int, default=2, help="with --cache: executor threads")
    parser.add_argument("--dir", type=Path, default=None, help="with --cache: reuse/keep it here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.dir, args.child, args.workers)
        return
    if args.cache:
        cached(args)
        return
    per_session, vis_t, aud_t, cpu = [], [], [], []
    for i in range(args.sessions):
        units, tables = make_session(i, args.units, int(args.spikes))
        t0, c0 = time.perf_counter(), time.process_time()
        r = compute_unit_responses(units, tables)
        per_session.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        v = compute_vis_rf_maps(units, tables)
        vis_t.append(time.perf_counter() - t0)
        vis_cpu = time.process_time() - c0
        t0 = time.perf_counter()
        a = compute_aud_rf_maps(units, tables)
        aud_t.append(time.perf_counter() - t0)
        print(
            f"session {i}: unit_responses {per_session[-1]:.2f} s wall / {cpu[-1]:.2f} s CPU "
            f"({r.height} rows), "
            f"vis_rf_maps {vis_t[-1]:.2f} s wall / {vis_cpu:.2f} s CPU ({v.height} units), "
            f"aud_rf_maps {aud_t[-1]:.2f} s "
            f"({a.height} units)"
        )
        del units, tables, r, v, a
    mean, mean_cpu = float(np.mean(per_session)), float(np.mean(cpu))
    print(
        f"unit_responses: mean {mean:.2f} s wall, {mean_cpu:.2f} s CPU per session of "
        f"{args.units} units / {args.spikes / 1e6:.0f} M spikes -> 20 sessions: "
        f"~{20 * mean_cpu:.0f} s CPU in all (~{10 * mean_cpu:.0f} s wall on 2 idle cores with "
        f"one session per task, if it scales)"
    )
    print(
        f"vis_rf_maps: median {np.median(vis_t):.2f} s per session; aud_rf_maps {np.median(aud_t):.2f} s"
    )
    print(f"load average during the run: {os.getloadavg()} (2 cores shared)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
