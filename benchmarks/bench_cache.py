"""Cache benchmarks, printed side by side (issue 5 "Performance"); CI does not run them.

1. convert throughput: N small synthetic sessions (npc_frames.synth) with 1 vs 2 worker processes;
   and ``--population 20``: a fresh process converts a 20-session population (2 probes, video)
   with ``workers=1`` (in-process) and ``workers=2`` (convert's own pool), reporting sessions per
   minute and peak RSS of the parent and of the largest worker;
2. write of one full-scale session's units (2,400 units, 60 M spikes by default): the chosen units
   layout vs plain zstd list-column Parquet vs pynwb bulk NWB;
3. cross-session queries with the library's own overhead (``nf.scan_*`` / ``nf.sql``) vs lazynwb
   over NWB files of the same sessions (``nf.write_nwb``): scalar unit metrics and a trials
   GROUP BY.

    python benchmarks/bench_cache.py                 # 10 small sessions, full-scale units write
    python benchmarks/bench_cache.py --spikes 15e6   # lighter units write
    python benchmarks/bench_cache.py --population 20 --only-population
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import io
import multiprocessing
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
import bench_spike_query as spikes
import npc_frames as nf
from npc_frames import cache, storage
from npc_frames.cache_layout import to_parquet_bytes


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Return (median seconds of `repeat` warm runs, last result)."""
    fn()
    ts, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def make_sessions(work: Path, n: int) -> list[str]:
    """Return raw paths of `n` small synthetic sessions (2 min, 1 probe, 8 units)."""
    from npc_frames.synth import make_session

    paths = []
    for i in range(n):
        truth = make_session(
            work / "raw",
            seed=100 + i,
            minutes=2.0,
            n_probes=1,
            units_per_probe=8,
            date=dt.date(2023, 9, 1) + dt.timedelta(days=i),
            video=False,
        )
        paths.append(str(truth.raw_path))
    return paths


def bench_convert(work: Path, raws: list[str]) -> dict[str, float]:
    """Return wall seconds per setting; "warm" reruns with overwrite in the same live pool."""
    out: dict[str, float] = {}
    for workers in (1, 2):
        root = work / f"cache_{workers}w"
        shutil.rmtree(root, ignore_errors=True)
        ex: cf.Executor
        if workers == 1:
            ex = cf.ThreadPoolExecutor(1)
        else:
            ex = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        with ex:
            for label, overwrite in (("cold", False), ("warm", True)):
                t0 = time.perf_counter()
                res = cache.convert(raws, root, executor=ex, progress=False, overwrite=overwrite)
                out[f"{workers} worker{'s' if workers > 1 else ''}, {label}"] = (
                    time.perf_counter() - t0
                )
        bad = res.filter(pl.col("status") == "failed")
        if bad.height:
            print(f"  note: {bad.height} failed components, e.g. {bad['error'][0][:120]}")
    return out


def make_population(work: Path, n: int) -> list[str]:
    """Return raw paths of `n` synthetic sessions (2 min, 2 probes x 8 units, video)."""
    from npc_frames.synth import make_session

    return [
        str(
            make_session(
                work / "population",
                seed=500 + i,
                minutes=2.0,
                n_probes=2,
                units_per_probe=8,
                clip_seconds=0.2,
                date=dt.date(2023, 10, 1) + dt.timedelta(days=i),
            ).raw_path
        )
        for i in range(n)
    ]


