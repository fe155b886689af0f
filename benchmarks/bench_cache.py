"""Cache benchmarks, printed side by side (issue 5 "Performance"); CI does not run them.

1. convert throughput: N small synthetic sessions (npc_frames.synth) with 1 vs 2 worker processes;
   and ``--population 20``: a fresh process converts a 20-session population (2 probes, video)
   with ``workers=1`` (in-process) and ``workers=2`` (convert's own pool), reporting sessions per
   minute, CPU s, the serial lead-in and tail, and peak RSS of the parent and of the largest
   worker. ``--mix`` converts the ``npc-frames synth --population`` mix instead, and
   ``--population-minutes/-probes/-units`` size the sessions;
2. write of one full-scale session's units (2,400 units, 60 M spikes by default): the chosen units
   layout vs plain zstd list-column Parquet vs pynwb bulk NWB;
3. cross-session queries with the library's own overhead (``nf.scan_*`` / ``nf.sql``) vs lazynwb
   over NWB files of the same sessions (``nf.write_nwb``): scalar unit metrics and a trials
   GROUP BY.

    python benchmarks/bench_cache.py                 # 10 small sessions, full-scale units write
    python benchmarks/bench_cache.py --spikes 15e6   # lighter units write
    python benchmarks/bench_cache.py --population 20 --only-population
    python benchmarks/bench_cache.py --only-population --mix --population-minutes 60  # real size
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import datetime as dt
import io
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

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


def make_mixed_population(work: Path, n: int, **size: Any) -> list[str]:
    """Return raw paths of the `n`-session mix that ``npc-frames synth --population`` writes (box
    training, habituation, ephys with sibling sorted assets and a skipped probe, a surface-channel
    recording, two sessions of one subject on one day); `size`: make_population's ``minutes``,
    ``probes``, ``units_per_probe`` (its small defaults where not given)."""
    from npc_frames.synth.population import make_population as population

    return population(work / "population_mix", n, seed=0, **size).raw_paths


def make_population(
    work: Path, n: int, minutes: float = 2.0, probes: int = 2, units_per_probe: int = 8
) -> list[str]:
    """Return raw paths of `n` synthetic sessions (`minutes` long, `probes` x `units_per_probe`
    units, video)."""
    from npc_frames.synth import make_session

    return [
        str(
            make_session(
                work / "population",
                seed=500 + i,
                minutes=minutes,
                n_probes=probes,
                units_per_probe=units_per_probe,
                clip_seconds=0.2,
                date=dt.date(2023, 10, 1) + dt.timedelta(days=i),
            ).raw_path
        )
        for i in range(n)
    ]


@dataclass
class PopulationRun:
    """One convert of the population in a fresh process."""

    workers: int
    wall: float
    #: CPU s of the converting process / of its workers, fork server and other children
    parent_cpu: float
    children_cpu: float
    #: peak RSS MB of the converting process / of its largest child (worker or fork server; a
    #: child's figure includes the pages it shared with its parent when it was forked)
    parent_mb: float
    worker_mb: float
    #: s from convert's call to the first component's start, and from the last component's end
    #: to convert's return: the serial work before and after the sessions
    lead_in: float
    tail: float
    #: sessions in flight, summed over time, / wall: how busy the workers were (<= workers)
    occupancy: float
    bad: int

    @property
    def cpu(self) -> float:
        return self.parent_cpu + self.children_cpu


def _peak_mb() -> float:
    """Return this process's own peak RSS, MB.

    Linux's ``ru_maxrss`` is carried over ``fork`` + ``exec``: a spawned process starts with its
    parent's RSS at the fork as its "peak". ``VmHWM`` counts this process image only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _convert_run(raws: list[str], root: str, workers: int) -> PopulationRun:
    """Return one convert of `raws` in this (fresh) process, measured."""
    import multiprocessing.forkserver

    self0 = resource.getrusage(resource.RUSAGE_SELF)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    out = nf.convert(raws, root, workers=workers, progress=False)
    wall = time.perf_counter() - t0
    # workers forked by a fork server are its children: stop and reap it so that its and its
    # workers' resource use count among this process's children
    server = multiprocessing.forkserver._forkserver
    if getattr(server, "_forkserver_pid", None) is not None:
        server._stop()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # each component row: written_at (its end) and seconds (compute + write): session spans
    rows = (
        cache.read_catalog(root)
        .filter(pl.col("part").is_null(), pl.col("seconds").is_not_null())
        .with_columns(end=(pl.col("written_at") - pl.lit(started)).dt.total_microseconds() / 1e6)
        .with_columns(start=pl.col("end") - pl.col("seconds"))
        .group_by("session_id")
        .agg(pl.col("start").min(), pl.col("end").max())
    )
    busy = float((rows["end"] - rows["start"]).sum())
    return PopulationRun(
        workers=workers,
        wall=wall,
        parent_cpu=(self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        children_cpu=children.ru_utime + children.ru_stime,
        parent_mb=_peak_mb(),
        worker_mb=children.ru_maxrss / 1024,
        lead_in=float(rows["start"].min()),
        tail=wall - float(rows["end"].max()),
        occupancy=busy / wall,
        bad=out.filter(pl.col("status").is_in(["failed", "partial"])).height,
    )


def _warm_imports(raw: str, scratch: str) -> None:
    """Import what a conversion imports (the preload list, then one in-process convert of `raw`
    into `scratch`), and compile every module loaded into the bytecode cache (when one is
    used)."""
    import importlib
    import importlib.util
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker  # noqa: F401 - its bytecode is wanted
    import py_compile

    # multiprocessing passes this interpreter's -B (from PYTHONDONTWRITEBYTECODE) on: the other
    # processes only read the cache this one writes
    sys.dont_write_bytecode = False

    from npc_frames.cache import pool

    for name in pool.preload_modules():
        importlib.import_module(name)
    nf.convert([raw], scratch, workers=1, progress=False)
    shutil.rmtree(scratch, ignore_errors=True)
    # with PYTHONPYCACHEPREFIX, Python looks for bytecode only under the prefix: every module
    # (the standard library's too, and those the processes' start-up imported before this ran)
    # is compiled there, as an installed environment has them, or each process would compile
    # the ones this import did not reach from source (multiprocessing's alone ~0.5 s)
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if path and path.endswith(".py"):
            cfile = importlib.util.cache_from_source(path)
            if not os.path.exists(cfile):
                with contextlib.suppress(OSError, py_compile.PyCompileError):
                    py_compile.compile(path, cfile=cfile, doraise=True)


def bench_population(
    work: Path, raws: list[str], repeat: int, bytecode_cache: bool
) -> dict[int, list[PopulationRun]]:
    """Return workers -> `repeat` runs, each in a fresh process, the settings alternating."""
    if bytecode_cache:
        # an installed package imports from compiled bytecode (pip compiles it, and Python
        # writes it on first import); this environment may forbid writing it next to the
        # sources, so it is kept in the work folder and filled once before timing
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
        ex.submit(_warm_imports, raws[0], str(work / "warm_cache")).result()
    out: dict[int, list[PopulationRun]] = {1: [], 2: []}
    for _ in range(repeat):
        for workers in (1, 2):
            root = work / f"population_cache_{workers}w"
            shutil.rmtree(root, ignore_errors=True)
            with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
                out[workers].append(ex.submit(_convert_run, raws, str(root), workers).result())
    return out


def print_population(n: int, res: dict[int, list[PopulationRun]]) -> None:
    """Print each run, then the median run of each setting and the speed-up."""
    print(f"\n== convert {n} sessions: workers=1 (in-process) vs workers=2 (pool) ==")
    print(
        f"{'workers':>7s} {'wall s':>7s} {'sess/min':>8s} {'CPU s':>6s} {'parent':>6s} "
        f"{'workers':>7s} {'CPU/sess':>8s} {'lead-in':>7s} {'tail':>5s} {'busy':>5s} "
        f"{'RSS MB parent':>13s} {'largest child':>13s}"
    )
    for workers, runs in res.items():
        for r in runs:
            print(
                f"{workers:7d} {r.wall:7.2f} {60 * n / r.wall:8.1f} {r.cpu:6.2f} "
                f"{r.parent_cpu:6.2f} {r.children_cpu:7.2f} {r.cpu / n:8.3f} "
                f"{r.lead_in:7.2f} {r.tail:5.2f} {r.occupancy:5.2f} "
                f"{r.parent_mb:13.0f} {r.worker_mb:13.0f}"
                f"{f'  ({r.bad} partial/failed rows!)' if r.bad else ''}"
            )
    med = {w: statistics.median(r.wall for r in runs) for w, runs in res.items()}
    best = {w: min(r.wall for r in runs) for w, runs in res.items()}
    cpu = {w: statistics.median(r.cpu for r in runs) for w, runs in res.items()}
    for w in res:
        print(
            f"workers={w}: median {med[w]:.2f} s ({60 * n / med[w]:.1f} sessions/min), "
            f"best {best[w]:.2f} s ({60 * n / best[w]:.1f} sessions/min), "
            f"median CPU {cpu[w]:.2f} s"
        )
    print(
        f"speed-up with 2 workers: {med[1] / med[2]:.2f}x (medians of {len(res[1])} runs), "
        f"{best[1] / best[2]:.2f}x (bests); CPU 2 vs 1 workers: {cpu[2] / cpu[1]:.2f}x"
    )


def bench_units_write(n_units: int, n_spikes: int) -> dict[str, float]:
    # imported here: every convert worker imports this script (its __main__), and that module
    # imports duckdb and pyarrow.parquet, which the population benchmark should not time
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_spike_query as spikes

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
    ap.add_argument(
        "--population-minutes",
        type=float,
        default=None,
        help=(
            "task length of each population session (default 2; with --mix, the mix's 1). "
            "Longer sessions: less start-up share; 60 is a real session's length"
        ),
    )
    ap.add_argument(
        "--population-probes",
        type=int,
        default=None,
        help="probes of each ephys session (default 2; with --mix, 1-5, default 2)",
    )
    ap.add_argument(
        "--population-units",
        type=int,
        default=None,
        help="sorted units per probe (default 8; with --mix, default 4)",
    )
    ap.add_argument(
        "--mix",
        action="store_true",
        help="convert the session mix of `npc-frames synth --population N` instead",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each population setting")
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module from source in each process, as with PYTHONDONTWRITEBYTECODE",
    )
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="bench_cache_"))
    work.mkdir(parents=True, exist_ok=True)

    if args.population:
        t0 = time.perf_counter()
        size = {
            k: v
            for k, v in (
                ("minutes", args.population_minutes),
                ("probes", args.population_probes),
                ("units_per_probe", args.population_units),
            )
            if v is not None
        }
        # written by another process: this one's RSS is inherited by the converting processes
        # it spawns (Linux carries ru_maxrss over fork + exec) and would inflate their peaks
        maker = make_mixed_population if args.mix else make_population
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(1, mp_context=ctx) as ex:
            pop = ex.submit(maker, work, args.population, **size).result()
        what = "synth --population mix" if args.mix else "ephys sessions"
        print(
            f"made a {len(pop)}-session population ({what}, {size or 'default size'}) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        res = bench_population(work, pop, args.repeat, not args.no_bytecode_cache)
        print_population(len(pop), res)
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
