"""Benchmark the behavior components on a full-scale synthetic session (prints figures).

Usage::

    python benchmarks/bench_behavior.py [--minutes 90] [--dir /tmp/npc_bench_behavior] [--cores 2]

A synthetic session (DynamicRouting1 of `--minutes` plus RFMapping, OptoTagging, Spontaneous; sync,
no ephys/video, which the behavior components do not read) is generated once into `--dir` by a
separate process, then timed in a fresh process restricted to `--cores` CPUs:

* `sync + frame timing`: reading the sync file and the frame times of every stim file (the timing
  module's work, memoized and shared by all components);
* every behavior component after that (the first opens its stim files), and `trials` again;
* peak resident memory of the measuring process.

Import time of the libraries is printed separately (it is paid once per process).

Targets: trials ≤ 0.5 s, all behavior components together ≤ 3 s, peak memory < 1 GB.
"""

from __future__ import annotations

import argparse
import glob
import os
import resource
import subprocess
import sys
import time

COMPONENTS = (
    "trials",
    "performance",
    "sessions",
    "subjects",
    "epochs",
    "vis_rf_mapping",
    "aud_rf_mapping",
    "optotagging",
    "luminance_test",
    "invalid_times",
    "licks",
    "rewards",
    "running_speed",
    "quiescent_violations",
)


def _generate(out: str, minutes: float) -> str:
    found = glob.glob(os.path.join(out, "ecephys_*[0-9]"))
    if found:
        return found[0]
    code = (
        "from npc_frames.synth import make_session;"
        f"t = make_session({out!r}, seed=7, minutes={minutes}, opto=True, ephys=False, video=False);"
        "print(t.raw_path)"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    print(f"generated {minutes:g}-minute session in {time.perf_counter() - t0:.1f} s")
    return res.stdout.strip().splitlines()[-1]


def _measure(raw_path: str) -> None:
    import importlib

    t_import = time.perf_counter()
    import polars as pl

    from npc_frames import components
    from npc_frames.paths import RawSession

    for module in {
        target.split(":")[0] for name, target in components.COMPONENTS.items() if name in COMPONENTS
    }:
        importlib.import_module(module)
    importlib.import_module("scipy.signal")  # running_speed's filter imports it lazily
    print(
        f"imports (numpy, polars, h5py, scipy.signal, npc_frames): {time.perf_counter() - t_import:.2f} s"
    )

    raw = RawSession.from_path(raw_path)
    rows: list[tuple[str, float, str]] = []

    def run(name: str, label: str | None = None) -> None:
        t0 = time.perf_counter()
        try:
            df = components.get(name)(raw)
            info = f"{df.height} rows"
        except Exception as exc:  # report, keep measuring the others
            info = f"FAILED {type(exc).__name__}: {exc}"[:100]
        rows.append((label or name, time.perf_counter() - t0, info))

    from npc_frames import timing

    t0 = time.perf_counter()
    n_files = len(timing.frame_times(raw))
    rows.append(
        (
            "sync + frame timing (timing.frame_times)",
            time.perf_counter() - t0,
            f"{n_files} stim files",
        )
    )
    for name in COMPONENTS:
        run(name)
    run("trials", "trials (again, stim file open)")
    total = sum(t for label, t, _ in rows[1:-1])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = max(len(r[0]) for r in rows)
    print(f"{'component':{width}s}  seconds  result")
    for label, t, info in rows:
        print(f"{label:{width}s}  {t:7.3f}  {info}")
    print(f"{'all behavior components (after timing)':{width}s}  {total:7.3f}")
    print(f"{'timing + all behavior components':{width}s}  {rows[0][1] + total:7.3f}")
    print(f"peak RSS: {peak_mb:.0f} MB  (polars threads: {pl.thread_pool_size()})")


def main() -> int:
    """Generate (once) and measure; return the exit status."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=90.0)
    p.add_argument("--dir", default="/tmp/npc_bench_behavior")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        _measure(args.measure)
        return 0
    raw_path = _generate(os.path.join(args.dir, f"{args.minutes:g}min"), args.minutes)
    env = dict(os.environ)
    for var in ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.cores)
    cmd = [sys.executable, __file__, "--measure", raw_path]
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[: args.cores]
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd]
    print(f"session: {raw_path}  ({args.cores} cores)")
    return subprocess.run(cmd, env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