def _convert_run(raws: list[str], root: str, workers: int) -> tuple[float, float, float, int]:
    """Return (wall s, parent peak RSS MB, largest worker peak RSS MB, bad rows) of one convert
    in this (fresh) process."""
    t0 = time.perf_counter()
    out = nf.convert(raws, root, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    bad = out.filter(pl.col("status").is_in(["failed", "partial"])).height
    return wall, own, child, bad


def bench_population(work: Path, raws: list[str]) -> dict[int, tuple[float, float, float, int]]:
    """Return workers -> (wall s, parent MB, worker MB, bad rows), each in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    out = {}
    for workers in (1, 2):
        root = work / f"population_cache_{workers}w"
        shutil.rmtree(root, ignore_errors=True)
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            out[workers] = ex.submit(_convert_run, raws, str(root), workers).result()
    return out


def bench_units_write(n_units: int, n_spikes: int) -> dict[str, float]:
    df, _ = spikes.make_units(0, n_units, n_spikes, seed=1)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "units.parquet")

        def chosen() -> None:
            storage.atomic_write_bytes(path, to_parquet_bytes(df, component="units"))

        def plain() -> None:
            buf = io.BytesIO()
            df.write_parquet(buf, compression="zstd")
            storage.atomic_write_bytes(path, buf.getvalue())

        out["npc_frames units layout (packed, clustered)"], _ = timed(chosen, 1)
        out["plain zstd list-column Parquet"], _ = timed(plain, 1)
        nwb_path = Path(d) / "units.nwb"
        out["pynwb bulk VectorData/VectorIndex NWB"], _ = timed(
            lambda: spikes.write_nwb(df, nwb_path), 1
        )
    return out


def bench_queries(root: Path, nwb_paths: list[Path]) -> list[tuple[str, float, float]]:
    import lazynwb

    rows = []
    t_pl, a = timed(
        lambda: (
            nf.scan_units(root)
            .filter(pl.col("presence_ratio") > 0.5)
            .select("unit_id", "firing_rate", "presence_ratio", "amplitude")
            .collect()
        )
    )
    t_lz, b = timed(
        lambda: (
            lazynwb.scan_nwb(nwb_paths, "/units", disable_progress=True)
            .filter(pl.col("presence_ratio") > 0.5)
            .select("unit_id", "firing_rate", "presence_ratio", "amplitude")
            .collect()
        )
    )
    assert a.height == b.height, (a.height, b.height)
    rows.append(("scalar unit metrics (nf.scan_units)", t_pl, t_lz))
    t_sql, _ = timed(
        lambda: nf.sql(
            "SELECT unit_id, firing_rate FROM units WHERE presence_ratio > ?", root, params=[0.5]
        )
    )
    rows.append(("scalar unit metrics (nf.sql)", t_sql, t_lz))
    t_pl, a = timed(
        lambda: (
            nf.scan_trials(root)
            .group_by("session_id")
            .agg(pl.col("is_hit").mean(), pl.len())
            .collect()
        )
    )
    t_lz, b = timed(
        lambda: (
            lazynwb.scan_nwb(nwb_paths, "/intervals/trials", disable_progress=True)
            .group_by("_nwb_path")
            .agg(pl.col("is_hit").mean(), pl.len())
            .collect()
        )
    )
    assert a.height == b.height
    rows.append(("trials GROUP BY (nf.scan_trials)", t_pl, t_lz))
    t_sql, _ = timed(
        lambda: nf.sql("SELECT session_id, avg(is_hit::INT) FROM trials GROUP BY 1", root)
    )
    rows.append(("trials GROUP BY (nf.sql)", t_sql, t_lz))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--units", type=int, default=2400)
    ap.add_argument("--spikes", type=float, default=60e6, help="spikes in the full-scale units")
    ap.add_argument("--out", default=None, help="work folder (default: temp dir, removed)")
    ap.add_argument("--skip-units-write", action="store_true")
    ap.add_argument("--population", type=int, default=20, help="sessions of the 1 vs 2 run")
    ap.add_argument("--only-population", action="store_true")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)

    if args.population:
        t0 = time.perf_counter()
        pop = make_population(work, args.population)
        print(f"made a {len(pop)}-session population in {time.perf_counter() - t0:.1f} s")
        res = bench_population(work, pop)
        print(f"\n== convert {len(pop)} sessions: workers=1 (in-process) vs workers=2 (pool) ==")
        for workers, (wall, own, child, bad) in res.items():
            print(
                f"workers={workers}: {wall:6.1f} s  {60 * len(pop) / wall:6.1f} sessions/min  "
                f"peak RSS parent {own:5.0f} MB, largest worker {child:5.0f} MB"
                f"{f'  ({bad} partial/failed rows!)' if bad else ''}"
            )
        print(f"speed-up with 2 workers: {res[1][0] / res[2][0]:.2f}x")
        if args.only_population:
            if args.out is None:
                shutil.rmtree(work, ignore_errors=True)
            return

    t0 = time.perf_counter()
    raws = make_sessions(work, args.sessions)
    print(f"made {len(raws)} synthetic sessions in {time.perf_counter() - t0:.1f} s ({work})")

    conv = bench_convert(work, raws)
    print("\n== convert throughput ==")
    for label, secs in conv.items():
        print(f"{label:20s}: {secs:7.2f} s  ({len(raws) / secs:5.2f} sessions/s)")

    root = work / "cache_1w"
    nwb_paths = []
    for sid in cache.read_catalog(root)["session_id"].unique().sort():
        p = work / "nwb" / f"{sid}.nwb"
        p.parent.mkdir(exist_ok=True)
        try:
            nf.write_nwb(sid, p, cache=root)
            nwb_paths.append(p)
        except Exception as exc:
            print(f"  write_nwb({sid}) failed: {type(exc).__name__}: {exc}")
    if nwb_paths:
        print(f"\n== queries over {len(nwb_paths)} sessions (median of 3 warm runs) ==")
        print(f"{'query':40s} {'npc_frames s':>12s} {'lazynwb s':>10s} {'speed-up':>9s}")
        for name, a, b in bench_queries(root, nwb_paths):
            print(f"{name:40s} {a:12.4f} {b:10.4f} {b / a:8.0f}x")

    if not args.skip_units_write:
        print(
            f"\n== write one session's units ({args.units} units, "
            f"{args.spikes / 1e6:.0f} M spikes) =="
        )
        for name, secs in bench_units_write(args.units, int(args.spikes)).items():
            print(f"{name:46s} {secs:6.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
