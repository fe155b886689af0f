"""Benchmark ``npc_frames.synth.population.make_population``: wall time, disk size and peak RSS.

Target (issue 11): a 20-session population (ephys with sibling sorted assets, a surface-channel
recording, box training and habituation sessions) written in well under a minute, so that convert
benchmarks and population tests can build one on the fly.

Each run is a fresh Python process (its peak RSS is its own); the time excludes imports.

Usage::

    python benchmarks/bench_population.py              # 20 sessions, 3 runs
    python benchmarks/bench_population.py --sessions 40 --runs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(n: int, seed: int) -> None:
    """Write one population in this process and print a json line with its figures."""
    import importlib

    for module in ("npc_frames.synth.task", "npc_frames.synth.ephys", "polars", "h5py"):
        importlib.import_module(module)
    from npc_frames.synth.population import make_population

    out = Path(tempfile.mkdtemp(prefix="bench_population_"))
    try:
        t0 = time.perf_counter()
        truth = make_population(out, n, seed=seed)
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        kinds: dict[str, int] = {}
        for m in truth.members:
            kinds[m.kind] = kinds.get(m.kind, 0) + 1
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {"seconds": seconds, "mb_on_disk": size / 1e6, "peak_mb": peak_mb, "kinds": kinds}
            )
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        _child(args.sessions, args.seed)
        return
    results = []
    for run in range(args.runs):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--sessions",
                str(args.sessions),
                "--seed",
                str(run),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    secs = [r["seconds"] for r in results]
    print(
        f"{args.sessions} sessions, {args.runs} runs (seeds 0..{args.runs - 1}): "
        f"median {statistics.median(secs):.1f} s (min {min(secs):.1f}, max {max(secs):.1f}); "
        f"{statistics.median(r['mb_on_disk'] for r in results):.0f} MB on disk; "
        f"peak RSS {max(r['peak_mb'] for r in results):.0f} MB; kinds {results[0]['kinds']}"
    )


if __name__ == "__main__":
    main()
